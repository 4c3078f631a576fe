"""Alerts for crews: list and read them, act on them, and follow their changes as they happen."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from geo import alerts, filtering, work
from geo.errors import Conflict, InvalidInput, NotFound
from geo.i18n import _
from geo.settings import LoopSettings
from geo.text_rules import check_text
from service import params
from service.deps import (
    CREW_KEY_RESPONSES,
    Caller,
    CrewDep,
    EngineDep,
    ReaderDep,
    SettingsDep,
    require,
)
from service.errors import problem_response
from service.photos import check_photo, keep_photo, photo_dir
from service.privacy import mask_personal

log = logging.getLogger("twin.service.alerts")
router = APIRouter(tags=["alerts"])

GEOJSON = "application/geo+json"
MAX_ID = 2**63 - 1  # alert ids are bigint
MAX_NOTE_CHARS = 4000
MAX_NAME_CHARS = 200  # a crew, team or person
STREAM_POLL_S = 1.0
STREAM_WAKE_S = 0.05  # how often a waiting stream looks at the alerts table's version
STREAM_HEARTBEAT_S = 15.0
STREAM_RETRY_MS = 3000
HISTORY_FIELDS = ("at", "actor", "from_status", "to_status", "note")

AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="The alert's id.")]


class WorkIn(BaseModel):
    """What was done to the asset (a work record), given when resolving."""

    action: str = Field(description="What was done, from the asset's vocabulary: "
                        + "; ".join(f"{layer}: {', '.join(actions)}"
                                    for layer, actions in work.ACTIONS.items()) + ".")
    done_at: datetime | None = Field(None, description="When it was done (default: now); "
                                     "RFC 3339 with an offset.")
    done_by: str | None = Field(None, max_length=MAX_NAME_CHARS,
                                description="Who did it (default: the key's name).")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS, description="What was found.")


class ActionNote(BaseModel):
    """What a crew member says when acting on an alert."""

    note: str | None = Field(None, max_length=MAX_NOTE_CHARS,
                             description="Why, or what was done; required to dismiss.")
    work: WorkIn | None = Field(None, description="Resolve only: the work record. A "
                                "resurfacing starts the street's new condition baseline; a "
                                "cleared pile is closed.")


class Assignment(BaseModel):
    """Who is to do an alert's work and by when (fields left out stay as they are)."""

    model_config = {"extra": "forbid"}

    assignee: str | None = Field(None, max_length=MAX_NAME_CHARS,
                                 description="A crew or team; null unassigns.")
    due_on: date | None = Field(None, description="Due date (YYYY-MM-DD); null clears it.")


# -- listing --------------------------------------------------------------------------------


def _noted(item: dict, staff: bool) -> dict:
    # Crews write what they were told ("resident at 137... says"); only staff read it whole.
    return item if staff or not item.get("note") else {**item,
                                                       "note": mask_personal(item["note"])}


def _feature(alert: dict, *, staff: bool) -> dict:
    """The alert as GeoJSON; notes with phone numbers and the like masked unless ``staff``."""
    properties = {k: v for k, v in alert.items() if k not in ("id", "geometry", "history")}
    feature = {"type": "Feature", "id": alert["id"], "geometry": alert["geometry"],
               "properties": {"id": alert["id"], **properties}}
    if "history" in alert:
        # An event says its evidence when it has some (an alert raised again names what).
        feature["history"] = [_noted({**{k: event[k] for k in HISTORY_FIELDS},
                                      **({"evidence": event["evidence"]}
                                         if event.get("evidence") else {})}, staff)
                              for event in alert["history"]]
    if "work" in alert:
        feature["work"] = [_noted(record, staff) for record in alert["work"]]
    if "photos" in alert:
        feature["photos"] = alert["photos"]
    return jsonable_encoder(feature)


@router.get(
    "/alerts",
    summary="Alerts, filtered by area, status, severity and kind",
    response_class=JSONResponse,
    responses={200: {"description": "A GeoJSON FeatureCollection of alerts, newest change "
                                    "first.", "content": {GEOJSON: {}}},
               400: problem_response("A filter cannot be used.")},
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
    assignee: Annotated[list[str] | None, Query(description="Assignees to show (repeat or "
                                                "comma list).")] = None,
    sortby: Annotated[str | None, Query(description="Sort keys, `-` before one for "
                                        f"descending: {', '.join(alerts.SORTABLE)} (default "
                                        "-updated_at).", examples=["-severity,opened_at"])
                      ] = None,
    filter_: Annotated[str | None, Query(
        alias="filter", description="A CQL2 filter over the alerts' columns ("
        f"{', '.join(alerts.FIELDS)}), AND-ed with the other parameters.",
        examples=["severity IN ('high','critical') AND opened_at > DATE('2026-01-01')"])
                       ] = None,
    filter_lang: Annotated[Literal["cql2-text", "cql2-json"] | None, Query(
        alias="filter-lang", description="`cql2-text` (default) or `cql2-json`.")] = None,
) -> JSONResponse:
    """Alerts as a GeoJSON FeatureCollection, each with its asset's ``asset_external_id``."""
    where = alerts.AlertFilter(
        bbox=params.parse_bbox(bbox) if bbox is not None and bbox.strip() else None,
        statuses=params.parse_choices(status, "status", alerts.STATUSES),
        severities=params.parse_choices(severity, "severity", alerts.SEVERITIES),
        kinds=params.parse_choices(kind, "kind"),
        assignees=params.parse_choices(assignee, "assignee"),
        filter=filtering.parse_filter(filter_, filter_lang) if filter_ is not None else None,
    )
    keys = (params.parse_sort_keys(sortby, alerts.SORTABLE, "an alert sort key")
            if sortby is not None and sortby.strip() else ())
    limit = min(limit or settings.items_default_limit, settings.items_max_limit)
    with engine.connect() as conn:
        found = alerts.list_alerts(conn, where, limit=limit, offset=offset, sortby=keys)
    links = [{"rel": "self", "type": GEOJSON, "href": str(request.url)}]
    if len(found) == limit:
        links.append({"rel": "next", "type": GEOJSON,
                      "href": str(request.url.include_query_params(offset=offset + limit))})
    return JSONResponse({"type": "FeatureCollection", "numberReturned": len(found),
                         "features": [_feature(a, staff=caller.has("crew")) for a in found],
                         "links": links},
                        media_type=GEOJSON)


# -- the stream -----------------------------------------------------------------------------


# A gap in event ids (a later id committed before an earlier one) holds the stream back until
# the transactions that might fill it have ended, at most this long (then it is passed over).
STREAM_GAP_WAIT_S = 10.0


class _Gap(NamedTuple):
    """A missing event id after ``after``, first seen at ``seen_at`` with ``running`` open."""

    after: int
    seen_at: float
    running: frozenset[int]


def _events_after(engine: Engine, after: int, gap: _Gap | None
                  ) -> tuple[list[dict], _Gap | None]:
    """The events after ``after`` that can be sent now, in id order with no id skipped.

    Event ids are taken in order but committed in any order: id 11 may be visible while 10's
    transaction is still open. Sending 11 would make a stream resumed after it (Last-Event-ID,
    on any node) never send 10, so the stream stops before a gap until every transaction that
    was running when the gap was seen has ended (a rolled-back id leaves a gap for good), at
    most ``STREAM_GAP_WAIT_S``.
    """
    ready: list[dict] = []
    with engine.connect() as conn:
        for row in alerts.events_after(conn, after):
            if row["event_id"] != after + 1:
                if gap is None or gap.after != after:
                    gap = _Gap(after, time.monotonic(), alerts.transactions_in_progress(conn))
                    break
                if (gap.running & alerts.transactions_in_progress(conn)
                        and time.monotonic() - gap.seen_at < STREAM_GAP_WAIT_S):
                    break  # the missing ids may still come
            ready.append({"event_id": row["event_id"], "alert_id": row["id"],
                          **{k: v for k, v in row.items() if k not in ("event_id", "id")}})
            after, gap = row["event_id"], None
    return ready, gap


def _last_event_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return alerts.last_event_id(conn)


def _alerts_version(request: Request) -> int:
    return request.app.state.changes.version("alerts")


async def _until_alerts_change(request: Request, seen_version: int) -> None:
    """Wait until the alerts table changes (its NOTIFY reached the service), at most a poll.

    Any process's change bumps the table's version (service/changes.py), so a new alert is
    sent within a few tens of milliseconds; the poll stays as the backstop.
    """
    deadline = time.monotonic() + STREAM_POLL_S
    while time.monotonic() < deadline:
        if _alerts_version(request) != seen_version:
            return
        await anyio.sleep(STREAM_WAKE_S)


async def alert_events(request: Request, engine: Engine, after: int, *, staff: bool
                       ) -> AsyncIterator[str]:
    """Server-sent events of alert changes after event ``after``, until the client leaves.

    The database is read (``events_after``) when the alerts table's NOTIFY arrives, and at
    least every second, so changes made by any process or worker arrive; each read runs in a
    worker thread so the event loop never waits on it.
    """
    yield f"retry: {STREAM_RETRY_MS}\n: alert changes after event {after}\n\n"
    quiet_since = time.monotonic()
    seen_version = _alerts_version(request)
    gap: _Gap | None = None
    while not await request.is_disconnected():
        try:
            events, gap = await run_in_threadpool(_events_after, engine, after, gap)
        except sa.exc.DBAPIError as error:  # the database is away: say so, keep polling
            log.warning("alert stream cannot poll: %s", str(error.orig).strip()[:200])
            events = []
            yield ": the database is not reachable; retrying\n\n"
        for event in events:
            after = event["event_id"]
            data = json.dumps(jsonable_encoder(_noted(event, staff)), ensure_ascii=False)
            yield f"id: {after}\nevent: alert\ndata: {data}\n\n"
        now = time.monotonic()
        if events:
            quiet_since = now
        elif now - quiet_since >= STREAM_HEARTBEAT_S:
            yield ": heartbeat\n\n"
            quiet_since = now
        await _until_alerts_change(request, seen_version)
        seen_version = _alerts_version(request)


@router.get(
    "/alerts/stream",
    summary="Follow new and changed alerts (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"description": "`text/event-stream`: one `alert` event per change, its "
                                    "`id` the event id; a comment every 15 s keeps it open.",
                     "content": {"text/event-stream": {}}},
               400: problem_response("Last-Event-ID or after is not an event id.")},
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
            raise InvalidInput(_("Last-Event-ID must be an event id (a whole number)."))
        after = int(text)
    if after is None:
        after = await run_in_threadpool(_last_event_id, engine)
    return StreamingResponse(alert_events(request, engine, after,
                                          staff=caller.has("crew")), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- one alert and the actions on it ---------------------------------------------------------


@router.get(
    "/alerts/{alert_id}",
    summary="One alert with its history",
    response_class=JSONResponse,
    responses={200: {"description": "A GeoJSON Feature with a `history` array of "
                                    "{at, actor, from_status, to_status, note}.",
                     "content": {GEOJSON: {}}},
               404: problem_response("No such alert.")},
)
def get_alert(alert_id: AlertId, engine: EngineDep, caller: ReaderDep) -> JSONResponse:
    """The alert with its history, work records and photos.

    Where it is, why it was raised, every change made to it since, the work recorded on it
    and its photos (listed here; each is served to callers with a key). Below the crew role,
    phone numbers, e-mail addresses and ID numbers in notes are masked.
    """
    return JSONResponse(_feature(_full_alert(engine, alert_id), staff=caller.has("crew")),
                        media_type=GEOJSON)


def _full_alert(engine: Engine, alert_id: int) -> dict:
    with engine.connect() as conn:
        alert = alerts.get_alert(conn, alert_id)
        alert["work"] = work.records_of_alert(conn, alert_id)
        alert["photos"] = [{**p, "href": f"/photos/{p['id']}"}
                           for p in work.photos_of_alert(conn, alert_id)]
    return alert


def _act(engine: Engine, alert_id: int, action: str, actor: str | None, body: ActionNote | None
         ) -> JSONResponse:
    assert actor is not None  # the crew role is only ever a named key
    note = body.note if body else None
    if note is not None:
        note = check_text(note, "note", max_chars=MAX_NOTE_CHARS, free_text=True).strip() or None
    if action == "dismiss" and note is None:
        raise InvalidInput(_("Dismissing an alert needs a note saying why (a JSON body "
                             "{example}).", example='{"note": "..."}'))
    done = body.work if body else None
    if done is not None and action != "resolve":
        raise InvalidInput(_("A work record goes with resolving an alert, not with "
                             "'{action}'.", action=action))
    with engine.begin() as conn:
        if done is not None:
            _record_work(conn, alert_id, actor, done)
        alerts.act(conn, alert_id, action, actor=actor, note=note)
    return JSONResponse(_feature(_full_alert(engine, alert_id), staff=True),
                        media_type=GEOJSON)


def _record_work(conn, alert_id: int, actor: str, done: WorkIn) -> None:
    target = work.alert_asset(conn, alert_id)
    if target is None:
        raise NotFound(_("There is no alert {id}.", id=alert_id))
    work.check_action(target.asset_layer, done.action)
    done_at = done.done_at or datetime.now(UTC)
    if done_at.tzinfo is None:
        raise InvalidInput(_("work.done_at needs a UTC offset, e.g. "
                             "2026-12-07T09:30:00+08:00."))
    if done_at > datetime.now(UTC) + timedelta(minutes=5):
        raise InvalidInput(_("work.done_at {when} is in the future.", when=done_at.isoformat()))
    done_by = (check_text(done.done_by, "work.done_by", max_chars=MAX_NAME_CHARS).strip()
               if done.done_by else "")
    work_note = (check_text(done.note, "work.note", max_chars=MAX_NOTE_CHARS,
                            free_text=True).strip() if done.note else None)
    work.record(conn, alert_id=alert_id, asset_layer=target.asset_layer,
                asset_id=target.asset_id, action=done.action, done_at=done_at,
                done_by=done_by or actor, note=work_note or None, recorded_by=actor)


_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The alert after the action, with its history.",
          "content": {GEOJSON: {}}},
    400: problem_response("The body cannot be used (dismiss needs a note)."),
    **CREW_KEY_RESPONSES,
    404: problem_response("No such alert."),
    409: problem_response("The alert's status does not allow this action."),
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


@router.post("/alerts/{alert_id}/resolve", summary="Resolve an alert with a work record (crew)",
             response_class=JSONResponse, responses=_ACTION_RESPONSES)
def resolve(alert_id: AlertId, engine: EngineDep, caller: CrewDep,
            body: NoteBody = None) -> JSONResponse:
    """Say the problem is fixed (any active status -> resolved), with what was done.

    ``work`` is the work record: ``action`` from the asset's vocabulary, ``done_at``,
    ``done_by`` and a note. It changes the twin: a resurfaced street starts a new condition
    baseline (surveys before it no longer count), a cleared pile is closed. The alert is
    raised again only on evidence observed after this (a newer reading or forecast that
    crosses again), and its history then names that evidence.
    """
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


# -- assignment and photos --------------------------------------------------------------------


@router.patch(
    "/alerts/{alert_id}", summary="Assign an alert to a crew, with a due date (crew)",
    response_class=JSONResponse, responses={
        **_ACTION_RESPONSES,
        409: problem_response("The alert is resolved or dismissed.")})
def assign(alert_id: AlertId, engine: EngineDep, caller: CrewDep,
           body: Annotated[Assignment, Body(description="assignee and/or due_on.")]
           ) -> JSONResponse:
    """Set who does the work (``assignee``) and by when (``due_on``); kept in the history."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidInput(_("Say what to change: {example}.",
                             example='{"assignee": "...", "due_on": "YYYY-MM-DD"}'))
    if changes.get("assignee") is not None:
        changes["assignee"] = check_text(changes["assignee"], "assignee",
                                         max_chars=MAX_NAME_CHARS).strip() or None
    assert caller.name is not None  # the crew role is only ever a named key
    with engine.begin() as conn:
        alerts.assign(conn, alert_id, actor=caller.name, changes=changes)
    return JSONResponse(_feature(_full_alert(engine, alert_id), staff=True),
                        media_type=GEOJSON)


@router.post(
    "/alerts/{alert_id}/photos", summary="Add a photo to an alert or its work record (crew)",
    status_code=201, response_class=JSONResponse, responses={
        201: {"description": "The photo's record, with its `href`."},
        **{k: v for k, v in _ACTION_RESPONSES.items() if k != 200}})
def add_photo(alert_id: AlertId, engine: EngineDep, caller: CrewDep, photo: UploadFile,
              work_record: Annotated[int | None, Query(
                  ge=1, le=MAX_ID, description="A work record of this alert to attach it to "
                  "(default: the alert).")] = None) -> JSONResponse:
    """Upload one JPEG, PNG or WebP (multipart field ``photo``); checked by its bytes and size.

    Photos are kept by the twin (under TWIN_HOME/photos unless TWIN_PHOTO_DIR is set) and
    served only to callers with a key, never to anonymous readers.
    """
    limit = LoopSettings().photo_max_bytes
    data, media, suffix = check_photo(photo.file.read(limit + 1), limit)
    with engine.begin() as conn:
        if work.alert_asset(conn, alert_id) is None:
            raise NotFound(_("There is no alert {id}.", id=alert_id))
        if work_record is not None and work.work_record_alert(conn, work_record) != alert_id:
            raise InvalidInput(_("work_record: {record} is not a work record of alert {id}.",
                                 record=work_record, id=alert_id))
        digest, relative = keep_photo(data, suffix)
        assert caller.name is not None  # the crew role is only ever a named key
        stored = work.add_photo(conn, alert_id=None if work_record else alert_id,
                                work_record_id=work_record, media_type=media, size=len(data),
                                sha256=digest, path=relative, uploaded_by=caller.name)
    return JSONResponse(jsonable_encoder({**stored, "href": f"/photos/{stored['id']}"}),
                        status_code=201)


@router.get("/photos/{photo_id}", summary="A photo of an alert (any key)",
            response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
                       401: problem_response("No valid API key."),
                       404: problem_response("No such photo.")})
def get_photo(photo_id: Annotated[int, Path(ge=1, le=MAX_ID)], engine: EngineDep,
              caller: Annotated[Caller, Depends(require("viewer"))]) -> FileResponse:
    """The photo's bytes: for callers with a key only, whatever the service's read setting."""
    with engine.connect() as conn:
        found = work.photo(conn, photo_id)
    if found is None:
        raise NotFound(_("There is no photo {id}.", id=photo_id))
    path = photo_dir() / found.path
    if not path.is_file():
        raise Conflict(_("Photo {id} is recorded but its file is missing from {where}.",
                         id=photo_id, where=photo_dir()))
    return FileResponse(path, media_type=found.media_type,
                        headers={"Cache-Control": "private, max-age=3600"})
