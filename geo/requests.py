"""Resident requests (Open311 GeoReport v2): the services catalogue and every SQL statement.

A request is triaged into one of the "three kinds of matters" (big: a government department;
small: the compound's property company or residents' committee, else the community (and grid)
of the district it lies in;
private: the resident, with a market service) and routed to a responsible party with an SLA.
A report within ``DUPLICATE_RADIUS_M`` of an open request of the same service, or of an active
alert of a matching kind, joins it as a supporter. Reporters' contact details are kept in
``service_request_contacts`` and read only by :func:`contacts_of` (for admins).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.errors import InvalidInput, NotFound
from geo.i18n import N_, deferred

MATTERS = ("big", "small", "private")
DUPLICATE_RADIUS_M = 30.0
AREA_MARGIN_DEG = 0.005  # ~500 m around the twin's assets: farther is not this neighbourhood
RESIDENT_SOURCE = "resident"
RESIDENT_CONFIDENCE = 0.6
OVERDUE_KIND = "request_overdue"
OVERDUE_SEVERITY = {"big": "high", "small": "medium", "private": "low"}
# SLA by matter when the service has no fixed one (free-text requests).
MATTER_SLA_HOURS = {"big": 72, "small": 168, "private": 72}

DEPARTMENTS = {
    "roads": "County Transport Bureau, roads section",
    "drainage": "County Water Affairs Bureau, drainage section",
    "utilities": "County Housing and Urban-Rural Development Bureau, municipal facilities",
    "lighting": "County Urban Management Bureau, street lighting",
    "city_management": "County Urban Management Bureau, sanitation and enforcement",
}


@dataclass(frozen=True)
class Attribute:
    """A service attribute (GeoReport v2 service definition)."""

    code: str
    description: str
    datatype: str = "singlevaluelist"  # string, number, datetime, text, singlevaluelist
    required: bool = False
    values: tuple[tuple[str, str], ...] = ()
    datatype_description: str = ""


@dataclass(frozen=True)
class Service:
    """One kind of request residents may make."""

    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    matter: str | None  # None: decided from the description by the classifier
    department: str | None  # the department for big matters
    sla_hours: int | None
    attributes: tuple[Attribute, ...] = ()
    # attribute code -> value -> matter, overriding the service's own matter
    matter_by_attribute: dict[str, dict[str, str]] = field(default_factory=dict)
    alert_kinds: tuple[str, ...] = ()  # active alerts that are the same matter
    observation: str | None = None  # the twin layer a report feeds


_WHERE_DRAIN = Attribute(
    "where", N_("Where is the drain?"), required=True,
    values=(("street", N_("On a street or public space")),
            ("compound", N_("Inside a compound")),
            ("inside_home", N_("Inside my home (sink, toilet, private pipe)"))))
_WHERE_LIGHT = Attribute(
    "where", N_("Where is the light?"), required=True,
    values=(("street", N_("On a street")), ("compound", N_("Inside a compound"))))

SERVICES: dict[str, Service] = {s.code: s for s in (
    Service("pothole", N_("Pothole"), N_("A hole in the road surface."), N_("Roads"),
            ("pothole", "road", "坑槽"), "big", "roads", 72,
            (Attribute("size", N_("How big is it?"), required=True,
                       values=(("small", N_("Smaller than a shoe box")),
                               ("medium", N_("About a bucket")),
                               ("large", N_("Larger than a bicycle wheel")))),),
            alert_kinds=("road_wear",), observation="road_damage"),
    Service("road_cracking", N_("Road cracking"), N_("Cracks in the road surface."),
            N_("Roads"),
            ("crack", "road", "裂缝"), "big", "roads", 720,
            (Attribute("crack_type", N_("What do the cracks look like?"),
                       values=(("longitudinal", N_("Along the road")),
                               ("transverse", N_("Across the road")),
                               ("alligator", N_("A web of cracks")))),),
            alert_kinds=("road_wear",)),
    Service("manhole_cover", N_("Manhole cover missing or broken"),
            N_("A manhole cover that is missing, broken, open or tilted."),
            N_("Manholes"), ("manhole", "cover", "井盖"), "big", "utilities", 4,
            (Attribute("cover_state", N_("What is wrong with the cover?"), required=True,
                       values=(("missing", N_("Missing")), ("broken", N_("Broken")),
                               ("open", N_("Open")), ("tilted", N_("Tilted or loose")))),),
            alert_kinds=("manhole_cover_open", "manhole_tilt")),
    Service("blocked_drain", N_("Blocked or overflowing drain"),
            N_("A drain or gully that is blocked or overflowing."), N_("Drainage"),
            ("drain", "flooding", "下水道", "积水"), "big", "drainage", 24,
            (_WHERE_DRAIN,
             Attribute("flooding", N_("Is water standing on the road?"),
                       values=(("yes", N_("Yes")), ("no", N_("No"))))),
            matter_by_attribute={"where": {"inside_home": "private"}},
            alert_kinds=("manhole_flooding",)),
    Service("debris_pile", N_("Debris or construction-spoil pile"),
            N_("Construction spoil or rubble left in a public place."), N_("Debris"),
            ("debris", "spoil", "rubble", "渣土"), "small", None, 168,
            (Attribute("volume", N_("About how much is there?"), required=True,
                       values=(("lt1", N_("Less than 1 m³ (a few bags)")),
                               ("1to5", N_("1-5 m³ (a small truck)")),
                               ("gt5", N_("More than 5 m³")))),
             Attribute("material", N_("What is it mostly?"), required=False,
                       values=(("soil", N_("Soil")), ("rubble", N_("Bricks and concrete")),
                               ("mixed", N_("Mixed"))))),
            observation="debris_piles"),
    Service("illegal_dumping", N_("Illegal dumping"),
            N_("Household waste, furniture or bulky items dumped in a public place."),
            N_("Debris"), ("dumping", "waste", "垃圾"), "small", None, 72,
            (Attribute("waste_type", N_("What was dumped?"),
                       values=(("household", N_("Household waste")),
                               ("bulky", N_("Furniture or bulky items")),
                               ("other", N_("Other")))),)),
    Service("ground_lock", N_("Private ground lock on public parking"),
            N_("A private lock or barrier taking a public parking space."), N_("Parking"),
            ("parking", "ground lock", "地锁"), "small", None, 168),
    Service("occupied_green_space", N_("Occupied green space"),
            N_("Green space taken for vegetable plots, storage or parking."),
            N_("Green space"), ("green space", "绿地"), "small", None, 336),
    Service("streetlight", N_("Broken streetlight"),
            N_("A streetlight that is off, flickering or damaged."), N_("Lighting"),
            ("streetlight", "路灯"), "big", "lighting", 72,
            (_WHERE_LIGHT,), matter_by_attribute={"where": {"compound": "small"}}),
    Service("other", N_("Something else"),
            N_("Describe the problem; it is triaged from the description."), N_("Other"),
            ("other", "其他"), None, "city_management", None),
)}

_DEBRIS_VOLUME_M3 = {"lt1": 0.5, "1to5": 3.0, "gt5": 8.0}
_POTHOLE_SEVERITY = {"small": "low", "medium": "medium", "large": "high"}
_POTHOLE_SIZE_M2 = {"small": 0.05, "medium": 0.25, "large": 1.0}


@dataclass(frozen=True)
class Route:
    """Who fixes a matter, and where it was decided."""

    party: str
    kind: str  # department, property_company, resettlement_office, residents_committee,
    # community, sub_district, resident
    compound_id: int | None = None


def matter_from_service(service: Service, attributes: dict[str, str]) -> tuple[str | None, str]:
    """The matter a service and its attributes decide, and which of them decided it."""
    for code, by_value in service.matter_by_attribute.items():
        if attributes.get(code) in by_value:
            return by_value[attributes[code]], "attributes"
    return service.matter, "service"


def compound_at(conn: Connection, lon: float, lat: float) -> dict | None:
    """The compound containing a point (the smallest, if they overlap)."""
    row = conn.execute(sa.text(
        "SELECT id, name, management_type FROM compounds "
        "WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) "
        "ORDER BY ST_Area(geom) LIMIT 1"), {"lon": lon, "lat": lat}).mappings().first()
    return dict(row) if row else None


def district_at(conn: Connection, lon: float, lat: float) -> dict | None:
    """The finest district containing a point (``district_of`` of migration 0009), or None.

    Its ``name`` and ``level``, and the ``community`` and ``sub_district`` it is or lies in.
    """
    row = conn.execute(sa.text(
        "SELECT id, name, level, community, sub_district FROM districts "
        "WHERE id = district_of(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"),
        {"lon": lon, "lat": lat}).mappings().first()
    return dict(row) if row else None


def route(conn: Connection, service: Service, matter: str, lon: float, lat: float) -> Route:
    """Route a matter by its kind and place: the compound's manager, else the district's.

    Big matters go to the county department, for the sub-district the point lies in; small
    matters outside a compound to the community's residents' committee (with the grid's
    worker where the point lies in a grid), else the sub-district office. A point in no
    district goes to the county's urban management.
    """
    if matter == "private":
        return Route("The resident (a market service; the residents' committee can refer one)",
                     "resident")
    district = district_at(conn, lon, lat)
    sub_district = district["sub_district"] if district else None
    if matter == "big":
        department = DEPARTMENTS[service.department or "city_management"]
        return Route(f"{department} ({sub_district})" if sub_district else department,
                     "department")
    compound = compound_at(conn, lon, lat)
    if compound is None:
        if district is None:
            return Route(DEPARTMENTS["city_management"], "department")
        if district["community"]:
            grid = f" and the {district['name']} grid worker" if district["level"] == "grid" \
                else ""
            return Route(f"{district['community']} residents' committee{grid}", "community")
        return Route(f"{sub_district} office, with community volunteers", "sub_district")
    name, kind = compound["name"] or "The compound", compound["management_type"]
    office = f"the {sub_district} office" if sub_district else "the sub-district office"
    party = {
        "commodity": (f"{name} property management company", "property_company"),
        "resettlement": (f"{name} resettlement community service centre",
                         "resettlement_office"),
        "old": (f"{name} residents' committee, with {office}", "residents_committee"),
        "unmanaged": (f"{name} residents' committee", "residents_committee"),
    }[kind]
    return Route(party[0], party[1], compound["id"])


def in_twin_area(conn: Connection, lon: float, lat: float) -> bool:
    """Whether a point lies within the twin's assets' extent (plus a small margin)."""
    return bool(conn.execute(sa.text(
        "SELECT ST_Intersects(ST_SetSRID(ST_Expand(ext, :margin), 4326), "
        "ST_SetSRID(ST_MakePoint(:lon, :lat), "
        "4326)) FROM (SELECT ST_Extent(geom)::geometry AS ext FROM (SELECT geom FROM streets "
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


def open_request_near(conn: Connection, service_code: str, lon: float, lat: float,
                      radius_m: float = DUPLICATE_RADIUS_M) -> int | None:
    """The nearest open, original request of a service within ``radius_m``."""
    return conn.execute(sa.text(
        "SELECT id FROM service_requests WHERE service_code = :code AND status = 'open' "
        "AND duplicate_of IS NULL AND joined_alert_id IS NULL "
        "AND ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography,"
        " :r) ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) LIMIT 1 FOR UPDATE"),
        {"code": service_code, "lon": lon, "lat": lat, "r": radius_m}).scalar()


def active_alert_near(conn: Connection, kinds: tuple[str, ...], lon: float, lat: float,
                      radius_m: float = DUPLICATE_RADIUS_M) -> int | None:
    """The nearest active alert of one of ``kinds`` within ``radius_m``."""
    if not kinds:
        return None
    return conn.execute(sa.text(
        "SELECT id FROM alerts WHERE kind = ANY(:kinds) "
        "AND status IN ('open', 'acknowledged', 'in_progress') "
        "AND ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography,"
        " :r) ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) LIMIT 1"),
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
                   matter_confidence: float | None, route_: Route, duplicate_of: int | None,
                   joined_alert_id: int | None, status: str, status_notes: str | None,
                   sla_hours: int, api_key_name: str, fingerprint: str) -> int:
    """Store a request and its first history event; return its id."""
    request_id = conn.execute(sa.text(
        "INSERT INTO service_requests (token, service_code, description, attributes, "
        "address_string, media_url, geom, status, status_notes, matter, matter_source, "
        "matter_confidence, responsible_party, responsible_kind, compound_id, duplicate_of, "
        "joined_alert_id, api_key_name, fingerprint, expected_at, closed_at) VALUES (:token, "
        ":code, :description, CAST(:attributes AS jsonb), :address, :media, "
        "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :status, :notes, :matter, :msource, "
        ":mconf, :party, :pkind, :compound, :dup, :alert, :key, :fp, "
        "now() + make_interval(hours => :sla), "
        "CASE WHEN CAST(:status AS text) = 'closed' THEN now() END) "
        "RETURNING id"),
        {"token": token, "code": service_code, "description": description,
         "attributes": json.dumps(attributes), "address": address_string, "media": media_url,
         "lon": lon, "lat": lat, "status": status, "notes": status_notes, "matter": matter,
         "msource": matter_source, "mconf": matter_confidence, "party": route_.party,
         "pkind": route_.kind, "compound": route_.compound_id, "dup": duplicate_of,
         "alert": joined_alert_id, "key": api_key_name, "fp": fingerprint,
         "sla": sla_hours}).scalar_one()
    add_event(conn, request_id, api_key_name, "status", None, status,
              f"received; {matter} matter for {route_.party}")
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


def add_observation(conn: Connection, service: Service, request_id: int, attributes: dict,
                    lon: float, lat: float) -> tuple[str, int] | None:
    """Feed the twin: a resident's pothole or spoil pile becomes an observation."""
    params = {"ext": f"SR-{request_id}", "src": RESIDENT_SOURCE, "lon": lon, "lat": lat,
              "conf": RESIDENT_CONFIDENCE}
    if service.observation == "road_damage":
        size = attributes.get("size", "medium")
        obs_id = conn.execute(sa.text(
            "INSERT INTO road_damage (source, external_id, observed_at, confidence, geom, "
            "damage_class, severity, size_m2, street_id, properties) VALUES (:src, :ext, now(), "
            ":conf, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'D40', :sev, :size, "
            "(SELECT s.id FROM streets s WHERE ST_DWithin(s.geom::geography, "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, 30) "
            "ORDER BY s.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) LIMIT 1), "
            "jsonb_build_object('service_request_id', CAST(:ext AS text))) RETURNING id"),
            {**params, "sev": _POTHOLE_SEVERITY.get(size, "medium"),
             "size": _POTHOLE_SIZE_M2.get(size, 0.25)}).scalar_one()
    elif service.observation == "debris_piles":
        obs_id = conn.execute(sa.text(
            "INSERT INTO debris_piles (source, external_id, observed_at, confidence, geom, "
            "volume_m3, material, properties) VALUES (:src, :ext, now(), :conf, "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :vol, :mat, "
            "jsonb_build_object('service_request_id', CAST(:ext AS text))) RETURNING id"),
            {**params, "vol": _DEBRIS_VOLUME_M3.get(attributes.get("volume", ""), None),
             "mat": attributes.get("material")}).scalar_one()
    else:
        return None
    conn.execute(sa.text(
        "UPDATE service_requests SET observation_layer = :layer, observation_id = :obs "
        "WHERE id = :id"), {"layer": service.observation, "obs": obs_id, "id": request_id})
    return service.observation, obs_id


# The public view of a request: a supporter shows its original's status and notes; a request
# joined to an alert (or escalated by one) is closed once that alert is resolved or dismissed.
_PUBLIC = """
WITH v AS (
  SELECT r.id, r.token, r.service_code, r.description, r.address_string, r.media_url,
         ST_X(r.geom) AS long, ST_Y(r.geom) AS lat, r.matter, r.responsible_party,
         r.requested_at, r.expected_at, r.duplicate_of, r.joined_alert_id,
         CASE WHEN al.status IN ('resolved', 'dismissed') THEN 'closed'
              WHEN o.id IS NOT NULL THEN o.status ELSE r.status END AS status,
         CASE WHEN al.status IN ('resolved', 'dismissed') THEN coalesce(
                (SELECT e.note FROM alert_events e WHERE e.alert_id = al.id
                 AND e.to_status = al.status ORDER BY e.at DESC, e.id DESC LIMIT 1),
                'The matter was ' || al.status || '.')
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
                    limit: int = 1000) -> list[dict]:
    """Requests as the public sees them (never contact details), newest first.

    ``ids`` overrides every other filter, as in GeoReport v2.
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
        raise NotFound(f"There is no request {request_id}.")
    view = dict(row)
    view["history"] = [dict(r) for r in conn.execute(sa.text(
        "SELECT at, actor, kind, from_value, to_value, note FROM service_request_events "
        "WHERE request_id = :id ORDER BY at, id"), {"id": request_id}).mappings()]
    return view


def _locked(conn: Connection, request_id: int) -> sa.RowMapping:
    row = conn.execute(sa.text(
        "SELECT id, service_code, status, matter, description, ST_X(geom) AS lon, "
        "ST_Y(geom) AS lat, duplicate_of FROM service_requests WHERE id = :id FOR UPDATE"),
        {"id": request_id}).mappings().first()
    if row is None:
        raise NotFound(f"There is no request {request_id}.")
    return row


def set_status(conn: Connection, request_id: int, status: str, notes: str | None,
               actor: str) -> None:
    """Open or close a matter: the request and every supporter of it."""
    if status not in ("open", "closed"):
        raise InvalidInput("status must be 'open' or 'closed'.")
    row = _locked(conn, request_id)
    if row.duplicate_of is not None:
        raise InvalidInput(f"Request {request_id} supports request {row.duplicate_of}; "
                           f"change that one.")
    conn.execute(sa.text(
        "UPDATE service_requests SET status = :s, status_notes = :n, updated_at = now(), "
        "closed_at = CASE WHEN CAST(:s AS text) = 'closed' THEN now() END "
        "WHERE id = :id OR duplicate_of = :id"), {"s": status, "n": notes, "id": request_id})
    add_event(conn, request_id, actor, "status", row.status, status, notes)


def reclassify(conn: Connection, request_id: int, matter: str, route_: Route, actor: str,
               note: str | None) -> None:
    """Keep a staff member's classification and the routing that follows from it."""
    if matter not in MATTERS:
        raise InvalidInput(f"matter must be one of {', '.join(MATTERS)}.")
    row = _locked(conn, request_id)
    conn.execute(sa.text(
        "UPDATE service_requests SET matter = :m, matter_source = 'staff', "
        "matter_confidence = NULL, responsible_party = :party, responsible_kind = :kind, "
        "compound_id = :compound, updated_at = now(), "
        "expected_at = requested_at + make_interval(hours => :sla) WHERE id = :id"),
        {"m": matter, "party": route_.party, "kind": route_.kind, "compound": route_.compound_id,
         "sla": sla_hours(SERVICES.get(row.service_code), matter), "id": request_id})
    add_event(conn, request_id, actor, "classification", row.matter, matter, note)


def request_for_triage(conn: Connection, request_id: int) -> dict:
    """What re-routing a request needs: service, place, current matter."""
    return dict(_locked(conn, request_id))


def sla_hours(service: Service | None, matter: str) -> int:
    """The service's SLA, or the matter's when the service has none."""
    if service is not None and service.sla_hours is not None and service.matter == matter:
        return service.sla_hours
    return MATTER_SLA_HOURS[matter]


def overdue_requests(conn: Connection, now: datetime | None = None) -> list[dict]:
    """Open original requests past their expected time that are not escalated yet."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT r.id, r.service_code, r.matter, r.responsible_party, r.expected_at, "
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
    rows = conn.execute(sa.text(
        "UPDATE service_requests r SET status = 'closed', closed_at = now(), updated_at = now(),"
        " status_notes = coalesce((SELECT e.note FROM alert_events e WHERE e.alert_id = a.id "
        "AND e.to_status = a.status ORDER BY e.at DESC, e.id DESC LIMIT 1), "
        "'The matter was ' || a.status || '.') FROM alerts a "
        "WHERE a.id = coalesce(r.joined_alert_id, r.overdue_alert_id) AND r.status = 'open' "
        "AND a.status IN ('resolved', 'dismissed') RETURNING r.id")).scalars().all()
    for request_id in rows:
        add_event(conn, request_id, "twin", "status", "open", "closed", "its alert was settled")
    return len(rows)


def staff_labels(conn: Connection) -> list[tuple[str, str]]:
    """(description, matter) of requests a staff member classified: retraining examples."""
    return [(r[0], r[1]) for r in conn.execute(sa.text(
        "SELECT description, matter FROM service_requests WHERE matter_source = 'staff' "
        "AND description IS NOT NULL AND description <> '' ORDER BY id")).all()]


def escalate_overdue(conn: Connection, now: datetime | None = None) -> list[tuple[int, int]]:
    """Raise an alert for each open request past its expected time, for its responsible party.

    Requests whose joined or overdue alert was settled are closed first. Returns
    (request id, alert id) pairs of the requests escalated now.
    """
    from geo.alerts import raise_alert  # the alerts module is the one writer of alerts

    close_settled_by_alerts(conn)
    escalated = []
    for row in overdue_requests(conn, now):
        service = SERVICES.get(row["service_code"])
        name = deferred(service.name) if service else row["service_code"]
        alert_id, _ = raise_alert(
            conn, kind=OVERDUE_KIND, severity=OVERDUE_SEVERITY[row["matter"]],
            asset_layer="service_requests", asset_id=row["id"], geom_ewkt=row["ewkt"],
            reason=deferred("Resident request {id} ({name}) is overdue since {since}; "
                            "responsible: {party}.", id=row["id"], name=name,
                            since=f"{row['expected_at']:%Y-%m-%d %H:%M %Z}",
                            party=row["responsible_party"]),
            details={"service_request_id": str(row["id"]), "service_code": row["service_code"],
                     "matter": row["matter"], "responsible_party": row["responsible_party"],
                     "expected_datetime": row["expected_at"].isoformat()})
        mark_overdue(conn, row["id"], alert_id)
        escalated.append((row["id"], alert_id))
    return escalated
