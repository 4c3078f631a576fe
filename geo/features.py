"""Features of the published layers for OGC API - Features: extents, pages, counts, one feature.

Every statement wraps a layer's ``select`` from :data:`geo.layers.LAYERS`; column names come
only from a layer's declared properties and values always travel as bound parameters, so text
typed by a client is never more than a value (the service parses it: ``service.params``). The
FeatureCollection and Feature JSON is built by PostgreSQL (``json_build_object``/``json_agg``)
and handed on as text, unparsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import filtering
from geo.errors import InvalidInput
from geo.i18n import _
from geo.layers import Layer

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
class FeatureQuery:
    """What a client asked of a layer's items, validated against the layer."""

    as_of: datetime
    bbox: tuple[float, float, float, float] | None = None
    # (start, end), open ends None: applied to the layer's time property, if it has one.
    time_range: tuple[datetime | None, datetime | None] | None = None
    equals: tuple[tuple[str, tuple[object, ...]], ...] = ()  # (property, any of these values)
    filter: filtering.Filter | None = None  # a CQL2 filter (OGC API - Features Part 3)
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


# -- SQL ----------------------------------------------------------------------------------------


def _properties_json(names: tuple[str, ...]) -> str:
    # The feature's id comes first among its properties too: clients such as QGIS show only
    # properties as fields, and joins (road_damage.street_id, alerts.asset_id) need the id.
    pairs = ["'id', q.id", *(f"'{n}', q.{n}" for n in names)]
    if len(pairs) <= _PAIRS_PER_CALL:
        return f"json_build_object({', '.join(pairs)})"
    chunks = [pairs[i:i + _PAIRS_PER_CALL] for i in range(0, len(pairs), _PAIRS_PER_CALL)]
    return "(" + " || ".join(f"jsonb_build_object({', '.join(c)})" for c in chunks) + ")::json"


def _feature_json(names: tuple[str, ...]) -> str:
    return (f"json_build_object('type', 'Feature', 'id', q.id, 'geometry', "
            f"ST_AsGeoJSON(q.geom, {GEOJSON_DIGITS})::json, "
            f"'properties', {_properties_json(names)})")


def _where(layer: Layer, query: FeatureQuery) -> tuple[str, dict]:
    for name, values in query.equals:
        if not values or len(values) > MAX_VALUES_PER_PROPERTY:
            raise InvalidInput(_("{name}: give between 1 and {most} values.", name=name,
                                 most=MAX_VALUES_PER_PROPERTY))
    clause, params = filtering.layer_where(layer, bbox=query.bbox, time_range=query.time_range,
                                           equals=query.equals, filter=query.filter)
    return f"WHERE {clause}", {"as_of": query.as_of, **params}


def _order_by(layer: Layer, query: FeatureQuery) -> str:
    keys = []
    for name, descending in query.sortby:
        if name != "id" and name not in layer.property_names:
            raise InvalidInput(_("sortby: '{name}' is not a property of '{layer}'.", name=name,
                                 layer=layer.id))
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


def layer_extent(conn: Connection, layer: Layer, now: datetime) -> Extent:
    """The layer's bounding box (of its table's geometries) and its time property's span."""
    # The table's own extent is cheap (no joins); a layer without a table is measured whole.
    source = layer.table if layer.table is not None else f"({layer.select}) q"
    row = conn.execute(sa.text(
        f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
        f"FROM (SELECT ST_Extent(geom) AS e FROM {source}) x"), {"as_of": now}).one()
    bbox = None
    if row[0] is not None:
        bbox = (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
    interval = None
    if layer.time_property is not None:
        first, last = conn.execute(sa.text(
            f"SELECT min(q.{layer.time_property}), max(q.{layer.time_property}) "
            f"FROM ({layer.select}) q"), {"as_of": now}).one()
        interval = (first, last)
    return Extent(bbox=bbox, interval=interval)
