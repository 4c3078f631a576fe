"""Routes: vector tiles of every published layer, their TileJSON, and MapLibre styles.

- ``GET /tiles/{layer}/{z}/{x}/{y}.mvt``: a Mapbox vector tile (WebMercatorQuad). A tile with
  no feature is ``204 No Content`` (with its ETag), which map clients treat as an empty tile.
- ``GET /tiles/{layer}/{version}/{z}/{x}/{y}.mvt``: the same tile at a version of the layer
  (``v41-3``: the versions of its tables), as TileJSON hands it out. The current version is
  ``immutable`` for a year, so any HTTP cache keeps it and a change needs no purge (new
  version, new URLs); an older (or unknown newer) one gets the current tile, cached 30 s.
- ``GET /tiles/{layer}/tilejson.json``: TileJSON 3.0.0 for a layer, carrying the tile query,
  with the zoom from which each class of the layer appears and the order a cut tile keeps;
  its ``tiles`` URL is versioned.
- ``GET /styles/{name}.json``: a MapLibre style (version 8) over the tilejson URLs;
  ``GET /styles/twin/{layer}.json``: one layer's own style, for QGIS.

The work is elsewhere, each part in its own module: the query and its validation
(:mod:`service.tile_query`), versions, ETags, the cache and rendering
(:mod:`service.tile_server`, built in the app's lifespan as ``app.state.tiles``), the styles
(:mod:`maps.maplibre`) and the tile statement itself (:mod:`geo.tiles`).

The tile route answers a query it has already validated (same layer, same query string)
without FastAPI's parameter parsing: anonymous reads on an open service go straight to the
versions, the ETag, the cache and, on a miss, the renderer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from geo import tiles
from geo.errors import NotFound
from geo.i18n import _
from geo.layers import LAYERS
from maps import maplibre, qml
from service import deps, params
from service.deps import ReaderDep
from service.tile_query import FORWARDED, TileQuery, TileQueryDep, build_tile_request
from service.tile_server import (
    MVT,
    STALE_VERSION_MAX_AGE_S,
    TRUNCATED_HEADER,
    TileServer,
    parse_version,
    version_text,
)

__all__ = ["TileQuery", "build_tile_request", "router"]

router = APIRouter()

TILEJSON_MINZOOM = 0
TILEJSON_MAXZOOM = 22


def _server(request: Request) -> TileServer:
    return request.app.state.tiles


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
    server = _server(request)
    headers = request.headers
    if not server.open_read or "x-api-key" in headers or "authorization" in headers:
        return None
    path = request.path_params
    template = server.recall(path.get("layer"), request.scope.get("query_string", b""))
    if template is None:
        return None
    z, x, y = (_tile_number(path.get(k, "")) for k in ("z", "x", "y"))
    if z is None or x is None or y is None:
        return None
    version = None
    if "version" in path:
        version = parse_version(path["version"])
        if version is None:
            return None
    try:
        tiles.check_tile(z, x, y)
    except NotFound:
        return None
    return await server.serve(replace(template, z=z, x=x, y=y), headers.get("if-none-match"),
                              version)


class TileRoute(APIRoute):
    """The tile route: :func:`_fast_tile` first, FastAPI's full handling when it declines."""

    def get_route_handler(self):
        """The full handler behind the fast path."""
        full = super().get_route_handler()

        async def handler(request: Request) -> Response:
            response = await _fast_tile(request)
            return response if response is not None else await full(request)

        return handler


async def _serve(request: Request, layer: str, tile: tiles.TileRequest,
                 if_none_match: str | None, version: tuple[int, ...] | None = None) -> Response:
    """Answer a tile the full route parsed, and remember its query for :func:`_fast_tile`."""
    server = _server(request)
    server.remember(layer, request.scope.get("query_string", b""), replace(tile, z=0, x=0, y=0))
    return await server.serve(tile, if_none_match, version)


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
    return await _serve(request, layer, query.request(layer, z, x, y), if_none_match)


async def get_versioned_tile(
    request: Request,
    caller: TileReaderDep,
    query: TileQueryDep,
    layer: str,
    version: str,
    z: int, x: int, y: int,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """The tile at a version of the layer, as TileJSON hands it out (immutable while current)."""
    tile = query.request(layer, z, x, y)
    wanted = parse_version(version)
    if wanted is None:
        raise NotFound(_("'{version}' is not a version of a layer; a versioned tile URL comes "
                         "from the layer's TileJSON.", version=version[:40]))
    return await _serve(request, layer, tile, if_none_match, wanted)


_TILE_RESPONSES: dict[int | str, dict] = {
    200: {"content": {MVT: {}}, "description": "The tile (Mapbox Vector Tile 2.1). When more "
          f"features met it than its limit, a `{TRUNCATED_HEADER}: kept=K; matched=M` header "
          "and a `tile_info` layer say so."},
    204: {"description": "No feature of the layer meets this tile."},
    304: {"description": "The tile has not changed (If-None-Match)."}}

router.add_api_route(
    "/tiles/{layer}/{version}/{z}/{x}/{y}.mvt", get_versioned_tile, methods=["GET"],
    tags=["tiles"], summary="A vector tile of a layer at a version (from TileJSON)",
    description="The current version answers `Cache-Control: public, max-age=31536000, "
    "immutable`; another version answers the current tile with `max-age="
    f"{STALE_VERSION_MAX_AGE_S}`.",
    response_class=Response, responses=_TILE_RESPONSES, route_class_override=TileRoute,
)

router.add_api_route(
    "/tiles/{layer}/{z}/{x}/{y}.mvt", get_tile, methods=["GET"], tags=["tiles"],
    summary="A vector tile of a layer",
    response_class=Response, responses=_TILE_RESPONSES, route_class_override=TileRoute,
)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/tiles/{layer}/tilejson.json", tags=["tiles"], summary="TileJSON of a layer")
async def get_tilejson(request: Request, caller: ReaderDep, query: TileQueryDep,
                       layer: str) -> JSONResponse:
    """TileJSON 3.0.0 for ``layer``; the tile query given here is carried into ``tiles``.

    Its vector layer says from which zoom each class appears (``classes``) and which
    features a tile keeps first when more than its limit meet it (``order``).
    """
    tile = query.request(layer)
    found = tile.layer
    forwarded = [(k, v) for k, v in request.query_params.multi_items() if k in FORWARDED]
    suffix = f"?{urlencode(forwarded)}" if forwarded else ""
    server = _server(request)
    bounds = await server.bounds(found, tile.as_of) or maplibre.WORLD
    version = version_text(await server.versions.of(found))
    types = {p.name: p for p in found.properties}
    fields = {name: types[name].type + (f": {types[name].description}"
                                        if types[name].description else "")
              for name in tile.properties}
    policy = tiles.policy_of(found.id)
    vector_layer = {
        "id": found.id,
        "description": found.description,
        "fields": fields,
        "minzoom": max(TILEJSON_MINZOOM, policy.minzoom),
        "maxzoom": TILEJSON_MAXZOOM,
        "limit": tile.limit,
        "order": policy.description,
    }
    if policy.class_property is not None:
        vector_layer["classes"] = {
            "property": policy.class_property,
            "minzoom": {**dict(policy.class_minzoom), "other": policy.other_minzoom},
        }
    document = {
        "tilejson": "3.0.0",
        "name": found.title,
        "description": found.description,
        "scheme": "xyz",
        # Versioned: immutable tiles any HTTP cache keeps; this document is never cached, so
        # the next map load after a change gets the new URLs.
        "tiles": [f"{_base(request)}/tiles/{found.id}/{version}/{{z}}/{{x}}/{{y}}.mvt{suffix}"],
        "bounds": list(bounds),
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 15],
        "minzoom": TILEJSON_MINZOOM,
        "maxzoom": TILEJSON_MAXZOOM,
        "vector_layers": [vector_layer],
    }
    return JSONResponse(document, headers={"Cache-Control": "no-cache"})


async def _union_bounds(request: Request) -> tuple[float, float, float, float] | None:
    server = _server(request)
    boxes = [b for layer in LAYERS.values() if (b := await server.bounds(layer, None)) is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))


@router.get("/styles/{name}.json", tags=["tiles"], summary="A MapLibre style")
async def get_style(request: Request, caller: ReaderDep, name: str) -> JSONResponse:
    """A MapLibre style (version 8) whose sources are this service's TileJSON documents.

    No glyphs or sprite: the style needs nothing from outside the service.
    """
    build = maplibre.STYLES.get(name)
    if build is None:
        raise NotFound(_("There is no style '{name}'; the styles are {styles}.",
                         name=name[:100], styles=", ".join(maplibre.STYLES)))
    return JSONResponse(build(_base(request), await _union_bounds(request)),
                        headers={"Cache-Control": "no-cache"})


@router.get("/styles/twin/{layer}.json", tags=["tiles"], summary="One layer's MapLibre style")
async def get_layer_style(request: Request, caller: ReaderDep, layer: str) -> JSONResponse:
    """One layer's style, without background, for clients that style each layer apart.

    QGIS (Add Vector Tile Layer, style URL) converts it faithfully: every colour is a
    filter with a constant colour, no data-driven expression.
    """
    found = params.find_layer(layer)
    bounds = await _server(request).bounds(found, None)
    return JSONResponse(maplibre.layer_style(_base(request), found, bounds),
                        headers={"Cache-Control": "no-cache"})


@router.get("/styles/twin/{layer}.qml", tags=["tiles"], summary="One layer's QGIS style (QML)",
            response_class=Response,
            responses={200: {"content": {"text/xml": {}},
                             "description": "A QGIS layer style (QML)."}})
async def get_layer_qml(caller: ReaderDep, layer: str) -> Response:
    """The layer's colours as a QGIS style file, for the layer opened through OGC API.

    The same rules as the MapLibre style; in QGIS: Layer Properties > Style > Load Style.
    """
    found = params.find_layer(layer)
    return Response(qml.layer_qml(found), media_type="text/xml",
                    headers={"Content-Disposition": f'attachment; filename="{found.id}.qml"',
                             "Cache-Control": "no-cache"})
