"""Mapbox vector tiles of the published layers, each tile one ``ST_AsMVT`` statement.

A tile wraps its layer's ``select`` (``geo.layers.LAYERS``): the rows whose ``geom`` meets the
tile's envelope, grown by the buffer, are found through the layer's GiST index in SRID 4326,
then moved to Web Mercator (EPSG:3857, the ``WebMercatorQuad`` tile matrix set) for
``ST_AsMVTGeom``. Inside a tile the layer is named by its id and each
feature's id is the row's ``id``. Values are always bound; identifiers come only from the
registry.

What a tile keeps is chosen, never left to chance (:data:`POLICIES`): minor classes appear
only from their minimum zoom (as basemaps hide service roads at city zooms), and when a tile
still meets more features than its limit it keeps the most important ones (road class, then
the worse condition first) and says so (:class:`RenderedTile`).

Examples
--------
>>> tile_bounds(0, 0, 0)[2]
20037508.342789244
>>> POLICIES["streets"].classes_at(10)
('primary', 'secondary', 'tertiary')
>>> POLICIES["streets"].classes_at(13) is None  # every class shows
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import morecantile
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import Connection

from geo.errors import NotFound
from geo.i18n import _
from geo.layers import LAYERS, Layer
from geo.vocabulary import (
    ALERT_STATUSES,
    DAMAGE_SEVERITIES,
    OTHER,
    ROAD_CLASSES,
    SEVERITIES,
)

TILE_MATRIX_SET = "WebMercatorQuad"
TILE_SRID = 3857
MAX_ZOOM = 24
DEFAULT_EXTENT = 4096
DEFAULT_BUFFER = 64
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 50_000
# At these zooms and below, lines and polygons are simplified before ST_AsMVTGeom (collapsed
# features are kept, so no feature vanishes from a tile): by one tile unit, and at city zooms
# (GENERALISE_MAX_ZOOM and below) by GENERALISE_UNITS, about half a screen pixel of a 512 px
# tile, which a city's many short segments need and the eye does not see.
SIMPLIFY_MAX_ZOOM = 16
GENERALISE_MAX_ZOOM = 12
GENERALISE_UNITS = 4
# Properties a tile can be filtered on (any of a comma list), where the layer has them.
FILTERABLE = ("status", "severity", "kind", "district")
# Where a filtered property has a closed vocabulary, other values are an error, not no match.
VOCABULARIES: dict[tuple[str, str], tuple[str, ...]] = {
    ("alerts", "status"): ALERT_STATUSES,
    ("alerts", "severity"): SEVERITIES,
    ("manholes", "status"): ("none", *SEVERITIES),
    ("road_damage", "severity"): DAMAGE_SEVERITIES.values,
}
MAX_FILTER_VALUES = 50
MAX_FILTER_VALUE_CHARS = 200
# The extra layer a truncated tile carries: one point at the tile's centre whose properties
# say which layer was cut, how many features it kept and how many met the tile.
INFO_LAYER = "tile_info"

_TMS = morecantile.tms.get(TILE_MATRIX_SET)


def _rank(column: str, values: tuple[str, ...]) -> str:
    # Position of the value in a code-defined order (first: 0); other values and NULL last.
    # The values are the vocabularies' own constants, never input.
    cases = " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(values))
    return f"CASE {column} {cases} ELSE {len(values)} END"


@dataclass(frozen=True)
class TilePolicy:
    """What a layer's tile keeps: its classes by zoom, and its features by importance.

    ``order`` is SQL over the layer's row ``s``, most important first; it decides which
    features a tile keeps when more than its limit meet it. ``class_minzoom`` gives the
    lowest zoom at which each value of ``class_property`` appears (values not named:
    ``other_minzoom``), published in TileJSON as basemaps publish theirs.
    """

    order: tuple[str, ...]
    class_property: str | None = None
    class_minzoom: tuple[tuple[str, int], ...] = ()
    other_minzoom: int = 0
    description: str = ""

    @property
    def minzoom(self) -> int:
        """The lowest zoom at which any feature of the layer appears."""
        return min([self.other_minzoom, *(z for _, z in self.class_minzoom)])

    @property
    def highest_minzoom(self) -> int:
        """The zoom from which every feature of the layer appears."""
        return max([self.other_minzoom, *(z for _, z in self.class_minzoom)])

    def classes_at(self, z: int) -> tuple[str, ...] | None:
        """The classes shown at zoom ``z``, or ``None`` when every class is shown."""
        if self.class_property is None or self.highest_minzoom <= z:
            return None
        return tuple(value for value, m in self.class_minzoom if m <= z) + (
            (OTHER,) if self.other_minzoom <= z else ())


_ROAD_RANK = _rank("s.road_class", ROAD_CLASSES.values)
# Worst first: critical alerts before low ones, high damage before low.
_SEVERITY_RANK = _rank("s.severity", tuple(reversed(SEVERITIES)))
POLICIES: dict[str, TilePolicy] = {
    # Arterials at every zoom, residential streets from z11 and service lanes from z13 (as
    # OpenStreetMap-based basemaps show minor roads from about z12-z13); within a class the worse
    # pavement first, so a city-wide view that must cut keeps the streets that need work.
    "streets": TilePolicy(
        (_ROAD_RANK, "s.pci ASC NULLS LAST", "s.id"), "road_class",
        (("primary", 0), ("secondary", 0), ("tertiary", 8), ("residential", 11),
         ("service", 13)), other_minzoom=13,
        description="road class (primary first), then the lowest PCI first"),
    # The backlog is the planner's list: every class at every zoom, the worst first.
    "backlog": TilePolicy(("s.pci ASC NULLS LAST", _ROAD_RANK, "s.id"),
                          description="the lowest PCI first, then road class"),
    "manholes": TilePolicy(
        (_rank("s.status", tuple(reversed(("none", *SEVERITIES)))), "s.id"),
        description="the worst active alert first"),
    "alerts": TilePolicy(
        (_SEVERITY_RANK, _rank("s.status", ALERT_STATUSES), "s.opened_at DESC", "s.id"),
        description="the most severe first, open before closed, the newest first"),
    "road_damage": TilePolicy(
        (_rank("s.severity", tuple(reversed(DAMAGE_SEVERITIES.values))),
         "s.size_m2 DESC NULLS LAST", "s.id"),
        description="the most severe first, then the largest"),
    "debris_piles": TilePolicy(("s.volume_m3 DESC NULLS LAST", "s.id"),
                               description="the largest volume first"),
    "compounds": TilePolicy(("s.households DESC NULLS LAST", "s.id"),
                            description="the most households first"),
    "parking": TilePolicy(("s.capacity DESC NULLS LAST", "s.id"),
                          description="the largest capacity first"),
}
DEFAULT_POLICY = TilePolicy(("s.id",), description="by id")


def policy_of(layer_id: str) -> TilePolicy:
    """The tile policy of a layer (layers added later keep every feature, by id, to the limit)."""
    return POLICIES.get(layer_id, DEFAULT_POLICY)


def check_tile(z: int, x: int, y: int) -> None:
    """Check that z/x/y names a tile of WebMercatorQuad (zoom 0 to ``MAX_ZOOM``).

    Raises
    ------
    NotFound
        When the zoom is out of range or x or y is outside the zoom's matrix.
    """
    if not 0 <= z <= MAX_ZOOM:
        raise NotFound(_("Zoom {z} is outside 0-{max_zoom}.", z=z, max_zoom=MAX_ZOOM))
    size = 1 << z
    if not (0 <= x < size and 0 <= y < size):
        raise NotFound(_("Tile {z}/{x}/{y} does not exist: at zoom {z}, x and y go from 0 "
                         "to {last}.", z=z, x=x, y=y, last=size - 1))


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The tile's (xmin, ymin, xmax, ymax) in EPSG:3857 metres."""
    bounds = _TMS.xy_bounds(morecantile.Tile(x, y, z))
    return bounds.left, bounds.bottom, bounds.right, bounds.top


@dataclass(frozen=True)
class TileRequest:
    """One tile of one layer, with everything that decides its bytes."""

    layer_id: str
    z: int
    x: int
    y: int
    as_of: datetime | None = None  # None: the twin as it is now
    properties: tuple[str, ...] = ()
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    limit: int = DEFAULT_LIMIT
    extent: int = DEFAULT_EXTENT
    buffer: int = DEFAULT_BUFFER
    clip: bool = True

    @property
    def layer(self) -> Layer:
        """The layer of the tile."""
        return LAYERS[self.layer_id]

    def query_key(self) -> str:
        """What the client asked for besides layer and z/x/y, in one canonical text."""
        as_of = self.as_of.astimezone(UTC).isoformat() if self.as_of else "now"
        filters = ";".join(f"{name}={','.join(values)}" for name, values in self.filters)
        return (f"as_of={as_of}|properties={','.join(self.properties)}|{filters}|"
                f"limit={self.limit}|extent={self.extent}|buffer={self.buffer}|clip={self.clip}")

    def etag(self, versions: tuple[int, ...]) -> str:
        """A strong ETag from the layer's table versions, the tile and the canonical query."""
        text = f"{self.layer_id}|{versions}|{self.z}/{self.x}/{self.y}|{self.query_key()}"
        return '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'


@dataclass(frozen=True)
class RenderedTile:
    """A rendered tile: its bytes, and how many features met it against how many it kept."""

    body: bytes
    matched: int = 0
    kept: int = 0

    @property
    def truncated(self) -> bool:
        """Whether features meeting the tile were left out because of its limit."""
        return self.matched > self.kept


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_AREAS = ("WITH b AS MATERIALIZED (SELECT ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 3857) "
          "AS tile, ST_Transform(ST_MakeEnvelope(:bxmin, :bymin, :bxmax, :bymax, 3857), 4326) "
          "AS area) ")


def _where(layer_id: str, filter_names: tuple[str, ...], by_class: bool) -> str:
    # The envelopes are computed once (init plans), not per row; && finds candidates through
    # the GiST index and ST_Intersects keeps exactly the features meeting the buffered tile.
    where = ["s.geom && (SELECT area FROM b)", "ST_Intersects(s.geom, (SELECT area FROM b))"]
    where += [f"s.{_quoted(name)} = ANY(:f_{name})" for name in filter_names]
    if by_class:
        where.append(f"coalesce(s.{_quoted(policy_of(layer_id).class_property or '')}, "
                     f"'{OTHER}') = ANY(:classes)")
    return " AND ".join(where)


@lru_cache(maxsize=512)
def _count_statement(layer_id: str, filter_names: tuple[str, ...], by_class: bool
                     ) -> sa.TextClause:
    # How many features met a tile that kept its limit: asked only then, so that the usual
    # tile pays nothing for it.
    return sa.text(_AREAS + f"SELECT count(*) FROM ({LAYERS[layer_id].select}) AS s "
                   f"WHERE {_where(layer_id, filter_names, by_class)}")


@lru_cache(maxsize=512)
def _tile_statement(layer_id: str, properties: tuple[str, ...], filter_names: tuple[str, ...],
                    simplify: bool, by_class: bool) -> sa.TextClause:
    # Identifiers all come from the registry (the service checked the request against it);
    # values are bound.
    layer = LAYERS[layer_id]
    policy = policy_of(layer_id)
    types = {p.name: p.type for p in layer.properties}
    columns = []
    for name in properties:
        column = f"s.{_quoted(name)}"
        if types[name] in ("date", "datetime"):
            column = f"to_json({column}) #>> '{{}}'"  # ISO 8601, whatever the session's DateStyle
        columns.append(f"{column} AS {_quoted(name)}")
    geom = "ST_Transform(c.geom, 3857)"
    if simplify:
        geom = f"ST_Simplify({geom}, :tolerance, true)"
    where = _where(layer_id, filter_names, by_class)
    outputs = "".join(f", c.{_quoted(name)}" for name in properties)
    return sa.text(
        _AREAS.rstrip() + ", "
        # The features kept, the most important first. Ordering and the limit come before
        # ST_AsMVTGeom: a city-wide tile cuts only the geometries it keeps.
        "c AS MATERIALIZED (SELECT s.id, s.geom" + "".join(f", {c}" for c in columns)
        + f" FROM ({layer.select}) AS s WHERE {where} "
        f"ORDER BY {', '.join(policy.order)} LIMIT :limit) "
        "SELECT (SELECT ST_AsMVT(f, :layer_name, :extent, 'geom', 'id') FROM ("
        f"SELECT * FROM (SELECT c.id, ST_AsMVTGeom({geom}, (SELECT tile FROM b), :extent, "
        f":buffer, :clip) AS geom{outputs} FROM c "
        # OFFSET 0 keeps "g.geom IS NOT NULL" out of the inner query: pushed down, it made
        # PostgreSQL compute ST_AsMVTGeom twice per feature (once to filter, once to output).
        "OFFSET 0) AS g WHERE g.geom IS NOT NULL) AS f), (SELECT count(*) FROM c)"
    )


_INFO_STATEMENT = sa.text(
    "SELECT ST_AsMVT(i, :info_layer, :extent, 'geom') FROM (SELECT ST_AsMVTGeom("
    "ST_Centroid(e), e, :extent, 0, true) AS geom, :layer_name AS layer, :kept AS kept, "
    ":matched AS matched, :limit AS \"limit\", true AS truncated FROM "
    "(SELECT ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 3857) AS e) AS q) AS i"
)


def tile_parameters(request: TileRequest) -> dict:
    """The bound values of the tile's statement."""
    xmin, ymin, xmax, ymax = tile_bounds(request.z, request.x, request.y)
    grow = (xmax - xmin) * request.buffer / request.extent
    units = GENERALISE_UNITS if request.z <= GENERALISE_MAX_ZOOM else 1
    params = {
        "layer_name": request.layer_id, "extent": request.extent, "buffer": request.buffer,
        "clip": request.clip, "limit": request.limit,
        "as_of": request.as_of or datetime.now(UTC),
        "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax,
        "bxmin": xmin - grow, "bymin": ymin - grow, "bxmax": xmax + grow, "bymax": ymax + grow,
        "tolerance": (xmax - xmin) / request.extent * units,
    }
    for name, values in request.filters:
        params[f"f_{name}"] = list(values)
    classes = policy_of(request.layer_id).classes_at(request.z)
    if classes is not None:
        params["classes"] = list(classes)
    return params


def _simplifies(request: TileRequest) -> bool:
    return request.layer.geometry_type != "Point" and request.z <= SIMPLIFY_MAX_ZOOM


def _statement_and_parameters(request: TileRequest
                              ) -> tuple[sa.TextClause, sa.TextClause, dict]:
    by_class = policy_of(request.layer_id).classes_at(request.z) is not None
    filter_names = tuple(name for name, _ in request.filters)
    statement = _tile_statement(request.layer_id, request.properties, filter_names,
                                _simplifies(request), by_class)
    return statement, _count_statement(request.layer_id, filter_names, by_class), \
        tile_parameters(request)


def _info_parameters(params: dict, tile: RenderedTile) -> dict:
    return {**params, "info_layer": INFO_LAYER, "kept": tile.kept, "matched": tile.matched}


def render_tile(conn: Connection, request: TileRequest) -> RenderedTile:
    """The tile's Mapbox vector tile bytes (empty when no feature meets the tile).

    A tile that met more features than its limit also carries the layer :data:`INFO_LAYER`
    saying so.
    """
    statement, count, params = _statement_and_parameters(request)
    body, kept = conn.execute(statement, params).one()
    matched = conn.execute(count, params).scalar_one() if kept >= request.limit else kept
    tile = RenderedTile(bytes(body) if body else b"", int(matched), int(kept))
    if tile.truncated:
        info = conn.execute(_INFO_STATEMENT, _info_parameters(params, tile)).scalar()
        tile = RenderedTile(tile.body + bytes(info or b""), tile.matched, tile.kept)
    return tile


_DRIVER_DIALECT = psycopg_dialect.dialect()


@lru_cache(maxsize=512)
def _driver_sql(statement: sa.TextClause) -> str:
    # The same statement in psycopg's own placeholders (%(name)s), for a bare connection.
    return str(statement.compile(dialect=_DRIVER_DIALECT))


async def render_tile_async(conn: psycopg.AsyncConnection, request: TileRequest
                            ) -> RenderedTile:
    """:func:`render_tile` on an asynchronous psycopg connection: the same statement.

    The service renders on its event loop this way, with no thread hop and no SQLAlchemy
    layer per tile; psycopg prepares the statement on the server after a few uses.
    """
    statement, count, params = _statement_and_parameters(request)
    cursor = await conn.execute(_driver_sql(statement), params)
    row = await cursor.fetchone()
    body, kept = row if row is not None else (None, 0)
    matched = kept
    if kept >= request.limit:
        cursor = await conn.execute(_driver_sql(count), params)
        found = await cursor.fetchone()
        matched = found[0] if found else kept
    tile = RenderedTile(bytes(body) if body else b"", int(matched), int(kept))
    if tile.truncated:
        cursor = await conn.execute(_driver_sql(_INFO_STATEMENT),
                                    _info_parameters(params, tile))
        info = await cursor.fetchone()
        tile = RenderedTile(tile.body + bytes(info[0] if info and info[0] else b""),
                            tile.matched, tile.kept)
    return tile


def layer_bounds(conn: Connection, layer: Layer, as_of: datetime | None = None
                 ) -> tuple[float, float, float, float] | None:
    """The layer's extent (west, south, east, north) in lon/lat, or ``None`` when it is empty."""
    row = conn.execute(sa.text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        f"(SELECT ST_Extent(s.geom) AS e FROM ({layer.select}) AS s) AS q"
    ), {"as_of": as_of or datetime.now(UTC)}).first()
    if row is None or row[0] is None:
        return None
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])
