"""SQL of exports: one layer's features as of a time, in a box, filtered, read in chunks.

Every statement wraps a layer's ``select`` from :data:`geo.layers.LAYERS`, so a new layer is
exportable without changes here. Column names come only from the layer's declared properties;
whatever a user typed travels as a bound parameter. Rows are read through a server-side cursor
(``stream_results``), :data:`EXPORT_CHUNK_ROWS` at a time, so an export of any size holds at
most one chunk of rows in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import filtering
from geo.errors import InvalidInput
from geo.i18n import _
from geo.layers import Layer

EXPORT_CHUNK_ROWS = 10_000
# Decimal digits of GeoJSON coordinates: 1e-7 degree is about 1 cm.
GEOJSON_DIGITS = 7
# How the geometry leaves the database, per consumer: WKB for GDAL and Arrow, WKT for CSV,
# GeoJSON text for GeoJSON (polygons with counter-clockwise outer rings, as RFC 7946 asks;
# only polygons, as PostGIS 3.3's ST_ForcePolygonCCW also reverses lines).
GEOMETRY_SQL = {
    "wkb": "ST_AsBinary(q.geom)",
    # For formats whose layer holds one geometry type (FlatGeobuf): single parts made multi.
    "wkb_multi": "ST_AsBinary(ST_Multi(q.geom))",
    "wkt": "ST_AsText(q.geom)",
    "geojson": "ST_AsGeoJSON(CASE WHEN GeometryType(q.geom) IN ('POLYGON', 'MULTIPOLYGON') "
               f"THEN ST_ForcePolygonCCW(q.geom) ELSE q.geom END, {GEOJSON_DIGITS})",
}
# PostgreSQL type OIDs of 16- and 32-bit integers: they stay 32-bit fields in the files.
_NARROW_INTEGER_OIDS = {21, 23}


@dataclass(frozen=True)
class ExportQuery:
    """What to export of one layer, already validated and typed.

    Parameters
    ----------
    layer : Layer
        The layer, from :data:`geo.layers.LAYERS`.
    as_of : datetime
        The state of the twin to export (the layer's ``:as_of``), time-zone aware.
    since : datetime, optional
        For layers in time: only features whose time property is at or after this.
    bbox : tuple of float, optional
        west, south, east, north in degrees (EPSG:4326); features intersecting it.
    equals : tuple of (name, values)
        Property equality filters; a feature matches when the property equals any value.
    filter : Filter, optional
        A CQL2 filter (:func:`geo.filtering.parse_filter`), AND-ed with the rest.
    properties : tuple of str, optional
        The properties to export, in this order; None for all of the layer's.
    """

    layer: Layer
    as_of: datetime
    since: datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    equals: tuple[tuple[str, tuple[object, ...]], ...] = ()
    properties: tuple[str, ...] | None = None
    filter: filtering.Filter | None = None

    @property
    def property_names(self) -> tuple[str, ...]:
        """The exported properties, in order."""
        return self.layer.property_names if self.properties is None else self.properties


@dataclass(frozen=True)
class Column:
    """One exported column: ``id``, a property, and its type (``integer``, ``number``, ...)."""

    name: str
    type: str
    wide: bool = True  # for integers: 64-bit (False: fits 32 bits)


def _checked_name(layer: Layer, name: str) -> str:
    # The name put into SQL is the registry's own string, never the caller's.
    for declared in layer.property_names:
        if declared == name:
            return declared
    raise InvalidInput(_("'{name}' is not a property of '{layer}' (one of: {names}).",
                         name=name, layer=layer.id, names=", ".join(layer.property_names)))


def _from_where(query: ExportQuery) -> tuple[str, dict]:
    layer = query.layer
    clause, params = filtering.layer_where(
        layer, bbox=query.bbox, time_range=None if query.since is None else (query.since, None),
        equals=query.equals, filter=query.filter)
    return f"FROM ({layer.select}) q WHERE {clause}", {"as_of": query.as_of, **params}


def has_multipart(conn: Connection, layer: Layer) -> bool:
    """Whether the layer's table holds any multi-part geometry (stops at the first found).

    The table, not the export's query: that would run the layer's joins (latest readings...)
    over every row once more, to learn only what its geometry column says.
    """
    if layer.table is None:
        return True
    return conn.execute(sa.text(
        f"SELECT EXISTS (SELECT 1 FROM {layer.table} "
        "WHERE GeometryType(geom) LIKE 'MULTI%')")).scalar_one()


def count_features(conn: Connection, query: ExportQuery) -> int:
    """How many features an export holds."""
    from_where, params = _from_where(query)
    return conn.execute(sa.text(f"SELECT count(*) {from_where}"), params).scalar_one()


def _columns(layer: Layer, names: tuple[str, ...], oids: Sequence[object]
             ) -> tuple[Column, ...]:
    types = {p.name: p.type for p in layer.properties}
    return (
        Column("id", "integer", wide=oids[0] not in _NARROW_INTEGER_OIDS),
        Column("geom", "geometry"),
        *(Column(n, types[n], wide=oid not in _NARROW_INTEGER_OIDS)
          for n, oid in zip(names, oids[2:], strict=True)),
    )


def describe_columns(conn: Connection, query: ExportQuery) -> tuple[Column, ...]:
    """The columns an export has, with their types, without reading a row (for side files)."""
    layer = query.layer
    names = tuple(_checked_name(layer, n) for n in query.property_names)
    from_where, params = _from_where(query)
    select = ", ".join(["q.id", "q.geom", *(f"q.{n}" for n in names)])
    result = conn.execute(sa.text(f"SELECT {select} {from_where} LIMIT 0"), params)
    return _columns(layer, names, [d[1] for d in result.cursor.description])


def read_features(
    conn: Connection,
    query: ExportQuery,
    *,
    geometry: str = "wkb",
    chunk_rows: int = EXPORT_CHUNK_ROWS,
) -> tuple[tuple[Column, ...], Iterator[Sequence[sa.Row]]]:
    """Open a server-side cursor on an export's features, ordered by id.

    Parameters
    ----------
    conn : Connection
        Kept busy until the chunks are exhausted; the cursor lives in its transaction.
    query : ExportQuery
        What to export.
    geometry : {"wkb", "wkt", "geojson"}
        How the geometry column (the second) is encoded.
    chunk_rows : int
        Rows per chunk: the most rows held in memory at once.

    Returns
    -------
    columns : tuple of Column
        ``id``, ``geom`` (type ``geometry``) and the exported properties, in row order.
    chunks : iterator of list of Row
        The rows, at most ``chunk_rows`` per list.
    """
    layer = query.layer
    names = tuple(_checked_name(layer, n) for n in query.property_names)
    from_where, params = _from_where(query)
    select = ", ".join(["q.id", f"{GEOMETRY_SQL[geometry]} AS geom",
                        *(f"q.{n}" for n in names)])
    # UTC on the connection: times leave the database in UTC whatever the server's zone.
    conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
    result = conn.execute(sa.text(f"SELECT {select} {from_where} ORDER BY q.id"), params,
                          execution_options={"stream_results": True, "yield_per": chunk_rows})
    oids = [d[1] for d in result.cursor.description]  # DB-API: (name, type_code, ...)
    return _columns(layer, names, oids), result.partitions(chunk_rows)
