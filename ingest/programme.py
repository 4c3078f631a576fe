"""Load a paving programme and past work records: evidence for road-wear forecasts.

A **programme** CSV has a row per scheduled treatment: ``external_id`` (the street),
``year``, ``treatment`` (one of the street work actions: crack_sealing, patching,
surface_treatment, mill_and_overlay, reconstruction) and optionally ``planned_on`` (a date
in the year) and ``published_on`` (since when the programme was known; without it, 1 January
of the year before). Loading a programme replaces the earlier entries of the same source.

A **work records** CSV has ``external_id``, ``action`` and ``done_at``: the city's record of
resurfacing done before the twin's own operations loop kept them. A ``done_at`` without a
zone is on the deployment's clock (``TWIN_TIMEZONE``). Loading records replaces the records
the same source loaded before (never the crews' own), so loading a file again changes nothing.

Both refuse the whole file, with the line and the reason, when a row is wrong: nothing is
half-loaded.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from geo import programme as sql
from geo import work
from geo.errors import InvalidInput
from geo.i18n import N_, _, local_zone

PROGRAMME_COLUMNS = ("external_id", "year", "treatment")
WORK_COLUMNS = ("external_id", "action", "done_at")
# What _read says of each kind of file, as whole sentences: missing, unreadable, lacking a column.
_READ_PROBLEMS = {
    "programme": (N_("Programme {path} does not exist."),
                  N_("Programme {path} is not a readable CSV: {error}."),
                  N_("Programme {path} has no column '{column}' (needed: {needed}).")),
    "work records": (N_("Work records {path} does not exist."),
                     N_("Work records {path} is not a readable CSV: {error}."),
                     N_("Work records {path} has no column '{column}' (needed: {needed}).")),
}


def _read(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    path = Path(path)
    absent, unreadable, lacking = _READ_PROBLEMS[what]
    if not path.is_file():
        raise InvalidInput(_(absent, path=path))
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InvalidInput(_(unreadable, path=path, error=error)) from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InvalidInput(_(lacking, path=path, column=missing[0],
                             needed=", ".join(required)))
    return table


def _street_ids(engine: Engine, table: pd.DataFrame, path: Path) -> list[int]:
    with engine.connect() as conn:
        ids = sql.street_ids(conn, table["external_id"].unique().tolist())
    for line, value in enumerate(table["external_id"], start=2):
        if value not in ids:
            raise InvalidInput(_("{path}, line {line}: street '{street}' is not in the twin.",
                                 path=path, line=line, street=value))
        if len(ids[value]) > 1:
            raise InvalidInput(_("{path}, line {line}: street '{street}' is in the twin {count} "
                                 "times (from different sources); which one is meant cannot be "
                                 "told.", path=path, line=line, street=value,
                                 count=len(ids[value])))
    return [ids[v][0] for v in table["external_id"]]


def _dates(table: pd.DataFrame, column: str, path: Path) -> list:
    if column not in table.columns:
        return [None] * len(table)
    out: list = []
    for line, value in enumerate(table[column], start=2):
        if not value:
            out.append(None)
            continue
        try:
            out.append(pd.Timestamp(value).date())
        except ValueError:
            raise InvalidInput(_("{path}, line {line}, {column}: '{value}' is not a date "
                                 "(YYYY-MM-DD).", path=path, line=line, column=column,
                                 value=value)) from None
    return out


def load_programme(engine: Engine, path: Path, *, source: str | None = None) -> int:
    """Load a programme CSV (see the module); returns the number of entries kept."""
    path = Path(path)
    table = _read(path, PROGRAMME_COLUMNS, "programme")
    years = []
    for line, (year, treatment) in enumerate(zip(table["year"], table["treatment"],
                                                 strict=True), start=2):
        if not year.strip().isdigit() or not 1900 <= int(year) <= 2200:
            raise InvalidInput(_("{path}, line {line}, year: '{year}' is not a year.",
                                 path=path, line=line, year=year))
        if treatment not in work.ACTIONS["streets"]:
            raise InvalidInput(_("{path}, line {line}, treatment: '{treatment}' is not one of "
                                 "{allowed}.", path=path, line=line, treatment=treatment,
                                 allowed=", ".join(work.ACTIONS["streets"])))
        years.append(int(year))
    entries = pd.DataFrame({"street_id": _street_ids(engine, table, path), "year": years,
                            "treatment": table["treatment"].to_numpy(),
                            "planned_on": _dates(table, "planned_on", path),
                            "published_on": _dates(table, "published_on", path)})
    for line, (planned, year) in enumerate(zip(entries["planned_on"], years, strict=True),
                                           start=2):
        if planned is not None and planned.year != year:
            raise InvalidInput(_("{path}, line {line}: planned_on {planned} is not in its year "
                                 "{year}.", path=path, line=line, planned=planned, year=year))
    entries = entries.drop_duplicates(["street_id", "year", "treatment"])
    with engine.begin() as conn:
        return sql.replace_programme(conn, source or path.stem, entries)


def load_work_records(engine: Engine, path: Path, *, source: str | None = None) -> int:
    """Load past work records of streets (see the module); returns how many were kept."""
    path = Path(path)
    table = _read(path, WORK_COLUMNS, "work records")
    for line, action in enumerate(table["action"], start=2):
        if action not in work.ACTIONS["streets"]:
            raise InvalidInput(_("{path}, line {line}, action: '{action}' is not one of "
                                 "{allowed}.", path=path, line=line, action=action,
                                 allowed=", ".join(work.ACTIONS["streets"])))
    done = []
    zone = local_zone()
    for line, value in enumerate(table["done_at"], start=2):
        try:
            ts = pd.Timestamp(value)
        except ValueError:
            ts = pd.NaT
        if pd.isna(ts):
            raise InvalidInput(_("{path}, line {line}, done_at: '{value}' is not a date and "
                                 "time.", path=path, line=line, value=value))
        done.append((ts.tz_localize(zone) if ts.tzinfo is None else ts).to_pydatetime())
    ids = _street_ids(engine, table, path)
    source = source or path.stem
    with engine.begin() as conn:
        sql.delete_work_records_of(conn, source)
        for asset, action, done_at in zip(ids, table["action"], done, strict=True):
            work.record(conn, alert_id=None, asset_layer="streets", asset_id=asset,
                        action=action, done_at=done_at, done_by=source, note=None,
                        recorded_by=source)
    return len(table)
