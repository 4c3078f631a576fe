"""Sensor intake: ``POST /readings`` takes a batch of readings and answers for each one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ingest import intake
from service.deps import CREW_KEY_RESPONSES, CrewDep, EngineDep
from service.errors import problem, problem_response

router = APIRouter(tags=["readings"])

_TEXT = {"type": ["string", "number", "null"]}
_READING: dict[str, Any] = {
    "type": "object",
    "title": "Reading",
    "description": "One value of one metric of one asset at one time.",
    "properties": {
        "asset_layer": {"type": "string", "enum": ["streets", "manholes", "parking",
                                                   "compounds"]},
        "asset_external_id": {"type": "string", "examples": ["MH-00848"]},
        "metric": {"type": "string", "description": "A declared metric (`twin metrics list`).",
                   "examples": ["tilt_deg"]},
        "observed_at": {"type": "string", "format": "date-time",
                        "description": "ISO 8601; without an offset it is taken as UTC."},
        "value": {"type": "number"},
        "source": {**_TEXT, "description": "The sending system; `api` when not given."},
    },
    "required": ["asset_layer", "asset_external_id", "metric", "observed_at", "value"],
}
_REPORT = {
    "type": "object",
    "title": "Report",
    "description": "Several metrics of one asset at one time, as a sensor reports them.",
    "properties": {
        "asset_layer": _READING["properties"]["asset_layer"],
        "asset_external_id": _READING["properties"]["asset_external_id"],
        "observed_at": _READING["properties"]["observed_at"],
        "metrics": {"type": "object", "additionalProperties": {"type": "number"},
                    "examples": [{"tilt_deg": 1.5, "battery_pct": 80}]},
        "source": _READING["properties"]["source"],
    },
    "required": ["asset_layer", "asset_external_id", "observed_at", "metrics"],
}
_BODY = {
    "required": True,
    "description": f"A JSON array of readings and reports, or NDJSON (one a line) with "
                   f"`Content-Type: application/x-ndjson`. At most {intake.MAX_ITEMS:,} "
                   f"items, {intake.MAX_READINGS:,} readings and {intake.MAX_BYTES:,} bytes.",
    "content": {
        "application/json": {"schema": {"type": "array", "maxItems": intake.MAX_ITEMS,
                                        "items": {"anyOf": [_READING, _REPORT]}}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}
_ANSWER = {
    "description": "One answer per reading (a report gives one per metric), and totals.",
    "content": {"application/json": {"example": {
        "totals": {"items": 2, "readings": 3, "accepted": 1, "duplicate": 1, "rejected": 1,
                   "updated": 0},
        "run_id": 42,
        "results": [
            {"index": 0, "metric": "tilt_deg", "status": "accepted", "reason": None},
            {"index": 1, "metric": "tilt_deg", "status": "duplicate",
             "reason": "is stored already with the same value"},
            {"index": 1, "metric": "battery_pct", "status": "rejected",
             "reason": "value '140' is outside the metric's declared range 0-100"},
        ]}}},
}


@router.post(
    "/readings",
    summary="Post a batch of sensor readings (role crew or above)",
    openapi_extra={"requestBody": _BODY},
    responses={
        200: _ANSWER,
        400: problem_response("The body is empty or not JSON (the detail says where)."),
        **CREW_KEY_RESPONSES,
        413: problem_response("Too many items, readings or bytes for one post."),
        415: problem_response("Neither JSON nor NDJSON."),
    },
)
async def post_readings(request: Request, engine: EngineDep, caller: CrewDep) -> JSONResponse:
    """Check a batch of readings by the same rules as file and MQTT ingest and load it at once.

    Items take the shapes the MQTT watcher takes: a reading (`asset_layer`,
    `asset_external_id`, `metric`, `observed_at`, `value`) or a sensor report (the same with
    `metrics: {name: value}` instead of `metric` and `value`); `source` is optional.

    Every reading is answered, in order, with the index of its item: `accepted` (stored; with
    a reason when it replaced another value of the same asset, metric and time), `duplicate`
    (stored already with the same value, or repeated in the batch) or `rejected` with the
    reason. Accepted readings land in one transaction, recorded as an ingest run (`run_id`)
    with its rejects. Posting the same batch again answers `duplicate` throughout and changes
    nothing. Needs an API key with the role `crew` or above.
    """
    content_type = request.headers.get("content-type")
    if not intake.is_supported(content_type):
        return problem(415, f"The batch must be application/json or application/x-ndjson, "
                            f"not {content_type}.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > intake.MAX_BYTES:
        return _too_large(f"The batch is {int(declared):,} bytes; one post may hold at most "
                          f"{intake.MAX_BYTES:,} bytes. Send it in smaller batches.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > intake.MAX_BYTES:
            return _too_large(f"The batch is more than {intake.MAX_BYTES:,} bytes, the most "
                              f"one post may hold. Send it in smaller batches.")
    assert caller.name is not None  # the crew role is only ever a named key
    try:
        report = await run_in_threadpool(intake.take_batch, engine, bytes(body),
                                         ndjson=intake.is_ndjson(content_type), who=caller.name)
    except intake.BatchTooLarge as error:
        return _too_large(str(error))
    return JSONResponse(report.as_dict())


def _too_large(detail: str) -> JSONResponse:
    # The rest of the body is not read: the connection is closed after the answer.
    return problem(413, detail, headers={"Connection": "close"})
