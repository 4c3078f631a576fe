"""SQL of an asset's history: its readings by metric and time, paged, oldest first."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_BIGINT = 2**63


def asset_of_layer(conn: Connection, table: str, asset_id: int) -> dict | None:
    """The asset ``asset_id`` of the layer table ``table`` (id, external id, name), or None."""
    if not -_BIGINT <= asset_id < _BIGINT:
        return None
    row = conn.execute(sa.text(
        "SELECT id, layer, external_id, source FROM assets WHERE layer = :layer AND id = :id"),
        {"layer": table, "id": asset_id}).mappings().first()
    return dict(row) if row else None


def readings_page(conn: Connection, asset_id: int, *, metrics: tuple[str, ...] = (),
                  start: datetime | None = None, end: datetime | None = None,
                  limit: int = 1000, offset: int = 0) -> tuple[list[dict], bool]:
    """One page of an asset's readings (metric, unit, observed_at, value, source), in time order.

    Returns the rows and whether more follow. The readings key (metric, asset, time) makes
    this one index range scan per metric: the metrics are listed, never scanned for.
    """
    rows = conn.execute(sa.text(
        "SELECT m.name AS metric, m.unit, r.observed_at, r.value, r.source FROM metrics m "
        "JOIN readings r ON r.metric_id = m.id AND r.asset_id = :asset "
        "AND r.observed_at >= coalesce(CAST(:start AS timestamptz), '-infinity') "
        "AND r.observed_at <= coalesce(CAST(:end AS timestamptz), 'infinity') "
        "WHERE (cardinality(CAST(:metrics AS text[])) = 0 OR m.name = ANY(:metrics)) "
        "ORDER BY r.observed_at, m.name LIMIT :fetch OFFSET :offset"),
        {"asset": asset_id, "start": start, "end": end, "metrics": list(metrics),
         "fetch": limit + 1, "offset": offset}).mappings().all()
    return [dict(r) for r in rows[:limit]], len(rows) > limit


def metric_names(conn: Connection) -> list[str]:
    """The declared metrics' names."""
    return list(conn.execute(sa.text("SELECT name FROM metrics ORDER BY name")).scalars())
