"""Every error as ``application/problem+json`` (RFC 9457), mapped from the twin's errors once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound, TwinError
from geo.i18n import _, _l

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
# Lazy strings: each answer's title is in the request's language (geo.i18n).
TITLES = {
    400: _l("Bad request"), 401: _l("Unauthorized"), 403: _l("Forbidden"), 404: _l("Not found"),
    405: _l("Method not allowed"), 406: _l("Not acceptable"), 409: _l("Conflict"),
    413: _l("Payload too large"), 415: _l("Unsupported media type"),
    422: _l("Unprocessable request"), 429: _l("Too many requests"), 500: _l("Internal error"),
    503: _l("Service unavailable"),
}
# What FastAPI's validation (pydantic, English only) says, for the commonest errors, by type.
VALIDATION = {
    "missing": _l("a value is required"), "int_parsing": _l("not a whole number"),
    "int_type": _l("not a whole number"), "float_parsing": _l("not a number"),
    "float_type": _l("not a number"), "bool_parsing": _l("not true or false"),
    "json_invalid": _l("not valid JSON"), "string_type": _l("not a text"),
    "date_parsing": _l("not a date (YYYY-MM-DD)"),
    "date_from_datetime_parsing": _l("not a date (YYYY-MM-DD)"),
    "datetime_parsing": _l("not a date-time (e.g. 2026-06-01T08:00:00Z)"),
    "datetime_from_date_parsing": _l("not a date-time (e.g. 2026-06-01T08:00:00Z)"),
    "extra_forbidden": _l("not a field of this body"),
    "greater_than_equal": _l("must be at least {ge}"),
    "less_than_equal": _l("must be at most {le}"),
    "string_too_long": _l("may have at most {max_length} characters"),
    "model_attributes_type": _l("must be a JSON object"), "dict_type": _l("must be a JSON object"),
}


def _validation_message(error: Mapping) -> str:
    """One pydantic error in the request's language (pydantic's English when not known)."""
    known = VALIDATION.get(str(error.get("type")))
    if known is None:
        return str(error.get("msg", _("invalid value")))
    try:
        return str(known).format(**{k: str(v) for k, v in (error.get("ctx") or {}).items()})
    except (KeyError, IndexError):
        return str(error.get("msg", _("invalid value")))


def problem_response(description: str) -> dict[str, Any]:
    """An error answer as a route's OpenAPI ``responses`` list it: when, as problem+json."""
    return {"description": description, "content": {PROBLEM: {}}}


def problem(status: int, detail: str, *, headers: Mapping[str, str] | None = None,
            **extra) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": str(TITLES.get(status, _("Error"))),
            "status": status, "detail": detail, **extra}
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
        detail = (f"{where}: {_validation_message(first)}" if where
                  else _("Invalid request."))
        return problem(400, detail, errors=[
            {"loc": [str(p) for p in e.get("loc", ())], "msg": _validation_message(e)}
            for e in error.errors()[:20]])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = str(error.detail)
        if detail == HTTPStatus(error.status_code).phrase and error.status_code in TITLES:
            # Starlette's own English ("Not Found"): the title in the request's language.
            detail = str(TITLES[error.status_code])
        return problem(error.status_code, detail, headers=error.headers)

    @app.exception_handler(OperationalError)
    async def database_away(request: Request, error: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", str(error.orig).strip().splitlines()[:1])
        return problem(503, _("The database is not reachable; try again shortly."),
                       headers=unavailable)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if error.connection_invalidated:
            return problem(503, _("The database connection was lost; try again shortly."),
                           headers=unavailable)
        log.exception("database error on %s", request.url.path)
        return problem(500, _("The request failed in the database; it has been logged."))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return problem(500, _("An unexpected error occurred; it has been logged."))
