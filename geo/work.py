"""Work records: what a crew did to an asset, and how it changes the twin's state.

A resurfacing of a street (surface treatment, mill and overlay, reconstruction) moves its
``resurfaced_on``, so surveys before it belong to the old surface: its forecast and alerts
start from a new baseline. A cleared debris pile is closed (``cleared_at`` on its sightings).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.errors import InvalidInput
from geo.i18n import _

# What a crew may record, per layer of the asset worked on (one source for the vocabulary).
ACTIONS: dict[str, tuple[str, ...]] = {
    "streets": ("crack_sealing", "patching", "surface_treatment", "mill_and_overlay",
                "reconstruction"),
    "manholes": ("cover_reseated", "cover_replaced", "frame_rebuilt", "blockage_cleared"),
    "debris_piles": ("pile_cleared", "site_fenced"),
}
RESURFACING = ("surface_treatment", "mill_and_overlay", "reconstruction")
CLEARING = ("pile_cleared",)
_COLUMNS = "id, alert_id, asset_layer, asset_id, action, done_at, done_by, note, recorded_by, " \
           "recorded_at"
# What a record changes beyond itself, per layer: the actions that change it and the statement
# that does (parameters :asset and :done_at).
_EFFECTS: dict[str, tuple[tuple[str, ...], str]] = {
    # A later resurfacing only: a record of old work must not undo a newer surface.
    "streets": (RESURFACING,
                "UPDATE streets SET resurfaced_on = CAST(:done_at AS timestamptz)::date, "
                "updated_at = now() WHERE id = :asset AND (resurfaced_on IS NULL "
                "OR resurfaced_on < CAST(:done_at AS timestamptz)::date)"),
    "debris_piles": (CLEARING,
                     "UPDATE debris_piles d SET cleared_at = :done_at, updated_at = now() "
                     "FROM debris_piles p WHERE p.id = :asset AND d.cleared_at IS NULL "
                     "AND d.observed_at <= :done_at AND (d.id = p.id OR d.pile_ref = p.pile_ref)"),
}


def check_action(layer: str | None, action: str) -> None:
    """Refuse an action that is not in the layer's vocabulary, in one sentence."""
    allowed = ACTIONS.get(layer or "")
    if not allowed:
        raise InvalidInput(_("Work on {what} is not recorded: work records are for {layers}.",
                             what=layer or _("this alert"), layers=", ".join(ACTIONS)))
    if action not in allowed:
        raise InvalidInput(_("work.action: '{action}' is not work on {layer}; use one of "
                             "{allowed}.", action=action, layer=layer, allowed=", ".join(allowed)))


def record(conn: Connection, *, alert_id: int | None, asset_layer: str, asset_id: int,
           action: str, done_at: datetime, done_by: str, note: str | None,
           recorded_by: str) -> dict:
    """Keep a work record and apply what it changes; returns the record."""
    check_action(asset_layer, action)
    row = conn.execute(sa.text(
        "INSERT INTO work_records (alert_id, asset_layer, asset_id, action, done_at, done_by, "
        "note, recorded_by) VALUES (:alert, :layer, :asset, :action, :done_at, :done_by, :note, "
        f":recorded_by) RETURNING {_COLUMNS}"),
        {"alert": alert_id, "layer": asset_layer, "asset": asset_id, "action": action,
         "done_at": done_at, "done_by": done_by, "note": note, "recorded_by": recorded_by}
    ).mappings().one()
    actions, effect = _EFFECTS.get(asset_layer, ((), ""))
    if action in actions:
        conn.execute(sa.text(effect), {"asset": asset_id, "done_at": done_at})
    return dict(row)


def records_of_alert(conn: Connection, alert_id: int) -> list[dict]:
    """The work recorded on an alert, oldest first."""
    return [dict(r) for r in conn.execute(sa.text(
        f"SELECT {_COLUMNS} FROM work_records WHERE alert_id = :id ORDER BY done_at, id"),
        {"id": alert_id}).mappings()]


def alert_asset(conn: Connection, alert_id: int):
    """(asset_layer, asset_id, status) of an alert, or None."""
    return conn.execute(sa.text(
        "SELECT asset_layer, asset_id, status FROM alerts WHERE id = :id"), {"id": alert_id}
    ).first()


# -- photos ---------------------------------------------------------------------------------


def add_photo(conn: Connection, *, alert_id: int | None, work_record_id: int | None,
              media_type: str, size: int, sha256: str, path: str, uploaded_by: str) -> dict:
    """Keep a stored photo's record."""
    return dict(conn.execute(sa.text(
        "INSERT INTO photos (alert_id, work_record_id, media_type, bytes, sha256, path, "
        "uploaded_by) VALUES (:alert, :work, :media, :bytes, :sha, :path, :by) "
        "RETURNING id, alert_id, work_record_id, media_type, bytes, sha256, uploaded_by, "
        "uploaded_at"),
        {"alert": alert_id, "work": work_record_id, "media": media_type, "bytes": size,
         "sha": sha256, "path": path, "by": uploaded_by}).mappings().one())


def photos_of_alert(conn: Connection, alert_id: int) -> list[dict]:
    """Photos of an alert and of its work records, oldest first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT p.id, p.alert_id, p.work_record_id, p.media_type, p.bytes, p.uploaded_by, "
        "p.uploaded_at FROM photos p LEFT JOIN work_records w ON w.id = p.work_record_id "
        "WHERE p.alert_id = :id OR w.alert_id = :id ORDER BY p.uploaded_at, p.id"),
        {"id": alert_id}).mappings()]


def photo(conn: Connection, photo_id: int):
    """One photo's stored path and type, or None."""
    return conn.execute(sa.text(
        "SELECT id, media_type, path FROM photos WHERE id = :id"), {"id": photo_id}).first()


def work_record_alert(conn: Connection, work_record_id: int) -> int | None:
    """The alert a work record belongs to (None when there is no such record)."""
    return conn.execute(sa.text("SELECT coalesce(alert_id, 0) FROM work_records WHERE id = :id"),
                        {"id": work_record_id}).scalar()
