"""Alerts and their life cycle: open -> acknowledged -> in progress -> resolved, or dismissed.

Every change is kept in ``alert_events`` with who, when and why. There is at most one active
(not resolved, not dismissed) alert per asset and kind; raising it again updates it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import filtering
from geo.errors import Conflict, InvalidInput, NotFound
from geo.i18n import SOURCE_LOCALE, Message, _, render, use_locale
from geo.vocabulary import ALERT_STATUSES, SEVERITIES, STATUS_LABELS, label

STATUSES = ALERT_STATUSES
ACTIVE = ("open", "acknowledged", "in_progress")
# action -> (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledge": (("open",), "acknowledged"),
    "start": (("open", "acknowledged"), "in_progress"),
    "resolve": (ACTIVE, "resolved"),
    "dismiss": (ACTIVE, "dismissed"),
}
SYSTEM = "twin"

_ALERT_COLUMNS = (
    "a.id, a.kind, a.severity, a.asset_layer, a.asset_id, x.external_id AS asset_external_id, "
    "a.reason, a.details, a.status, a.opened_at, a.updated_at, a.closed_at, a.evidence_at, "
    "a.assignee, a.due_on, "
    "ST_AsGeoJSON(a.geom, 7)::json AS geometry"
)
_ALERT_FROM = (
    "FROM alerts a LEFT JOIN assets x ON x.id = a.asset_id AND x.layer = a.asset_layer"
)
# What GET /alerts may sort by: the column behind each name. Severity sorts by rank.
SORTABLE = {
    "id": "a.id", "opened_at": "a.opened_at", "updated_at": "a.updated_at",
    "severity": "array_position(ARRAY['low', 'medium', 'high', 'critical'], a.severity)",
    "kind": "a.kind", "status": "a.status", "due_on": "a.due_on", "assignee": "a.assignee",
}


@dataclass(frozen=True)
class AlertFilter:
    """What ``GET /alerts`` and its tiles may ask for."""

    bbox: tuple[float, float, float, float] | None = None
    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    ids: tuple[int, ...] = ()
    filter: filtering.Filter | None = None  # a CQL2 filter on FIELDS


def raise_alert(conn: Connection, *, kind: str, severity: str, asset_layer: str | None,
                asset_id: int | None, geom_ewkt: str, reason: str | Message,
                details: dict | None = None, evidence_at: datetime | None = None,
                evidence: str | None = None) -> tuple[int | None, bool]:
    """Open an alert, or update the active one of the same asset and kind.

    Returns the alert's id and whether it is new. An update that changes nothing leaves the
    alert and its history alone.

    ``evidence_at`` is when the evidence behind the alert was observed (the reading that
    crossed, the data a forecast was made from) and ``evidence`` says what it is. A settled
    (resolved or dismissed) alert of the same asset and kind is raised again only on evidence
    observed after it was settled: otherwise nothing is written and the id is None. The new
    alert's history names the evidence and the alert it follows. Without ``evidence_at`` the
    alert is raised whatever came before.
    """
    if severity not in SEVERITIES:
        raise InvalidInput(_("Severity '{severity}' is not one of {allowed}.", severity=severity,
                             allowed=", ".join(SEVERITIES)))
    details = dict(details or {})
    if evidence is not None:
        details["evidence"] = evidence
    if isinstance(reason, dict):
        # Kept as a message, written in each reader's language (localised); the column holds
        # the English for SQL readers and older clients.
        details["reason_message"] = reason
        with use_locale(SOURCE_LOCALE):
            reason = render(reason)
    params = {"kind": kind, "severity": severity, "layer": asset_layer, "asset": asset_id,
              "geom": geom_ewkt, "reason": reason, "details": json.dumps(details, default=str),
              "evidence_at": evidence_at}
    current = conn.execute(sa.text(
        "SELECT id, severity, reason, details FROM alerts WHERE asset_layer IS NOT DISTINCT FROM "
        ":layer AND asset_id IS NOT DISTINCT FROM :asset AND kind = :kind "
        "AND status IN ('open', 'acknowledged', 'in_progress') FOR UPDATE"
    ), params).first()
    if current is None:
        settled = None
        if evidence_at is not None:
            settled = last_settled(conn, asset_layer, asset_id, kind)
            if settled is not None and evidence_at <= settled.closed_at:
                return None, False  # nothing observed since the crew settled it
        alert_id = conn.execute(sa.text(
            "INSERT INTO alerts (kind, severity, asset_layer, asset_id, reason, details, geom, "
            "evidence_at) VALUES (:kind, :severity, :layer, :asset, :reason, "
            "CAST(:details AS jsonb), ST_GeomFromEWKT(:geom), :evidence_at) RETURNING id"
        ), params).scalar_one()
        note = reason
        if settled is not None:
            note = (f"raised again on new evidence: {evidence or reason} (observed "
                    f"{evidence_at:%Y-%m-%d %H:%M %Z}), after alert {settled.id} was "
                    f"{settled.status} on {settled.closed_at:%Y-%m-%d %H:%M %Z}")
        _event(conn, alert_id, SYSTEM, None, "open", note,
               evidence={"what": evidence or reason, "observed_at": evidence_at,
                         "follows_alert": settled.id if settled is not None else None}
               if evidence_at is not None else None)
        return alert_id, True
    if (current.severity, current.reason, current.details) != (severity, reason, details):
        conn.execute(sa.text(
            "UPDATE alerts SET severity = :severity, reason = :reason, "
            "details = CAST(:details AS jsonb), geom = ST_GeomFromEWKT(:geom), "
            "evidence_at = coalesce(:evidence_at, evidence_at), "
            "updated_at = clock_timestamp() WHERE id = :id"
        ), {**params, "id": current.id})
        _event(conn, current.id, SYSTEM, None, None, f"updated: {reason}")
    return current.id, False


def last_settled(conn: Connection, asset_layer: str | None, asset_id: int | None, kind: str):
    """The most recently settled (resolved or dismissed) alert of an asset and kind, or None."""
    return conn.execute(sa.text(
        "SELECT id, status, closed_at FROM alerts WHERE asset_layer IS NOT DISTINCT FROM :layer "
        "AND asset_id IS NOT DISTINCT FROM :asset AND kind = :kind "
        "AND status IN ('resolved', 'dismissed') ORDER BY closed_at DESC, id DESC LIMIT 1"),
        {"layer": asset_layer, "asset": asset_id, "kind": kind}).first()


def resolve_missing(conn: Connection, *, kind: str, still_active: list[tuple[str, int]],
                    note: str, among: list[tuple[str, int]] | None = None) -> int:
    """Resolve active alerts of ``kind`` whose asset no longer has the problem.

    ``among`` limits this to the assets evaluated (rule evaluation of a few assets must not
    resolve the alerts of all the others).
    """
    rows = conn.execute(sa.text(
        "SELECT id, status, asset_layer, asset_id FROM alerts "
        "WHERE kind = :kind AND status IN ('open', 'acknowledged', 'in_progress')"
    ), {"kind": kind}).all()
    keep = set(still_active)
    scope = None if among is None else set(among)
    resolved = 0
    for row in rows:
        key = (row.asset_layer, row.asset_id)
        if key not in keep and (scope is None or key in scope):
            _set_status(conn, row.id, row.status, "resolved", SYSTEM, note)
            resolved += 1
    return resolved


def settled_at(conn: Connection, kind: str) -> dict[int, datetime]:
    """When each asset's latest settled (resolved or dismissed) alert of a kind was settled."""
    return dict(conn.execute(sa.text(
        "SELECT DISTINCT ON (asset_id) asset_id, closed_at FROM alerts WHERE kind = :kind "
        "AND asset_id IS NOT NULL AND status IN ('resolved', 'dismissed') "
        "ORDER BY asset_id, closed_at DESC"), {"kind": kind}).all())


def active_asset_ids(conn: Connection, kind: str) -> list[int]:
    """Asset ids with an active alert of a kind."""
    return list(conn.execute(sa.text(
        "SELECT asset_id FROM alerts WHERE kind = :kind AND asset_id IS NOT NULL "
        "AND status IN ('open', 'acknowledged', 'in_progress')"), {"kind": kind}).scalars())


def act(conn: Connection, alert_id: int, action: str, *, actor: str,
        note: str | None = None) -> dict:
    """Apply a crew's action (acknowledge, start, resolve, dismiss) and return the alert.

    Raises
    ------
    NotFound
        When there is no such alert.
    Conflict
        When the alert's status does not allow the action.
    """
    if action not in ACTIONS:
        raise InvalidInput(_("Unknown action '{action}'; use one of {allowed}.", action=action,
                             allowed=", ".join(ACTIONS)))
    status = conn.execute(sa.text("SELECT status FROM alerts WHERE id = :id FOR UPDATE"),
                          {"id": alert_id}).scalar()
    if status is None:
        raise NotFound(_("There is no alert {id}.", id=alert_id))
    allowed_from, to_status = ACTIONS[action]
    if status not in allowed_from:
        raise Conflict(_("Alert {id} is {status}, so '{action}' is not possible.", id=alert_id,
                         status=label(STATUS_LABELS, status), action=action))
    _set_status(conn, alert_id, status, to_status, actor, note)
    return get_alert(conn, alert_id)


def _set_status(conn: Connection, alert_id: int, from_status: str, to_status: str, actor: str,
                note: str | None) -> None:
    conn.execute(sa.text(
        "UPDATE alerts SET status = :to, updated_at = clock_timestamp(), closed_at = CASE WHEN "
        ":to IN ('resolved', 'dismissed') THEN clock_timestamp() END WHERE id = :id"
    ), {"to": to_status, "id": alert_id})
    _event(conn, alert_id, actor, from_status, to_status, note)


def _event(conn: Connection, alert_id: int, actor: str, from_status: str | None,
           to_status: str | None, note: str | None, evidence: dict | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO alert_events (alert_id, actor, from_status, to_status, note, evidence) "
        "VALUES (:id, :actor, :from_status, COALESCE(:to_status, :from_status, "
        "(SELECT status FROM alerts WHERE id = :id)), :note, CAST(:evidence AS jsonb))"
    ), {"id": alert_id, "actor": actor, "from_status": from_status, "to_status": to_status,
        "note": note, "evidence": json.dumps(evidence, default=str) if evidence else None})


def get_alert(conn: Connection, alert_id: int) -> dict:
    """One alert with its history, as plain data."""
    row = conn.execute(sa.text(f"SELECT {_ALERT_COLUMNS} {_ALERT_FROM} WHERE a.id = :id"),
                       {"id": alert_id}).mappings().first()
    if row is None:
        raise NotFound(_("There is no alert {id}.", id=alert_id))
    alert = localised(dict(row))
    alert["history"] = [dict(r) for r in conn.execute(sa.text(
        "SELECT id, at, actor, from_status, to_status, note, evidence FROM alert_events "
        "WHERE alert_id = :id ORDER BY at, id"), {"id": alert_id}).mappings()]
    return alert


def list_alerts(conn: Connection, where: AlertFilter, *, limit: int, offset: int = 0,
                sortby: tuple[tuple[str, bool], ...] = ()) -> list[dict]:
    """Alerts matching a filter, newest change first unless ``sortby`` (name, descending)."""
    clause, params = filter_clause(where)
    order = [f"{SORTABLE[name]} {'DESC' if desc else 'ASC'} NULLS LAST" for name, desc in sortby]
    order += ["a.updated_at DESC", "a.id DESC"]
    return [localised(dict(r)) for r in conn.execute(sa.text(
        f"SELECT {_ALERT_COLUMNS} {_ALERT_FROM} WHERE {clause} "
        f"ORDER BY {', '.join(order)} LIMIT :limit OFFSET :offset"
    ), {**params, "limit": limit, "offset": offset}).mappings()]


# What GET /alerts may filter by, as queryables of the one translator (geo.filtering).
FIELDS = {f.name: f for f in (
    filtering.Field("id", "integer", "a.id"), filtering.Field("status", "string", "a.status"),
    filtering.Field("severity", "string", "a.severity"),
    filtering.Field("kind", "string", "a.kind"),
    filtering.Field("assignee", "string", "a.assignee"),
    filtering.Field("asset_layer", "string", "a.asset_layer"),
    filtering.Field("asset_id", "integer", "a.asset_id"),
    filtering.Field("opened_at", "datetime", "a.opened_at"),
    filtering.Field("updated_at", "datetime", "a.updated_at"),
    filtering.Field("due_on", "date", "a.due_on"),
    filtering.Field("geometry", "geometry", "a.geom"),
)}


def localised(alert: dict) -> dict:
    """The alert with its reason in the current language (when it was kept as a message)."""
    details = alert.get("details")
    if isinstance(details, dict) and isinstance(details.get("reason_message"), dict):
        alert["reason"] = render(details["reason_message"])
    return alert


def filter_clause(where: AlertFilter) -> tuple[str, dict]:
    """The WHERE clause (on alias ``a``) and parameters of an alert filter."""
    equals = tuple((name, values) for name, values in (
        ("status", where.statuses), ("severity", where.severities), ("kind", where.kinds),
        ("assignee", where.assignees), ("id", where.ids)) if values)
    return filtering.where_clause(
        FIELDS, filtering.Criteria(bbox=where.bbox, equals=equals, filter=where.filter),
        geometry="a.geom", what="alerts")


def assign(conn: Connection, alert_id: int, *, actor: str, changes: dict) -> dict:
    """Set an active alert's assignee and due date (keys present in ``changes``), with history.

    Raises
    ------
    NotFound
        When there is no such alert.
    Conflict
        When the alert is settled already.
    """
    row = conn.execute(sa.text("SELECT status, assignee, due_on FROM alerts WHERE id = :id "
                               "FOR UPDATE"), {"id": alert_id}).first()
    if row is None:
        raise NotFound(_("There is no alert {id}.", id=alert_id))
    if row.status not in ACTIVE:
        raise Conflict(_("Alert {id} is {status}, so it cannot be assigned.", id=alert_id,
                         status=label(STATUS_LABELS, row.status)))
    new = {"assignee": changes.get("assignee", row.assignee),
           "due_on": changes.get("due_on", row.due_on)}
    if (new["assignee"], new["due_on"]) != (row.assignee, row.due_on):
        conn.execute(sa.text("UPDATE alerts SET assignee = :assignee, due_on = :due_on, "
                             "updated_at = clock_timestamp() WHERE id = :id"),
                     {**new, "id": alert_id})
        said = [f"assigned to {new['assignee']}" if new["assignee"] else "unassigned"]
        if new["due_on"]:
            said.append(f"due {new['due_on']}")
        _event(conn, alert_id, actor, row.status, row.status, ", ".join(said))
    return get_alert(conn, alert_id)


def events_after(conn: Connection, event_id: int, limit: int = 500) -> list[dict]:
    """Alert changes after an event id, oldest first (what the alert stream sends)."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT e.id AS event_id, e.at, e.actor, e.from_status, e.to_status, e.note, "
        "a.id, a.kind, a.severity, a.status, a.reason "
        "FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
        "WHERE e.id > :after ORDER BY e.id LIMIT :limit"
    ), {"after": event_id, "limit": limit}).mappings()]


def transactions_in_progress(conn: Connection) -> frozenset[int]:
    """The ids of the transactions running now, any of which may still commit alert events.

    An event id taken by a transaction that has not committed yet is missing from
    :func:`events_after` while later ids are there (ids are taken in order, committed in any
    order); once every transaction running when the gap was seen has ended, it is for good.
    """
    return frozenset(conn.execute(sa.text(
        "SELECT pg_snapshot_xip(pg_current_snapshot())::text::bigint")).scalars())


def last_event_id(conn: Connection) -> int:
    """The newest alert event's id (0 when there is none)."""
    return conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM alert_events")).scalar_one()
