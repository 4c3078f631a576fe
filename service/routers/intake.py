"""Chat-group intake: ``POST /intake/messages`` takes a message as a group's bot relays it.

The bot (a key of any role) sends the group id, the sender's id, the time, the text and up to
three images (base64 JPEG, PNG or WebP); the answer holds the request made (or the "+1" to
one already open) and the reply to post back into the group, in Chinese. The sender's id is
kept with the reporter's contact details, never published.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from civic import intake, workflow
from geo import requests as store
from geo.errors import InvalidInput
from geo.i18n import _
from geo.text_rules import check_text
from service.deps import EngineDep, classifier, require
from service.errors import problem
from service.photos import check_photo, keep_photo

router = APIRouter(tags=["residents"])
require_any = Depends(require("viewer"))


class Message(BaseModel):
    """One chat message."""

    group_id: str = Field(max_length=100, examples=["grp-cp-0004"])
    sender_id: str = Field(max_length=100, examples=["wxid_abc123"])
    sent_at: datetime = Field(description="ISO 8601 with an offset.")
    text: str = Field(max_length=2000, examples=["2号门外的路灯坏了，晚上很黑"])
    images: list[str] = Field(default_factory=list, max_length=intake.MAX_IMAGES,
                              description="Base64 JPEG, PNG or WebP, at most 3.")


def _images(encoded: list[str], limit: int) -> list[tuple[bytes, str, str]]:
    out = []
    for n, item in enumerate(encoded, start=1):
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(_("images[{n}] is not base64.", n=n)) from None
        out.append(check_photo(data, limit, f"images[{n}]"))
    return out


def _take(engine, groups, msg: intake.ChatMessage, images, classify) -> tuple[dict, str]:
    with engine.begin() as conn:
        done, reply = intake.take(conn, groups, msg, classify, "/report/status/{token}")
        for data, media, suffix in images:
            digest, relative = keep_photo(data, suffix, "residents/")
            store.add_photo(conn, request_id=done.request_id, media_type=media,
                            size=len(data), sha256=digest, path=relative)
    outcome = ("plus_one" if done.duplicate_of is not None
               else "private" if done.matter == "private" else "new")
    return {"service_request_id": str(done.request_id), "token": done.token,
            "outcome": outcome, "matter": done.matter, "department": done.department,
            "responsible_party": done.party,
            "duplicate_of": str(done.duplicate_of) if done.duplicate_of else None,
            "located": done.public["address_string"]}, reply


@router.post("/intake/messages", status_code=201,
             summary="A chat-group message becomes a request or a +1 (any key)")
async def take_message(request: Request, engine: EngineDep,
                       caller: Annotated[object, require_any],
                       body: Annotated[Message, Body()]) -> JSONResponse:
    """Triage and locate a group's message; answer the reply to post into the group."""
    for name in ("group_id", "sender_id"):
        check_text(getattr(body, name), name, max_chars=100)
    check_text(body.text, "text", max_chars=2000, free_text=True)
    if not body.text.strip():
        raise InvalidInput(_("text is empty."))
    settings = request.app.state.settings
    images = _images(body.images, settings.report_photo_max_bytes)
    groups = request.app.state.chat_groups
    msg = intake.ChatMessage(body.group_id, body.sender_id, body.sent_at, body.text.strip(),
                             len(images))
    try:
        answer, reply = await run_in_threadpool(_take, engine, groups, msg, images,
                                                classifier(request))
    except workflow.Refused as error:
        return problem(error.status if error.status != 403 else 429, str(error))
    return JSONResponse({**answer, "reply": reply}, status_code=201)
