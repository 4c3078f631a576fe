"""Validation: a chunk of raw rows in, accepted rows and rejected rows (with reasons) out.

Every check is vectorised over the chunk; a row is rejected if any of its fields fails,
and each failure is one line of the run's rejects (row number, field, value, reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo import STORAGE_SRID
from ingest import timewindow
from ingest.fields import READING_FIELDS, Field, LayerSpec
from ingest.mapping import FieldRule, Mapping

REJECT_COLUMNS = ["row_number", "field", "value", "reason"]
MAX_SOURCE_CHARS = 256  # a reading's source: a system's or a file's name
# Geometries farther than this from the area already in the twin are taken for mistakes.
AREA_MARGIN_DEG = 0.5  # about 50 km


@dataclass
class Checked:
    """The outcome of validating one chunk."""

    accepted: pd.DataFrame
    rejects: pd.DataFrame
    repaired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))


class Problems:
    """Collects (row, field, value, reason) for a chunk, vectorised."""

    def __init__(self, row_numbers: pd.Series) -> None:
        self.row_numbers = row_numbers
        self.parts: list[pd.DataFrame] = []
        self.bad = pd.Series(False, index=row_numbers.index)

    def add(self, mask: pd.Series, field_name: str, values: pd.Series, reason) -> None:
        """Record ``reason`` (text, or a Series of texts) for the rows where ``mask`` holds."""
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        self.bad |= mask
        reasons = reason[mask] if isinstance(reason, pd.Series) else reason
        self.parts.append(
            pd.DataFrame(
                {
                    "row_number": self.row_numbers[mask],
                    "field": field_name,
                    "value": values[mask].astype(str).str.slice(0, 200),
                    "reason": reasons,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        """All problems found, in row order."""
        if not self.parts:
            return pd.DataFrame(columns=REJECT_COLUMNS)
        return pd.concat(self.parts, ignore_index=True).sort_values("row_number", kind="stable")


def _raw(frame: pd.DataFrame, rule: FieldRule | None) -> pd.Series:
    if rule is None:
        return pd.Series(None, index=frame.index, dtype=object)
    if rule.column is None:
        return pd.Series([rule.value] * len(frame), index=frame.index, dtype=object)
    return frame[rule.column]


def _is_blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def parse_numbers(values: pd.Series, rule: FieldRule | None) -> tuple[pd.Series, pd.Series]:
    """Numbers after the rule's conversion, and a mask of values that are not numbers."""
    numbers = pd.to_numeric(values, errors="coerce")
    not_numeric = numbers.isna() & ~_is_blank(values)
    if rule is not None:
        numbers = numbers * rule.factor() + (rule.add or 0.0)
    return numbers.astype(float), not_numeric


def parse_times(
    values: pd.Series, rule: FieldRule | None, zone: str
) -> tuple[pd.Series, pd.Series]:
    """Timestamps in UTC, and a mask of values that cannot be read as times."""
    blank = _is_blank(values)
    fmt = (rule.format if rule else None) or "iso"
    if fmt in ("epoch_ms", "epoch_s"):
        numbers = pd.to_numeric(values, errors="coerce")
        times = pd.to_datetime(
            numbers, unit="ms" if fmt == "epoch_ms" else "s", utc=True, errors="coerce"
        )
    else:
        text = values.where(~blank).astype(object)
        pattern = "ISO8601" if fmt == "iso" else fmt
        try:
            times = pd.to_datetime(text, format=pattern, errors="coerce", utc=False)
        except (ValueError, TypeError):  # offsets mixed with naive values: parse one by one
            times = pd.Series(
                [pd.to_datetime(v, format=pattern, errors="coerce") for v in text],
                index=values.index,
                dtype=object,
            )
        times = _to_utc(times, zone)
    return times, times.isna() & ~blank


def _to_utc(times: pd.Series, zone: str) -> pd.Series:
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        return times.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(times):
        return times.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    converted = [
        pd.NaT
        if pd.isna(t)
        else (t.tz_convert("UTC") if t.tzinfo else t.tz_localize(zone).tz_convert("UTC"))
        for t in times
    ]
    return pd.Series(pd.to_datetime(converted, utc=True), index=times.index)


def check_field(
    frame: pd.DataFrame,
    spec: Field,
    rule: FieldRule | None,
    zone: str,
    problems: Problems,
    now: datetime,
) -> pd.Series:
    """Parse and check one field of every row; record problems; return the parsed values."""
    raw = _raw(frame, rule)
    if rule is not None and rule.map is not None:
        raw = raw.map(lambda v: rule.map.get(str(v), v) if not pd.isna(v) else v)
    missing = _is_blank(raw)
    if spec.required:
        problems.add(missing, spec.name, raw, "is missing")
    if spec.kind in ("float", "int"):
        values, bad = parse_numbers(raw, rule)
        problems.add(bad, spec.name, raw, "is not a number")
        if spec.kind == "int":
            fractional = values.notna() & (values != values.round())
            problems.add(fractional, spec.name, raw, "is not a whole number")
            values = values.round().astype("Int64")
        _check_range(values, spec, raw, problems)
        return values
    if spec.kind in ("date", "datetime"):
        if spec.kind == "datetime":  # observation times: in the plausible window or rejected
            raw = timewindow.screen_raw(raw, rule and rule.format, spec.name, problems, now)
        values, bad = parse_times(raw, rule, zone)
        problems.add(bad, spec.name, raw, f"cannot be read as a date{_fmt_hint(rule)}")
        if spec.kind == "datetime":
            values = timewindow.check_parsed(values, raw, spec.name, problems, now)
        problems.add(values > pd.Timestamp(now), spec.name, raw, "is in the future")
        return values.dt.date if spec.kind == "date" else values
    text = raw.where(~missing).astype(object)
    present = text.notna()
    text[present] = text[present].astype(str).str.strip()
    if spec.choices:
        wrong = ~missing & ~text.isin(spec.choices)
        problems.add(wrong, spec.name, raw, f"is not one of {', '.join(spec.choices)}")
    if spec.default is not None:
        text = text.astype(object).where(text.notna(), spec.default)
    return text


def _fmt_hint(rule: FieldRule | None) -> str:
    return f" in the format '{rule.format}'" if rule and rule.format else ""


def _check_range(values: pd.Series, spec: Field, raw: pd.Series, problems: Problems) -> None:
    if spec.min_value is not None:
        problems.add(
            values < spec.min_value,
            spec.name,
            raw,
            f"is below the smallest allowed value {spec.min_value:g}",
        )
    if spec.max_value is not None:
        problems.add(
            values > spec.max_value,
            spec.name,
            raw,
            f"is above the largest allowed value {spec.max_value:g}",
        )


@dataclass(frozen=True)
class Area:
    """The twin's extent in lon/lat, or None while it holds nothing."""

    bounds: tuple[float, float, float, float] | None

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether points lie within the area plus its margin."""
        if self.bounds is None:
            return np.ones(len(x), dtype=bool)
        west, south, east, north = self.bounds
        m = AREA_MARGIN_DEG
        return (x >= west - m) & (x <= east + m) & (y >= south - m) & (y <= north + m)


def check_geometry(
    gdf: gpd.GeoDataFrame, spec: LayerSpec, area: Area, problems: Problems
) -> tuple[np.ndarray, pd.DataFrame]:
    """Check geometries (type, emptiness, validity, place); return them in 4326 and repairs."""
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    label = pd.Series(shapely.get_type_id(geoms), index=gdf.index).map(
        lambda t: _TYPE_NAMES.get(t, "nothing")
    )
    missing = pd.Series(shapely.is_missing(geoms) | shapely.is_empty(geoms), index=gdf.index)
    problems.add(missing, "geometry", label, "is empty")
    # Unwrap single-part multis: a shapefile often stores every line as a MultiLineString.
    single = (shapely.get_type_id(geoms) >= 4) & (shapely.get_num_geometries(geoms) == 1)
    geoms = np.where(single, shapely.get_geometry(geoms, 0), geoms)
    types = pd.Series(shapely.get_type_id(geoms), index=gdf.index).map(_TYPE_NAMES)
    wrong = ~missing & ~types.isin(spec.geometry_types)
    problems.add(wrong, "geometry", types, f"is not a {' or '.join(spec.geometry_types)}")

    # Place: geometries are in lon/lat now; check a representative point of each.
    ok = ~missing & ~wrong
    xy = np.full((len(geoms), 2), np.nan)
    if ok.any():
        points = shapely.point_on_surface(geoms[ok.to_numpy()])
        xy[ok.to_numpy()] = shapely.get_coordinates(points)
    x, y = xy[:, 0], xy[:, 1]
    valid_lonlat = (np.abs(x) <= 180) & (np.abs(y) <= 90)
    inside = area.contains(x, y) & valid_lonlat
    swapped = ~inside & (np.abs(y) <= 180) & (np.abs(x) <= 90) & area.contains(y, x)
    where = pd.Series([f"{a:.5f} {b:.5f}" for a, b in xy], index=gdf.index)
    problems.add(
        pd.Series(ok & swapped, index=gdf.index),
        "geometry",
        where,
        "longitude and latitude look swapped",
    )
    problems.add(
        pd.Series(ok & ~swapped & ~valid_lonlat, index=gdf.index),
        "geometry",
        where,
        "is not a valid longitude/latitude (check the file's CRS or give --crs)",
    )
    problems.add(
        pd.Series(ok & ~swapped & valid_lonlat & ~inside, index=gdf.index),
        "geometry",
        where,
        "lies far outside the area already in the twin (check the file's CRS or give --crs)",
    )

    # Validity: repair what make_valid can repair into the same kind of geometry.
    invalid = ok & ~pd.Series(shapely.is_valid(geoms), index=gdf.index)
    repaired_rows = []
    if invalid.any():
        reasons = pd.Series(
            shapely.is_valid_reason(geoms[invalid.to_numpy()]), index=gdf.index[invalid.to_numpy()]
        )
        fixed = [_keep_kind(g, spec.geometry_types)
                 for g in shapely.make_valid(geoms[invalid.to_numpy()])]
        for position, (index, geom) in enumerate(zip(reasons.index, fixed, strict=True)):
            if _TYPE_NAMES.get(shapely.get_type_id(geom)) in spec.geometry_types:
                geoms[gdf.index.get_loc(index)] = geom
                repaired_rows.append((index, reasons.iloc[position]))
            else:
                problems.add(
                    pd.Series(gdf.index == index, index=gdf.index),
                    "geometry",
                    reasons,
                    f"is invalid and cannot be repaired into a {' or '.join(spec.geometry_types)}",
                )
    repaired = pd.DataFrame(
        [
            (problems.row_numbers[i], "geometry", reason, "was invalid and was repaired")
            for i, reason in repaired_rows
        ],
        columns=REJECT_COLUMNS,
    )
    return geoms, repaired


def _keep_kind(geom, kinds: tuple[str, ...]):
    """Of a repaired geometry, keep its one part of the layer's kind.

    make_valid turns a polygon's spike into a line beside the polygon; any other mix stays as
    it is, to be rejected.
    """
    parts = [p for p in shapely.get_parts(geom) if _TYPE_NAMES[shapely.get_type_id(p)] in kinds]
    return parts[0] if len(parts) == 1 else geom


_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    2: "LinearRing",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def to_storage_crs(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Reproject to the storage SRID; coordinates that cannot be projected become empty."""
    if gdf.crs is not None and gdf.crs.to_epsg() == STORAGE_SRID:
        return gdf
    with np.errstate(all="ignore"):
        projected = gdf.to_crs(STORAGE_SRID)
    bad = ~np.isfinite(shapely.get_coordinates(projected.geometry.values)).all(axis=1)
    if bad.any():  # a point off the projection's domain: leave it to the place check
        finite = shapely.transform(
            projected.geometry.values, lambda c: np.where(np.isfinite(c), c, 1e9)
        )
        projected = projected.set_geometry(
            gpd.GeoSeries(finite, index=projected.index, crs=STORAGE_SRID)
        )
    return projected


def properties_json(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """The unmapped columns of each row as a JSON object (NaN as null, times as ISO text)."""
    if not columns:
        return pd.Series("{}", index=frame.index)
    records = frame[columns].astype(object).where(frame[columns].notna(), None)
    return pd.Series(
        [
            json.dumps(
                dict(zip(columns, map(_plain, row), strict=True)),
                sort_keys=True,
                ensure_ascii=False,
            )
            for row in records.itertuples(index=False, name=None)
        ],
        index=frame.index,
    )


def _plain(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if hasattr(value, "isoformat"):  # dates, datetimes, Timestamps
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def property_columns(frame: pd.DataFrame, mapping: Mapping, used: set[str]) -> list[str]:
    """Columns that go to ``properties``: the kept ones, or all that no field uses."""
    skip = used | {"row_number", "geometry"} | set(mapping.properties.drop)
    if mapping.properties.keep is not None:
        return [c for c in mapping.properties.keep if c in frame.columns and c not in skip]
    return [c for c in frame.columns if c not in skip]


def validate_layer(
    gdf: gpd.GeoDataFrame,
    spec: LayerSpec,
    mapping: Mapping,
    *,
    source: str,
    area: Area,
    seen_ids: dict[str, int],
    now: datetime | None = None,
) -> Checked:
    """Validate a chunk of an asset or observation layer.

    ``seen_ids`` maps external ids met in earlier chunks of the same file to their row, so
    duplicates are caught across the whole file; it is updated in place.
    """
    now = now or datetime.now(UTC)
    problems = Problems(gdf["row_number"])
    out = pd.DataFrame(index=gdf.index)
    used: set[str] = set()
    for spec_field in spec.fields:
        rule = mapping.rule(spec_field.name)
        if rule is not None and rule.column is not None:
            used.add(rule.column)
        out[spec_field.name] = check_field(gdf, spec_field, rule, mapping.timezone, problems, now)
    source_rule = mapping.rule("source")
    if source_rule is not None:
        out["source"] = check_field(
            gdf, Field("source", "text"), source_rule, mapping.timezone, problems, now
        ).fillna(source)
        if source_rule.column:
            used.add(source_rule.column)
    else:
        out["source"] = source
    keys = out["source"].astype(str) + "\x1f" + out["external_id"].astype(str)
    first_row = keys.map(seen_ids)
    dup_in_chunk = keys.duplicated(keep="first") & out["external_id"].notna()
    first_in_chunk = gdf["row_number"].groupby(keys).transform("first")
    earlier = first_row.where(first_row.notna(), first_in_chunk)
    problems.add(
        (first_row.notna() | dup_in_chunk) & out["external_id"].notna(),
        "external_id",
        out["external_id"],
        "repeats the id of row " + earlier.astype("Int64").astype(str),
    )
    for key, row in zip(
        keys[~keys.duplicated()], gdf["row_number"][~keys.duplicated()], strict=True
    ):
        seen_ids.setdefault(key, int(row))

    geoms, repaired = check_geometry(gdf, spec, area, problems)
    out["properties"] = properties_json(gdf, property_columns(gdf, mapping, used))
    out["geom"] = shapely.to_wkb(shapely.set_srid(geoms, STORAGE_SRID), hex=True, include_srid=True)
    out["row_number"] = gdf["row_number"]
    good = ~problems.bad
    return Checked(
        out[good],
        problems.frame(),
        repaired[~repaired["row_number"].isin(problems.frame()["row_number"])],
    )


@dataclass(frozen=True)
class ReadingContext:
    """What the twin already knows that readings are checked against."""

    metrics: pd.DataFrame  # index name -> id, min_value, max_value
    assets: pd.DataFrame  # columns layer, external_id, id (one row per known asset)


def validate_readings(
    frame: pd.DataFrame,
    mapping: Mapping,
    context: ReadingContext,
    *,
    source: str,
    now: datetime | None = None,
) -> Checked:
    """Validate a chunk of long-form readings (wide files are melted before this)."""
    now = now or datetime.now(UTC)
    problems = Problems(frame["row_number"])
    out = pd.DataFrame(index=frame.index)
    for spec_field in READING_FIELDS:
        rule = mapping.rule(spec_field.name)
        out[spec_field.name] = check_field(frame, spec_field, rule, mapping.timezone, problems, now)
    source_rule = mapping.rule("source")
    out["source"] = (
        check_field(
            frame, Field("source", "text"), source_rule, mapping.timezone, problems, now
        ).fillna(source)
        if source_rule
        else source
    )

    lengths = out["source"].astype(str).str.len()  # a 10 MB source is refused, not stored
    problems.add(lengths > MAX_SOURCE_CHARS, "source", out["source"], "is " + lengths.map(
        "{:,}".format) + f" characters; at most {MAX_SOURCE_CHARS} are allowed")

    known = context.metrics.reindex(out["metric"])
    known.index = out.index
    undeclared = out["metric"].notna() & known["id"].isna()
    problems.add(
        undeclared,
        "metric",
        out["metric"],
        "is not a declared metric (declare it with `twin metrics set`)",
    )
    low = out["value"] < known["min_value"]
    high = out["value"] > known["max_value"]
    range_text = (
        " " + known["min_value"].map("{:g}".format) + "-" + known["max_value"].map("{:g}".format)
    )
    problems.add(
        low | high, "value", out["value"], "is outside the metric's declared range" + range_text
    )

    assets = context.assets
    matched = out[["asset_layer", "asset_external_id"]].merge(
        assets.rename(columns={"layer": "asset_layer", "external_id": "asset_external_id"}),
        how="left",
        on=["asset_layer", "asset_external_id"],
        validate="many_to_one",
    )
    matched.index = out.index
    unknown = out["asset_external_id"].notna() & out["asset_layer"].notna() & matched["id"].isna()
    problems.add(
        unknown,
        "asset_external_id",
        out["asset_external_id"],
        "is not an asset of layer " + out["asset_layer"].astype(str) + " in the twin",
    )
    good = ~problems.bad
    accepted = pd.DataFrame(
        {
            "metric_id": known["id"][good].astype("int64"),
            "asset_id": matched["id"][good].astype("int64"),
            "observed_at": out["observed_at"][good],
            "value": out["value"][good],
            "source": out["source"][good],
            "row_number": frame["row_number"][good],
        }
    )
    return Checked(accepted, problems.frame())


def melt_wide_readings(frame: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, Mapping]:
    """Turn a wide readings chunk (one column per metric) into long form, one row per value.

    The long rows keep their file row number; the returned mapping reads the long columns.
    """
    rules = mapping.metric_rules()
    missing = [c for c in rules if c not in frame.columns]
    if missing:
        raise KeyError(missing[0])
    keep = [c for c in frame.columns if c not in rules]
    parts = []
    for column, rule in rules.items():
        part = frame[keep].copy()
        numbers = pd.to_numeric(frame[column], errors="coerce")
        part["value"] = (numbers * rule.factor() + (rule.add or 0.0)).where(
            numbers.notna(), frame[column]
        )
        part["metric"] = rule.metric
        parts.append(part[~_is_blank(frame[column])])
    long = pd.concat(parts, ignore_index=True).sort_values("row_number", kind="stable")
    fields = dict(mapping.fields)
    fields["value"] = "value"
    fields["metric"] = "metric"
    return long.reset_index(drop=True), mapping.model_copy(
        update={"fields": fields, "readings": None}
    )
