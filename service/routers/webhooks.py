"""Webhook subscriptions (admin): who is told of every change of residents' requests.

A chat-group bot, an SMS or a mail gateway is a webhook receiver. ``POST /webhooks`` returns
the subscription's signing secret once; deliveries are described in ``service/webhooks.py``.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Path
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from geo import outbox
from geo.errors import InvalidInput
from geo.i18n import _
from geo.text_rules import check_text
from service.deps import AdminDep, EngineDep

router = APIRouter(tags=["webhooks"])
MAX_URL = 2000


def _usable_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL that urllib can post to (a host, a valid port)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and not any(c.isspace() for c in url))


class NewSubscription(BaseModel):
    """A receiver of every status change and reply of residents' requests."""

    url: str = Field(description="http(s) URL that takes a JSON POST per change.",
                     examples=["https://bot.example.cn/twin"])
    description: str | None = Field(None, description="Who receives, for the admin's list.")


@router.post("/webhooks", summary="Subscribe a webhook to request changes (admin)",
             status_code=201)
def subscribe(engine: EngineDep, caller: AdminDep,
              body: Annotated[NewSubscription, Body()]) -> JSONResponse:
    """Start delivering every change from now on; the answer holds the signing secret once."""
    url = check_text(body.url.strip(), "url", max_chars=MAX_URL)
    if not _usable_url(url):
        raise InvalidInput(_("url must be an http(s) URL with a host (and a numeric port, if "
                             "any)."))
    description = (check_text(body.description, "description", max_chars=200)
                   if body.description else None)
    secret = secrets.token_urlsafe(32)
    assert caller.name is not None
    with engine.begin() as conn:
        made = outbox.add_subscription(conn, url=url, secret=secret, description=description,
                                       created_by=caller.name)
    return JSONResponse(jsonable_encoder({**made, "secret": secret}), status_code=201)


@router.get("/webhooks", summary="Webhook subscriptions and their delivery counts (admin)")
def list_subscriptions(engine: EngineDep, caller: AdminDep) -> JSONResponse:
    """Every subscription with its pending and delivered counts (never the secrets)."""
    with engine.connect() as conn:
        return JSONResponse(jsonable_encoder(outbox.subscriptions(conn)))


@router.delete("/webhooks/{subscription_id}", summary="Stop a webhook (admin)",
               status_code=204)
def unsubscribe(engine: EngineDep, caller: AdminDep,
                subscription_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> None:
    """Stop delivering to a receiver."""
    with engine.begin() as conn:
        outbox.deactivate(conn, subscription_id)
