"""Alerts for crews: list and read them, act on them, and follow their changes as they happen."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from geo import alerts
from geo.errors import InvalidInput
from service import params
from service.deps import CrewDep, EngineDep, ReaderDep, SettingsDep

log = logging.getLogger("twin.service.alerts")
router = APIRouter(tags=["alerts"])

GEOJSON = "application/geo+json"
MAX_ID = 2**63 - 1  # alert ids are bigint
MAX_NOTE_CHARS = 4000
STREAM_POLL_S = 1.0
STREAM_HEARTBEAT_S = 15.0
STREAM_RETRY_MS = 3000
HISTORY_FIELDS = ("at", "actor", "from_status", "to_status", "note")
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}

AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="The alert's id.")]


class ActionNote(BaseModel):
    """What a crew member says when acting on an alert."""

    note: str | None = Field(None, max_length=MAX_NOTE_CHARS,
                             description="Why, or what was done; required to dismiss.")


# -- listing --------------------------------------------------------------------------------


def _feature(alert: dict) -> dict:
    properties = {k: v for k, v in alert.items() if k not in ("id", "geometry", "history")}
    feature = {"type": "Feature", "id": alert["id"], "geometry": alert["geometry"],
               "properties": {"id": alert["id"], **properties}}
    if "history" in alert:
        feature["history"] = [{k: event[k] for k in HISTORY_FIELDS} for event in alert["history"]]
    return jsonable_encoder(feature)


@router.get(
    "/alerts",
    summary="Alerts, filtered by area, status, severity and kind",
    response_class=JSONResponse,
    responses={200: {"description": "A GeoJSON FeatureCollection of alerts, newest change "
                                    "first.", "content": {GEOJSON: {}}},
               400: {"description": "A filter cannot be used.", **_PROBLEM}},
)
def list_alerts(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    caller: ReaderDep,
    bbox: Annotated[str | None, Query(description="west,south,east,north in degrees "
                                      "(WGS 84).", examples=["108.5,32.5,108.6,32.55"])] = None,
    status: Annotated[list[str] | None, Query(description="Statuses to show (repeat or comma "
                                              f"list): {', '.join(alerts.STATUSES)}.")] = None,
    severity: Annotated[list[str] | None, Query(description="Severities to show (repeat or "
                                                f"comma list): "
                                                f"{', '.join(alerts.SEVERITIES)}.")] = None,
    kind: Annotated[list[str] | None, Query(description="Kinds to show (repeat or comma list), "
                                            "e.g. manhole_tilt.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000, description="Most alerts to "
                                       "return (the service's maximum applies).")] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Alerts to skip.")] = 0,
) -> JSONResponse:
    """Alerts as a GeoJSON FeatureCollection, each with its asset's ``asset_external_id``."""
    where = alerts.AlertFilter(
        bbox=params.parse_bbox(bbox) if bbox is not None and bbox.strip() else None,
        statuses=params.parse_choices(status, "status", alerts.STATUSES),
        severities=params.parse_choices(severity, "severity", alerts.SEVERITIES),
        kinds=params.parse_choices(kind, "kind"),
    )
    limit = min(limit or settings.items_default_limit, settings.items_max_limit)
    with engine.connect() as conn:
        found = alerts.list_alerts(conn, where, limit=limit, offset=offset)
    links = [{"rel": "self", "type": GEOJSON, "href": str(request.url)}]
    if len(found) == limit:
        links.append({"rel": "next", "type": GEOJSON,
                      "href": str(request.url.include_query_params(offset=offset + limit))})
    return JSONResponse({"type": "FeatureCollection", "numberReturned": len(found),
                         "features": [_feature(a) for a in found], "links": links},
                        media_type=GEOJSON)


# -- the stream -----------------------------------------------------------------------------


def _events_after(engine: Engine, after: int) -> list[dict]:
    with engine.connect() as conn:
        rows = alerts.events_after(conn, after)
    return [{"event_id": r["event_id"], "alert_id": r["id"],
             **{k: v for k, v in r.items() if k not in ("event_id", "id")}} for r in rows]


def _last_event_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return alerts.last_event_id(conn)


async def alert_events(request: Request, engine: Engine, after: int) -> AsyncIterator[str]:
    """Server-sent events of alert changes after event ``after``, until the client leaves.

    The database is polled (``events_after``), so changes made by any process or worker
    arrive; each poll runs in a worker thread so the event loop never waits on it.
    """
    yield f"retry: {STREAM_RETRY_MS}\n: alert changes after event {after}\n\n"
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        try:
            events = await run_in_threadpool(_events_after, engine, after)
        except sa.exc.DBAPIError as error:  # the database is away: say so, keep polling
            log.warning("alert stream cannot poll: %s", str(error.orig).strip()[:200])
            events = []
            yield ": the database is not reachable; retrying\n\n"
        for event in events:
            after = event["event_id"]
            data = json.dumps(jsonable_encoder(event), ensure_ascii=False)
            yield f"id: {after}\nevent: alert\ndata: {data}\n\n"
        now = time.monotonic()
        if events:
            quiet_since = now
        elif now - quiet_since >= STREAM_HEARTBEAT_S:
            yield ": heartbeat\n\n"
            quiet_since = now
        await anyio.sleep(STREAM_POLL_S)


@router.get(
    "/alerts/stream",
    summary="Follow new and changed alerts (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"description": "`text/event-stream`: one `alert` event per change, its "
                                    "`id` the event id; a comment every 15 s keeps it open.",
                     "content": {"text/event-stream": {}}},
               400: {"description": "Last-Event-ID or after is not an event id.", **_PROBLEM}},
)
async def stream_alerts(
    request: Request,
    engine: EngineDep,
    caller: ReaderDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Send the changes after "
                                       "this event id (default: from now on).")] = None,
    last_event_id: Annotated[str | None, Header(description="Set by EventSource when it "
                                                "reconnects; resumes after that event.")] = None,
) -> StreamingResponse:
    """New and changed alerts as they happen, resumable with ``Last-Event-ID`` or ``?after=``.

    Each event is ``event: alert`` with ``id:`` the change's event id and ``data:`` the change
    as JSON (alert_id, kind, severity, status, reason, actor, from_status, to_status, note, at).
    """
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit() or int(text) > MAX_ID:
            raise InvalidInput("Last-Event-ID must be an event id (a whole number).")
        after = int(text)
    if after is None:
        after = await run_in_threadpool(_last_event_id, engine)
    return StreamingResponse(alert_events(request, engine, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- one alert and the actions on it ---------------------------------------------------------


@router.get(
    "/alerts/{alert_id}",
    summary="One alert with its history",
    response_class=JSONResponse,
    responses={200: {"description": "A GeoJSON Feature with a `history` array of "
                                    "{at, actor, from_status, to_status, note}.",
                     "content": {GEOJSON: {}}},
               404: {"description": "No such alert.", **_PROBLEM}},
)
def get_alert(alert_id: AlertId, engine: EngineDep, caller: ReaderDep) -> JSONResponse:
    """The alert, where it is, why it was raised, and every change made to it since."""
    with engine.connect() as conn:
        alert = alerts.get_alert(conn, alert_id)
    return JSONResponse(_feature(alert), media_type=GEOJSON)


def _act(engine: Engine, alert_id: int, action: str, actor: str | None, body: ActionNote | None
         ) -> JSONResponse:
    assert actor is not None  # the crew role is only ever a named key
    note = body.note if body else None
    if note is not None:
        note = params.clean_text(note, "note").strip() or None
    if action == "dismiss" and note is None:
        raise InvalidInput("Dismissing an alert needs a note saying why "
                           '(a JSON body {"note": "..."}).')
    with engine.begin() as conn:
        alert = alerts.act(conn, alert_id, action, actor=actor, note=note)
    return JSONResponse(_feature(alert), media_type=GEOJSON)


_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The alert after the action, with its history.",
          "content": {GEOJSON: {}}},
    400: {"description": "The body cannot be used (dismiss needs a note).", **_PROBLEM},
    401: {"description": "No valid API key.", **_PROBLEM},
    403: {"description": "The key's role is below crew.", **_PROBLEM},
    404: {"description": "No such alert.", **_PROBLEM},
    409: {"description": "The alert's status does not allow this action.", **_PROBLEM},
}
NoteBody = Annotated[ActionNote | None, Body(description="An optional note.")]


@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an open alert (crew)",
             response_class=JSONResponse, responses=_ACTION_RESPONSES)
def acknowledge(alert_id: AlertId, engine: EngineDep, caller: CrewDep,
                body: NoteBody = None) -> JSONResponse:
    """Say the alert has been seen (open -> acknowledged); the key's name is the actor."""
    return _act(engine, alert_id, "acknowledge", caller.name, body)


@router.post("/alerts/{alert_id}/start", summary="Start work on an alert (crew)",
             response_class=JSONResponse, responses=_ACTION_RESPONSES)
def start(alert_id: AlertId, engine: EngineDep, caller: CrewDep,
          body: NoteBody = None) -> JSONResponse:
    """Say work has begun (open or acknowledged -> in progress)."""
    return _act(engine, alert_id, "start", caller.name, body)


@router.post("/alerts/{alert_id}/resolve", summary="Resolve an alert (crew)",
             response_class=JSONResponse, responses=_ACTION_RESPONSES)
def resolve(alert_id: AlertId, engine: EngineDep, caller: CrewDep,
            body: NoteBody = None) -> JSONResponse:
    """Say the problem is fixed (any active status -> resolved)."""
    return _act(engine, alert_id, "resolve", caller.name, body)


@router.post("/alerts/{alert_id}/dismiss", summary="Dismiss an alert, saying why (crew)",
             response_class=JSONResponse, responses=_ACTION_RESPONSES)
def dismiss(alert_id: AlertId, engine: EngineDep, caller: CrewDep,
            body: Annotated[ActionNote, Body(description="Why it is dismissed.")]
            ) -> JSONResponse:
    """Close the alert as not needing work (any active status -> dismissed), saying why.

    The note is required: who (the key's name), when and why are kept in its history.
    """
    return _act(engine, alert_id, "dismiss", caller.name, body)
