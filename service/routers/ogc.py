"""OGC API - Features Part 1 (Core, GeoJSON, OpenAPI 3.0) under ``/ogc``: every published layer.

The collections are :data:`geo.layers.LAYERS`; a new layer appears here without changes.
Behaviour worth knowing (also stated in the OpenAPI document):

- ``limit`` above the maximum is clamped to it (the standard's permission), never an error;
  zero, negative or non-integer limits are a 400.
- ``numberMatched`` is exact when the layer's table is estimated below a million rows, or
  when the count finishes within a second; otherwise it is left out (the standard allows it).
- Any query parameter the operation does not know is a 400, so typos do not pass silently.
- Only JSON/GeoJSON is offered: ``f`` other than json is a 400, an Accept header that takes
  no JSON a 406, both as problem+json.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from geo import features
from geo.errors import InvalidInput, NotFound
from geo.layers import LAYERS, Layer, table_versions
from service import params
from service.deps import EngineDep, ReaderEngineDep, SettingsDep, require_reader
from service.settings import ServiceSettings

router = APIRouter(prefix="/ogc", tags=["OGC API - Features"],
                   dependencies=[Depends(require_reader)])

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
)
JSON = "application/json"
GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
PROBLEM = "application/problem+json"
# The documented limits are the settings' defaults; a deployment's own values apply at run time.
_DEFAULTS = ServiceSettings.model_fields
DEFAULT_LIMIT = _DEFAULTS["items_default_limit"].default
MAX_LIMIT = _DEFAULTS["items_max_limit"].default
MAX_OFFSET = 2**63 - 1
ITEMS_PARAMETERS = frozenset(("f", "bbox", "datetime", "limit", "offset", "sortby",
                              "properties"))

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A parameter is not valid.", "content": {PROBLEM: {}}},
    406: {"description": "Only JSON is offered.", "content": {PROBLEM: {}}},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such collection or feature.", "content": {PROBLEM: {}}}}

FParam = Annotated[
    Literal["json", "geojson"] | None,
    Query(description="The representation: only JSON (GeoJSON for features) is offered; "
          "anything else is a 400. Without it the Accept header decides (406 when it takes no "
          "JSON)."),
]
CollectionId = Annotated[str, Path(description="A collection's id, as listed at "
                                   "`/ogc/collections` (streets, manholes, ...).")]


# -- helpers ------------------------------------------------------------------------------------


def _negotiate(request: Request, f: str | None) -> None:
    """Refuse a request that accepts no JSON; ``f`` wins over the Accept header."""
    if f is not None:
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    for item in accept.split(","):
        media, *options = (part.strip() for part in item.split(";"))
        quality = 1.0
        for option in options:
            key, _, value = option.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if quality > 0 and (media in ("*/*", "application/*") or media.endswith("json")):
            return
    raise HTTPException(406, "Only JSON is offered here (application/json, "
                        "application/geo+json); HTML is not.")


def _check_parameters(request: Request, allowed: frozenset[str] | set[str]) -> None:
    """A 400 for a query parameter the operation does not take, or a value with a NUL."""
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise InvalidInput(f"Unknown query parameter '{name}'; this operation takes: "
                               f"{known}.")
        params.clean_text(value, name)


def _layer(collection_id: str) -> Layer:
    return params.find_layer(collection_id, what="collection")


def _rfc3339(moment: datetime | None, timespec: str = "auto") -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _json(body: dict, media_type: str = JSON) -> Response:
    return Response(json.dumps(body), media_type=media_type)


def _extents(request: Request, engine, layers: list[Layer]) -> dict[str, features.Extent]:
    """The layers' extents, cached per app and per version of each layer's table.

    The versions are read from ``layer_versions`` (one small query) rather than from
    ``app.state.changes``, whose listener can lag behind: a cached extent is never stale.
    """
    state = request.app.state
    cache = getattr(state, "ogc_extents", None)
    if cache is None:
        cache = state.ogc_extents = {}
    found = {}
    with engine.connect() as conn:
        versions = table_versions(conn)
        for layer in layers:
            version = versions.get(layer.table) if layer.table else None
            cached = cache.get(layer.id)
            if version is not None and cached is not None and cached[0] == version:
                found[layer.id] = cached[1]
                continue
            found[layer.id] = features.layer_extent(conn, layer, datetime.now(UTC))
            if version is not None:
                cache[layer.id] = (version, found[layer.id])
    return found


def _collection(request: Request, layer: Layer, extent: features.Extent) -> dict:
    href = str(request.url_for("ogc_collection", collectionId=layer.id))
    body: dict = {"id": layer.id, "title": layer.title, "description": layer.description}
    spatial = {"bbox": [list(extent.bbox)], "crs": CRS84} if extent.bbox else None
    temporal = None
    if extent.interval is not None:
        temporal = {"interval": [[_rfc3339(extent.interval[0]), _rfc3339(extent.interval[1])]],
                    "trs": GREGORIAN}
    if spatial or temporal:
        body["extent"] = {k: v for k, v in (("spatial", spatial), ("temporal", temporal)) if v}
    body.update({
        "itemType": "feature",
        "crs": [CRS84],
        "links": [
            {"href": href, "rel": "self", "type": JSON, "title": layer.title},
            {"href": str(request.url_for("ogc_items", collectionId=layer.id)), "rel": "items",
             "type": GEOJSON, "title": f"{layer.title} as GeoJSON"},
        ],
    })
    return body


# -- routes -------------------------------------------------------------------------------------


@router.get("", name="ogc_landing", summary="Landing page of the OGC API - Features",
            response_class=Response,
            responses={200: {"description": "Links to the API's parts.",
                             "content": {JSON: {}}}, **_PROBLEMS})
def landing(request: Request, f: FParam = None) -> Response:
    """Links to the API definition, its documentation, the conformance classes and the data."""
    _check_parameters(request, {"f"})
    _negotiate(request, f)
    base = str(request.base_url).rstrip("/")
    return _json({
        "title": f"{request.app.title}: OGC API - Features",
        "description": "The layers of the neighbourhood twin as OGC API - Features collections "
                       "(GeoJSON, CRS84).",
        "links": [
            {"href": str(request.url_for("ogc_landing")), "rel": "self", "type": JSON,
             "title": "This document"},
            {"href": base + (request.app.openapi_url or "/openapi.json"), "rel": "service-desc",
             "type": OPENAPI, "title": "The API definition"},
            {"href": base + (request.app.docs_url or "/docs"), "rel": "service-doc",
             "type": "text/html", "title": "The API documentation"},
            {"href": str(request.url_for("ogc_conformance")), "rel": "conformance",
             "type": JSON, "title": "Conformance classes implemented"},
            {"href": str(request.url_for("ogc_collections")), "rel": "data", "type": JSON,
             "title": "The collections"},
        ],
    })


@router.get("/conformance", name="ogc_conformance", summary="Conformance classes implemented",
            response_class=Response,
            responses={200: {"description": "The conformance classes.",
                             "content": {JSON: {}}}, **_PROBLEMS})
def conformance(request: Request, f: FParam = None) -> Response:
    """OGC API - Features Part 1: Core, GeoJSON and OpenAPI 3.0."""
    _check_parameters(request, {"f"})
    _negotiate(request, f)
    return _json({"conformsTo": list(CONFORMANCE)})


@router.get("/collections", name="ogc_collections", summary="The collections (layers)",
            response_class=Response,
            responses={200: {"description": "Every published layer.", "content": {JSON: {}}},
                       **_PROBLEMS})
def collections(request: Request, engine: EngineDep, f: FParam = None) -> Response:
    """Every published layer with its extent in CRS84 (and in time, for layers in time)."""
    _check_parameters(request, {"f"})
    _negotiate(request, f)
    extents = _extents(request, engine, list(LAYERS.values()))
    return _json({
        "links": [{"href": str(request.url_for("ogc_collections")), "rel": "self",
                   "type": JSON, "title": "This document"}],
        "collections": [_collection(request, layer, extents[layer.id])
                        for layer in LAYERS.values()],
    })


@router.get("/collections/{collectionId}", name="ogc_collection", summary="One collection",
            response_class=Response,
            responses={200: {"description": "The collection.", "content": {JSON: {}}},
                       **_PROBLEMS, **_NOT_FOUND})
def collection(request: Request, engine: EngineDep, collectionId: CollectionId,  # noqa: N803
               f: FParam = None) -> Response:
    """A layer's description, extent and links to its items."""
    layer = _layer(collectionId)
    _check_parameters(request, {"f"})
    _negotiate(request, f)
    return _json(_collection(request, layer, _extents(request, engine, [layer])[layer.id]))


@router.get(
    "/collections/{collectionId}/items", name="ogc_items", summary="Features of a collection",
    response_class=Response,
    responses={200: {"description": "A GeoJSON FeatureCollection.", "content": {GEOJSON: {}}},
               **_PROBLEMS, **_NOT_FOUND},
    description=(
        "A page of the collection's features as a GeoJSON FeatureCollection in CRS84, with "
        "`numberReturned`, `timeStamp`, `numberMatched` (exact for tables estimated below "
        f"{features.EXACT_COUNT_BELOW_ROWS:,} rows, or when the count finishes within "
        f"{features.COUNT_TIMEOUT_MS} ms; left out otherwise) and links `self`, `collection`, "
        "`next` (when more features follow) and `prev` (after the first page).\n\n"
        "**Filtering by property:** any property of the collection is also a query parameter "
        "that keeps features whose property equals the value, typed by the property "
        "(integer, number, boolean, date `YYYY-MM-DD`, RFC 3339 date-time, else text), e.g. "
        "`?road_class=primary` on streets or `?kind=sewer` on manholes. Repeating a parameter "
        "keeps features equal to any of the values. The properties are listed in each "
        "collection's description and in the features themselves.\n\n"
        "Any other query parameter is a 400."
    ),
)
def items(
    request: Request,
    engine: ReaderEngineDep,
    settings: SettingsDep,
    collectionId: CollectionId,  # noqa: N803
    bbox: Annotated[str | None, Query(
        description="Only features intersecting this box: `west,south,east,north` in CRS84 "
        "degrees (6 numbers with heights are taken as a 2D box). West above east, south above "
        "north, values out of range or another count of numbers are a 400.",
        examples=["108.53,32.51,108.55,32.53"])] = None,
    datetime_: Annotated[str | None, Query(
        alias="datetime",
        description="An RFC 3339 instant (`2024-05-01T08:00:00Z`) or interval (`a/b`, `../b`, "
        "`a/..`). For collections in time (road damage, debris piles, alerts) it keeps the "
        "features whose time lies in it. It also picks the state of the twin shown: at the "
        "instant, or at the interval's end (latest readings as of then); now for an open end. "
        "A date alone (`2024-05-01`) means that whole day.",
        examples=["2024-01-01T00:00:00Z/2024-06-30T23:59:59Z"])] = None,
    limit: Annotated[int, Query(
        ge=1,
        description=f"Features per page: {DEFAULT_LIMIT} by default, at most {MAX_LIMIT} (the "
        "service's TWIN_ITEMS_DEFAULT_LIMIT and TWIN_ITEMS_MAX_LIMIT). A larger value is "
        "taken as the maximum, as the standard permits; zero, negative or non-integer "
        "values are a 400.",
        json_schema_extra={"maximum": MAX_LIMIT})] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(
        ge=0, le=MAX_OFFSET,
        description="Features to skip before the page starts (the `next` and `prev` links "
        "carry it).")] = 0,
    sortby: Annotated[str | None, Query(
        description="Order of the features: comma-separated property names (or `id`), each "
        "ascending, or descending with a leading `-` (e.g. `-pci,name`). Ties are broken by "
        "id. An unknown name is a 400.", examples=["-observed_at"])] = None,
    properties: Annotated[str | None, Query(
        description="Comma-separated properties to return (all by default; empty for none). "
        "An unknown name is a 400.", examples=["name,road_class"])] = None,
    f: FParam = None,
) -> Response:
    """Features of a collection, filtered, sorted and paged."""
    layer = _layer(collectionId)
    _check_parameters(request, ITEMS_PARAMETERS | set(layer.property_names))
    _negotiate(request, f)
    span = params.parse_datetime(datetime_) if datetime_ is not None else None
    now = datetime.now(UTC)
    # Every other parameter is one of the layer's properties (_check_parameters saw to it).
    filters = [(name, value) for name, value in request.query_params.multi_items()
               if name not in ITEMS_PARAMETERS]
    # The declared default documents the out-of-the-box value; the deployment's setting rules.
    asked = limit if "limit" in request.query_params else settings.items_default_limit
    page_size = min(asked, settings.items_max_limit)
    query = features.FeatureQuery(
        as_of=span.as_of(now) if span is not None else now,
        bbox=params.parse_bbox(bbox, heights=True) if bbox is not None else None,
        time_range=(span.start, span.end) if span is not None else None,
        equals=params.parse_filters(layer, filters),
        sortby=params.parse_sortby(layer, sortby) if sortby is not None else (),
        properties=params.parse_properties(layer, properties) if properties is not None
        else None,
        limit=page_size,
        offset=offset,
    )
    with engine.connect() as conn:
        page = features.features_page(conn, layer, query)
        if not page.more and (offset == 0 or page.returned > 0):
            matched: int | None = offset + page.returned  # this page is the last: no count
        else:
            matched = features.count_matched(conn, layer, query)

    self_url = request.url
    links = [
        {"href": str(self_url), "rel": "self", "type": GEOJSON, "title": "This page"},
        {"href": str(request.url_for("ogc_collection", collectionId=layer.id)),
         "rel": "collection", "type": JSON, "title": layer.title},
    ]
    if page.more:
        links.append({"href": str(self_url.include_query_params(
            offset=offset + page_size, limit=page_size)), "rel": "next", "type": GEOJSON,
            "title": "Next page"})
    if offset > 0:
        links.append({"href": str(self_url.include_query_params(
            offset=max(offset - page_size, 0), limit=page_size)), "rel": "prev",
            "type": GEOJSON, "title": "Previous page"})
    meta: dict = {}
    if matched is not None:
        meta["numberMatched"] = matched
    meta.update({"numberReturned": page.returned, "timeStamp": _rfc3339(now, "seconds"),
                 "links": links})
    body = ('{"type": "FeatureCollection", "features": ' + page.features_json + ", "
            + json.dumps(meta)[1:])
    return Response(body, media_type=GEOJSON)


@router.get(
    "/collections/{collectionId}/items/{featureId}", name="ogc_item", summary="One feature",
    response_class=Response,
    responses={200: {"description": "A GeoJSON Feature.", "content": {GEOJSON: {}}},
               **_PROBLEMS, **_NOT_FOUND},
)
def item(
    request: Request,
    engine: ReaderEngineDep,
    collectionId: CollectionId,  # noqa: N803
    featureId: Annotated[str, Path(description="The feature's id (an integer).")],  # noqa: N803
    f: FParam = None,
) -> Response:
    """One feature of a collection, as it is now; a 404 for an unknown or non-integer id."""
    layer = _layer(collectionId)
    _check_parameters(request, {"f"})
    _negotiate(request, f)
    missing = NotFound(f"Collection '{layer.id}' has no feature '{featureId}'.")
    if not (featureId.isascii() and featureId.isdigit()):
        raise missing
    with engine.connect() as conn:
        feature = features.feature_by_id(conn, layer, int(featureId), datetime.now(UTC))
    if feature is None:
        raise missing
    links = [
        {"href": str(request.url.remove_query_params("f")), "rel": "self", "type": GEOJSON,
         "title": "This feature"},
        {"href": str(request.url_for("ogc_collection", collectionId=layer.id)),
         "rel": "collection", "type": JSON, "title": layer.title},
    ]
    body = feature.rstrip()[:-1] + ', "links": ' + json.dumps(links) + "}"
    return Response(body, media_type=GEOJSON)
