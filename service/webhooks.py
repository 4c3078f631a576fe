"""Pushed feedback: the outbox of resident requests delivered to webhooks, signed, in order.

A change (status or reply) is in ``request_outbox`` from the transaction that made it, with a
delivery row per subscription (``geo/outbox.py``). The ``deliver_webhooks`` job
(``service/jobs.py``) posts each receiver's oldest pending change of each request; a receiver
that does not answer 2xx is tried again later (doubling from ``retry_base_s`` up to
``retry_max_s``, for ever), and later changes of that request wait behind it, so each
receiver sees a request's changes in order, at least once (the ``X-Twin-Event`` id lets it
drop a repeat). A minute's periodic job is the backstop should a queued job ever be lost.

Each post is signed: ``X-Twin-Signature: sha256=<hex>``, the HMAC-SHA256 with the
subscription's secret of ``<X-Twin-Timestamp>.<body>``. Notes are masked
(``service.privacy``) and the reporter's contact is never in a payload.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine

from geo import outbox
from service.privacy import mask_personal

log = logging.getLogger("twin.webhooks")


class WebhookSettings(BaseSettings):
    """How receivers are tried (``TWIN_WEBHOOK_*``)."""

    model_config = SettingsConfigDict(env_prefix="TWIN_WEBHOOK_", extra="ignore")

    retry_base_s: float = 5.0
    retry_max_s: float = 300.0
    timeout_s: float = 5.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Twin-Signature`` value of a body.

    >>> signature("s3cret", "1700000000", b'{"a":1}')[:15]
    'sha256=1698a50b'
    """
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def public_payload(payload: dict) -> dict:
    """The payload as it leaves the twin: free text masked."""
    return {**payload, "note": mask_personal(payload.get("note"))}


def post(url: str, secret: str, event_id: int, payload: dict, timeout_s: float) -> None:
    """Post one change; raises OSError (urllib's errors among them) unless answered 2xx."""
    body = outbox.payload_json(public_payload(payload)).encode()
    timestamp = str(int(time.time()))
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "X-Twin-Event": str(event_id),
        "X-Twin-Timestamp": timestamp, "X-Twin-Signature": signature(secret, timestamp, body),
        "User-Agent": "neighbourhood-twin"})
    with urllib.request.urlopen(req, timeout=timeout_s) as answer:  # noqa: S310 - admin's URL
        if not 200 <= answer.status < 300:
            raise OSError(f"answered {answer.status}")


def deliver(engine: Engine, settings: WebhookSettings | None = None) -> dict:
    """Deliver every due change; queue the next run for the earliest retry. Counts."""
    settings = settings or WebhookSettings()
    delivered = failed = 0
    while True:
        with engine.connect() as conn:
            heads = outbox.due_heads(conn)
        if not heads:
            break
        progressed = False
        for head in heads:
            try:
                post(head["url"], head["secret"], head["outbox_id"], head["payload"],
                     settings.timeout_s)
            # Any failure of one receiver (refused, timed out, non-2xx, a URL http.client cannot
            # use, a peer that does not speak HTTP) is that receiver's: it waits and is tried
            # again, and never holds up the changes of the others.
            except Exception as error:  # noqa: BLE001
                # The exponent is capped: 2 ** 1024 as a float overflows after days of outage.
                wait = min(settings.retry_base_s * 2.0 ** min(head["attempts"], 30),
                           settings.retry_max_s)
                with engine.begin() as conn:
                    outbox.mark_failed(conn, head["subscription_id"], head["outbox_id"],
                                       str(error) or type(error).__name__, wait)
                failed += 1
                log.info("webhook %s: change %s not delivered (%s); again in %.0f s",
                         head["url"], head["outbox_id"], error, wait)
                continue
            with engine.begin() as conn:
                outbox.mark_delivered(conn, head["subscription_id"], head["outbox_id"])
            delivered += 1
            progressed = True
        if not progressed:
            break
    with engine.begin() as conn:
        later = outbox.next_pending_at(conn)
        if later is not None:
            outbox.queue_delivery(conn, max(later, datetime.now(UTC) + timedelta(seconds=0.5)))
    return {"delivered": delivered, "failed": failed}
