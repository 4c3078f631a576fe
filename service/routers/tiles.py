"""Routes: vector tiles of every published layer, their TileJSON, and MapLibre styles.

- ``GET /tiles/{layer}/{z}/{x}/{y}.mvt``: a Mapbox vector tile (WebMercatorQuad). A tile with
  no feature is ``204 No Content`` (with its ETag), which map clients treat as an empty tile.
- ``GET /tiles/{layer}/tilejson.json``: TileJSON 3.0.0 for a layer, carrying the tile query.
- ``GET /styles/{name}.json``: a MapLibre style (version 8) over the tilejson URLs.

Every tile has an ``ETag`` made from the versions of the layer's tables (``layer.table`` and
``layer.depends_on``), the tile and the canonical query, so it changes when the data does;
``If-None-Match`` gets ``304``. The versions are the larger of the ``LayerChanges`` listener's
(instant) and a read of ``layer_versions`` at most every 0.25 s (a safety net should the
listener miss a change). Tiles are kept in an LRU cache per process, bounded by
``tile_cache_mb`` (0 turns it off), keyed by the same versions; entries of older versions are
dropped as soon as a newer version of their layer is seen. ``Cache-Control: no-cache`` lets
clients keep tiles and revalidate them with a cheap ``304``.

The tile route answers a query it has already validated (same layer, same query string)
without FastAPI's parameter parsing: anonymous reads on an open service go straight to the
versions, the ETag, the cache and, on a miss, the renderer. At most the engine pool's size
less one tiles render at once per process, so a burst of misses queues on the event loop
instead of opening overflow connections (each a new PostgreSQL backend) per tile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from geo import tiles
from geo.errors import InvalidInput, NotFound
from geo.layers import LAYERS, Layer, table_versions
from maps.styles import (
    COMPOUND_COLOURS,
    DAMAGE_COLOURS,
    DEBRIS_COLOUR,
    MANHOLE_COLOURS,
    NO_DATA,
    PCI_BANDS,
    SEVERITY_COLOURS,
)
from service import deps, params
from service.deps import EngineDep, ReaderDep

router = APIRouter()

MVT = "application/vnd.mapbox-vector-tile"
TILEJSON_MINZOOM = 0
TILEJSON_MAXZOOM = 22
WORLD = (-180.0, -85.0511287798066, 180.0, 85.0511287798066)
# Clients keep tiles and ask again with If-None-Match each time (cheap 304s), so an alert
# or a new feature shows on the next look rather than after an expiry.
CACHE_CONTROL_OPEN = "public, no-cache"
CACHE_CONTROL_KEYED = "private, no-cache"
_ENTRY_OVERHEAD_BYTES = 300  # key, ETag and bookkeeping per cached tile, roughly
# How stale the polled table versions may get when the change listener misses a change.
POLL_INTERVAL_S = 0.25


class TileCache:
    """An LRU of tiles bounded in bytes, shared by the threads of one process.

    Keys carry the versions of the tile's layer tables; when a newer version of a layer is
    seen, every entry of that layer made with older versions is dropped at once.

    Examples
    --------
    >>> cache = TileCache(max_bytes=10_000)
    >>> cache.put("streets", (1, 1), "k", ('"e"', b"tile"))
    >>> cache.get("streets", (1, 1), "k")
    ('"e"', b'tile')
    >>> cache.get("streets", (2, 1), "k") is None  # the data changed: the old tile is gone
    True
    >>> len(cache)
    0
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[str, bytes]] = OrderedDict()
        self._by_layer: dict[str, set[tuple]] = {}
        self._versions: dict[str, tuple[int, ...]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes held, counted as body plus a fixed overhead per entry."""
        return self._bytes

    def _see(self, layer: str, versions: tuple[int, ...]) -> bool:
        # Versions only grow; True when these are the newest known for the layer.
        known = self._versions.get(layer)
        if known == versions:
            return True
        if known is not None and any(v < k for v, k in zip(versions, known, strict=False)):
            return False  # a request that read the versions just before a change
        self._versions[layer] = versions
        for key in self._by_layer.pop(layer, set()):
            self._drop(key)
        return True

    def _drop(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1]) + _ENTRY_OVERHEAD_BYTES

    def get(self, layer: str, versions: tuple[int, ...], key: str) -> tuple[str, bytes] | None:
        """The cached (etag, body) of a tile, or ``None``."""
        full = (layer, versions, key)
        with self._lock:
            self._see(layer, versions)
            entry = self._entries.get(full)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(full)
            self.hits += 1
            return entry

    def put(self, layer: str, versions: tuple[int, ...], key: str,
            entry: tuple[str, bytes]) -> None:
        """Keep a tile, evicting the least recently used ones beyond the budget."""
        size = len(entry[1]) + _ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        full = (layer, versions, key)
        with self._lock:
            if not self._see(layer, versions):
                return
            self._drop(full)
            self._entries[full] = entry
            self._by_layer.setdefault(layer, set()).add(full)
            self._bytes += size
            while self._bytes > self.max_bytes:
                old, (_, old_body) = self._entries.popitem(last=False)
                self._by_layer.get(old[0], set()).discard(old)
                self._bytes -= len(old_body) + _ENTRY_OVERHEAD_BYTES


_STATE_LOCK = threading.Lock()


def _tile_cache(request: Request) -> TileCache | None:
    """The app's tile cache, made on first use (``None`` when ``tile_cache_mb`` is 0)."""
    state = request.app.state
    if not hasattr(state, "tile_cache"):
        with _STATE_LOCK:
            if not hasattr(state, "tile_cache"):
                megabytes = state.settings.tile_cache_mb
                state.tile_cache = (TileCache(megabytes * 1024 * 1024) if megabytes > 0
                                    else None)
    return state.tile_cache


class VersionPoll:
    """Table versions read from ``layer_versions`` at most every ``interval_s``.

    A safety net beside ``app.state.changes``: versions only grow, so the tile key takes the
    larger of the listener's and this poll's, and stays right if the listener falls behind.
    Reads run in the thread pool, one at a time; other requests meanwhile use the last ones.
    """

    def __init__(self, engine, interval_s: float = POLL_INTERVAL_S) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.versions: dict[str, int] = {}
        self._read_at = float("-inf")
        self._reading: asyncio.Future | None = None

    def _read(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return table_versions(conn)

    async def _refresh(self) -> None:
        try:
            self.versions = await run_in_threadpool(self._read)
            self._read_at = time.monotonic()
        finally:
            self._reading = None

    async def current(self) -> dict[str, int]:
        """The versions, refreshed when older than the interval."""
        if time.monotonic() - self._read_at >= self.interval_s:
            reading = self._reading
            if reading is None:
                reading = self._reading = asyncio.ensure_future(self._refresh())
            if not self.versions:  # nothing to answer with yet: wait (errors surface here)
                await asyncio.shield(reading)
            elif reading.done() and not reading.cancelled():
                reading.exception()  # a failed background read is retried next time
        return self.versions


def _version_poll(request: Request) -> VersionPoll:
    state = request.app.state
    poll = getattr(state, "tile_version_poll", None)
    if poll is None:
        with _STATE_LOCK:
            poll = getattr(state, "tile_version_poll", None)
            if poll is None:
                poll = state.tile_version_poll = VersionPoll(state.engine)
    return poll


async def _versions(request: Request, layer: Layer) -> tuple[int, ...]:
    """Current versions of the layer's tables (``layer.table`` then ``layer.depends_on``)."""
    changes = getattr(request.app.state, "changes", None)
    polled = await _version_poll(request).current()
    return tuple(max(changes.version(table) if changes is not None else 0,
                     polled.get(table, 0))
                 for table in (layer.table, *layer.depends_on) if table is not None)


async def tile_reader(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="An API key made with "
                                            "`twin keys create`.")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> deps.Caller:
    """``ReaderDep`` without a thread hop for the common case: open reading and no key.

    A key, or a service where reading needs one, goes through the shared checks
    (``service.deps.get_caller`` and ``require_reader``) in the thread pool.
    """
    settings = request.app.state.settings
    if settings.open_read and not x_api_key and not authorization:
        return deps.Caller(None, None)

    def check() -> deps.Caller:
        caller = deps.get_caller(request.app.state.engine, x_api_key, authorization)
        return deps.require_reader(caller, settings)

    return await run_in_threadpool(check)


TileReaderDep = Annotated[deps.Caller, Depends(tile_reader)]


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


@dataclass(frozen=True)
class TileQuery:
    """The query parameters of a tile (and of a TileJSON, which passes them on)."""

    datetime: str | None
    properties: str | None
    status: str | None
    severity: str | None
    kind: str | None
    district: str | None
    limit: int
    extent: int
    buffer: int
    clip: bool

    def request(self, layer: str, z: int = 0, x: int = 0, y: int = 0) -> tiles.TileRequest:
        """Validate into a tile request (404 for unknown layer or tile, 400 for bad values)."""
        return build_tile_request(
            layer, z, x, y, datetime_text=self.datetime, properties_text=self.properties,
            filters={"status": self.status, "severity": self.severity, "kind": self.kind,
                     "district": self.district},
            limit=self.limit, extent=self.extent, buffer=self.buffer, clip=self.clip)


def build_tile_request(
    layer_id: str, z: int, x: int, y: int, *, datetime_text: str | None = None,
    properties_text: str | None = None, filters: dict[str, str | None] | None = None,
    limit: int = tiles.DEFAULT_LIMIT, extent: int = tiles.DEFAULT_EXTENT,
    buffer: int = tiles.DEFAULT_BUFFER, clip: bool = True,
) -> tiles.TileRequest:
    """Validate what a client asked for, as typed.

    ``datetime_text`` is one ISO 8601 instant (a date: its midnight; no offset: UTC);
    ``properties_text`` a comma list (``None``: all, empty: none); ``filters`` maps a
    property of :data:`tiles.FILTERABLE` to a comma list of values (``None``: no filter).
    The text is read by the service's shared parsers, :mod:`service.params`; geo gets
    typed values only.

    Raises
    ------
    NotFound
        For an unknown layer or a tile outside the tile matrix set.
    InvalidInput
        For unknown properties, bad filters, a bad datetime or numbers out of range.
    """
    layer = params.find_layer(layer_id)
    tiles.check_tile(z, x, y)
    if not 1 <= limit <= tiles.MAX_LIMIT:
        raise InvalidInput(f"limit must be from 1 to {tiles.MAX_LIMIT}, not {limit}.")
    if not 256 <= extent <= 16384:
        raise InvalidInput(f"extent must be from 256 to 16384, not {extent}.")
    if not 0 <= buffer <= extent:
        raise InvalidInput(f"buffer must be from 0 to the extent ({extent}), not {buffer}.")
    as_of = None  # now
    if datetime_text is not None and datetime_text.strip():
        as_of = params.parse_instant(datetime_text, rfc3339=False)
    properties = (layer.property_names if properties_text is None
                  else params.parse_properties(layer, properties_text))
    found = params.parse_filters(
        layer, [(name, text) for name, text in (filters or {}).items() if text is not None],
        names=tiles.FILTERABLE, comma_lists=True, max_values=tiles.MAX_FILTER_VALUES,
        max_chars=tiles.MAX_FILTER_VALUE_CHARS,
        choices={name: values for (owner, name), values in tiles.VOCABULARIES.items()
                 if owner == layer.id})
    # Sorted, so that one query written differently is one tile (one ETag, one cache entry).
    canonical = tuple(sorted((name, tuple(sorted(map(str, values))))
                             for name, values in found))
    return tiles.TileRequest(layer.id, z, x, y, as_of, properties, canonical, limit, extent,
                             buffer, clip)


async def tile_query(
    datetime_: Annotated[str | None, Query(
        alias="datetime", max_length=64,
        description="The twin as of this instant (ISO 8601, e.g. `2026-06-01T00:00:00Z`; a "
        "date means its midnight UTC): latest readings and the observations and alerts made "
        "by then. Default: now.")] = None,
    properties: Annotated[str | None, Query(
        max_length=2000,
        description="Comma-separated properties to put in the tile (default all; empty: only "
        "ids). An unknown name is a 400.")] = None,
    status: Annotated[str | None, Query(
        max_length=2000,
        description="Only features whose `status` is one of these (comma list), on layers "
        "with a status: alerts (open, acknowledged, in_progress, resolved, dismissed), "
        "manholes (none, low, medium, high, critical).")] = None,
    severity: Annotated[str | None, Query(
        max_length=2000,
        description="Only features whose `severity` is one of these (comma list): alerts "
        "(low, medium, high, critical), road_damage (low, medium, high).")] = None,
    kind: Annotated[str | None, Query(
        max_length=2000,
        description="Only features whose `kind` is one of these (comma list): alerts, "
        "manholes, parking.")] = None,
    district: Annotated[str | None, Query(
        max_length=2000,
        description="Only features whose `district` (the finest district they lie in, by "
        "name) is one of these (comma list); every layer but districts.")] = None,
    limit: Annotated[int, Query(
        ge=1, le=tiles.MAX_LIMIT,
        description="Most features in one tile; keeps low zooms small.")] = tiles.DEFAULT_LIMIT,
    extent: Annotated[int, Query(
        ge=256, le=16384, description="Tile extent in tile coordinate units.")
    ] = tiles.DEFAULT_EXTENT,
    buffer: Annotated[int, Query(
        ge=0, le=16384, description="Buffer around the tile, in tile units, where geometry "
        "is kept so lines and symbols join across tiles.")] = tiles.DEFAULT_BUFFER,
    clip: Annotated[bool, Query(
        description="Clip geometries to the tile plus its buffer.")] = True,
) -> TileQuery:
    """The tile query parameters, documented once for every route that takes them."""
    return TileQuery(datetime_, properties, status, severity, kind, district, limit, extent,
                     buffer, clip)


TileQueryDep = Annotated[TileQuery, Depends(tile_query)]
_LAYER_DOC = f"Layer id: one of {', '.join(LAYERS)}."


_QUERY_MEMO_MAX = 1024  # distinct (layer, query string) pairs remembered per process


def _memo(request: Request) -> dict:
    state = request.app.state
    memo = getattr(state, "tile_query_memo", None)
    if memo is None:
        memo = state.tile_query_memo = {}
    return memo


def _remember(request: Request, layer_id: str, tile: tiles.TileRequest) -> None:
    """Note that this layer and query string validated to ``tile`` (any z/x/y)."""
    memo = _memo(request)
    if len(memo) >= _QUERY_MEMO_MAX:
        memo.clear()
    memo[(layer_id, request.scope.get("query_string", b""))] = replace(tile, z=0, x=0, y=0)


def _tile_number(text: str) -> int | None:
    # Plain decimal digits only (what FastAPI would read the same way); anything else goes
    # through the full validation and its error messages.
    if text.isascii() and text.isdigit() and len(text) <= 9 and (text == "0" or text[0] != "0"):
        return int(text)
    return None


async def _fast_tile(request: Request) -> Response | None:
    """Serve a tile whose query was validated before, skipping FastAPI's parsing.

    ``None`` when the request needs the full route: a key is given or reading needs one, the
    layer and query string are new, or z/x/y are not plain numbers of a tile that exists.
    """
    headers = request.headers
    if (not request.app.state.settings.open_read or "x-api-key" in headers
            or "authorization" in headers):
        return None
    path = request.path_params
    template = _memo(request).get((path.get("layer"), request.scope.get("query_string", b"")))
    if template is None:
        return None
    z, x, y = (_tile_number(path.get(k, "")) for k in ("z", "x", "y"))
    if z is None or x is None or y is None:
        return None
    try:
        tiles.check_tile(z, x, y)
    except NotFound:
        return None
    return await _serve(request, replace(template, z=z, x=x, y=y),
                        headers.get("if-none-match"))


class TileRoute(APIRoute):
    """The tile route: :func:`_fast_tile` first, FastAPI's full handling when it declines."""

    def get_route_handler(self):
        """The full handler behind the fast path."""
        full = super().get_route_handler()

        async def handler(request: Request) -> Response:
            response = await _fast_tile(request)
            return response if response is not None else await full(request)

        return handler


async def get_tile(
    request: Request,
    caller: TileReaderDep,
    query: TileQueryDep,
    layer: str,
    z: int, x: int, y: int,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """One WebMercatorQuad tile of ``layer``: its features with their id and properties."""
    # Async on purpose: 304s and cache hits are answered on the event loop; only rendering
    # a tile goes to the thread pool (the engine is synchronous).
    tile = query.request(layer, z, x, y)
    _remember(request, layer, tile)
    return await _serve(request, tile, if_none_match)


router.add_api_route(
    "/tiles/{layer}/{z}/{x}/{y}.mvt", get_tile, methods=["GET"], tags=["tiles"],
    summary="A vector tile of a layer",
    response_class=Response,
    responses={200: {"content": {MVT: {}}, "description": "The tile (Mapbox Vector Tile 2.1)."},
               204: {"description": "No feature of the layer meets this tile."},
               304: {"description": "The tile has not changed (If-None-Match)."}},
    route_class_override=TileRoute,
)


async def _serve(request: Request, tile: tiles.TileRequest, if_none_match: str | None
                 ) -> Response:
    """The tile's response: 304, from the cache, or rendered (then cached)."""
    versions = await _versions(request, tile.layer)
    etag = tile.etag(versions)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL_OPEN
               if request.app.state.settings.open_read else CACHE_CONTROL_KEYED}
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    cache = _tile_cache(request)
    key = f"{tile.z}/{tile.x}/{tile.y}|{tile.query_key()}"
    entry = cache.get(tile.layer_id, versions, key) if cache is not None else None
    if entry is None:
        async with _render_slots(request):
            body = await run_in_threadpool(_render, deps.reader_engine(request.app.state), tile)
        entry = (etag, body)
        if cache is not None:
            cache.put(tile.layer_id, versions, key, entry)
    if not entry[1]:
        return Response(status_code=204, headers=headers)
    return Response(entry[1], media_type=MVT, headers=headers)


def _render_slots(request: Request) -> asyncio.Semaphore:
    """How many tiles may render at once in this process: the engine pool's size less one.

    More would only make the pool open overflow connections, each closed again on return
    (a new PostgreSQL backend per tile), and put more threads behind the GIL.
    """
    state = request.app.state
    loop = asyncio.get_running_loop()
    found = getattr(state, "tile_render_slots", None)
    if found is None or found[0] is not loop:  # one per event loop (tests make several)
        size = getattr(state.engine.pool, "size", lambda: 2)()
        found = state.tile_render_slots = (loop, asyncio.Semaphore(max(1, size - 1)))
    return found[1]


def _render(engine, tile: tiles.TileRequest) -> bytes:
    with engine.connect() as conn:
        return tiles.render_tile(conn, tile)


_BOUNDS_LOCK = threading.Lock()
_MAX_BOUNDS_ENTRIES = 256


async def _bounds(request: Request, engine, layer: Layer, as_of: datetime | None
                  ) -> tuple[float, float, float, float] | None:
    """The layer's lon/lat extent, remembered per version of its tables."""
    versions = await _versions(request, layer)
    key = (layer.id, versions, as_of.isoformat() if as_of else "now")
    state = request.app.state
    with _BOUNDS_LOCK:
        known = getattr(state, "tile_layer_bounds", None)
        if known is None:
            known = state.tile_layer_bounds = {}
        if key in known:
            return known[key]
    found = await run_in_threadpool(_layer_bounds, engine, layer, as_of)
    with _BOUNDS_LOCK:
        if len(known) >= _MAX_BOUNDS_ENTRIES:
            known.clear()
        known[key] = found
    return found


def _layer_bounds(engine, layer: Layer, as_of: datetime | None
                  ) -> tuple[float, float, float, float] | None:
    with engine.connect() as conn:
        return tiles.layer_bounds(conn, layer, as_of)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


_FORWARDED = ("datetime", "properties", "status", "severity", "kind", "limit", "extent",
              "buffer", "clip")


@router.get("/tiles/{layer}/tilejson.json", tags=["tiles"], summary="TileJSON of a layer")
async def get_tilejson(request: Request, engine: EngineDep, caller: ReaderDep,
                       query: TileQueryDep, layer: str) -> JSONResponse:
    """TileJSON 3.0.0 for ``layer``; the tile query given here is carried into ``tiles``."""
    tile = query.request(layer)
    found = tile.layer
    forwarded = [(k, v) for k, v in request.query_params.multi_items() if k in _FORWARDED]
    suffix = f"?{urlencode(forwarded)}" if forwarded else ""
    bounds = await _bounds(request, engine, found, tile.as_of) or WORLD
    types = {p.name: p for p in found.properties}
    fields = {name: types[name].type + (f": {types[name].description}"
                                        if types[name].description else "")
              for name in tile.properties}
    document = {
        "tilejson": "3.0.0",
        "name": found.title,
        "description": found.description,
        "scheme": "xyz",
        "tiles": [f"{_base(request)}/tiles/{found.id}/{{z}}/{{x}}/{{y}}.mvt{suffix}"],
        "bounds": list(bounds),
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 15],
        "minzoom": TILEJSON_MINZOOM,
        "maxzoom": TILEJSON_MAXZOOM,
        "vector_layers": [{
            "id": found.id,
            "description": found.description,
            "fields": fields,
            "minzoom": TILEJSON_MINZOOM,
            "maxzoom": TILEJSON_MAXZOOM,
        }],
    }
    return JSONResponse(document, headers={"Cache-Control": "no-cache"})


# -- styles --------------------------------------------------------------------------------

# The MapLibre style speaks the maps' palette (maps/styles.py), so a colour is set in one place.


def _match(name: str, colours: dict[str, str], default: str) -> list:
    return ["match", ["get", name], *(x for pair in colours.items() for x in pair), default]


# PCI bands (ASTM D6433), worst first for MapLibre's "step".
_PCI_STEPS = [x for low, _, colour in reversed(PCI_BANDS) for x in (low, colour)][1:]
PCI_COLOUR = ["case", ["has", "pci"], ["step", ["to-number", ["get", "pci"]], *_PCI_STEPS],
              NO_DATA]
COLOURS: dict[str, object] = {
    "streets": PCI_COLOUR,
    "manholes": _match("status", MANHOLE_COLOURS, MANHOLE_COLOURS["none"]),
    "alerts": _match("severity", SEVERITY_COLOURS, SEVERITY_COLOURS["critical"]),
    "compounds": _match("management_type", COMPOUND_COLOURS, "#cccccc"),
    "parking": ["case", ["has", "occupancy_pct"],
                ["interpolate", ["linear"], ["to-number", ["get", "occupancy_pct"]],
                 0, "#1a9850", 70, "#fee08b", 100, "#d73027"], "#8c96c6"],
    "road_damage": _match("damage_class", DAMAGE_COLOURS, "#666666"),
    "debris_piles": DEBRIS_COLOUR,
}
DEFAULT_COLOUR = "#607d8b"
DRAW_ORDER = ("compounds", "parking", "streets", "debris_piles", "road_damage", "manholes",
              "alerts")
BACKGROUND = "#f2efe9"


def _draw_rank(layer: Layer) -> float:
    if layer.id in DRAW_ORDER:
        return DRAW_ORDER.index(layer.id)
    # Layers added to the registry later go above the base layers, below alerts.
    return DRAW_ORDER.index("alerts") - 0.5


def _style_layers(layer: Layer) -> list[dict]:
    colour = COLOURS.get(layer.id, DEFAULT_COLOUR)
    base = {"source": layer.id, "source-layer": layer.id}
    kinds = {"Point": ("Point",), "LineString": ("LineString",), "Polygon": ("Polygon",)}.get(
        layer.geometry_type, ("Polygon", "LineString", "Point"))
    mixed = len(kinds) > 1
    out = []
    for kind in kinds:
        only = {"filter": ["==", ["geometry-type"], kind]} if mixed else {}
        if kind == "Polygon":
            out.append({"id": f"{layer.id}-fill", "type": "fill", **base, **only,
                        "paint": {"fill-color": colour, "fill-opacity": 0.45}})
            out.append({"id": f"{layer.id}-outline", "type": "line", **base, **only,
                        "paint": {"line-color": colour, "line-width": 1}})
        elif kind == "LineString":
            width = ["interpolate", ["linear"], ["zoom"], 12, 1, 16, 3, 19, 10]
            out.append({"id": f"{layer.id}-line", "type": "line", **base, **only,
                        "layout": {"line-cap": "round", "line-join": "round"},
                        "paint": {"line-color": colour, "line-width": width}})
        else:
            big = layer.id == "alerts"
            radius = ["interpolate", ["linear"], ["zoom"], 12, 2 if not big else 4,
                      18, 6 if not big else 10]
            out.append({"id": f"{layer.id}-circle", "type": "circle", **base, **only,
                        "paint": {"circle-color": colour, "circle-radius": radius,
                                  "circle-stroke-color": "#ffffff",
                                  "circle-stroke-width": 1.5 if big else 0.5}})
    return out


def twin_style(base_url: str, bounds: tuple[float, float, float, float] | None) -> dict:
    """The ``twin`` MapLibre style: every layer of the registry, coloured by its condition."""
    ordered = sorted(LAYERS.values(), key=_draw_rank)
    west, south, east, north = bounds or WORLD
    style: dict[str, Any] = {
        "version": 8,
        "name": "Neighbourhood Twin",
        "center": [(west + east) / 2, (south + north) / 2],
        "zoom": 14 if bounds else 1,
        "sources": {layer.id: {"type": "vector",
                               "url": f"{base_url}/tiles/{layer.id}/tilejson.json"}
                    for layer in ordered},
        "layers": [{"id": "background", "type": "background",
                    "paint": {"background-color": BACKGROUND}}],
    }
    for layer in ordered:
        style["layers"].extend(_style_layers(layer))
    return style


STYLES = {"twin": twin_style}


@router.get("/styles/{name}.json", tags=["tiles"], summary="A MapLibre style")
async def get_style(request: Request, engine: EngineDep, caller: ReaderDep,
                    name: str) -> JSONResponse:
    """A MapLibre style (version 8) whose sources are this service's TileJSON documents.

    No glyphs or sprite: the style needs nothing from outside the service.
    """
    build = STYLES.get(name)
    if build is None:
        raise NotFound(f"There is no style '{name[:100]}'; the styles are {', '.join(STYLES)}.")
    boxes = [b for layer in LAYERS.values()
             if (b := await _bounds(request, engine, layer, None)) is not None]
    union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
             max(b[3] for b in boxes)) if boxes else None
    return JSONResponse(build(_base(request), union), headers={"Cache-Control": "no-cache"})


