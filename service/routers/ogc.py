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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from geo import features, filtering, history
from geo.errors import InvalidInput, NotFound
from geo.i18n import _
from geo.layers import LAYERS, Layer, table_versions
from service import params
from service.deps import EngineDep, ReaderEngineDep, SettingsDep, require_reader
from service.errors import problem_response
from service.language import LANGUAGE_PARAMETER
from service.settings import ServiceSettings

router = APIRouter(prefix="/ogc", tags=["OGC API - Features"],
                   dependencies=[Depends(require_reader)])

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
_PART3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    _PART3 + "queryables", _PART3 + "queryables-query-parameters", _PART3 + "filter",
    _PART3 + "features-filter",
    _CQL2 + "cql2-text", _CQL2 + "cql2-json", _CQL2 + "basic-cql2",
    _CQL2 + "advanced-comparison-operators", _CQL2 + "case-insensitive-comparison",
    _CQL2 + "basic-spatial-functions", _CQL2 + "basic-spatial-functions-plus",
    _CQL2 + "spatial-functions", _CQL2 + "temporal-functions",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/schemas",
)
SCHEMA = "application/schema+json"
CSV = "text/csv; charset=utf-8"
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
REL_SCHEMA = "http://www.opengis.net/def/rel/ogc/1.0/schema"
JSON = "application/json"
GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
# The documented limits are the settings' defaults; a deployment's own values apply at run time.
_DEFAULTS = ServiceSettings.model_fields
DEFAULT_LIMIT = _DEFAULTS["items_default_limit"].default
MAX_LIMIT = _DEFAULTS["items_max_limit"].default
MAX_OFFSET = 2**63 - 1
ITEMS_PARAMETERS = frozenset(("f", "bbox", "datetime", "limit", "offset", "sortby",
                              "properties", "filter", "filter-lang", "filter-crs"))
READINGS_PARAMETERS = frozenset(("f", "metric", "datetime", "limit", "offset"))

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: problem_response("A parameter is not valid."),
    406: problem_response("Only JSON is offered."),
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_response("No such collection or feature.")}


def _answers(description: str, *media_types: str, of_one: bool = False
             ) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI responses: what it answers in ``media_types``, else a problem.

    ``of_one``: the route names a collection (or a feature), which may not exist.
    """
    return {200: {"description": description, "content": {m: {} for m in media_types}},
            **_PROBLEMS, **(_NOT_FOUND if of_one else {})}

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
            key, _sep, value = option.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if quality > 0 and (media in ("*/*", "application/*") or media.endswith("json")):
            return
    raise HTTPException(406, _("Only JSON is offered here (application/json, "
                               "application/geo+json); HTML is not."))


def _check_parameters(request: Request, allowed: frozenset[str] | set[str]) -> None:
    """A 400 for a query parameter the operation does not take, or a value with a NUL."""
    for name, value in request.query_params.multi_items():
        if name not in allowed and name != LANGUAGE_PARAMETER:
            known = ", ".join(sorted(allowed))
            raise InvalidInput(_("Unknown query parameter '{name}'; this operation takes: "
                                 "{known}.", name=name, known=known))
        params.clean_text(value, name)


def _json_request(request: Request, f: str | None,
                  allowed: frozenset[str] | set[str] = frozenset({"f"})) -> None:
    """Check a request for a JSON answer: only ``allowed`` parameters, and JSON acceptable."""
    _check_parameters(request, allowed)
    _negotiate(request, f)


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
    The cache is made in the app's lifespan.
    """
    cache = request.app.state.ogc_extents
    found = {}
    with engine.connect() as conn:
        versions = table_versions(conn)
        for layer in layers:
            # Every table the layer is made of; a layer of none is never cached.
            tables = [t for t in (layer.table, *layer.depends_on) if t is not None]
            version = tuple(versions.get(t) for t in tables) if tables else None
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
            {"href": str(request.url_for("ogc_queryables", collectionId=layer.id)),
             "rel": REL_QUERYABLES, "type": SCHEMA,
             "title": "What the features can be filtered by (JSON Schema)"},
            {"href": str(request.url_for("ogc_schema", collectionId=layer.id)),
             "rel": REL_SCHEMA, "type": SCHEMA,
             "title": "The features' properties and their types (JSON Schema)"},
            # GDAL's OAPIF driver (and so QGIS) types its fields from a JSON Schema of one
            # GeoJSON Feature behind this link; GDAL 3.6 matches the rel "describedBy" with
            # this exact case (link relations are case-insensitive, RFC 8288).
            {"href": str(request.url_for("ogc_feature_schema", collectionId=layer.id)),
             "rel": "describedBy", "type": SCHEMA,
             "title": "One GeoJSON Feature of the collection (JSON Schema)"},
        ],
    })
    return body


# -- routes -------------------------------------------------------------------------------------


@router.get("", name="ogc_landing", summary="Landing page of the OGC API - Features",
            response_class=Response,
            responses=_answers("Links to the API's parts.", JSON))
def landing(request: Request, f: FParam = None) -> Response:
    """Links to the API definition, its documentation, the conformance classes and the data."""
    _json_request(request, f)
    base = str(request.base_url).rstrip("/")
    return _json({
        "title": f"{request.app.title}: OGC API - Features",
        "description": "The layers of the neighbourhood twin as OGC API - Features collections "
                       "(GeoJSON, CRS84).",
        "links": [
            {"href": str(request.url_for("ogc_landing")), "rel": "self", "type": JSON,
             "title": "This document"},
            {"href": str(request.url_for("ogc_openapi")), "rel": "service-desc",
             "type": OPENAPI, "title": "The API definition of this OGC API, one items path "
             "per collection"},
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
            responses=_answers("The conformance classes.", JSON))
def conformance(request: Request, f: FParam = None) -> Response:
    """OGC API - Features Part 1: Core, GeoJSON and OpenAPI 3.0."""
    _json_request(request, f)
    return _json({"conformsTo": list(CONFORMANCE)})


@router.get("/collections", name="ogc_collections", summary="The collections (layers)",
            response_class=Response,
            responses=_answers("Every published layer.", JSON))
def collections(request: Request, engine: EngineDep, f: FParam = None) -> Response:
    """Every published layer with its extent in CRS84 (and in time, for layers in time)."""
    _json_request(request, f)
    extents = _extents(request, engine, list(LAYERS.values()))
    return _json({
        "links": [{"href": str(request.url_for("ogc_collections")), "rel": "self",
                   "type": JSON, "title": "This document"}],
        "collections": [_collection(request, layer, extents[layer.id])
                        for layer in LAYERS.values()],
    })


@router.get("/collections/{collectionId}", name="ogc_collection", summary="One collection",
            response_class=Response,
            responses=_answers("The collection.", JSON, of_one=True))
def collection(request: Request, engine: EngineDep, collectionId: CollectionId,  # noqa: N803
               f: FParam = None) -> Response:
    """A layer's description, extent and links to its items."""
    layer = _layer(collectionId)
    _json_request(request, f)
    return _json(_collection(request, layer, _extents(request, engine, [layer])[layer.id]))


@router.get(
    "/collections/{collectionId}/items", name="ogc_items", summary="Features of a collection",
    response_class=Response,
    responses=_answers("A GeoJSON FeatureCollection.", GEOJSON, of_one=True),
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
        "**Filtering with CQL2** (OGC API - Features Part 3): `filter` in CQL2 text "
        "(`filter-lang=cql2-text`, the default) or CQL2 JSON (`cql2-json`) over the "
        "collection's queryables (`/queryables`): comparisons, BETWEEN, IN, LIKE, IS NULL, "
        "AND/OR/NOT, S_INTERSECTS/S_WITHIN/S_DWITHIN and the other spatial operators, "
        "T_INTERSECTS/T_BEFORE/T_AFTER, e.g. "
        "`filter=horizon_days=90 AND upper<55` on forecasts. An unknown property, a value "
        "of the wrong type or a filter that cannot be read is a 400 naming the problem.\n\n"
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
    filter_: Annotated[str | None, Query(
        alias="filter", max_length=filtering.MAX_FILTER_CHARS,
        description="A CQL2 filter over the collection's queryables (see `/queryables`), "
        "in the language `filter-lang` names.",
        examples=["pci < 55 AND road_class = 'primary'"])] = None,
    filter_lang: Annotated[Literal["cql2-text", "cql2-json", "cql-text"] | None, Query(
        alias="filter-lang", description="The language of `filter`: `cql2-text` (default) "
        "or `cql2-json`; `cql-text`, the name GDAL sends, is read as CQL2 text.")] = None,
    filter_crs: Annotated[str | None, Query(
        alias="filter-crs", description="The CRS of the coordinates in `filter`: CRS84 "
        "(default), `http://www.opengis.net/def/crs/EPSG/0/4326` (latitude first) or "
        "`http://www.opengis.net/def/crs/EPSG/0/3857`.")] = None,
    f: FParam = None,
) -> Response:
    """Features of a collection, filtered, sorted and paged."""
    layer = _layer(collectionId)
    _json_request(request, f, ITEMS_PARAMETERS | set(layer.property_names))
    span = params.parse_datetime(datetime_) if datetime_ is not None else None
    now = datetime.now(UTC)
    # Every other parameter is one of the layer's properties (_check_parameters saw to it).
    filters = [(name, value) for name, value in request.query_params.multi_items()
               if name not in ITEMS_PARAMETERS and name != LANGUAGE_PARAMETER]
    # The declared default documents the out-of-the-box value; the deployment's setting rules.
    asked = limit if "limit" in request.query_params else settings.items_default_limit
    page_size = min(asked, settings.items_max_limit)
    query = features.FeatureQuery(
        as_of=span.as_of(now) if span is not None else now,
        bbox=params.parse_bbox(bbox, heights=True) if bbox is not None else None,
        time_range=(span.start, span.end) if span is not None else None,
        equals=params.parse_filters(layer, filters),
        filter=filtering.parse_filter(filter_, filter_lang, filter_crs)
        if filter_ is not None else None,
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
    responses=_answers("A GeoJSON Feature.", GEOJSON, of_one=True),
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
    _json_request(request, f)
    missing = NotFound(_("Collection '{collection}' has no feature '{feature}'.",
                         collection=layer.id, feature=featureId))
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


# -- schemas: queryables (Part 3), schema (Part 5), one GeoJSON Feature (for GDAL) ---------------

_JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
_GEOMETRY_FORMATS = {"Point": "geometry-point", "LineString": "geometry-linestring",
                     "Polygon": "geometry-polygon"}


def _json_type(kind: str) -> dict:
    return {"string": {"type": "string"}, "number": {"type": "number"},
            "integer": {"type": "integer"}, "boolean": {"type": "boolean"},
            "date": {"type": "string", "format": "date"},
            "datetime": {"type": "string", "format": "date-time"}}[kind]


def _property_schemas(layer: Layer, *, roles: bool) -> dict:
    """``id``, the layer's properties and its geometry as JSON Schema, in the features' order."""
    found: dict = {"id": {"title": "id", "description": "The feature's id on this server",
                          "type": "integer", **({"x-ogc-role": "id"} if roles else {})}}
    for p in layer.properties:
        entry = {"title": p.name, **_json_type(p.type)}
        if p.description:
            entry["description"] = p.description
        if roles and p.name == layer.time_property:
            entry["x-ogc-role"] = "primary-instant"
        found[p.name] = entry
    found["geometry"] = {"title": "geometry",
                         "format": _GEOMETRY_FORMATS.get(layer.geometry_type, "geometry-any"),
                         "x-ogc-role": "primary-geometry"}
    return found


def _schema_response(request: Request, layer: Layer, body: dict) -> Response:
    return _json({"$schema": _JSON_SCHEMA, "$id": str(request.url.remove_query_params("f")),
                  "title": layer.title, "description": layer.description, **body},
                 media_type=SCHEMA)


_SCHEMA_RESPONSES = _answers("A JSON Schema.", SCHEMA, of_one=True)


def _queryables_body(layer: Layer) -> dict:
    return {"type": "object", "properties": _property_schemas(layer, roles=False),
            "additionalProperties": False}


def _schema_body(layer: Layer) -> dict:
    return {"type": "object", "properties": _property_schemas(layer, roles=True)}


def _feature_schema_body(layer: Layer) -> dict:
    properties = _property_schemas(layer, roles=False)
    properties.pop("geometry")
    return {
        "type": "object", "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "integer"},
            "geometry": {"type": "object", "description": f"A GeoJSON {layer.geometry_type} "
                         "in CRS84 (a Geometry: any type)"},
            "properties": {"type": "object", "properties": properties},
        }}


def _schema_route(path: str, name: str, summary: str, doc: str,
                  body: Callable[[Layer], dict]) -> None:
    """Add a route answering a collection's JSON Schema ``body(layer)`` (only ``f`` allowed)."""
    def route(request: Request, collectionId: CollectionId,  # noqa: N803
              f: FParam = None) -> Response:
        layer = _layer(collectionId)
        _json_request(request, f)
        return _schema_response(request, layer, body(layer))

    route.__doc__ = doc
    router.get(path, name=name, summary=summary, response_class=Response,
               responses=_SCHEMA_RESPONSES)(route)


_schema_route("/collections/{collectionId}/queryables", "ogc_queryables",
              "What a collection's features can be filtered by",
              "The queryables of `filter` (and of property parameters) with their types "
              "(Part 3).", _queryables_body)
_schema_route("/collections/{collectionId}/schema", "ogc_schema",
              "The properties of a collection's features and their types",
              "Every property of the features with its type and role (OGC API - Features "
              "Part 5).", _schema_body)
_schema_route("/collections/{collectionId}/feature-schema", "ogc_feature_schema",
              "One GeoJSON Feature of a collection, as a JSON Schema",
              "A GeoJSON Feature's schema: what GDAL's OAPIF driver reads to type the fields.",
              _feature_schema_body)


# -- an asset's history ---------------------------------------------------------------------------


@router.get(
    "/collections/{collectionId}/items/{featureId}/readings", name="ogc_item_readings",
    summary="An asset's readings (its condition and sensor history)",
    response_class=Response,
    responses=_answers("The readings, oldest first, as JSON or CSV.", JSON, CSV, of_one=True),
)
def item_readings(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    collectionId: CollectionId,  # noqa: N803
    featureId: Annotated[str, Path(description="The asset's id (an integer).")],  # noqa: N803
    metric: Annotated[list[str] | None, Query(
        description="Metrics to return (repeat or comma list), e.g. `pci`; all by default. "
        "An undeclared metric is a 400.", examples=["pci"])] = None,
    datetime_: Annotated[str | None, Query(
        alias="datetime", description="Only readings observed in this RFC 3339 instant or "
        "interval (`a/b`, `../b`, `a/..`; a date alone is that whole day).",
        examples=["2025-01-01T00:00:00Z/.."])] = None,
    limit: Annotated[int, Query(ge=1, description="Readings per page (at most the service's "
                                "TWIN_ITEMS_MAX_LIMIT).",
                                json_schema_extra={"maximum": MAX_LIMIT})] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Readings to skip.")] = 0,
    f: Annotated[Literal["json", "csv"] | None, Query(
        description="`json` (default) or `csv`.")] = None,
) -> Response:
    """An asset's readings by metric and time, paged (`next` link), as JSON or CSV."""
    layer = _layer(collectionId)
    _check_parameters(request, READINGS_PARAMETERS)
    missing = NotFound(_("Collection '{collection}' has no asset '{feature}' with readings.",
                         collection=layer.id, feature=featureId[:80]))
    if layer.table is None or not (featureId.isascii() and featureId.isdigit()):
        raise missing
    span = params.parse_datetime(datetime_) if datetime_ is not None else None
    page_size = min(limit, settings.items_max_limit)
    with engine.connect() as conn:
        asset = history.asset_of_layer(conn, layer.table, int(featureId))
        if asset is None:
            raise missing
        declared = history.metric_names(conn)
        wanted = params.parse_choices(metric, "metric", tuple(declared))
        rows, more = history.readings_page(
            conn, asset["id"], metrics=wanted, start=span.start if span else None,
            end=span.end if span else None, limit=page_size, offset=offset)
    links = [{"href": str(request.url), "rel": "self", "type": CSV if f == "csv" else JSON}]
    if more:
        links.append({"href": str(request.url.include_query_params(
            offset=offset + page_size, limit=page_size)), "rel": "next"})
    if offset > 0:
        links.append({"href": str(request.url.include_query_params(
            offset=max(offset - page_size, 0), limit=page_size)), "rel": "prev"})
    if f == "csv":
        lines = ["metric,unit,observed_at,value,source"]
        lines += [",".join((_csv_cell(r["metric"]), _csv_cell(r["unit"]),
                            _rfc3339(r["observed_at"]) or "", repr(r["value"]),
                            _csv_cell(r["source"]))) for r in rows]
        headers = {"Link": ", ".join(f'<{link["href"]}>; rel="{link["rel"]}"'
                                     for link in links[1:])} if len(links) > 1 else None
        return Response("\r\n".join(lines) + "\r\n", media_type=CSV, headers=headers)
    return _json({
        "collection": layer.id, "id": asset["id"], "external_id": asset["external_id"],
        "readings": [{**r, "observed_at": _rfc3339(r["observed_at"])} for r in rows],
        "numberReturned": len(rows), "links": links})


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\r\n') or text[:1] in ("=", "+", "-", "@"):
        text = '"' + text.replace('"', '""') + '"'
    return text


# -- the OpenAPI document of this OGC API ---------------------------------------------------------


def _items_parameters(layer: Layer, generic: list[dict]) -> list:
    # GDAL reads a collection's page size from a $ref'd `limit` (default, maximum), the
    # filter languages from `filter-lang`'s enum, and which properties it may push to the
    # server from the query parameters named like its fields.
    found: list[dict] = [{"$ref": "#/components/parameters/limit"}]
    for parameter in generic:
        name = parameter.get("name")
        if name in ("collectionId", "limit"):
            continue
        if name == "filter-lang":
            parameter = {**parameter, "schema": {"type": "string", "enum": [
                "cql2-text", "cql2-json", "cql-text"], "default": "cql2-text"}}
        found.append(parameter)
    for p in layer.properties:
        found.append({"name": p.name, "in": "query", "required": False,
                      "description": f"Keeps features whose {p.name} equals the value "
                      "(repeat for any of several).",
                      "schema": _json_type(p.type), "style": "form", "explode": True})
    return found


@router.get("/api", name="ogc_openapi", summary="The OpenAPI document of this OGC API",
            response_class=Response,
            responses=_answers("OpenAPI 3.0, one items path per collection.", OPENAPI))
def openapi(request: Request, settings: SettingsDep, f: FParam = None) -> Response:
    """The OGC API part of the service's OpenAPI document, with a path per collection.

    Paths are relative to the server ``.../ogc``, as OGC API clients (GDAL, QGIS) look them up.
    """
    _check_parameters(request, {"f"})
    whole = request.app.openapi()
    prefix = router.prefix
    paths = {path[len(prefix):] or "/": item for path, item in whole["paths"].items()
             if path == prefix or path.startswith(prefix + "/")}
    generic = paths.get("/collections/{collectionId}/items", {}).get("get", {})
    if generic:
        paths["/collections/{collectionId}/items"] = {"get": {**generic, "parameters": [
            {"$ref": "#/components/parameters/limit"} if p.get("name") == "limit" else p
            for p in generic.get("parameters", [])]}}
    for layer in LAYERS.values():
        paths[f"/collections/{layer.id}/items"] = {"get": {
            **{k: v for k, v in generic.items() if k not in ("parameters", "operationId")},
            "summary": f"{layer.title}: features",
            "operationId": f"ogc_items_{layer.id}",
            "parameters": _items_parameters(layer, generic.get("parameters", [])),
        }}
    document = {
        "openapi": whole.get("openapi", "3.0.3"),
        "info": {**whole.get("info", {}), "title": f"{request.app.title}: OGC API - Features"},
        "servers": [{"url": str(request.url_for("ogc_landing"))}],
        "paths": paths,
        "components": {
            **whole.get("components", {}),
            "parameters": {"limit": {
                "name": "limit", "in": "query", "required": False,
                "description": f"Features per page: {settings.items_default_limit} by default, "
                f"at most {settings.items_max_limit} (larger values are taken as the maximum).",
                "schema": {"type": "integer", "minimum": 1,
                           "maximum": settings.items_max_limit,
                           "default": settings.items_default_limit},
                "style": "form", "explode": False}},
        },
    }
    return _json(document, media_type=OPENAPI)
