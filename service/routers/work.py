"""The worklist: open alerts in the order to fix them, with why; and the planning backlog."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from geo import alerts, worklist
from geo.settings import LoopSettings
from predict import priority
from service import params
from service.deps import CREW_KEY_RESPONSES, CrewDep, EngineDep, SettingsDep
from service.errors import problem_response

router = APIRouter(tags=["work"])
GEOJSON = "application/geo+json"
SORTABLE = ("priority", "severity", "opened_at", "updated_at", "due_on", "kind", "id")
_SEVERITY_RANK = {s: i for i, s in enumerate(alerts.SEVERITIES)}
ITEM_FIELDS = ("id", "rank", "tier", "priority", "why_first", "kind", "severity", "status",
               "reason", "asset_layer", "asset_id", "asset_external_id", "street_name",
               "road_class", "assignee", "due_on", "opened_at", "updated_at", "evidence_at",
               "district", "community", "sub_district")


def _sort_value(item: dict, key: str):
    if key == "severity":
        return _SEVERITY_RANK.get(item["severity"], -1)
    return item.get(key)


def _sorted(items: list[dict], keys: tuple[tuple[str, bool], ...]) -> list[dict]:
    # Stable sorts from the last key to the first; missing values go last either way.
    for key, descending in reversed(keys):
        present = [i for i in items if _sort_value(i, key) is not None]
        missing = [i for i in items if _sort_value(i, key) is None]
        present.sort(key=lambda i, k=key: _sort_value(i, k), reverse=descending)
        items = present + missing
    return items


def _worklist(engine, bbox, where: alerts.AlertFilter, keys, capacity: int,
              districts: tuple[str, ...] = ()) -> list[dict]:
    with engine.connect() as conn:
        rows = worklist.open_alerts(conn, bbox)
    ranked = priority.rank(rows, datetime.now(UTC).date(), capacity)
    chosen = [i for i in ranked if i["in_bbox"]
              and (not where.kinds or i["kind"] in where.kinds)
              and (not where.severities or i["severity"] in where.severities)
              and (not where.statuses or i["status"] in where.statuses)
              and (not where.assignees or i["assignee"] in where.assignees)
              and (not districts or i["district"] in districts)]
    return _sorted(chosen, keys) if keys else chosen


@router.get(
    "/work",
    summary="The worklist: open alerts in the order to fix them, each saying why (crew)",
    response_class=JSONResponse,
    responses={200: {"description": "A GeoJSON FeatureCollection of open alerts with "
                                    "`priority`, `why_first`, `rank` and `tier`.",
                     "content": {GEOJSON: {}}},
               400: problem_response("A filter cannot be used."),
               **CREW_KEY_RESPONSES},
)
async def get_work(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    caller: CrewDep,
    kind: Annotated[list[str] | None, Query(description="Kinds (repeat or comma list).")
                    ] = None,
    severity: Annotated[list[str] | None, Query(description="Severities (repeat or comma "
                                                "list).")] = None,
    status: Annotated[list[str] | None, Query(description="Open statuses: "
                                              f"{', '.join(alerts.ACTIVE)}.")] = None,
    assignee: Annotated[list[str] | None, Query(description="Assignees (repeat or comma "
                                                "list).")] = None,
    bbox: Annotated[str | None, Query(description="west,south,east,north in degrees.")
                    ] = None,
    district: Annotated[list[str] | None, Query(description="Districts by name (repeat or "
                                                "comma list): alerts whose `district`, the "
                                                "finest district they lie in, is one of them.")
                        ] = None,
    sortby: Annotated[str | None, Query(description="Sort keys, `-` for descending: "
                                        f"{', '.join(SORTABLE)} (default -priority).")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JSONResponse:
    """Open alerts ranked by priority: severity, exposure and urgency, explained per item.

    ``why_first`` lists the reasons with their points; ``tier`` cuts the ranked list into
    weeks of the crews' capacity (``TWIN_WEEKLY_CAPACITY``, default 20): ``this_week``,
    ``next_week``, ``later``. Ranks and tiers are over every open alert, before filters, so a
    filtered list shows each alert's place in the whole week.
    """
    where = alerts.AlertFilter(
        statuses=params.parse_choices(status, "status", alerts.ACTIVE),
        severities=params.parse_choices(severity, "severity", alerts.SEVERITIES),
        kinds=params.parse_choices(kind, "kind"),
        assignees=params.parse_choices(assignee, "assignee"))
    box = params.parse_bbox(bbox) if bbox is not None and bbox.strip() else None
    keys = (params.parse_sort_keys(sortby, SORTABLE, "a worklist sort key")
            if sortby is not None and sortby.strip() else ())
    capacity = LoopSettings().weekly_capacity
    districts = tuple(params.parse_choices(district, "district") or ())
    items = await run_in_threadpool(_worklist, engine, box, where, keys, capacity, districts)
    limit = min(limit or settings.items_default_limit, settings.items_max_limit)
    page = items[offset:offset + limit]
    features = [{"type": "Feature", "id": i["id"], "geometry": i["geometry"],
                 "properties": {k: i.get(k) for k in ITEM_FIELDS}} for i in page]
    links = [{"rel": "self", "type": GEOJSON, "href": str(request.url)}]
    if offset + limit < len(items):
        links.append({"rel": "next", "type": GEOJSON,
                      "href": str(request.url.include_query_params(offset=offset + limit))})
    return JSONResponse(jsonable_encoder({
        "type": "FeatureCollection", "numberMatched": len(items), "numberReturned": len(page),
        "weekly_capacity": capacity, "features": features, "links": links}),
        media_type=GEOJSON)


@router.get(
    "/work/backlog",
    summary="The planning backlog: streets below the condition threshold (crew, planner)",
    response_class=JSONResponse,
    responses={200: {"description": "A GeoJSON FeatureCollection of streets, worst first.",
                     "content": {GEOJSON: {}}},
               400: problem_response("A parameter cannot be used."),
               **CREW_KEY_RESPONSES},
)
async def get_backlog(
    engine: EngineDep,
    settings: SettingsDep,
    caller: CrewDep,
    bbox: Annotated[str | None, Query(description="west,south,east,north in degrees.")
                    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JSONResponse:
    """Streets whose latest survey since their last resurfacing is below the threshold.

    Resurfacing to plan rather than alerts: also published as the layer ``backlog`` (tiles,
    OGC API, exports). ``alerted`` says whether an alert on the street is open (a fresh
    crossing is both).
    """
    box = params.parse_bbox(bbox) if bbox is not None and bbox.strip() else None
    limit = min(limit or settings.items_max_limit, settings.items_max_limit)

    def read() -> list[dict]:
        with engine.connect() as conn:
            return worklist.backlog(conn, bbox=box, limit=limit, offset=offset)

    streets = await run_in_threadpool(read)
    features = [{"type": "Feature", "id": s["id"], "geometry": s["geometry"],
                 "properties": {k: v for k, v in s.items() if k != "geometry"}}
                for s in streets]
    return JSONResponse(jsonable_encoder({"type": "FeatureCollection",
                                          "numberReturned": len(features),
                                          "features": features}), media_type=GEOJSON)
