"""Every error as ``application/problem+json`` (RFC 9457), mapped from the twin's errors once."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound, TwinError

log = logging.getLogger("twin.service")
PROBLEM = "application/problem+json"


class Unauthorized(TwinError):
    """No valid API key was given for something that needs one."""


class Forbidden(TwinError):
    """The key's role may not do this."""


STATUS = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    DatabaseUnavailable: 503,
}
TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 406: "Not acceptable", 409: "Conflict", 413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable request", 500: "Internal error", 503: "Service unavailable",
}


def problem(status: int, detail: str, *, headers: Mapping[str, str] | None = None,
            **extra) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _status_of(error: TwinError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Map every error the service can meet to one problem+json answer."""
    unavailable = {"Retry-After": str(retry_after_s)}

    @app.exception_handler(TwinError)
    async def twin_error(request: Request, error: TwinError) -> JSONResponse:
        status = _status_of(error)
        headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
        if status == 503:
            headers = unavailable
        return problem(status, str(error), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = f"{where}: {first.get('msg', 'invalid value')}" if where else "Invalid request."
        return problem(400, detail, errors=[
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg")}
            for e in error.errors()[:20]])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(OperationalError)
    async def database_away(request: Request, error: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", str(error.orig).strip().splitlines()[:1])
        return problem(503, "The database is not reachable; try again shortly.",
                       headers=unavailable)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if error.connection_invalidated:
            return problem(503, "The database connection was lost; try again shortly.",
                           headers=unavailable)
        log.exception("database error on %s", request.url.path)
        return problem(500, "The request failed in the database; it has been logged.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return problem(500, "An unexpected error occurred; it has been logged.")
