"""Features of the published layers for OGC API - Features: extents, pages, counts, one feature.

Every statement wraps a layer's ``select`` from :data:`geo.layers.LAYERS`; column names come
only from a layer's declared properties and values always travel as bound parameters, so text
typed by a client is never more than a value. The FeatureCollection and Feature JSON is built
by PostgreSQL (``json_build_object``/``json_agg``) and handed on as text, unparsed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.errors import InvalidInput
from geo.layers import Layer

STORAGE_SRID = 4326
GEOJSON_DIGITS = 7
# numberMatched: an exact count when the layer's table is estimated (pg_class.reltuples) to
# hold fewer rows than this; above it, an exact count only if it finishes within the timeout.
EXACT_COUNT_BELOW_ROWS = 1_000_000
COUNT_TIMEOUT_MS = 1_000
# Several values of one property are OR-ed; cap them so one URL cannot build a huge statement.
MAX_VALUES_PER_PROPERTY = 100
_BIGINT = 2**63
# json_build_object takes at most 100 arguments, i.e. 50 key/value pairs.
_PAIRS_PER_CALL = 50


@dataclass(frozen=True)
class TimeFilter:
    """A parsed ``datetime``: an instant (start == end) or an interval with open ends as None."""

    start: datetime | None
    end: datetime | None
    instant: bool = False


@dataclass(frozen=True)
class FeatureQuery:
    """What a client asked of a layer's items, validated against the layer."""

    as_of: datetime
    bbox: tuple[float, float, float, float] | None = None
    time_range: TimeFilter | None = None  # applied to the layer's time property, if it has one
    equals: tuple[tuple[str, tuple[object, ...]], ...] = ()  # (property, any of these values)
    sortby: tuple[tuple[str, bool], ...] = ()  # (property or "id", descending)
    properties: tuple[str, ...] | None = None  # None: all of the layer's properties
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class Extent:
    """A layer's extent in CRS84 and, for layers in time, the span of its time property."""

    bbox: tuple[float, float, float, float] | None
    interval: tuple[datetime | None, datetime | None] | None = None


@dataclass(frozen=True)
class Page:
    """One page of features: the JSON array as text, how many it holds, whether more follow."""

    features_json: str
    returned: int
    more: bool


# -- parsing what clients send ----------------------------------------------------------------


def _finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{what}: '{text}' is not a number.") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{what}: '{text}' is not a finite number.")
    return value


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``bbox`` (west,south,east,north in CRS84; a 6-number box drops its heights).

    Examples
    --------
    >>> parse_bbox("108.5,32.5,108.6,32.6")
    (108.5, 32.5, 108.6, 32.6)
    """
    parts = text.split(",")
    if len(parts) not in (4, 6):
        raise InvalidInput(f"bbox: expected 4 numbers (west,south,east,north), got {len(parts)}.")
    numbers = [_finite(p.strip(), "bbox") for p in parts]
    west, south, east, north = (numbers if len(numbers) == 4
                                else [numbers[0], numbers[1], numbers[3], numbers[4]])
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InvalidInput("bbox: longitudes must lie within -180..180 (CRS84).")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise InvalidInput("bbox: latitudes must lie within -90..90 (CRS84).")
    if west > east:
        raise InvalidInput("bbox: west is greater than east (boxes across the antimeridian "
                           "are not supported).")
    if south > north:
        raise InvalidInput("bbox: south is greater than north.")
    return west, south, east, north


def parse_instant(text: str, what: str = "datetime", *, end_of_day: bool = False) -> datetime:
    """Parse an RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``), or a full date.

    A date alone means the start of that day in UTC, or its last microsecond with
    ``end_of_day``.
    """
    text = text.strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"{what}: '{text}' is not an RFC 3339 date.") from None
        moment = datetime.combine(day, time.min, tzinfo=UTC)
        return moment + timedelta(days=1, microseconds=-1) if end_of_day else moment
    if len(text) < 20 or text[10] not in "Tt":
        raise InvalidInput(f"{what}: '{text}' is not an RFC 3339 date-time "
                           "(e.g. 2024-05-01T08:00:00Z).")
    try:
        moment = datetime.fromisoformat(text[:10] + "T" + text[11:])
    except ValueError:
        raise InvalidInput(f"{what}: '{text}' is not an RFC 3339 date-time.") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{what}: '{text}' has no time zone offset (add Z or +hh:mm).")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{what}: '{text}' is out of range.") from None


def parse_datetime(text: str) -> TimeFilter:
    """Parse ``datetime``: an instant, or ``start/end`` with ``..`` (or nothing) for an open end.

    A date alone as an instant means that whole day.

    Examples
    --------
    >>> parse_datetime("2024-05-01T00:00:00Z/..").end is None
    True
    """
    if "/" not in text:
        if len(text.strip()) == 10:
            return TimeFilter(parse_instant(text), parse_instant(text, end_of_day=True))
        moment = parse_instant(text)
        return TimeFilter(moment, moment, instant=True)
    if text.count("/") != 1:
        raise InvalidInput("datetime: an interval is start/end, with '..' for an open end.")
    first, second = (part.strip() for part in text.split("/"))
    start = None if first in ("", "..") else parse_instant(first)
    end = None if second in ("", "..") else parse_instant(second, end_of_day=True)
    if start is not None and end is not None and start > end:
        raise InvalidInput("datetime: the interval starts after it ends.")
    return TimeFilter(start, end)


def as_of_for(time_filter: TimeFilter | None, now: datetime) -> datetime:
    """The state of the twin a ``datetime`` asks for: an instant, else an interval's end."""
    if time_filter is None or time_filter.end is None:
        return now
    return time_filter.end


def parse_value(layer: Layer, name: str, text: str) -> object:
    """A property value from a query parameter, typed by the property's declared type."""
    kind = next(p.type for p in layer.properties if p.name == name)
    what = f"{name} ({kind})"
    if kind == "integer":
        try:
            value = int(text.strip())
        except ValueError:
            raise InvalidInput(f"{what}: '{text}' is not an integer.") from None
        if not -_BIGINT <= value < _BIGINT:
            raise InvalidInput(f"{what}: '{text}' is out of range.")
        return value
    if kind == "number":
        return _finite(text.strip(), what)
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise InvalidInput(f"{what}: '{text}' is not true or false.")
        return lowered == "true"
    if kind == "date":
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            raise InvalidInput(f"{what}: '{text}' is not a date (YYYY-MM-DD).") from None
    if kind == "datetime":
        return parse_instant(text, what)
    return text


def parse_sortby(layer: Layer, text: str) -> tuple[tuple[str, bool], ...]:
    """Parse ``sortby``: names of properties (or ``id``), ``-`` before one for descending."""
    keys = []
    for raw in text.split(","):
        # '+' arrives as a space when not percent-encoded.
        item = raw.strip()
        descending = item.startswith("-")
        name = item.lstrip("+-").strip()
        if name != "id" and name not in layer.property_names:
            raise InvalidInput(f"sortby: '{name}' is not a property of '{layer.id}' "
                               f"(one of: id, {', '.join(layer.property_names)}).")
        if name in (k for k, _ in keys):
            raise InvalidInput(f"sortby: '{name}' is given twice.")
        keys.append((name, descending))
    return tuple(keys)


def parse_properties(layer: Layer, text: str) -> tuple[str, ...]:
    """Parse ``properties``: the properties to return, in the layer's order; empty for none."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in layer.property_names]
    if unknown:
        raise InvalidInput(f"properties: '{unknown[0]}' is not a property of '{layer.id}' "
                           f"(one of: {', '.join(layer.property_names)}).")
    return tuple(n for n in layer.property_names if n in names)


# -- SQL ----------------------------------------------------------------------------------------


def _properties_json(names: tuple[str, ...]) -> str:
    if not names:
        return "'{}'::json"
    pairs = [f"'{n}', q.{n}" for n in names]
    if len(pairs) <= _PAIRS_PER_CALL:
        return f"json_build_object({', '.join(pairs)})"
    chunks = [pairs[i:i + _PAIRS_PER_CALL] for i in range(0, len(pairs), _PAIRS_PER_CALL)]
    return "(" + " || ".join(f"jsonb_build_object({', '.join(c)})" for c in chunks) + ")::json"


def _feature_json(names: tuple[str, ...]) -> str:
    return (f"json_build_object('type', 'Feature', 'id', q.id, 'geometry', "
            f"ST_AsGeoJSON(q.geom, {GEOJSON_DIGITS})::json, "
            f"'properties', {_properties_json(names)})")


def _where(layer: Layer, query: FeatureQuery) -> tuple[str, dict]:
    clauses: list[str] = []
    params: dict = {"as_of": query.as_of}
    if query.bbox is not None:
        clauses.append(f"ST_Intersects(q.geom, ST_MakeEnvelope(:west, :south, :east, :north, "
                       f"{STORAGE_SRID}))")
        params.update(zip(("west", "south", "east", "north"), query.bbox, strict=True))
    span = query.time_range
    if span is not None and layer.time_property is not None:
        column = f"q.{layer.time_property}"
        if span.start is not None:
            clauses.append(f"{column} >= :time_start")
            params["time_start"] = span.start
        if span.end is not None:
            clauses.append(f"{column} <= :time_end")
            params["time_end"] = span.end
    for i, (name, values) in enumerate(query.equals):
        if name not in layer.property_names:  # never a name that is not the layer's own
            raise InvalidInput(f"'{name}' is not a property of '{layer.id}'.")
        if not values or len(values) > MAX_VALUES_PER_PROPERTY:
            raise InvalidInput(f"{name}: give between 1 and {MAX_VALUES_PER_PROPERTY} values.")
        binds = [f":eq_{i}_{j}" for j in range(len(values))]
        clauses.append(f"q.{name} IN ({', '.join(binds)})")
        params.update({b[1:]: v for b, v in zip(binds, values, strict=True)})
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return where, params


def _order_by(layer: Layer, query: FeatureQuery) -> str:
    keys = []
    for name, descending in query.sortby:
        if name != "id" and name not in layer.property_names:
            raise InvalidInput(f"sortby: '{name}' is not a property of '{layer.id}'.")
        keys.append(f"q.{name} {'DESC' if descending else 'ASC'}")
    if "id" not in (name for name, _ in query.sortby):
        keys.append("q.id ASC")  # a total order, so pages neither skip nor repeat features
    return ", ".join(keys)


def _utc(conn: Connection) -> None:
    # Times in the JSON the database writes are then in UTC (+00:00), whatever the server's zone.
    conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))


def features_page(conn: Connection, layer: Layer, query: FeatureQuery) -> Page:
    """One page of a layer's features, in order, as a GeoJSON features array (text).

    One row more than the page is read to tell whether another page follows.
    """
    where, params = _where(layer, query)
    order = _order_by(layer, query)
    names = layer.property_names if query.properties is None else query.properties
    statement = (
        f"WITH page AS (SELECT q.* FROM ({layer.select}) q {where} ORDER BY {order} "
        f"LIMIT :fetch OFFSET :offset), "
        f"shown AS (SELECT q.* FROM page q ORDER BY {order} LIMIT :limit) "
        f"SELECT (SELECT count(*) FROM page) AS fetched, count(*) AS returned, "
        f"coalesce(json_agg({_feature_json(names)} ORDER BY {order}), '[]')::text AS features "
        f"FROM shown q"
    )
    _utc(conn)
    fetched, returned, features = conn.execute(
        sa.text(statement),
        {**params, "fetch": query.limit + 1, "limit": query.limit, "offset": query.offset},
    ).one()
    return Page(features_json=features, returned=returned, more=fetched > returned)


def count_matched(conn: Connection, layer: Layer, query: FeatureQuery) -> int | None:
    """How many features match, or None when counting them would be too slow.

    Exact when the layer's table is estimated below :data:`EXACT_COUNT_BELOW_ROWS` rows;
    otherwise exact only if the count finishes within :data:`COUNT_TIMEOUT_MS` (it does when
    the filter is selective and indexed). Run it last in a transaction: it may leave a
    statement timeout set for the rest of it.
    """
    where, params = _where(layer, query)
    statement = sa.text(f"SELECT count(*) FROM ({layer.select}) q {where}")
    estimate = estimated_rows(conn, layer)
    if estimate is not None and 0 <= estimate < EXACT_COUNT_BELOW_ROWS:
        return conn.execute(statement, params).scalar_one()
    try:
        with conn.begin_nested():
            conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"),
                         {"ms": str(COUNT_TIMEOUT_MS)})
            return conn.execute(statement, params).scalar_one()
    except sa.exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) == "57014":  # query_canceled: too slow
            return None
        raise


def estimated_rows(conn: Connection, layer: Layer) -> float | None:
    """The planner's estimate of the rows in the layer's table (-1: never analysed)."""
    if layer.table is None:
        return None
    return conn.execute(
        sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"),
        {"table": layer.table},
    ).scalar_one_or_none()


def feature_by_id(conn: Connection, layer: Layer, feature_id: int, as_of: datetime) -> str | None:
    """One feature of a layer as GeoJSON text, or None when the layer has no such id."""
    if not -_BIGINT <= feature_id < _BIGINT:
        return None
    _utc(conn)
    return conn.execute(
        sa.text(f"SELECT {_feature_json(layer.property_names)}::text "
                f"FROM ({layer.select}) q WHERE q.id = :id"),
        {"id": feature_id, "as_of": as_of},
    ).scalar_one_or_none()


def table_versions(conn: Connection) -> dict[str, int]:
    """The current version of every watched table (bumped by triggers on each change)."""
    return dict(conn.execute(sa.text("SELECT layer, version FROM layer_versions")).all())


def layer_extent(conn: Connection, layer: Layer, now: datetime) -> Extent:
    """The layer's bounding box (of its table's geometries) and its time property's span."""
    # The table's own extent is cheap (no joins); a layer without a table is measured whole.
    source = layer.table if layer.table is not None else f"({layer.select}) q"
    row = conn.execute(sa.text(
        f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
        f"FROM (SELECT ST_Extent(geom) AS e FROM {source}) x"), {"as_of": now}).one()
    bbox = tuple(float(v) for v in row) if row[0] is not None else None
    interval = None
    if layer.time_property is not None:
        first, last = conn.execute(sa.text(
            f"SELECT min(q.{layer.time_property}), max(q.{layer.time_property}) "
            f"FROM ({layer.select}) q"), {"as_of": now}).one()
        interval = (first, last)
    return Extent(bbox=bbox, interval=interval)
