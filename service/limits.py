"""Request bodies are limited before any route reads them: 413 once a body passes its limit.

A plain ASGI middleware, outside every route, so that a 100 MB post without a key costs a
header check (a declared ``Content-Length`` over the limit is refused before a byte of the body
is read) or at most the limit in memory (a body sent without a length, or with a false one, is
counted while it streams and refused once it passes the limit). FastAPI reads and parses a
JSON body before it solves a route's dependencies, the key check among them, so the limit
has to sit in front of the routes rather than behind the key check.

The limit depends on the route family (``ServiceSettings``): sensor batches on
``/readings`` may be large, residents' forms on ``/open311`` are small, a crew's photo on
``/alerts/{id}/photos`` may be a camera's (``LoopSettings.photo_max_bytes``, checked again by
the route), every other body (alert notes, staff actions) is a small JSON document. Refusals
are problem+json, or the Open311 error list under ``/open311`` (the spec's clients read that
format).
"""

from __future__ import annotations

import math
import re

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from civic.intake import MAX_IMAGES
from geo.i18n import _, format_decimal
from geo.settings import LoopSettings
from service.deps import caller_of_key
from service.errors import Unauthorized, problem
from service.open311 import Open311Error, error_answer
from service.settings import ServiceSettings

PHOTO_UPLOAD = re.compile(r"/alerts/[^/]+/photos")
# A route for key holders whose body may be large (a chat bot's message with photos). FastAPI
# reads a JSON body before the route's key check, so without a valid key the body gets the
# general limit: twenty keyless clients must not make the service hold twenty such bodies.
KEYED_LARGE_BODY = "/intake/messages"
MULTIPART_SLACK = 64 * 1024  # the form's boundary and part headers around the photo's bytes


def limit_for(path: str, settings: ServiceSettings) -> tuple[int, str]:
    """The body limit in bytes of a request path and the name of its route family."""
    if PHOTO_UPLOAD.fullmatch(path):
        return LoopSettings().photo_max_bytes + MULTIPART_SLACK, _("a photo upload")
    if path == "/report":
        return settings.report_photo_max_bytes + MULTIPART_SLACK, _("a resident's report")
    if path == KEYED_LARGE_BODY:  # JSON with up to MAX_IMAGES photos in base64 (4/3 larger)
        return (MAX_IMAGES * math.ceil(settings.report_photo_max_bytes * 4 / 3) + MULTIPART_SLACK,
                _("a chat-group message"))
    if path == "/readings" or path.startswith("/readings/"):
        return settings.max_body_bytes_readings, _("a readings batch")
    if path.startswith("/open311/"):
        return settings.max_body_bytes_open311, _("an Open311 post")
    return settings.max_body_bytes, _("a request body on this route")


def refusal(path: str, limit: int, what: str, size: int | None) -> Response:
    """The 413 answer: problem+json, or the Open311 error list (XML for ``.xml`` paths)."""
    sentence = (
        _("The body is {size} bytes; {what} may hold at most {limit} bytes.",
          size=format_decimal(size), what=what, limit=format_decimal(limit))
        if size is not None else
        _("The body is more than {limit} bytes; {what} may hold at most {limit} bytes.",
          what=what, limit=format_decimal(limit)))
    if path.startswith("/open311/"):
        answer = error_answer("xml" if path.endswith(".xml") else "json",
                              Open311Error(413, sentence))
    else:
        answer = problem(413, sentence)
    # The rest of the body is never read, so the connection cannot be used again.
    answer.headers["Connection"] = "close"
    return answer


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


async def _has_valid_key(scope) -> bool:
    """Whether the request carries a valid API key (``X-API-Key`` or a bearer token)."""
    key = None
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            key = value.decode("latin-1")
        elif name == b"authorization" and key is None:
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                key = text[7:].strip()
    if not key:
        return False
    try:
        await run_in_threadpool(caller_of_key, scope["app"].state.engine, key)
    except (Unauthorized, sa.exc.DBAPIError):
        return False
    return True


class BodyLimit:
    """Refuse request bodies over their route family's limit with 413, reading no more."""

    def __init__(self, app, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send) -> None:
        """Pass the request on with a receive that counts the body's bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit, what = limit_for(path, self.settings)
        if (path == KEYED_LARGE_BODY and limit > self.settings.max_body_bytes
                and not await _has_valid_key(scope)):
            limit, what = self.settings.max_body_bytes, _("a request body without a valid key")
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await refusal(path, limit, what, declared)(scope, receive, send)
            return
        received = 0
        refused = False  # this middleware answered 413; the route's own answer is dropped
        started = False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:
                        refused = True
                        await refusal(path, limit, what, None)(scope, receive, send)
                    # The route sees a client that went away: it never gets a cut body.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)


def install(app: FastAPI, settings: ServiceSettings) -> None:
    """Add the body limit to ``app`` and answer a body cut short without logging an error."""

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, error: ClientDisconnect) -> Response:
        # Nobody reads this: the client left, or BodyLimit has answered 413 already.
        return Response(status_code=400)

    app.add_middleware(BodyLimit, settings=settings)
