"""Resident requests (Open311, /report, chat groups): every SQL statement of them.

The catalogue, triage, routing and workflow are in the ``civic`` package; this module only
reads and writes. A request is triaged into one of the "three kinds of matters" (big: a
government department; small: the compound's property company or residents' committee, else
the community (and grid) of the district it lies in; private: the resident, with a market
service) and routed to a responsible party with an SLA.
A report within ``DUPLICATE_RADIUS_M`` of an open request of the same service, or of an active
alert of a matching kind, joins it as a supporter. Reporters' contact details are kept in
``service_request_contacts`` and read only by :func:`contacts_of` (for admins).
"""

from __future__ import annotations

import json
import math
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import STORAGE_SRID, outbox
from geo.errors import InvalidInput, NotFound
from geo.i18n import _

MATTERS = ("big", "small", "private")
DUPLICATE_RADIUS_M = 30.0
AREA_MARGIN_DEG = 0.005  # ~500 m around the twin's assets: farther is not this neighbourhood
RESIDENT_SOURCE = "resident"
RESIDENT_CONFIDENCE = 0.6
_DEBRIS_VOLUME_M3 = {"lt1": 0.5, "1to5": 3.0, "gt5": 8.0}
_POTHOLE_SEVERITY = {"small": "low", "medium": "medium", "large": "high"}
_POTHOLE_SIZE_M2 = {"small": 0.05, "medium": 0.25, "large": 1.0}
PUBLIC_EVENT_KINDS = ("status", "reply")  # the changes a reporter is told of (the outbox)
# The point a request gives, as bound parameters :lon and :lat (degrees), in storage SRID.
_POINT = f"ST_SetSRID(ST_MakePoint(:lon, :lat), {STORAGE_SRID})"


def compound_at(conn: Connection, lon: float, lat: float) -> dict | None:
    """The compound containing a point (the smallest, if they overlap)."""
    row = conn.execute(sa.text(
        "SELECT id, name, management_type FROM compounds "
        f"WHERE ST_Intersects(geom, {_POINT}) "
        "ORDER BY ST_Area(geom) LIMIT 1"), {"lon": lon, "lat": lat}).mappings().first()
    return dict(row) if row else None


def district_at(conn: Connection, lon: float, lat: float) -> dict | None:
    """The finest district containing a point (``district_of`` of migration 0009), or None.

    Its ``name`` and ``level``, and the ``community`` and ``sub_district`` it is or lies in.
    """
    row = conn.execute(sa.text(
        "SELECT id, name, level, community, sub_district FROM districts "
        f"WHERE id = district_of({_POINT})"),
        {"lon": lon, "lat": lat}).mappings().first()
    return dict(row) if row else None


def in_twin_area(conn: Connection, lon: float, lat: float) -> bool:
    """Whether a point lies within the twin's assets' extent (plus a small margin)."""
    return bool(conn.execute(sa.text(
        f"SELECT ST_Intersects(ST_SetSRID(ST_Expand(ext, :margin), {STORAGE_SRID}), {_POINT}) "
        "FROM (SELECT ST_Extent(geom)::geometry AS ext FROM (SELECT geom FROM streets "
        "UNION ALL SELECT geom FROM compounds) g) e"),
        {"lon": lon, "lat": lat, "margin": AREA_MARGIN_DEG}).scalar())


def geocode(conn: Connection, address: str) -> tuple[float, float] | None:
    """A point for an address naming a compound or a street of the twin, or None."""
    row = conn.execute(sa.text(
        "SELECT ST_X(p), ST_Y(p) FROM ("
        " SELECT 0 AS rank, ST_PointOnSurface(geom) AS p FROM compounds "
        " WHERE lower(name) = lower(:a) OR external_id = :a "
        " UNION ALL SELECT 1, ST_ClosestPoint(ST_Collect(geom), ST_Centroid(ST_Collect(geom))) "
        " FROM streets WHERE lower(name) = lower(:a) HAVING count(*) > 0) c "
        "ORDER BY rank LIMIT 1"), {"a": address.strip()}).first()
    return (row[0], row[1]) if row else None


PLACE_CELL_M = 40.0  # at least DUPLICATE_RADIUS_M: two reports that may be one matter
# lie in the same cell or in neighbouring ones


def lock_place(conn: Connection, lon: float, lat: float) -> None:
    """Serialise, for the transaction, the reports near a place (so duplicates see each other).

    Two residents reporting one burst pipe at the same moment would otherwise both find no
    open request and both become originals. The lock covers the point's cell of a
    ``PLACE_CELL_M`` grid and its eight neighbours, taken in one order (no deadlock).
    """
    metres_x = lon * 111_320.0 * max(math.cos(math.radians(lat)), 0.01)
    cell_x, cell_y = math.floor(metres_x / PLACE_CELL_M), math.floor(lat * 110_574.0 / PLACE_CELL_M)
    keys = sorted((cell_x + dx) * 1_000_003 + (cell_y + dy)
                  for dx in (-1, 0, 1) for dy in (-1, 0, 1))
    for key in keys:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('place'), hashtext(:k))"),
                     {"k": str(key)})


def open_request_near(conn: Connection, service_code: str, lon: float, lat: float,
                      radius_m: float = DUPLICATE_RADIUS_M, *,
                      department: str | None = None) -> int | None:
    """The nearest open, original request of the same matter within ``radius_m``.

    The same matter: the same service, or the same trade where either was told in free text
    (service ``other``: a chat message about a streetlight supports a streetlight request).
    """
    return conn.execute(sa.text(
        "SELECT id FROM service_requests WHERE (CASE WHEN service_code = 'other' "
        "OR CAST(:code AS text) = 'other' THEN department = :dept ELSE service_code = :code "
        "END) AND status = 'open' "
        "AND duplicate_of IS NULL AND joined_alert_id IS NULL "
        f"AND ST_DWithin(geom::geography, {_POINT}::geography, :r) "
        f"ORDER BY geom <-> {_POINT} LIMIT 1 FOR UPDATE"),
        {"code": service_code, "lon": lon, "lat": lat, "r": radius_m,
         "dept": department}).scalar()


def active_alert_near(conn: Connection, kinds: tuple[str, ...], lon: float, lat: float,
                      radius_m: float = DUPLICATE_RADIUS_M) -> int | None:
    """The nearest active alert of one of ``kinds`` within ``radius_m``."""
    if not kinds:
        return None
    return conn.execute(sa.text(
        "SELECT id FROM alerts WHERE kind = ANY(:kinds) "
        "AND status IN ('open', 'acknowledged', 'in_progress') "
        f"AND ST_DWithin(geom::geography, {_POINT}::geography, :r) "
        f"ORDER BY geom <-> {_POINT} LIMIT 1"),
        {"kinds": list(kinds), "lon": lon, "lat": lat, "r": radius_m}).scalar()


def recent_identical(conn: Connection, fingerprint: str, within_s: int) -> int | None:
    """A request with the same fingerprint made within ``within_s`` seconds."""
    return conn.execute(sa.text(
        "SELECT id FROM service_requests WHERE fingerprint = :f "
        "AND requested_at > now() - make_interval(secs => :s) ORDER BY id DESC LIMIT 1"),
        {"f": fingerprint, "s": within_s}).scalar()


def posts_by_key(conn: Connection, key_name: str, within_s: int) -> int:
    """How many requests a key posted in the last ``within_s`` seconds."""
    return conn.execute(sa.text(
        "SELECT count(*) FROM service_requests WHERE api_key_name = :k "
        "AND requested_at > now() - make_interval(secs => :s)"),
        {"k": key_name, "s": within_s}).scalar_one()


def lock_key(conn: Connection, key_name: str) -> None:
    """Serialise one key's posts for the transaction (so flood checks see each other)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('open311:' || :k))"),
                 {"k": key_name})


def insert_request(conn: Connection, *, token: str, service_code: str, description: str | None,
                   attributes: dict, address_string: str | None, media_url: str | None,
                   lon: float, lat: float, matter: str, matter_source: str,
                   matter_confidence: float | None, party: str, party_kind: str,
                   party_message: dict | None, department: str | None,
                   compound_id: int | None, duplicate_of: int | None,
                   joined_alert_id: int | None, status: str, status_notes: str | None,
                   sla_hours: int, api_key_name: str, fingerprint: str,
                   channel: str = "open311", chat_group_id: str | None = None) -> int:
    """Store a request and its first history event; return its id."""
    request_id = conn.execute(sa.text(
        "INSERT INTO service_requests (token, service_code, description, attributes, "
        "address_string, media_url, geom, status, status_notes, matter, matter_source, "
        "matter_confidence, responsible_party, responsible_party_message, responsible_kind, "
        "compound_id, duplicate_of, joined_alert_id, api_key_name, fingerprint, expected_at, "
        "closed_at, department, channel, chat_group_id) VALUES (:token, "
        ":code, :description, CAST(:attributes AS jsonb), :address, :media, "
        f"{_POINT}, :status, :notes, :matter, :msource, "
        ":mconf, :party, CAST(:pmsg AS jsonb), :pkind, :compound, :dup, :alert, :key, :fp, "
        "now() + make_interval(hours => :sla), "
        "CASE WHEN CAST(:status AS text) = 'closed' THEN now() END, :dept, :channel, :group) "
        "RETURNING id"),
        {"token": token, "code": service_code, "description": description,
         "attributes": json.dumps(attributes), "address": address_string, "media": media_url,
         "lon": lon, "lat": lat, "status": status, "notes": status_notes, "matter": matter,
         "msource": matter_source, "mconf": matter_confidence, "party": party,
         "pmsg": None if party_message is None else json.dumps(party_message),
         "pkind": party_kind, "compound": compound_id, "dup": duplicate_of,
         "alert": joined_alert_id, "key": api_key_name, "fp": fingerprint,
         "sla": sla_hours, "dept": department, "channel": channel,
         "group": chat_group_id}).scalar_one()
    # The first event's note is the request's own (None when open): who acts on it is shown
    # beside it in the reader's language (civic.routing.party_of), not frozen here in English.
    add_event(conn, request_id, api_key_name, "status", None, status, status_notes)
    return request_id


def insert_contact(conn: Connection, request_id: int, contact: dict[str, str]) -> None:
    """Keep a reporter's contact details apart from the request."""
    if not any(contact.values()):
        return
    conn.execute(sa.text(
        "INSERT INTO service_request_contacts (request_id, first_name, last_name, phone, email, "
        "device_id, account_id) VALUES (:id, :first_name, :last_name, :phone, :email, "
        ":device_id, :account_id)"),
        {"id": request_id, **{k: contact.get(k) for k in CONTACT_FIELDS}})


CONTACT_FIELDS = ("first_name", "last_name", "phone", "email", "device_id", "account_id")


def add_supporter(conn: Connection, supporter_id: int, *, request_id: int | None = None,
                  alert_id: int | None = None) -> None:
    """Record a +1: ``supporter_id`` reports the same matter as a request or an alert."""
    conn.execute(sa.text(
        "INSERT INTO service_request_supporters (request_id, alert_id, supporter_id) "
        "VALUES (:r, :a, :s)"), {"r": request_id, "a": alert_id, "s": supporter_id})
    if request_id is not None:
        conn.execute(sa.text("UPDATE service_requests SET updated_at = now() WHERE id = :r"),
                     {"r": request_id})


def add_event(conn: Connection, request_id: int, actor: str, kind: str, from_value: str | None,
              to_value: str | None, note: str | None) -> None:
    """Keep one change of a request in its history."""
    conn.execute(sa.text(
        "INSERT INTO service_request_events (request_id, actor, kind, from_value, to_value, "
        "note) VALUES (:id, :actor, :kind, :f, :t, :note)"),
        {"id": request_id, "actor": actor, "kind": kind, "f": from_value, "t": to_value,
         "note": note})
    if kind in PUBLIC_EVENT_KINDS:  # the reporter is told, in this same transaction
        outbox.record(conn, request_id, kind, previous=from_value, note=note, at_actor=actor)


def add_observation(conn: Connection, observation: str | None, request_id: int,
                    attributes: dict, lon: float, lat: float) -> tuple[str, int] | None:
    """Feed the twin: a resident's pothole or spoil pile becomes an observation."""
    params = {"ext": f"SR-{request_id}", "src": RESIDENT_SOURCE, "lon": lon, "lat": lat,
              "conf": RESIDENT_CONFIDENCE}
    if observation == "road_damage":
        size = attributes.get("size", "medium")
        obs_id = conn.execute(sa.text(
            "INSERT INTO road_damage (source, external_id, observed_at, confidence, geom, "
            "damage_class, severity, size_m2, street_id, properties) VALUES (:src, :ext, now(), "
            f":conf, {_POINT}, 'D40', :sev, :size, "
            "(SELECT s.id FROM streets s WHERE ST_DWithin(s.geom::geography, "
            f"{_POINT}::geography, 30) "
            f"ORDER BY s.geom <-> {_POINT} LIMIT 1), "
            "jsonb_build_object('service_request_id', CAST(:ext AS text))) RETURNING id"),
            {**params, "sev": _POTHOLE_SEVERITY.get(size, "medium"),
             "size": _POTHOLE_SIZE_M2.get(size, 0.25)}).scalar_one()
    elif observation == "debris_piles":
        obs_id = conn.execute(sa.text(
            "INSERT INTO debris_piles (source, external_id, observed_at, confidence, geom, "
            "volume_m3, material, properties) VALUES (:src, :ext, now(), :conf, "
            f"{_POINT}, :vol, :mat, "
            "jsonb_build_object('service_request_id', CAST(:ext AS text))) RETURNING id"),
            {**params, "vol": _DEBRIS_VOLUME_M3.get(attributes.get("volume", ""), None),
             "mat": attributes.get("material")}).scalar_one()
    else:
        return None
    conn.execute(sa.text(
        "UPDATE service_requests SET observation_layer = :layer, observation_id = :obs "
        "WHERE id = :id"), {"layer": observation, "obs": obs_id, "id": request_id})
    return observation, obs_id


# The public view of a request: a supporter shows its original's status and notes; a request
# joined to an alert (or escalated by one) is closed once that alert is resolved or dismissed.
_PUBLIC = """
WITH v AS (
  SELECT r.id, r.token, r.service_code, r.description, r.address_string, r.media_url,
         ST_X(r.geom) AS long, ST_Y(r.geom) AS lat, r.matter, r.responsible_party,
         r.responsible_party_message, r.responsible_kind, r.department, r.channel, r.compound_id,
         r.requested_at, r.expected_at, r.duplicate_of, r.joined_alert_id,
         CASE WHEN al.status IN ('resolved', 'dismissed') THEN 'closed'
              WHEN o.id IS NOT NULL THEN o.status ELSE r.status END AS status,
         CASE WHEN al.status IN ('resolved', 'dismissed') THEN coalesce(
                (SELECT e.note FROM alert_events e WHERE e.alert_id = al.id
                 AND e.to_status = al.status ORDER BY e.at DESC, e.id DESC LIMIT 1),
                'The matter was ' || al.status || '.')  -- civic.texts.SETTLED_BY_ALERT
              WHEN o.id IS NOT NULL THEN o.status_notes ELSE r.status_notes END AS status_notes,
         greatest(r.updated_at, o.updated_at, al.updated_at) AS updated_at,
         (SELECT count(*) FROM service_request_supporters s
          WHERE s.request_id = r.id) AS supporters,
         r.district_id, d.name AS district, d.community, d.sub_district
  FROM service_requests r
  LEFT JOIN districts d ON d.id = r.district_id
  LEFT JOIN service_requests o ON o.id = r.duplicate_of
  LEFT JOIN alerts al ON al.id = coalesce(r.joined_alert_id, r.overdue_alert_id)
)
SELECT * FROM v
"""


def public_requests(conn: Connection, *, ids: list[int] | None = None,
                    codes: list[str] | None = None, start: datetime | None = None,
                    end: datetime | None = None, status: str | None = None,
                    matters: list[str] | None = None, districts: list[str] | None = None,
                    limit: int = 1000) -> list[dict]:
    """Requests as the public sees them (never contact details), newest first.

    ``ids`` overrides every other filter, as in GeoReport v2. ``districts`` are names of a
    grid, a community or a sub-district: a request in any of them, or within them, is kept.
    """
    params: dict[str, object]
    if ids is not None:
        where, params = "WHERE id = ANY(:ids)", {"ids": ids}
    else:
        clauses = ["requested_at >= :start", "requested_at <= :end"]
        params = {"start": start, "end": end}
        if codes:
            clauses.append("service_code = ANY(:codes)")
            params["codes"] = codes
        if status:
            clauses.append("status = :status")
            params["status"] = status
        if matters:
            clauses.append("matter = ANY(:matters)")
            params["matters"] = matters
        if districts:
            clauses.append("district_id IN (SELECT id FROM districts WHERE name = ANY(:districts)"
                           " OR community = ANY(:districts) OR sub_district = ANY(:districts))")
            params["districts"] = districts
        where = "WHERE " + " AND ".join(clauses)
    params["limit"] = limit
    return [dict(r) for r in conn.execute(sa.text(
        f"{_PUBLIC} {where} ORDER BY requested_at DESC, id DESC LIMIT :limit"),
        params).mappings()]


def request_of_token(conn: Connection, token: str) -> int | None:
    """The request id a token was given for."""
    return conn.execute(sa.text("SELECT id FROM service_requests WHERE token = :t"),
                        {"t": token}).scalar()


def contacts_of(conn: Connection, ids: list[int]) -> dict[int, dict]:
    """Reporters' contact details by request id: for admin answers only."""
    rows = conn.execute(sa.text(
        "SELECT request_id, first_name, last_name, phone, email, device_id, account_id "
        "FROM service_request_contacts WHERE request_id = ANY(:ids)"), {"ids": ids}).mappings()
    return {r["request_id"]: {k: r[k] for k in CONTACT_FIELDS} for r in rows}


def staff_view(conn: Connection, request_id: int) -> dict:
    """A request's triage, routing and history (for staff)."""
    row = conn.execute(sa.text(
        "SELECT id, service_code, matter, matter_source, matter_confidence, responsible_party, "
        "responsible_kind, compound_id, duplicate_of, joined_alert_id, observation_layer, "
        "observation_id, overdue_alert_id, status, status_notes, expected_at, "
        "(SELECT name FROM districts d WHERE d.id = r.district_id) AS district "
        "FROM service_requests r WHERE id = :id"), {"id": request_id}).mappings().first()
    if row is None:
        raise NotFound(_("There is no request {id}.", id=request_id))
    view = dict(row)
    view["history"] = [dict(r) for r in conn.execute(sa.text(
        "SELECT at, actor, kind, from_value, to_value, note FROM service_request_events "
        "WHERE request_id = :id ORDER BY at, id"), {"id": request_id}).mappings()]
    return view


def _locked(conn: Connection, request_id: int) -> sa.RowMapping:
    row = conn.execute(sa.text(
        "SELECT id, service_code, status, matter, department, description, ST_X(geom) AS lon, "
        "ST_Y(geom) AS lat, duplicate_of FROM service_requests WHERE id = :id FOR UPDATE"),
        {"id": request_id}).mappings().first()
    if row is None:
        raise NotFound(_("There is no request {id}.", id=request_id))
    return row


def set_status(conn: Connection, request_id: int, status: str, notes: str | None,
               actor: str) -> None:
    """Open or close a matter: the request and every supporter of it."""
    if status not in ("open", "closed"):
        raise InvalidInput(_("status must be 'open' or 'closed'."))
    row = _locked(conn, request_id)
    if row.duplicate_of is not None:
        raise InvalidInput(_("Request {id} supports request {main}; change that one.",
                             id=request_id, main=row.duplicate_of))
    supporters = conn.execute(sa.text(
        "SELECT id, status FROM service_requests WHERE duplicate_of = :id ORDER BY id "
        "FOR UPDATE"), {"id": request_id}).all()
    conn.execute(sa.text(
        "UPDATE service_requests SET status = :s, status_notes = :n, updated_at = now(), "
        "closed_at = CASE WHEN CAST(:s AS text) = 'closed' THEN now() END "
        "WHERE id = :id OR duplicate_of = :id"), {"s": status, "n": notes, "id": request_id})
    if status == "open":
        # Reopened after its alert was settled ("it is not fixed"): the settled alert no
        # longer speaks for the request, or the public view would still read it as closed.
        conn.execute(sa.text(
            "UPDATE service_requests r SET "
            "joined_alert_id = CASE WHEN j.status IN ('resolved', 'dismissed') THEN NULL "
            "ELSE r.joined_alert_id END, "
            "overdue_alert_id = CASE WHEN o.status IN ('resolved', 'dismissed') THEN NULL "
            "ELSE r.overdue_alert_id END "
            "FROM service_requests x LEFT JOIN alerts j ON j.id = x.joined_alert_id "
            "LEFT JOIN alerts o ON o.id = x.overdue_alert_id "
            "WHERE x.id = r.id AND r.id = :id"), {"id": request_id})
    add_event(conn, request_id, actor, "status", row.status, status, notes)
    for supporter_id, was in supporters:  # each reporter of the matter is told
        add_event(conn, supporter_id, actor, "status", was, status, notes)


def add_reply(conn: Connection, request_id: int, text: str, actor: str) -> None:
    """A staff member's reply to the reporters of a matter (the request and its supporters)."""
    row = _locked(conn, request_id)
    if row.duplicate_of is not None:
        raise InvalidInput(_("Request {id} supports request {main}; reply on that one.",
                             id=request_id, main=row.duplicate_of))
    conn.execute(sa.text("UPDATE service_requests SET updated_at = now() "
                         "WHERE id = :id OR duplicate_of = :id"), {"id": request_id})
    add_event(conn, request_id, actor, "reply", None, None, text)
    for (supporter_id,) in conn.execute(sa.text(
            "SELECT id FROM service_requests WHERE duplicate_of = :id ORDER BY id"),
            {"id": request_id}).all():
        add_event(conn, supporter_id, actor, "reply", None, None, text)


def public_history(conn: Connection, request_id: int) -> list[dict]:
    """What a reporter is shown of a request's history: status changes and replies."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT at, kind, from_value, to_value, note FROM service_request_events "
        "WHERE request_id = :id AND kind = ANY(:kinds) ORDER BY at, id"),
        {"id": request_id, "kinds": list(PUBLIC_EVENT_KINDS)}).mappings()]


def add_photo(conn: Connection, *, request_id: int, media_type: str, size: int, sha256: str,
              path: str) -> int:
    """Keep a resident's photo of a request; its id."""
    return conn.execute(sa.text(
        "INSERT INTO service_request_photos (request_id, media_type, size, sha256, path) "
        "VALUES (:r, :m, :s, :h, :p) RETURNING id"),
        {"r": request_id, "m": media_type, "s": size, "h": sha256, "p": path}).scalar_one()


def photos_of(conn: Connection, request_id: int) -> list[dict]:
    """A request's photos (without their bytes)."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT id, media_type, size, created_at FROM service_request_photos "
        "WHERE request_id = :r ORDER BY id"), {"r": request_id}).mappings()]


def photo(conn: Connection, photo_id: int) -> dict | None:
    """A photo's record (its path under the photo directory)."""
    row = conn.execute(sa.text(
        "SELECT id, request_id, media_type, path FROM service_request_photos WHERE id = :id"),
        {"id": photo_id}).mappings().first()
    return dict(row) if row else None


def reclassify(conn: Connection, request_id: int, matter: str, *, party: str, party_kind: str,
               party_message: dict | None, department: str | None, compound_id: int | None,
               sla_hours: int, actor: str,
               note: str | None) -> None:
    """Keep a staff member's classification and the routing that follows from it."""
    if matter not in MATTERS:
        raise InvalidInput(_("matter must be one of {matters}.", matters=", ".join(MATTERS)))
    row = _locked(conn, request_id)
    conn.execute(sa.text(
        "UPDATE service_requests SET matter = :m, matter_source = 'staff', "
        "matter_confidence = NULL, responsible_party = :party, "
        "responsible_party_message = CAST(:pmsg AS jsonb), responsible_kind = :kind, "
        "compound_id = :compound, department = :dept, updated_at = now(), "
        "expected_at = requested_at + make_interval(hours => :sla) WHERE id = :id"),
        {"m": matter, "party": party, "kind": party_kind, "compound": compound_id,
         "pmsg": None if party_message is None else json.dumps(party_message),
         "dept": department, "sla": sla_hours, "id": request_id})
    add_event(conn, request_id, actor, "classification", row.matter, matter, note)


def request_for_triage(conn: Connection, request_id: int) -> dict:
    """What re-routing a request needs: service, place, current matter."""
    return dict(_locked(conn, request_id))


def overdue_requests(conn: Connection, now: datetime | None = None) -> list[dict]:
    """Open original requests past their expected time that are not escalated yet."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT r.id, r.service_code, r.matter, r.responsible_party, "
        "r.responsible_party_message, r.expected_at, "
        "ST_AsEWKT(r.geom) AS ewkt FROM service_requests r "
        "WHERE r.status = 'open' AND r.duplicate_of IS NULL AND r.joined_alert_id IS NULL "
        "AND r.overdue_alert_id IS NULL "
        "AND r.expected_at < coalesce(CAST(:now AS timestamptz), now()) "
        "ORDER BY r.expected_at FOR UPDATE OF r SKIP LOCKED"), {"now": now}).mappings()]


def mark_overdue(conn: Connection, request_id: int, alert_id: int) -> None:
    """Link a request to the alert that escalates it."""
    conn.execute(sa.text(
        "UPDATE service_requests SET overdue_alert_id = :a, updated_at = now() WHERE id = :id"),
        {"a": alert_id, "id": request_id})
    add_event(conn, request_id, "twin", "overdue", None, str(alert_id),
              "past its expected time; escalated to the responsible party")


def close_settled_by_alerts(conn: Connection) -> int:
    """Store 'closed' on requests whose joined or overdue alert was resolved or dismissed."""
    closed = conn.execute(sa.text(
        "UPDATE service_requests r SET status = 'closed', closed_at = now(), updated_at = now(),"
        " status_notes = coalesce((SELECT e.note FROM alert_events e WHERE e.alert_id = a.id "
        "AND e.to_status = a.status ORDER BY e.at DESC, e.id DESC LIMIT 1), "
        "'The matter was ' || a.status || '.') FROM alerts a "  # civic.texts.SETTLED_BY_ALERT
        "WHERE a.id = coalesce(r.joined_alert_id, r.overdue_alert_id) AND r.status = 'open' "
        "AND a.status IN ('resolved', 'dismissed') RETURNING r.id, r.status_notes")).all()
    # Its supporters are closed with it, and each reporter is told, as set_status does.
    supporters = conn.execute(sa.text(
        "UPDATE service_requests s SET status = 'closed', closed_at = now(), updated_at = now(),"
        " status_notes = o.status_notes FROM service_requests o "
        "WHERE s.duplicate_of = o.id AND o.id = ANY(:ids) AND s.status = 'open' "
        "RETURNING s.id, s.status_notes"), {"ids": [row.id for row in closed]}).all()
    for request_id, note in [*closed, *supporters]:
        add_event(conn, request_id, "twin", "status", "open", "closed", note)
    return len(closed)


def staff_labels(conn: Connection) -> list[tuple[str, str, str]]:
    """(description, matter, department) a staff member classified: retraining examples."""
    return [(r[0], r[1], r[2]) for r in conn.execute(sa.text(
        "SELECT description, matter, coalesce(department, CASE WHEN matter = 'private' "
        "THEN 'resident' ELSE 'sanitation' END) FROM service_requests "
        "WHERE matter_source = 'staff' "
        "AND description IS NOT NULL AND description <> '' ORDER BY id")).all()]


# -- places residents name (report page, chat groups) ---------------------------------------


def _place(conn: Connection, table: str, columns: str, external_id: str) -> dict | None:
    # A footprint residents name by its id, and the point inside it a request is placed at.
    row = conn.execute(sa.text(
        f"SELECT {columns}, ST_X(ST_PointOnSurface(geom)) AS lon, "
        f"ST_Y(ST_PointOnSurface(geom)) AS lat FROM {table} WHERE external_id = :e "
        "ORDER BY id LIMIT 1"), {"e": external_id}).mappings().first()
    return dict(row) if row else None


def compound_place(conn: Connection, external_id: str) -> dict | None:
    """A compound by its external id, with a point inside it (id, name, lon, lat)."""
    return _place(conn, "compounds", "id, external_id, name", external_id)


def building_place(conn: Connection, external_id: str) -> dict | None:
    """A house by its external id, with a point inside it (id, name, compound_id, lon, lat)."""
    return _place(conn, "buildings", "id, external_id, name, compound_id", external_id)


def compound_choices(conn: Connection) -> list[dict]:
    """Every compound's external id and name, by name (the report page's list)."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT external_id, name FROM compounds WHERE name IS NOT NULL "
        "ORDER BY name, external_id")).mappings()]


def gate_point(conn: Connection, compound_id: int, gate: int) -> tuple[float, float] | None:
    """Where gate ``gate`` of a compound is taken to be.

    The twin holds no gates, and gates open onto streets: gate N is the point of the
    compound's boundary nearest to the N-th nearest distinct street.
    """
    row = conn.execute(sa.text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_ClosestPoint(ST_Boundary(c.geom), s.geom) AS p "
        " FROM compounds c CROSS JOIN LATERAL (SELECT geom FROM streets "
        "  ORDER BY geom <-> c.geom LIMIT :n) s WHERE c.id = :id "
        " ORDER BY ST_Distance(c.geom, s.geom) OFFSET :n - 1 LIMIT 1) g"),
        {"id": compound_id, "n": gate}).first()
    return (row[0], row[1]) if row else None


def street_point(conn: Connection, name: str, near_compound_id: int | None
                 ) -> tuple[float, float] | None:
    """The point of a named street nearest to a compound (or the street's middle)."""
    row = conn.execute(sa.text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT CASE WHEN c.geom IS NULL "
        " THEN ST_PointOnSurface(ST_Collect(s.geom)) "
        " ELSE ST_ClosestPoint(ST_Collect(s.geom), ST_PointOnSurface(c.geom)) END AS p "
        " FROM streets s LEFT JOIN compounds c ON c.id = :cid "
        " WHERE lower(s.name) = lower(:name) GROUP BY c.geom) q"),
        {"name": name, "cid": near_compound_id}).first()
    return (row[0], row[1]) if row and row[0] is not None else None


def place_names(conn: Connection) -> dict[str, list[str]]:
    """Names residents may type: streets and compounds of the twin."""
    streets = conn.execute(sa.text(
        "SELECT DISTINCT name FROM streets WHERE name IS NOT NULL")).scalars().all()
    compounds = conn.execute(sa.text(
        "SELECT DISTINCT name FROM compounds WHERE name IS NOT NULL")).scalars().all()
    return {"streets": list(streets), "compounds": list(compounds)}


def compound_by_name(conn: Connection, name: str) -> str | None:
    """The external id of a compound by its name."""
    return conn.execute(sa.text(
        "SELECT external_id FROM compounds WHERE lower(name) = lower(:n) ORDER BY id LIMIT 1"),
        {"n": name}).scalar()


def supporters_of(conn: Connection, request_id: int) -> int:
    """How many reports support a request."""
    return conn.execute(sa.text(
        "SELECT count(*) FROM service_request_supporters WHERE request_id = :r"),
        {"r": request_id}).scalar_one()


# -- the councils' living list (三事清单) ------------------------------------------------------

_LIVING = """
SELECT r.id, r.service_code, r.description, r.matter, r.status, r.responsible_party,
       r.responsible_party_message, r.responsible_kind, r.department, r.channel,
       r.requested_at, r.expected_at,
       c.external_id AS compound_external_id, c.name AS compound_name,
       (SELECT count(*) FROM service_request_supporters s WHERE s.request_id = r.id)
         AS supporters,
       extract(epoch FROM (coalesce(r.closed_at, now()) - r.requested_at)) / 86400.0 AS age_days,
       (r.status = 'open' AND r.expected_at < now()) AS overdue
FROM service_requests r LEFT JOIN compounds c ON c.id = r.compound_id
WHERE r.duplicate_of IS NULL
  AND (CAST(:compound AS text) IS NULL OR c.external_id = :compound)
  AND (CAST(:matters AS text[]) IS NULL OR r.matter = ANY(:matters))
  AND (CAST(:statuses AS text[]) IS NULL OR r.status = ANY(:statuses))
"""


def living_lines(conn: Connection, *, compound: str | None = None,
                 matters: list[str] | None = None,
                 statuses: list[str] | None = None) -> list[dict]:
    """The living list's lines: original requests by compound, party, matter and status.

    Counted over every request (the list of requests behind them is capped, the lines not):
    requests, supporters, the oldest one's age in days, how many are overdue, and their ids.
    """
    return [dict(r) for r in conn.execute(sa.text(
        "WITH items AS (" + _LIVING + ") SELECT compound_external_id, compound_name, "
        "responsible_party, (array_agg(responsible_party_message ORDER BY id DESC))[1] "
        "AS responsible_party_message, min(responsible_kind) AS responsible_kind, matter, "
        "status, count(*) AS requests, sum(supporters) AS supporters, "
        "max(age_days) AS oldest_days, count(*) FILTER (WHERE overdue) AS overdue, "
        "array_agg(id ORDER BY requested_at, id) AS request_ids FROM items "
        "GROUP BY compound_external_id, compound_name, responsible_party, matter, status"),
        {"compound": compound, "matters": matters, "statuses": statuses}).mappings()]


def living_list(conn: Connection, *, compound: str | None = None,
                matters: list[str] | None = None, statuses: list[str] | None = None,
                limit: int = 5000) -> list[dict]:
    """Original requests (supporters counted, not listed) with compound, age and overdue flag.

    Ordered for a council: by compound, responsible party, matter, status, oldest first.
    """
    return [dict(r) for r in conn.execute(sa.text(
        _LIVING + " ORDER BY c.name NULLS LAST, r.responsible_party, r.matter, r.status DESC, "
        "r.requested_at LIMIT :limit"),
        {"compound": compound, "matters": matters, "statuses": statuses,
         "limit": limit}).mappings()]
