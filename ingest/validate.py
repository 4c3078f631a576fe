"""Validation: a chunk of raw rows in, accepted rows and rejected rows (with reasons) out.

Every check is vectorised over the chunk. A row is rejected when a required field or its
geometry fails; an optional field that cannot be used is set to NULL and the row is kept.
Each failure is one line of the run's rejects (row number, field, value, reason), with the
outcome ``rejected`` or ``kept, value dropped``.
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
from geo.text_rules import shown
from geo.vocabulary import OTHER, original_key
from ingest import timewindow
from ingest.fields import READING_FIELDS, Field, LayerSpec
from ingest.mapping import FieldRule, Mapping

REJECT_COLUMNS = ["row_number", "field", "value", "reason"]
# Outcomes of a line of the rejects report.
REJECTED = "rejected"
REPAIRED = "repaired"
VALUE_DROPPED = "kept, value dropped"
# Text that GIS tools and pandas write for "no value"; read as NULL like an empty field.
NULL_TEXTS = frozenset({"", "null", "nan", "nat", "<null>"})
MAX_SOURCE_CHARS = 256  # a reading's source: a system's or a file's name
# Geometries farther than this from the area already in the twin are taken for mistakes.
AREA_MARGIN_DEG = 0.5  # about 50 km


@dataclass
class Checked:
    """The outcome of validating one chunk."""

    accepted: pd.DataFrame
    rejects: pd.DataFrame
    repaired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    dropped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    # Rows whose geometry lies far outside the twin's area, and where they are (lon, lat).
    place: Placement | None = None


class Problems:
    """Collects (row, field, value, reason) for a chunk, vectorised.

    ``add`` rejects the rows; ``drop`` notes an optional value that was set to NULL while
    its row is kept.
    """

    def __init__(self, row_numbers: pd.Series) -> None:
        self.row_numbers = row_numbers
        self.parts: list[pd.DataFrame] = []
        self.dropped_parts: list[pd.DataFrame] = []
        self.bad = pd.Series(False, index=row_numbers.index)

    def add(self, mask: pd.Series, field_name: str, values: pd.Series, reason) -> None:
        """Record ``reason`` (text, or a Series of texts) for the rows where ``mask`` holds."""
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        self.bad |= mask
        self.parts.append(self._lines(mask, field_name, values, reason))

    def drop(self, mask: pd.Series, field_name: str, values: pd.Series, reason) -> None:
        """Record an optional value dropped (set to NULL) where ``mask`` holds; rows stay."""
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            self.dropped_parts.append(self._lines(mask, field_name, values, reason))

    def _lines(self, mask: pd.Series, field_name: str, values: pd.Series, reason) -> pd.DataFrame:
        reasons = reason[mask] if isinstance(reason, pd.Series) else reason
        return (
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
        """All problems that reject rows, in row order."""
        return _in_row_order(self.parts)

    def dropped_frame(self, rejected_rows: pd.Series) -> pd.DataFrame:
        """Dropped optional values of the rows that are kept, in row order."""
        frame = _in_row_order(self.dropped_parts)
        return frame[~frame["row_number"].isin(rejected_rows)]


def _in_row_order(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=REJECT_COLUMNS)
    return pd.concat(parts, ignore_index=True).sort_values("row_number", kind="stable")


def _raw(frame: pd.DataFrame, rule: FieldRule | None) -> pd.Series:
    if rule is None:
        return pd.Series(None, index=frame.index, dtype=object)
    if rule.column is None:
        return pd.Series([rule.value] * len(frame), index=frame.index, dtype=object)
    return frame[rule.column]


def is_blank(values: pd.Series) -> pd.Series:
    """Where a value is absent: NULL, NaN, NaT, empty or blank text, or "NULL"/"NaN"/"NaT".

    Examples
    --------
    >>> is_blank(pd.Series(["a", "", " NaT ", None, float("nan"), "null", 0])).tolist()
    [False, True, True, True, True, True, False]
    """
    if values.dtype.kind in "biufcmM":  # numbers and times: only NaN/NaT are absent
        return values.isna()
    text = values.astype(str).str.strip().str.lower()
    return values.isna() | text.isin(NULL_TEXTS)


def parse_numbers(values: pd.Series, rule: FieldRule | None) -> tuple[pd.Series, pd.Series]:
    """Numbers after the rule's conversion, and a mask of values that are not numbers."""
    numbers = pd.to_numeric(values, errors="coerce")
    not_numeric = numbers.isna() & ~is_blank(values)
    if rule is not None:
        numbers = numbers * rule.factor() + (rule.add or 0.0)
    return numbers.astype(float), not_numeric


def parse_times(
    values: pd.Series, rule: FieldRule | None, zone: str
) -> tuple[pd.Series, pd.Series]:
    """Timestamps in UTC, and a mask of values that cannot be read as times."""
    blank = is_blank(values)
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


class _Gather:
    """Problems found by a helper (the time window), gathered with the field's own.

    So they reject the row of a required field and drop the value of an optional one.
    """

    def __init__(self, into: list[tuple[pd.Series, str]]) -> None:
        self.into = into

    def add(self, mask: pd.Series, field: str, raw: pd.Series, reason: str) -> None:
        self.into.append((mask, reason))


def check_field(
    frame: pd.DataFrame,
    spec: Field,
    rule: FieldRule | None,
    zone: str,
    problems: Problems,
    now: datetime,
    *,
    unmapped: str = "reject",
) -> tuple[pd.Series, pd.Series | None]:
    """Parse and check one field of every row; record problems; return the parsed values.

    A problem with a required field rejects the row; an optional value that cannot be used
    becomes NULL (or the field's default) and the row is kept. With ``unmapped="other"``, a
    value of an open vocabulary that is not one of its values becomes ``other``; the second
    item returned then holds the original values of those rows (None when there are none).
    """
    raw = given = _raw(frame, rule)
    if rule is not None and rule.default is not None:
        raw = raw.astype(object).where(~is_blank(raw), rule.default)
    if rule is not None and rule.map is not None:
        raw = raw.map(lambda v: rule.map.get(str(v), v) if not pd.isna(v) else v)
    missing = is_blank(raw)
    if spec.required:
        problems.add(missing, spec.name, raw, "is missing")
    unusable: list[tuple[pd.Series, str]] = []
    originals = None
    if spec.kind in ("float", "int"):
        values, bad = parse_numbers(raw.where(~missing), rule)
        unusable.append((bad, "is not a number"))
        if spec.kind == "int":
            fractional = values.notna() & (values != values.round())
            unusable.append((fractional, "is not a whole number"))
            values = values.round().astype("Int64")
        unusable += _out_of_range(values, spec)
    elif spec.kind in ("date", "datetime"):
        present = raw.where(~missing)
        if spec.kind == "datetime":  # observation times: in the plausible window, or unusable
            present = timewindow.screen_raw(present, rule.format if rule else None, spec.name,
                                            _Gather(unusable), now)
        values, bad = parse_times(present, rule, zone)
        unusable.append((bad, f"cannot be read as a date{_fmt_hint(rule)}"))
        if spec.kind == "datetime":
            values = timewindow.check_parsed(values, raw, spec.name, _Gather(unusable), now)
        unusable.append((values > pd.Timestamp(now), "is in the future"))
        values = values.dt.date if spec.kind == "date" else values
    else:
        values = raw.where(~missing).astype(object)
        present = values.notna()
        values[present] = values[present].astype(str).str.strip()
        if spec.vocabulary is not None:
            allowed = spec.vocabulary.allowed
            wrong = ~missing & ~values.isin(allowed)
            if spec.vocabulary.open and unmapped == "other":
                values = values.where(~wrong, OTHER)
                # Keep the file's own value wherever the twin's differs (a mapped or an
                # unknown class), so nothing of the city's coding is lost.
                changed = values.notna() & ~is_blank(given) & (
                    values.astype(str) != given.astype(str).str.strip())
                if changed.any():
                    originals = given.where(changed).astype(object)
            else:
                unusable.append((wrong, f"is not one of {', '.join(spec.vocabulary.values)}"))
    for mask, reason in unusable:
        if spec.required:
            problems.add(mask, spec.name, raw, reason)
            continue
        mask = mask.fillna(False).astype(bool)
        problems.drop(mask, spec.name, raw, reason)
        if mask.any():
            values = values.where(~mask, None) if values.dtype == object else values.mask(mask)
    if spec.default is not None:
        values = (values.fillna(spec.default) if spec.kind == "float"
                  else values.astype(object).where(values.notna(), spec.default))
    return values, originals


def _fmt_hint(rule: FieldRule | None) -> str:
    return f" in the format '{rule.format}'" if rule and rule.format else ""


def _out_of_range(values: pd.Series, spec: Field) -> list[tuple[pd.Series, str]]:
    found = []
    if spec.min_value is not None:
        found.append((values < spec.min_value,
                      f"is below the smallest allowed value {spec.min_value:g}"))
    if spec.max_value is not None:
        found.append((values > spec.max_value,
                      f"is above the largest allowed value {spec.max_value:g}"))
    return found


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


@dataclass(frozen=True)
class Placement:
    """Where a chunk's usable geometries lie.

    How many there are, how many lie far outside the twin's area, and the sum of those far
    points' (lon, lat), to tell where a whole file lies.
    """

    placed: int = 0
    far: int = 0
    far_sum: tuple[float, float] = (0.0, 0.0)


def check_geometry(
    gdf: gpd.GeoDataFrame, spec: LayerSpec, area: Area, problems: Problems
) -> tuple[np.ndarray, pd.DataFrame, Placement]:
    """Check geometries (type, emptiness, validity, place).

    Returns them in 4326, the repairs, and where they lie.
    """
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
    # Swapped only where swapping really puts the point in place: within the twin's area, or,
    # while the twin is empty, where a "latitude" beyond 90 is a longitude.
    swap_fits = area.contains(y, x) if area.bounds is not None else ~valid_lonlat
    swapped = ~inside & (np.abs(y) <= 180) & (np.abs(x) <= 90) & swap_fits
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
    far = ok & ~swapped & valid_lonlat & ~inside
    problems.add(
        pd.Series(far, index=gdf.index),
        "geometry",
        where,
        "lies far outside the area already in the twin",
    )
    place = Placement(int(ok.sum()), int(far.sum()),
                      (float(x[far].sum()), float(y[far].sum())) if far.any() else (0.0, 0.0))

    # Validity: repair what make_valid can repair into the same kind of geometry.
    invalid = ok & ~pd.Series(shapely.is_valid(geoms), index=gdf.index)
    repaired_rows = []
    if invalid.any():
        reasons = pd.Series(
            shapely.is_valid_reason(geoms[invalid.to_numpy()]), index=gdf.index[invalid.to_numpy()]
        )
        # A repair keeps the geometry's kind: a bow-tie polygon split in two is not the
        # feature the file described.
        kinds = [_TYPE_NAMES.get(t, "") for t in shapely.get_type_id(geoms[invalid.to_numpy()])]
        fixed = [_keep_kind(g, (kind,)) for g, kind in
                 zip(shapely.make_valid(geoms[invalid.to_numpy()]), kinds, strict=True)]
        for position, (index, geom) in enumerate(zip(reasons.index, fixed, strict=True)):
            if _TYPE_NAMES.get(shapely.get_type_id(geom)) == kinds[position]:
                geoms[gdf.index.get_loc(index)] = geom
                repaired_rows.append((index, reasons.iloc[position]))
            else:
                problems.add(
                    pd.Series(gdf.index == index, index=gdf.index),
                    "geometry",
                    reasons,
                    f"is invalid and cannot be repaired into a {kinds[position]}",
                )
    repaired = pd.DataFrame(
        [
            (problems.row_numbers[i], "geometry", reason, "was invalid and was repaired")
            for i, reason in repaired_rows
        ],
        columns=REJECT_COLUMNS,
    )
    return geoms, repaired, place


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


def properties_json(
    frame: pd.DataFrame, columns: list[str], originals: dict[str, pd.Series] | None = None
) -> pd.Series:
    """The unmapped columns of each row as a JSON object (NaN as null, times as ISO text).

    ``originals`` (key -> values, NULL where there is none) adds the values a field had
    before an open vocabulary made them ``other``, under keys such as
    ``original_road_class``, only where there is one.
    """
    originals = originals or {}
    if not columns and not originals:
        return pd.Series("{}", index=frame.index)
    records = frame[columns].astype(object).where(frame[columns].notna(), None)
    extra = [
        {key: _plain(values[i]) for key, values in originals.items() if not pd.isna(values[i])}
        for i in frame.index
    ] if originals else None
    return pd.Series(
        [
            json.dumps(
                {**dict(zip(columns, map(_plain, row), strict=True)),
                 **(extra[position] if extra else {})},
                sort_keys=True,
                ensure_ascii=False,
            )
            for position, row in enumerate(records.itertuples(index=False, name=None))
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
    originals: dict[str, pd.Series] = {}
    for spec_field in spec.fields:
        rule = mapping.rule(spec_field.name)
        if rule is not None and rule.column is not None:
            used.add(rule.column)
        out[spec_field.name], original = check_field(
            gdf, spec_field, rule, mapping.timezone, problems, now, unmapped=mapping.unmapped
        )
        if original is not None:
            originals[original_key(spec_field.name)] = original
    source_rule = mapping.rule("source")
    if source_rule is not None:
        out["source"] = check_field(
            gdf, Field("source", "text"), source_rule, mapping.timezone, problems, now
        )[0].fillna(source)
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

    geoms, repaired, place = check_geometry(gdf, spec, area, problems)
    out["properties"] = properties_json(gdf, property_columns(gdf, mapping, used), originals)
    out["geom"] = shapely.to_wkb(shapely.set_srid(geoms, STORAGE_SRID), hex=True, include_srid=True)
    out["row_number"] = gdf["row_number"]
    good = ~problems.bad
    rejected = problems.frame()
    return Checked(
        out[good],
        rejected,
        repaired[~repaired["row_number"].isin(rejected["row_number"])],
        problems.dropped_frame(rejected["row_number"]),
        place,
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
        out[spec_field.name] = check_field(
            frame, spec_field, rule, mapping.timezone, problems, now
        )[0]
    source_rule = mapping.rule("source")
    out["source"] = (
        check_field(
            frame, Field("source", "text"), source_rule, mapping.timezone, problems, now
        )[0].fillna(source)
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
        "is not an asset of layer " + out["asset_layer"].map(lambda v: shown(str(v)))
        + " in the twin",
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
        parts.append(part[~is_blank(frame[column])])
    long = pd.concat(parts, ignore_index=True).sort_values("row_number", kind="stable")
    fields = dict(mapping.fields)
    fields["value"] = "value"
    fields["metric"] = "metric"
    return long.reset_index(drop=True), mapping.model_copy(
        update={"fields": fields, "readings": None}
    )
