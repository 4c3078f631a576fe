"""The workflow of a resident request: submit (triage, locate, join, route), settle, reply.

Every channel (Open311, the residents' ``/report`` page, chat-group intake) submits through
:func:`submit` inside the caller's transaction, so the checks, triage, routing, duplicate "+1"
and the outbox (``geo.outbox``, written by every status change and reply) are one code path.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection

from civic.catalogue import (
    MATTERS,
    OVERDUE_KIND,
    OVERDUE_SEVERITY,
    SERVICES,
    matter_from_service,
    sla_hours,
)
from civic.routing import route
from civic.texts import PRIVATE_NOTE, RECLASSIFIED
from geo import requests as store
from geo.errors import InvalidInput
from geo.i18n import Message, _, deferred

IDENTICAL_WINDOW_S = 600  # the same post again within 10 minutes is refused
ACTOR_WINDOW_S = 600
ACTOR_MAX_POSTS = 300  # per key (or device, or chat group) and window: a flood is refused

# text -> (matter, department, probability of the matter)
Classify = Callable[[str], tuple[str, str, float]]


class Refused(InvalidInput):
    """A request refused for what it is, not how it was written (duplicate post, flood)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Submission:
    """A request as any channel hands it over, checked for form already."""

    service_code: str
    description: str | None
    actor: str  # the key's name, "report:<device>" or "chat:<group>"
    channel: str = "open311"  # open311, report, chat
    attributes: dict[str, str] = field(default_factory=dict)
    point: tuple[float, float] | None = None  # lon, lat
    address: str | None = None
    media_url: str | None = None
    contact: dict[str, str | None] = field(default_factory=dict)
    chat_group_id: str | None = None
    # Given by a channel that already knows the place better than the point (chat groups).
    compound_id: int | None = None


@dataclass
class Outcome:
    """What became of a submission."""

    request_id: int
    token: str
    matter: str
    department: str | None
    party: str  # in English
    party_message: Message  # in the reader's language: geo.i18n.render
    status: str
    duplicate_of: int | None
    joined_alert_id: int | None
    public: dict  # the request as the public sees it (geo.requests.public_requests)


def triage(service_code: str, attributes: dict[str, str], description: str | None,
           classify: Classify) -> tuple[str, str, float | None, str | None]:
    """(matter, where it came from, the model's probability, department) of a request."""
    service = SERVICES[service_code]
    matter, source = matter_from_service(service, attributes)
    department = service.department
    confidence = None
    if matter is None or department is None:
        if not (description or "").strip():
            raise InvalidInput(_("A description is required for '{code}'.", code=service_code))
        guessed_matter, guessed_department, probability = classify(description or "")
        if matter is None:
            matter, source, confidence = guessed_matter, "classifier", probability
        if department is None:
            department = guessed_department
    if matter == "private":
        department = "resident"
    elif department == "resident":  # a public matter the model took for a home's own
        department = None
    return matter, source, confidence, department


def fingerprint(sub: Submission) -> str:
    """What makes two posts the same post (actor, service, text, place, contact)."""
    parts = [sub.actor, sub.service_code, sub.description or "", sub.address or "",
             json.dumps(sub.attributes, sort_keys=True), sub.contact.get("email") or "",
             sub.contact.get("phone") or ""]
    if sub.point:
        parts += [f"{sub.point[0]:.5f}", f"{sub.point[1]:.5f}"]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def submit(conn: Connection, sub: Submission, classify: Classify) -> Outcome:
    """Triage, locate, refuse repeats and floods, join a duplicate or route, and store.

    Raises
    ------
    InvalidInput
        For a request that cannot be taken, with one sentence saying why.
    """
    service = SERVICES.get(sub.service_code)
    if service is None:
        raise InvalidInput(_("service_code '{code}' is not a service of this endpoint; see "
                             "services.json.", code=sub.service_code[:60]))
    matter, source, confidence, department = triage(sub.service_code, sub.attributes,
                                                     sub.description, classify)
    store.lock_key(conn, sub.actor)
    if sub.point is None:
        if not sub.address:
            raise InvalidInput(_("A location is required: lat and long, or address_string."))
        sub.point = store.geocode(conn, sub.address)
        if sub.point is None:
            raise InvalidInput(_("address_string '{address}' names no street or compound of "
                                 "this area; give lat and long.", address=sub.address))
    lon, lat = sub.point
    if not store.in_twin_area(conn, lon, lat):
        raise InvalidInput(_("lat {lat}, long {lon} is outside the area this endpoint "
                             "serves.", lat=lat, lon=lon))
    print_ = fingerprint(sub)
    same = store.recent_identical(conn, print_, IDENTICAL_WINDOW_S)
    if same is not None:
        raise Refused(_("This request was received already as {id}; it is not taken twice.",
                        id=same))
    if store.posts_by_key(conn, sub.actor, ACTOR_WINDOW_S) >= ACTOR_MAX_POSTS:
        raise Refused(_("Too many requests from this sender (at most {most} in {minutes} "
                        "minutes).", most=ACTOR_MAX_POSTS, minutes=ACTOR_WINDOW_S // 60),
                      status=403)
    duplicate_of = joined_alert = None
    if matter != "private":
        store.lock_place(conn, lon, lat)
        duplicate_of = store.open_request_near(conn, service.code, lon, lat,
                                               department=department)
        if duplicate_of is None:
            joined_alert = store.active_alert_near(conn, service.alert_kinds, lon, lat)
    routed = route(conn, department, matter, lon, lat)
    status, notes = ("closed", PRIVATE_NOTE) if matter == "private" else ("open", None)
    token = secrets.token_urlsafe(16)
    request_id = store.insert_request(
        conn, token=token, service_code=service.code, description=sub.description,
        attributes=sub.attributes, address_string=sub.address, media_url=sub.media_url,
        lon=lon, lat=lat, matter=matter, matter_source=source, matter_confidence=confidence,
        party=routed.party, party_kind=routed.kind, party_message=routed.message,
        department=department, compound_id=sub.compound_id or routed.compound_id,
        duplicate_of=duplicate_of, joined_alert_id=joined_alert, status=status, status_notes=notes,
        sla_hours=sla_hours(service, matter), api_key_name=sub.actor, fingerprint=print_,
        channel=sub.channel, chat_group_id=sub.chat_group_id)
    store.insert_contact(conn, request_id, {k: v for k, v in sub.contact.items() if v})
    if duplicate_of is not None:
        store.add_supporter(conn, request_id, request_id=duplicate_of)
    elif joined_alert is not None:
        store.add_supporter(conn, request_id, alert_id=joined_alert)
    else:
        store.add_observation(conn, service.observation, request_id, sub.attributes, lon, lat)
    public = store.public_requests(conn, ids=[request_id])[0]
    return Outcome(request_id=request_id, token=token, matter=matter, department=department,
                   party=routed.party, party_message=routed.message, status=public["status"],
                   duplicate_of=duplicate_of, joined_alert_id=joined_alert, public=public)


def reclassify(conn: Connection, request_id: int, matter: str, actor: str,
               note: str | None) -> None:
    """A staff member's classification, the routing that follows, and the status it implies."""
    if matter not in MATTERS:
        raise InvalidInput(_("matter must be big, small or private."))
    current = store.request_for_triage(conn, request_id)
    service = SERVICES.get(current["service_code"]) or SERVICES["other"]
    department = current.get("department") or service.department
    if matter == "private":
        department = "resident"
    elif department == "resident":
        department = service.department
    routed = route(conn, department, matter, current["lon"], current["lat"])
    store.reclassify(conn, request_id, matter, party=routed.party, party_kind=routed.kind,
                     party_message=routed.message,
                     department=department, compound_id=routed.compound_id,
                     sla_hours=sla_hours(service, matter), actor=actor, note=note)
    if current["duplicate_of"] is None:
        if matter == "private" and current["status"] == "open":
            store.set_status(conn, request_id, "closed", RECLASSIFIED["private"],
                             actor)
        elif matter != "private" and current["matter"] == "private":
            store.set_status(conn, request_id, "open", RECLASSIFIED[matter],
                             actor)


def escalate_overdue(conn: Connection, now: datetime | None = None) -> list[tuple[int, int]]:
    """Raise an alert for each open request past its expected time, for its responsible party.

    Requests whose joined or overdue alert was settled are closed first. Returns
    (request id, alert id) pairs of the requests escalated now.
    """
    from geo.alerts import raise_alert  # the alerts module is the one writer of alerts

    store.close_settled_by_alerts(conn)
    escalated = []
    for row in store.overdue_requests(conn, now):
        service = SERVICES.get(row["service_code"])
        name = deferred(service.name) if service else row["service_code"]
        alert_id, _ = raise_alert(
            conn, kind=OVERDUE_KIND, severity=OVERDUE_SEVERITY[row["matter"]],
            asset_layer="service_requests", asset_id=row["id"], geom_ewkt=row["ewkt"],
            reason=deferred("Resident request {id} ({name}) is overdue since {since}; "
                            "responsible: {party}.", id=row["id"], name=name,
                            since=f"{row['expected_at']:%Y-%m-%d %H:%M %Z}",
                            party=row["responsible_party_message"] or row["responsible_party"]),
            details={"service_request_id": str(row["id"]), "service_code": row["service_code"],
                     "matter": row["matter"], "responsible_party": row["responsible_party"],
                     "expected_datetime": row["expected_at"].isoformat()})
        if alert_id is None:  # raise_alert gives None only for a settled alert kept settled
            continue
        store.mark_overdue(conn, row["id"], alert_id)
        escalated.append((row["id"], alert_id))
    return escalated
