"""Alerts and their life cycle: open -> acknowledged -> in progress -> resolved, or dismissed.

Every change is kept in ``alert_events`` with who, when and why. There is at most one active
(not resolved, not dismissed) alert per asset and kind; raising it again updates it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.errors import Conflict, InvalidInput, NotFound
from geo.vocabulary import ALERT_STATUSES, SEVERITIES

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
    "a.reason, a.details, a.status, a.opened_at, a.updated_at, a.closed_at, "
    "ST_AsGeoJSON(a.geom, 7)::json AS geometry"
)
_ALERT_FROM = (
    "FROM alerts a LEFT JOIN assets x ON x.id = a.asset_id AND x.layer = a.asset_layer"
)


@dataclass(frozen=True)
class AlertFilter:
    """What ``GET /alerts`` and its tiles may ask for."""

    bbox: tuple[float, float, float, float] | None = None
    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


def raise_alert(conn: Connection, *, kind: str, severity: str, asset_layer: str | None,
                asset_id: int | None, geom_ewkt: str, reason: str,
                details: dict | None = None) -> tuple[int, bool]:
    """Open an alert, or update the active one of the same asset and kind.

    Returns the alert's id and whether it is new. An update that changes nothing leaves the
    alert and its history alone.
    """
    if severity not in SEVERITIES:
        raise InvalidInput(f"Severity '{severity}' is not one of {', '.join(SEVERITIES)}.")
    params = {"kind": kind, "severity": severity, "layer": asset_layer, "asset": asset_id,
              "geom": geom_ewkt, "reason": reason, "details": json.dumps(details or {})}
    current = conn.execute(sa.text(
        "SELECT id, severity, reason, details FROM alerts WHERE asset_layer IS NOT DISTINCT FROM "
        ":layer AND asset_id IS NOT DISTINCT FROM :asset AND kind = :kind "
        "AND status IN ('open', 'acknowledged', 'in_progress') FOR UPDATE"
    ), params).first()
    if current is None:
        alert_id = conn.execute(sa.text(
            "INSERT INTO alerts (kind, severity, asset_layer, asset_id, reason, details, geom) "
            "VALUES (:kind, :severity, :layer, :asset, :reason, CAST(:details AS jsonb), "
            "ST_GeomFromEWKT(:geom)) RETURNING id"
        ), params).scalar_one()
        _event(conn, alert_id, SYSTEM, None, "open", reason)
        return alert_id, True
    if (current.severity, current.reason, current.details) != (severity, reason,
                                                                details or {}):
        conn.execute(sa.text(
            "UPDATE alerts SET severity = :severity, reason = :reason, "
            "details = CAST(:details AS jsonb), geom = ST_GeomFromEWKT(:geom), "
            "updated_at = clock_timestamp() WHERE id = :id"
        ), {**params, "id": current.id})
        _event(conn, current.id, SYSTEM, None, None, f"updated: {reason}")
    return current.id, False


def resolve_missing(conn: Connection, *, kind: str, still_active: list[tuple[str, int]],
                    note: str) -> int:
    """Resolve active alerts of ``kind`` whose asset no longer has the problem."""
    rows = conn.execute(sa.text(
        "SELECT id, status, asset_layer, asset_id FROM alerts "
        "WHERE kind = :kind AND status IN ('open', 'acknowledged', 'in_progress')"
    ), {"kind": kind}).all()
    keep = set(still_active)
    resolved = 0
    for row in rows:
        if (row.asset_layer, row.asset_id) not in keep:
            _set_status(conn, row.id, row.status, "resolved", SYSTEM, note)
            resolved += 1
    return resolved


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
        raise InvalidInput(f"Unknown action '{action}'; use one of {', '.join(ACTIONS)}.")
    status = conn.execute(sa.text("SELECT status FROM alerts WHERE id = :id FOR UPDATE"),
                          {"id": alert_id}).scalar()
    if status is None:
        raise NotFound(f"There is no alert {alert_id}.")
    allowed_from, to_status = ACTIONS[action]
    if status not in allowed_from:
        raise Conflict(f"Alert {alert_id} is {status.replace('_', ' ')}, so '{action}' is "
                       f"not possible.")
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
           to_status: str | None, note: str | None) -> None:
    conn.execute(sa.text(
        "INSERT INTO alert_events (alert_id, actor, from_status, to_status, note) "
        "VALUES (:id, :actor, :from_status, COALESCE(:to_status, :from_status, "
        "(SELECT status FROM alerts WHERE id = :id)), :note)"
    ), {"id": alert_id, "actor": actor, "from_status": from_status, "to_status": to_status,
        "note": note})


def get_alert(conn: Connection, alert_id: int) -> dict:
    """One alert with its history, as plain data."""
    row = conn.execute(sa.text(f"SELECT {_ALERT_COLUMNS} {_ALERT_FROM} WHERE a.id = :id"),
                       {"id": alert_id}).mappings().first()
    if row is None:
        raise NotFound(f"There is no alert {alert_id}.")
    alert = dict(row)
    alert["history"] = [dict(r) for r in conn.execute(sa.text(
        "SELECT id, at, actor, from_status, to_status, note FROM alert_events "
        "WHERE alert_id = :id ORDER BY at, id"), {"id": alert_id}).mappings()]
    return alert


def list_alerts(conn: Connection, where: AlertFilter, *, limit: int, offset: int = 0
                ) -> list[dict]:
    """Alerts matching a filter, newest change first."""
    clauses = ["TRUE"]
    params: dict[str, object] = {"limit": limit, "offset": offset}
    if where.bbox:
        clauses.append("a.geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)")
        params.update(zip("wsen", where.bbox, strict=True))
    for column, values in (("status", where.statuses), ("severity", where.severities),
                           ("kind", where.kinds)):
        if values:
            clauses.append(f"a.{column} = ANY(:{column})")
            params[column] = list(values)
    return [dict(r) for r in conn.execute(sa.text(
        f"SELECT {_ALERT_COLUMNS} {_ALERT_FROM} WHERE {' AND '.join(clauses)} "
        f"ORDER BY a.updated_at DESC, a.id DESC LIMIT :limit OFFSET :offset"
    ), params).mappings()]


def events_after(conn: Connection, event_id: int, limit: int = 500) -> list[dict]:
    """Alert changes after an event id, oldest first (what the alert stream sends)."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT e.id AS event_id, e.at, e.actor, e.from_status, e.to_status, e.note, "
        "a.id, a.kind, a.severity, a.status, a.reason "
        "FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
        "WHERE e.id > :after ORDER BY e.id LIMIT :limit"
    ), {"after": event_id, "limit": limit}).mappings()]


def last_event_id(conn: Connection) -> int:
    """The newest alert event's id (0 when there is none)."""
    return conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM alert_events")).scalar_one()
