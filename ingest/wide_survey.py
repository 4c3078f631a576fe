"""Load a city's yearly survey tables quickly: wide files, one column per year and metric.

Cities keep street-block ratings as one row per block and one column per survey year
(``RATING_2014, RATING_2015, ...``), sometimes with a column of survey dates per year and
more metrics (cracking, patching) beside. A TOML mapping says how to read one::

    id_column = "BLOCK_ID"             # the twin's streets.external_id
    year_pattern = "{metric}_{year}"   # columns like RATING_2019
    date_pattern = "SURVEYED_{year}"   # optional: the survey's date in each year
    survey_day = "07-01"               # month-day where a year has no date (default 07-01)
    source = "city-survey"             # optional: the readings' source

    [metrics]                          # column stem = a declared twin metric
    RATING = "city_rating"
    CRACK = "cracking_pct"

The table is turned into long readings (one per block, metric and year with a value) and
loaded through the ordinary readings ingest, so every row is validated the same way (unknown
blocks and values outside a metric's declared range are rejected into the rejects file) and
the load is one transaction.
"""

from __future__ import annotations

import re
import tempfile
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from geo.errors import InvalidInput
from geo.i18n import N_, _
from ingest.mapping import read_toml
from ingest.pipeline import RunReport, ingest_file

KEYS = {"id_column", "year_pattern", "date_pattern", "survey_day", "source", "metrics"}


def read_mapping(path: Path) -> dict:
    """The mapping, checked: its keys, the patterns' placeholders and the metrics table."""
    mapping = read_toml(path, missing=N_("Mapping {path} does not exist."),
                        unreadable=N_("Mapping {path} is not valid TOML: {error}."))
    unknown = sorted(set(mapping) - KEYS)
    if unknown:
        raise InvalidInput(_("Mapping {path}: unknown key '{key}' (known: {known}).", path=path,
                             key=unknown[0], known=", ".join(sorted(KEYS))))
    for key in ("id_column", "metrics"):
        if key not in mapping:
            raise InvalidInput(_("Mapping {path} needs '{key}'.", path=path, key=key))
    if not isinstance(mapping["metrics"], dict) or not mapping["metrics"]:
        raise InvalidInput(_("Mapping {path}: [metrics] must map column stems to twin metrics.",
                             path=path))
    pattern = mapping.setdefault("year_pattern", "{metric}_{year}")
    if "{metric}" not in pattern or "{year}" not in pattern:
        raise InvalidInput(_("Mapping {path}: year_pattern '{pattern}' must hold {{metric}} "
                             "and {{year}}.", path=path, pattern=pattern))
    if "date_pattern" in mapping and "{year}" not in mapping["date_pattern"]:
        raise InvalidInput(_("Mapping {path}: date_pattern must hold {{year}}.", path=path))
    day = mapping.setdefault("survey_day", "07-01")
    try:  # a day every year has (a year without 29 February)
        datetime.strptime(f"2001-{day}", "%Y-%m-%d")
    except (TypeError, ValueError):
        raise InvalidInput(_("Mapping {path}: survey_day '{day}' must be a day of every year as "
                             "MM-DD, like 07-01.", path=path, day=day)) from None
    return mapping


def _year_columns(columns, pattern: str, stem: str) -> dict[int, str]:
    regex = re.compile("^" + re.escape(pattern).replace(re.escape("{metric}"), re.escape(stem))
                       .replace(re.escape("{year}"), r"(\d{4})") + "$")
    return {int(m.group(1)): c for c in columns if (m := regex.match(str(c)))}


def to_readings(table: pd.DataFrame, mapping: dict, where: str | None = None) -> pd.DataFrame:
    """Long readings (asset_layer, asset_external_id, metric, observed_at, value, source).

    ``where`` names the table (its path) in an error; without it, "the table".

    >>> t = pd.DataFrame({"ID": ["A", "B"], "R_2020": [7, None], "R_2021": [6, 9]})
    >>> m = {"id_column": "ID", "year_pattern": "{metric}_{year}", "survey_day": "07-01",
    ...      "metrics": {"R": "rating"}}
    >>> for row in to_readings(t, m)[["asset_external_id", "observed_at", "value"]].values:
    ...     print(*row)
    A 2020-07-01T00:00:00Z 7.0
    A 2021-07-01T00:00:00Z 6.0
    B 2021-07-01T00:00:00Z 9.0
    """
    id_column = mapping["id_column"]
    if id_column not in table.columns:
        raise InvalidInput(
            _("the table has no id column '{column}' (the mapping's id_column).",
              column=id_column) if where is None
            else _("{path} has no id column '{column}' (the mapping's id_column).", path=where,
                   column=id_column))
    parts = []
    for stem, metric in mapping["metrics"].items():
        years = _year_columns(table.columns, mapping["year_pattern"], stem)
        if not years:
            example = mapping["year_pattern"].format(metric=stem, year=2020)
            raise InvalidInput(
                _("the table has no column like '{example}' for metric '{metric}'.",
                  example=example, metric=metric) if where is None
                else _("{path} has no column like '{example}' for metric '{metric}'.",
                       path=where, example=example, metric=metric))
        for year, column in sorted(years.items()):
            raw = table[column]
            number = pd.to_numeric(raw, errors="coerce")
            given = raw.notna() & (raw.astype(str).str.strip() != "")
            # A cell that is not a number goes on as written: the readings ingest rejects its
            # row with the reason, and the rest of the table still loads.
            value = number.astype(float).astype(object).where(number.notna(), raw.astype(object))
            when = pd.Series(f"{year}-{mapping['survey_day']}T00:00:00Z", index=table.index,
                             dtype=object)
            if "date_pattern" in mapping:
                date_column = mapping["date_pattern"].format(year=year)
                if date_column in table.columns:
                    written = table[date_column]
                    dates = pd.to_datetime(written, errors="coerce", utc=True, format="mixed")
                    has = written.notna() & (written.astype(str).str.strip() != "")
                    # A date that cannot be read also goes on as written (and is rejected):
                    # a made-up day would be stored as if surveyed.
                    when = when.where(~has, written.astype(object))
                    when = when.where(dates.isna(),
                                      dates.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object))
            parts.append(pd.DataFrame({
                "asset_layer": "streets",
                "asset_external_id": table.loc[given, id_column].astype(str).to_numpy(),
                "metric": metric,
                "observed_at": when[given].to_numpy(),
                "value": value[given].to_numpy(),
                "table_line": (table.index[given] + 2).to_numpy(),  # header is line 1
                "table_column": column}))
    out = pd.concat(parts, ignore_index=True)
    out["source"] = mapping.get("source", "survey")
    return out.sort_values(["asset_external_id", "metric", "observed_at"], kind="stable"
                           ).reset_index(drop=True)


def load_wide_survey(engine: Engine, path: Path, mapping_path: Path, *,
                     dry_run: bool = False) -> RunReport:
    """Read a wide CSV by its mapping and load its readings through the readings ingest."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(_("Survey table {path} does not exist.", path=path))
    mapping = read_mapping(mapping_path)
    try:
        table = pd.read_csv(path, dtype={mapping["id_column"]: str}, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InvalidInput(_("Survey table {path} is not a readable CSV: {error}.", path=path,
                             error=error)) from None
    readings = to_readings(table, mapping, str(path))
    origin = readings.pop("table_line"), readings.pop("table_column")
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / f"{path.stem}.readings.csv"
        readings.to_csv(long, index=False, lineterminator="\n")
        report = ingest_file(engine, "readings", long, source=mapping.get("source"),
                             dry_run=dry_run, rejects_path=path.with_suffix(".rejects.csv"))
    if report.rejects_path:
        _point_rejects_at_the_table(Path(report.rejects_path), *origin)
    return report


def _point_rejects_at_the_table(rejects: Path, lines: pd.Series, columns: pd.Series) -> None:
    """Name each reject's line and column of the wide table (its row_number is the long file's).

    The ingest numbers data rows from 1, so row ``n`` is the ``n``-th reading written.
    """
    frame = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    at = pd.to_numeric(frame["row_number"], errors="coerce") - 1
    known = at.between(0, len(lines) - 1)
    index = at[known].astype(int)
    frame.insert(0, "table_column", "")
    frame.insert(0, "table_line", "")
    frame.loc[known, "table_line"] = lines.to_numpy()[index].astype(str)
    frame.loc[known, "table_column"] = columns.to_numpy()[index]
    frame.to_csv(rejects, index=False, lineterminator="\n")
