"""Resident requests: Open311 GeoReport v2 under ``/open311/v2``, plus two staff endpoints.

Spec endpoints: ``services.{fmt}``, ``services/{code}.{fmt}``, ``POST requests.{fmt}``,
``GET requests.{fmt}``, ``requests/{id}.{fmt}``, ``tokens/{token}.{fmt}`` (fmt: json or xml).
Errors use the spec's list of ``{code, description}`` with 400, 403 or 404, not problem+json.

Outside the spec (staff):

- ``POST /open311/v2/requests/{id}/classification`` (planner or above; form or JSON
  ``matter=big|small|private``, ``note``): override the triage; the request is re-routed and
  the override becomes a training example (``POST /open311/v2/classifier/retrain``, admin).
- ``POST /open311/v2/requests/{id}/status`` (crew or above; ``status=open|closed``,
  ``status_notes``): settle or reopen a matter, with every supporting request.
- ``POST /open311/v2/requests/{id}/replies`` (crew or above; ``text``): a reply to the
  reporters of a matter; like every status change it goes to the outbox and its webhooks.

``GET requests.{fmt}`` also takes ``matter`` (big, small, private) and ``district`` (a grid's,
a community's or a sub-district's name: the requests in it), each comma-separated.

The workflow (triage, routing, duplicates, SLA) is ``civic.workflow``; the key check is the
service's own (``service.deps.caller_of_key``), read from ``api_key`` as the spec wants.

Reporters' names, phones and e-mails are answered only to admin keys.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from civic import workflow
from civic.catalogue import MATTERS, SERVICES
from geo import requests as store
from geo.errors import InvalidInput, NotFound
from geo.i18n import _, format_decimal
from geo.text_rules import check_text, shown
from service import params
from service.deps import Caller, caller_of_key, classifier
from service.errors import Unauthorized
from service.open311 import (
    FORMATS,
    Open311Error,
    answer,
    error_answer,
    iso,
    request_entry,
    service_definition,
    service_entry,
    split_format,
)

router = APIRouter(prefix="/open311/v2", tags=["open311"])

MAX_DESCRIPTION = 4000
MAX_FIELD = 200
# Fields longer than MAX_FIELD, and free text that may hold newlines and tabs.
_LONG_FIELDS = {"media_url": 2000, "service_request_id": 2000, "service_code": 1000}
_FREE_TEXT = {"description": MAX_DESCRIPTION, "status_notes": MAX_DESCRIPTION,
              "note": MAX_DESCRIPTION}
MAX_RANGE_DAYS = 90
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(2199, 12, 31, tzinfo=UTC)
_CONTACT = ("first_name", "last_name", "phone", "email")


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _fmt_of(name: str) -> str:
    return name.rpartition(".")[2] if name.rpartition(".")[2] in FORMATS else "json"


async def _run(fmt: str, work, *args) -> Response:
    """Run blocking work; turn the twin's and the spec's errors into the spec's answer."""
    try:
        return await run_in_threadpool(work, *args)
    except Open311Error as error:
        return error_answer(fmt, error)
    except workflow.Refused as error:
        return error_answer(fmt, Open311Error(error.status, str(error)))
    except Unauthorized as error:  # the spec answers a bad key with 403
        return error_answer(fmt, Open311Error(403, str(error)))
    except InvalidInput as error:
        return error_answer(fmt, Open311Error(400, str(error)))
    except NotFound as error:
        return error_answer(fmt, Open311Error(404, str(error)))


def _check_fields(fields: dict[str, str]) -> None:
    """Every name and value: no control characters and within its length, or 400 naming it."""
    for name, value in fields.items():
        check_text(name, "A field name", max_chars=MAX_FIELD)
        free = name in _FREE_TEXT
        check_text(value, name, free_text=free,
                   max_chars=_FREE_TEXT[name] if free else _LONG_FIELDS.get(name, MAX_FIELD))


def _key_from(request: Request, form: dict[str, str] | None = None) -> str | None:
    return ((form or {}).get("api_key") or request.query_params.get("api_key")
            or request.headers.get("x-api-key"))


def _caller(engine: Engine, key: str | None, *, required: str | None) -> Caller:
    """Who posts, by the service's one key check; 403 when a role is required and missing."""
    caller = caller_of_key(engine, key)
    if required and caller.role is None:
        raise Open311Error(403, _("api_key was not provided."))
    if required and not caller.has(required):
        raise Open311Error(403, _("This needs an api_key with the role '{role}' or above.",
                                  role=required))
    return caller


# -- services -------------------------------------------------------------------------------


@router.get("/services.{fmt}", summary="The services residents may request")
async def services(fmt: str) -> Response:
    """Every service with its code, name, group and keywords."""
    if fmt not in FORMATS:
        return error_answer("json", Open311Error(404, _("Use services.json or services.xml.")))
    return answer(fmt, "services", [service_entry(s) for s in SERVICES.values()])


@router.get("/services/{name}", summary="A service's definition and attributes")
async def service(name: str) -> Response:
    """``services/{code}.{fmt}``."""
    fmt = _fmt_of(name)
    try:
        code, fmt = split_format(name)
        if code not in SERVICES:
            raise Open311Error(404, _("There is no service '{code}'.", code=shown(code)))
    except Open311Error as error:
        return error_answer(fmt, error)
    return answer(fmt, "definition", service_definition(SERVICES[code]))


# -- requests -------------------------------------------------------------------------------


@router.post("/requests.{fmt}", summary="Make a request (form-encoded)")
async def create_request(fmt: str, request: Request) -> Response:
    """Take a resident's request: triage, route, join duplicates, feed the twin."""
    fmt_ok = fmt if fmt in FORMATS else "json"
    if fmt not in FORMATS:
        return error_answer(fmt_ok, Open311Error(404, _("Use requests.json or requests.xml.")))
    body = await request.body()  # at most max_body_bytes_open311 (service/limits.py)
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return error_answer(fmt, Open311Error(400, _("The body must be UTF-8, form-encoded.")))
    return await _run(fmt, _submit, _engine(request), fmt, form, _key_from(request, form),
                      classifier(request))


def _float(form: dict, name: str, low: float, high: float) -> float:
    value = params.parse_number(form[name], name)  # the service's own number parser
    if not low <= value <= high:
        raise Open311Error(400, _("{name} must be between {low} and {high}.", name=name,
                                  low=low, high=high))
    return value


def _parse(form: dict[str, str]) -> dict:
    """Check a posted request against the spec and the catalogue (400 on any fault)."""
    code = form.get("service_code", "").strip()
    if not code:
        raise Open311Error(400, _("service_code was not provided."))
    service = SERVICES.get(code)
    if service is None:
        raise Open311Error(400, _("service_code '{code}' is not a service of this endpoint; "
                                  "see services.json.", code=code))
    description = form.get("description") or None
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise Open311Error(400, _("description is {length} characters; at most {most} are "
                                  "allowed.", length=format_decimal(len(description)),
                                  most=format_decimal(MAX_DESCRIPTION)))
    attributes: dict[str, str] = {}
    known = {a.code: a for a in service.attributes}
    for name, value in form.items():
        if name.startswith("attribute[") and name.endswith("]"):
            attr = known.get(name[10:-1])
            if attr is None:
                raise Open311Error(400, _("Service '{code}' has no attribute '{name}'.",
                                          code=code, name=name[10:-1]))
            if attr.values and value not in {k for k, _ in attr.values}:
                raise Open311Error(400, _("attribute[{code}] must be one of {allowed}.",
                                          code=attr.code,
                                          allowed=", ".join(k for k, _v in attr.values)))
            if len(value) > MAX_FIELD:
                raise Open311Error(400, _("attribute[{code}] is too long.", code=attr.code))
            attributes[attr.code] = value
    for attr in service.attributes:
        if attr.required and not attributes.get(attr.code):
            raise Open311Error(400, _("attribute[{attribute}] is required for '{code}' "
                                      "({question}).", attribute=attr.code, code=code,
                                      question=_(attr.description)))
    contact = {k: (form.get(k) or "").strip() or None for k in (*_CONTACT, "device_id",
                                                                   "account_id")}
    for field, given in contact.items():
        if given and len(given) > MAX_FIELD:
            raise Open311Error(400, _("{field} is too long (at most {most} characters).",
                                      field=field, most=MAX_FIELD))
    if contact["email"] and "@" not in contact["email"]:
        raise Open311Error(400, _("email is not an e-mail address."))
    media_url = form.get("media_url") or None
    if media_url and not media_url.startswith(("http://", "https://")):
        raise Open311Error(400, _("media_url must be an http(s) URL."))
    address = (form.get("address_string") or "").strip() or None
    if address and len(address) > MAX_FIELD:
        raise Open311Error(400, _("address_string is too long."))
    has_lat, has_long = bool(form.get("lat")), bool(form.get("long"))
    if has_lat != has_long:
        raise Open311Error(400, _("lat and long must be given together."))
    point = None
    if has_lat:
        point = (_float(form, "long", -180, 180), _float(form, "lat", -90, 90))
    elif not address:
        raise Open311Error(400, _("A location is required: lat and long, or address_string."))
    return {"service": service, "description": description, "attributes": attributes,
            "contact": contact, "media_url": media_url, "address": address, "point": point}


def _submit(engine: Engine, fmt: str, form: dict[str, str], key: str | None,
            classify: workflow.Classify) -> Response:
    caller = _caller(engine, key, required="viewer")
    assert caller.name is not None  # a role is only ever a named key
    _check_fields(form)
    p = _parse(form)
    sub = workflow.Submission(
        service_code=p["service"].code, description=p["description"], actor=caller.name,
        attributes=p["attributes"], point=p["point"], address=p["address"],
        media_url=p["media_url"], contact=p["contact"])
    with engine.begin() as conn:
        done = workflow.submit(conn, sub, classify)
    entry = request_entry(done.public)
    return answer(fmt, "requests", [{
        "service_request_id": entry["service_request_id"],
        "token": done.token,
        "service_notice": entry["service_notice"],
        "account_id": None,
        "status": entry["status"],
        "expected_datetime": entry["expected_datetime"],
    }])


def _when(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise Open311Error(400, _("{name} must be an ISO 8601 date-time, e.g. "
                                  "2026-01-01T00:00:00Z.", name=name)) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        # Far dates would overflow the window arithmetic below (9999-12-31 + 90 days).
        plausible = EARLIEST_DATE <= moment <= LATEST_DATE
    except OverflowError:  # 9999-12-31T23:59:59-12:00 cannot be compared in UTC
        plausible = False
    if not plausible:
        raise Open311Error(400, _("{name} {value} is out of range; dates from {first} to "
                                  "{last} are served.", name=name, value=shown(value.strip()),
                                  first=f"{EARLIEST_DATE:%Y-%m-%d}",
                                  last=f"{LATEST_DATE:%Y-%m-%d}"))
    return moment


def _admin(engine: Engine, key: str | None) -> bool:
    return _caller(engine, key, required=None).role == "admin"


# What a private matter (inside a home: "my toilet is blocked") does not show to the public:
# where it is and what was said, or anyone could list which houses have which problems.
PRIVATE_WITHHELD = ("lat", "long", "address", "description", "media_url")


def _entries(conn, rows: list[dict], admin: bool) -> list[dict]:
    contacts = store.contacts_of(conn, [r["id"] for r in rows]) if admin and rows else {}
    entries = [request_entry(r, contacts.get(r["id"], {}) if admin else None) for r in rows]
    if not admin:
        for entry in entries:
            if entry["matter"] == "private":
                entry.update(dict.fromkeys(PRIVATE_WITHHELD))
    return entries


@router.get("/requests.{fmt}", summary="Requests by id, service, time and status")
async def list_requests(fmt: str, request: Request) -> Response:
    """``GET requests.{fmt}``; at most 90 days at a time (the last 90 by default)."""
    if fmt not in FORMATS:
        return error_answer("json", Open311Error(404, _("Use requests.json or requests.xml.")))
    return await _run(fmt, _list, _engine(request), fmt, dict(request.query_params),
                      _key_from(request))


def _list(engine: Engine, fmt: str, query: dict[str, str], key: str | None) -> Response:
    _check_fields(query)
    admin = _admin(engine, key)
    if query.get("service_request_id"):
        ids = [int(part) for part in query["service_request_id"].split(",")
               if _is_id(part.strip())]
        with engine.connect() as conn:
            return answer(fmt, "requests",
                          _entries(conn, store.public_requests(conn, ids=ids), admin))
    start, end = _when(query.get("start_date"), "start_date"), _when(query.get("end_date"),
                                                                      "end_date")
    window = timedelta(days=MAX_RANGE_DAYS)
    if start is None and end is None:
        end = datetime.now(UTC)
    if start is None:
        assert end is not None  # set just above when both were missing
        start = end - window
    elif end is None:
        end = start + window
    if end < start:
        raise Open311Error(400, _("end_date is before start_date."))
    if end - start > window:
        raise Open311Error(400, _("start_date to end_date may span at most {days} days.",
                                  days=MAX_RANGE_DAYS))
    status = query.get("status") or None
    statuses = set(params.parse_choices([status] if status else None, "status",
                                        ("open", "closed")))
    codes = list(params.parse_choices([query["service_code"]] if query.get("service_code")
                                      else None, "service_code")) or None
    matters = list(params.parse_choices([query["matter"]] if query.get("matter") else None,
                                        "matter", MATTERS)) or None
    districts = list(params.parse_choices([query["district"]] if query.get("district")
                                          else None, "district")) or None
    with engine.connect() as conn:
        rows = store.public_requests(conn, codes=codes, start=start, end=end, matters=matters,
                                     districts=districts,
                                     status=statuses.pop() if len(statuses) == 1 else None)
        return answer(fmt, "requests", _entries(conn, rows, admin))


@router.get("/requests/{name}", summary="One request (an array of one)")
async def get_request(name: str, request: Request) -> Response:
    """``requests/{id}.{fmt}``."""
    fmt = _fmt_of(name)
    return await _run(fmt, _one, _engine(request), name, _key_from(request))


def _one(engine: Engine, name: str, key: str | None) -> Response:
    stem, fmt = split_format(name)
    admin = _admin(engine, key)
    ids = [int(stem)] if _is_id(stem) else []
    with engine.connect() as conn:
        rows = store.public_requests(conn, ids=ids) if ids else []
        if not rows:
            raise Open311Error(404, _("There is no request '{id}'.", id=stem))
        return answer(fmt, "requests", _entries(conn, rows, admin))


@router.get("/tokens/{name}", summary="The request id a token was given for")
async def token(name: str, request: Request) -> Response:
    """``tokens/{token}.{fmt}``."""
    fmt = _fmt_of(name)
    return await _run(fmt, _token, _engine(request), name)


def _token(engine: Engine, name: str) -> Response:
    stem, fmt = split_format(name)
    check_text(stem, "The token", max_chars=MAX_FIELD)
    with engine.connect() as conn:
        request_id = store.request_of_token(conn, stem)
    if request_id is None:
        raise Open311Error(404, _("There is no token '{token}'.", token=stem))
    return answer(fmt, "requests", [{"service_request_id": str(request_id), "token": stem}])


# -- staff (outside the spec) ---------------------------------------------------------------


async def _fields(request: Request) -> dict[str, str]:
    body = await request.body()  # at most max_body_bytes_open311 (service/limits.py)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise Open311Error(400, _("The body is not JSON.")) from None
        if not isinstance(data, dict):
            raise Open311Error(400, _("The body must be a JSON object."))
        return {k: str(v) for k, v in data.items() if v is not None}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise Open311Error(400, _("The body must be UTF-8.")) from None


def _is_id(text: str) -> bool:
    # isdigit alone admits '³' and other digits int() refuses.
    return text.isascii() and text.isdigit() and len(text) < 19


def _request_id(value: str) -> int:
    if not _is_id(value):
        raise Open311Error(404, _("There is no request '{id}'.", id=value))
    return int(value)


async def _staff_post(request: Request, request_id: str, role: str, act) -> Response:
    """A staff action on one request: the form read, then :func:`_staff_act` in the pool."""
    try:
        fields = await _fields(request)
    except Open311Error as error:
        return error_answer("json", error)
    return await _run("json", _staff_act, _engine(request), request_id, fields,
                      _key_from(request, fields), role, act)


def _staff_act(engine: Engine, request_id: str, fields: dict, key: str | None, role: str,
               act) -> Response:
    """The key's role checked, then the fields, then the request's id (403, 400, 404 first)."""
    name = _caller(engine, key, required=role).name
    assert name is not None
    _check_fields(fields)
    return act(engine, _request_id(request_id), fields, name)


@router.post("/requests/{request_id}/classification",
             summary="Override a request's triage (planner; outside the spec)")
async def classify(request_id: str, request: Request) -> Response:
    """Set ``matter`` (big, small or private) with an optional ``note``; re-routes it."""
    return await _staff_post(request, request_id, "planner", _classify)


def _classify(engine: Engine, rid: int, fields: dict, name: str) -> Response:
    with engine.begin() as conn:
        workflow.reclassify(conn, rid, fields.get("matter", ""), name, fields.get("note"))
        view = store.staff_view(conn, rid)
    return JSONResponse(_jsonable(view))


@router.post("/requests/{request_id}/status",
             summary="Settle or reopen a matter (crew; outside the spec)")
async def set_status(request_id: str, request: Request) -> Response:
    """Set ``status`` (open or closed) and ``status_notes``, for the request and supporters."""
    return await _staff_post(request, request_id, "crew", _status)


def _status(engine: Engine, rid: int, fields: dict, name: str) -> Response:
    notes = fields.get("status_notes") or None
    if notes and len(notes) > MAX_DESCRIPTION:
        raise Open311Error(400, _("status_notes is too long."))
    with engine.begin() as conn:
        store.set_status(conn, rid, fields.get("status", ""), notes, name)
        rows = store.public_requests(conn, ids=[rid])
    return JSONResponse([request_entry(r) for r in rows])


@router.post("/requests/{request_id}/replies",
             summary="Reply to the reporters of a matter (crew; outside the spec)")
async def reply(request_id: str, request: Request) -> Response:
    """Send ``text`` to the request's reporter and its supporters (status page, webhooks)."""
    return await _staff_post(request, request_id, "crew", _reply)


def _reply(engine: Engine, rid: int, fields: dict, name: str) -> Response:
    text = (fields.get("text") or "").strip()
    if not text:
        raise Open311Error(400, "text was not provided: say what to tell the reporters.")
    with engine.begin() as conn:
        store.add_reply(conn, rid, text, name)
        history = store.public_history(conn, rid)
    return JSONResponse(_jsonable({"service_request_id": str(rid), "history": history}))


@router.post("/classifier/retrain",
             summary="Retrain the triage classifier with staff overrides (admin)")
async def retrain(request: Request) -> Response:
    """Train on the labelled examples plus every staff classification; use it from now."""
    return await _run("json", _retrain, _engine(request), _key_from(request))


def _retrain(engine: Engine, key: str | None) -> Response:
    _caller(engine, key, required="admin")
    from predict.triage import train_and_store

    with engine.begin() as conn:
        extra = store.staff_labels(conn)
        version = train_and_store(conn, extra)
    return JSONResponse({"staff_examples": len(extra), "version": version})


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    return value
