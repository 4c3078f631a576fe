"""Mapbox vector tiles of the published layers, each tile one ``ST_AsMVT`` statement.

A tile wraps its layer's ``select`` (``geo.layers.LAYERS``): the rows whose ``geom`` meets the
tile's envelope, grown by the buffer, are found through the layer's GiST index in SRID 4326,
then moved to Web Mercator (EPSG:3857, the ``WebMercatorQuad`` tile matrix set) for
``ST_AsMVTGeom``. Inside a tile the layer is named by its id and each feature's id is the row's
``id``. Values are always bound; identifiers come only from the registry.

Examples
--------
>>> tile_bounds(0, 0, 0)[2]
20037508.342789244
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import morecantile
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.errors import NotFound
from geo.layers import LAYERS, Layer
from geo.vocabulary import ALERT_STATUSES, DAMAGE_SEVERITIES, SEVERITIES

TILE_MATRIX_SET = "WebMercatorQuad"
TILE_SRID = 3857
MAX_ZOOM = 24
DEFAULT_EXTENT = 4096
DEFAULT_BUFFER = 64
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 50_000
# At these zooms and below, lines and polygons are simplified to one tile pixel before
# ST_AsMVTGeom (collapsed features are kept, so no feature vanishes from a tile).
SIMPLIFY_MAX_ZOOM = 16
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

_TMS = morecantile.tms.get(TILE_MATRIX_SET)


def check_tile(z: int, x: int, y: int) -> None:
    """Check that z/x/y names a tile of WebMercatorQuad (zoom 0 to ``MAX_ZOOM``).

    Raises
    ------
    NotFound
        When the zoom is out of range or x or y is outside the zoom's matrix.
    """
    if not 0 <= z <= MAX_ZOOM:
        raise NotFound(f"Zoom {z} is outside 0-{MAX_ZOOM}.")
    size = 1 << z
    if not (0 <= x < size and 0 <= y < size):
        raise NotFound(f"Tile {z}/{x}/{y} does not exist: at zoom {z}, x and y go from 0 "
                       f"to {size - 1}.")


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


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=512)
def _tile_statement(layer_id: str, properties: tuple[str, ...], filter_names: tuple[str, ...],
                    simplify: bool) -> sa.TextClause:
    # Identifiers all come from the registry (the service checked the request against it);
    # values are bound.
    layer = LAYERS[layer_id]
    types = {p.name: p.type for p in layer.properties}
    columns = []
    for name in properties:
        column = f"s.{_quoted(name)}"
        if types[name] in ("date", "datetime"):
            column = f"to_json({column}) #>> '{{}}'"  # ISO 8601, whatever the session's DateStyle
        columns.append(f"{column} AS {_quoted(name)}")
    geom = "ST_Transform(s.geom, 3857)"
    if simplify:
        geom = f"ST_Simplify({geom}, :tolerance, true)"
    # The envelopes are computed once (init plans), not per row; && finds candidates through
    # the GiST index and ST_Intersects keeps exactly the features meeting the buffered tile.
    where = ["s.geom && (SELECT area FROM b)", "ST_Intersects(s.geom, (SELECT area FROM b))"]
    where += [f"s.{_quoted(name)} = ANY(:f_{name})" for name in filter_names]
    return sa.text(
        "WITH b AS MATERIALIZED (SELECT ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 3857) "
        "AS tile, ST_Transform(ST_MakeEnvelope(:bxmin, :bymin, :bxmax, :bymax, 3857), 4326) "
        "AS area) "
        "SELECT ST_AsMVT(f, :layer_name, :extent, 'geom', 'id') FROM ("
        "SELECT * FROM ("
        f"SELECT s.id, ST_AsMVTGeom({geom}, (SELECT tile FROM b), :extent, :buffer, :clip) "
        "AS geom" + "".join(f", {c}" for c in columns)
        + f" FROM ({layer.select}) AS s WHERE {' AND '.join(where)}"
        # OFFSET 0 keeps "g.geom IS NOT NULL" out of the inner query: pushed down, it made
        # PostgreSQL compute ST_AsMVTGeom twice per feature (once to filter, once to output).
        " OFFSET 0) AS g WHERE g.geom IS NOT NULL LIMIT :limit) AS f"
    )


def tile_parameters(request: TileRequest) -> dict:
    """The bound values of the tile's statement."""
    xmin, ymin, xmax, ymax = tile_bounds(request.z, request.x, request.y)
    grow = (xmax - xmin) * request.buffer / request.extent
    params = {
        "layer_name": request.layer_id, "extent": request.extent, "buffer": request.buffer,
        "clip": request.clip, "limit": request.limit,
        "as_of": request.as_of or datetime.now(UTC),
        "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax,
        "bxmin": xmin - grow, "bymin": ymin - grow, "bxmax": xmax + grow, "bymax": ymax + grow,
        "tolerance": (xmax - xmin) / request.extent,
    }
    for name, values in request.filters:
        params[f"f_{name}"] = list(values)
    return params


def _simplifies(request: TileRequest) -> bool:
    return request.layer.geometry_type != "Point" and request.z <= SIMPLIFY_MAX_ZOOM


def render_tile(conn: Connection, request: TileRequest) -> bytes:
    """The tile's Mapbox vector tile bytes (empty when no feature meets the tile)."""
    statement = _tile_statement(request.layer_id, request.properties,
                                tuple(name for name, _ in request.filters), _simplifies(request))
    body = conn.execute(statement, tile_parameters(request)).scalar()
    return bytes(body) if body else b""


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
