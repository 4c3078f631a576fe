"""Open311 GeoReport v2 answers: JSON (always arrays for requests) and XML, and the spec's errors.

The spec's own error format is used here, not problem+json: a list of ``{code, description}``
(``<errors><error>...`` in XML) with status 400, 403 or 404.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from fastapi.responses import JSONResponse, Response

from civic.catalogue import SERVICES, Service
from civic.routing import party_of
from civic.texts import note_text
from geo.i18n import N_, SOURCE_LOCALE, _, current_locale
from service.privacy import mask_personal

_CJK = re.compile(r"[\u3400-\u9fff]")

FORMATS = ("json", "xml")


class Open311Error(Exception):
    """An error answered in the spec's format."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def split_format(name: str) -> tuple[str, str]:
    """``"pothole.json"`` -> ``("pothole", "json")``; an unknown format is a 404."""
    stem, dot, fmt = name.rpartition(".")
    if not dot or fmt not in FORMATS or not stem:
        raise Open311Error(404, _("'{name}' is not a resource of this endpoint; ask for "
                                  "<name>.json or <name>.xml.", name=name))
    return stem, fmt


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with a time zone (UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def service_entry(service: Service) -> dict:
    """A service in the ``services`` list."""
    # Names and descriptions in the request's language (geo/requests.py marks them); the
    # keywords a reader may search by: their language's, and the codes.
    chinese = current_locale() != SOURCE_LOCALE
    keywords = [k for k in service.keywords if chinese or not _CJK.search(k)]
    return {"service_code": service.code, "service_name": _(service.name),
            "description": _(service.description), "metadata": bool(service.attributes),
            "type": "realtime", "keywords": ", ".join(keywords), "group": _(service.group)}


def service_definition(service: Service) -> dict:
    """A service's definition with its attributes."""
    return {"service_code": service.code, "attributes": [
        {"variable": True, "code": a.code, "datatype": a.datatype, "required": a.required,
         "datatype_description": a.datatype_description or None, "order": order,
         "description": _(a.description),
         "values": [{"key": k, "name": _(n)} for k, n in a.values]}
        for order, a in enumerate(service.attributes, start=1)]}


def request_entry(row: dict, contact: dict | None = None) -> dict:
    """A request as GeoReport v2 shows it; contact fields only when given (admin).

    Every free text (description, address, status notes) goes out with personal numbers
    and e-mail addresses masked, whoever asks: the reporter's contact is in its own fields.
    """
    service = SERVICES.get(row["service_code"])
    entry = {
        "service_request_id": str(row["id"]),
        "status": row["status"],
        "status_notes": note_text(mask_personal(row["status_notes"])),
        "service_name": _(service.name) if service else row["service_code"],
        "service_code": row["service_code"],
        "description": mask_personal(row["description"]),
        "agency_responsible": party_of(row),
        "service_notice": _notice(row),
        "requested_datetime": iso(row["requested_at"]),
        "updated_datetime": iso(row["updated_at"]),
        "expected_datetime": iso(row["expected_at"]),
        "address": mask_personal(row["address_string"]),
        "address_id": None,
        "zipcode": None,
        "lat": row["lat"],
        "long": row["long"],
        "media_url": row["media_url"],
        # Extensions (ignored by clients that do not know them):
        "matter": row["matter"],
        "supporters": row["supporters"],
        "duplicate_of": str(row["duplicate_of"]) if row["duplicate_of"] else None,
        "district": row.get("district"),
        "community": row.get("community"),
        "sub_district": row.get("sub_district"),
    }
    if contact is not None:
        entry.update({k: contact.get(k) for k in ("first_name", "last_name", "phone", "email")})
    return entry


_MATTER_NOTICE = {"big": N_("a big matter (government)"),
                  "small": N_("a small matter (community organisations)"),
                  "private": N_("a private matter (the residents themselves)")}


def _notice(row: dict) -> str:
    text = _("Triaged as {kind}, routed to {party}.", kind=_(_MATTER_NOTICE[row["matter"]]),
             party=party_of(row))
    if row.get("duplicate_of"):
        text += " " + _("Joined request {id} as a supporter.", id=row["duplicate_of"])
    elif row.get("joined_alert_id"):
        text += " " + _("Joined alert {id} as a supporter.", id=row["joined_alert_id"])
    return text


def _xml_value(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _append(parent: ET.Element, name: str, value) -> None:
    child = ET.SubElement(parent, name)
    if isinstance(value, list):
        item_name = {"attributes": "attribute", "values": "value"}.get(name, "item")
        for item in value:
            _append(child, item_name, item)
    elif isinstance(value, dict):
        for key, sub in value.items():
            _append(child, key, sub)
    else:
        text = _xml_value(value)
        if text is not None:
            child.text = text


def to_xml(root: str, item: str | None, body) -> bytes:
    """A list of dicts under ``<root><item>...`` or one dict under ``<root>``."""
    element = ET.Element(root)
    if item is None:
        for key, value in body.items():
            _append(element, key, value)
    else:
        for entry in body:
            _append(element, item, entry)
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(element, encoding="utf-8"
                                                                   ).split(b"?>", 1)[-1]


XML_ROOTS = {"services": ("services", "service"),
             "definition": ("service_definition", None),
             "requests": ("service_requests", "request"),
             "errors": ("errors", "error")}


def answer(fmt: str, kind: str, body, status: int = 200) -> Response:
    """Answer in the asked format."""
    if fmt == "xml":
        root, item = XML_ROOTS[kind]
        return Response(to_xml(root, item, body), status_code=status,
                        media_type="application/xml")
    return JSONResponse(body, status_code=status)


def error_answer(fmt: str, error: Open311Error) -> Response:
    """The spec's error list."""
    return answer(fmt if fmt in FORMATS else "json", "errors",
                  [{"code": error.status, "description": error.description}], error.status)
