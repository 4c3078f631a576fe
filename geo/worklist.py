"""SQL of the worklist (open alerts with what their priority needs) and the planning backlog."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import DEG_PER_M_BOUND
from geo.alerts import ACTIVE, localised
from geo.layers import BACKLOG_SELECT

# Within this distance of an alert, compounds' households count as exposed.
EXPOSURE_M = 200
NEAREST_STREET_M = 60


def open_alerts(conn: Connection, bbox: tuple[float, float, float, float] | None = None
                ) -> list[dict]:
    """Every active alert with what its priority needs.

    Its street (its own, or the nearest for other assets) with the street's class and
    traffic, and the households of compounds nearby.

    ``in_bbox`` says whether it meets the box (all True without one): priorities and tiers are
    ranked over the whole list, then filtered.
    """
    params = {"active": list(ACTIVE), "m": EXPOSURE_M, "deg": EXPOSURE_M * DEG_PER_M_BOUND,
              "near_m": NEAREST_STREET_M, "near_deg": NEAREST_STREET_M * DEG_PER_M_BOUND}
    in_bbox = "TRUE"
    if bbox:
        in_bbox = "a.geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)"
        params.update(zip("wsen", bbox, strict=True))
    return [localised(dict(r)) for r in conn.execute(sa.text(
        "SELECT a.id, a.kind, a.severity, a.status, a.reason, a.asset_layer, a.asset_id, "
        "x.external_id AS asset_external_id, a.details, a.opened_at, a.updated_at, "
        "a.evidence_at, a.assignee, a.due_on, ST_AsGeoJSON(a.geom, 7)::json AS geometry, "
        f"{in_bbox} AS in_bbox, st.name AS street_name, st.external_id AS street_external_id, "
        "st.road_class, CAST(st.properties ->> 'heavy_vehicles_per_day' AS double precision) "
        "AS heavy_vehicles_per_day, hh.compounds, hh.households, dx.name AS district, "
        "dx.community, dx.sub_district "
        "FROM alerts a LEFT JOIN assets x ON x.id = a.asset_id AND x.layer = a.asset_layer "
        "LEFT JOIN districts dx ON dx.id = a.district_id "
        "LEFT JOIN LATERAL (SELECT s.name, s.external_id, s.road_class, s.properties "
        "  FROM streets s WHERE (a.asset_layer = 'streets' AND s.id = a.asset_id) "
        "  OR (a.asset_layer IS DISTINCT FROM 'streets' AND ST_DWithin(s.geom, a.geom, "
        "  :near_deg) AND ST_DWithin(s.geom::geography, a.geom::geography, :near_m)) "
        "  ORDER BY s.geom <-> a.geom LIMIT 1) st ON TRUE "
        "LEFT JOIN LATERAL (SELECT count(*) AS compounds, sum(c.households) AS households "
        "  FROM compounds c WHERE ST_DWithin(c.geom, a.geom, :deg) "
        "  AND ST_DWithin(c.geom::geography, a.geom::geography, :m)) hh ON TRUE "
        "WHERE a.status = ANY(:active) ORDER BY a.id"), params).mappings()]


def backlog(conn: Connection, *, bbox: tuple[float, float, float, float] | None = None,
            limit: int = 1000, offset: int = 0) -> list[dict]:
    """Streets below the threshold now (the layer 'backlog'), worst first, then the longest."""
    params: dict = {"limit": limit, "offset": offset}
    where = "TRUE"
    if bbox:
        where = "q.geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)"
        params.update(zip("wsen", bbox, strict=True))
    return [dict(r) for r in conn.execute(sa.text(
        f"SELECT q.id, q.external_id, q.name, q.road_class, q.surface, q.resurfaced_on, "
        f"q.pci, q.pci_observed_at, round(q.length_m::numeric, 1)::float AS length_m, "
        f"q.alerted, q.district, q.community, q.sub_district, "
        f"ST_AsGeoJSON(q.geom, 7)::json AS geometry "
        f"FROM ({BACKLOG_SELECT}) q WHERE {where} "
        f"ORDER BY q.pci, q.length_m DESC, q.id LIMIT :limit OFFSET :offset"),
        {**params, "as_of": "infinity"}).mappings()]
