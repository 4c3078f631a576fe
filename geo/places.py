"""Where an alert is, in the words a crew uses: the name of its street.

A crew finds "Jiefang Road", not "ST-00035" or a pair of coordinates. An alert on a street
is on that street; an alert on anything else (a manhole, a pile) is placed on the nearest
street within :data:`NEAREST_STREET_M`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

NEAREST_STREET_M = 30.0  # farther than this, an asset is not "on" a street
# A degree is at least ~111 km of latitude; longitude degrees are shorter, so this bound in
# degrees is loose enough for the index to pre-filter and the metre test to decide.
_DEG_PER_M_BOUND = 1 / 80_000


def alert_streets(conn: Connection, alert_ids: Sequence[int]) -> dict[int, dict]:
    """{alert id: {"street_name", "street_external_id"}} for the alerts that have a street.

    Examples
    --------
    The street of alert 7, a manhole alert 12 m from Jiefang Road::

        {7: {"street_name": "Jiefang Road", "street_external_id": "ST-00035"}}
    """
    if not alert_ids:
        return {}
    rows = conn.execute(sa.text(
        "SELECT a.id, st.name AS street_name, st.external_id AS street_external_id "
        "FROM alerts a JOIN LATERAL (SELECT s.name, s.external_id FROM streets s "
        "  WHERE (a.asset_layer = 'streets' AND s.id = a.asset_id) "
        "  OR (a.asset_layer IS DISTINCT FROM 'streets' AND ST_DWithin(s.geom, a.geom, :deg) "
        "      AND ST_DWithin(s.geom::geography, a.geom::geography, :m)) "
        "  ORDER BY s.geom <-> a.geom LIMIT 1) st ON TRUE "
        "WHERE a.id = ANY(:ids)"),
        {"ids": [int(i) for i in alert_ids], "m": NEAREST_STREET_M,
         "deg": NEAREST_STREET_M * _DEG_PER_M_BOUND}).mappings()
    return {int(r["id"]): {"street_name": r["street_name"],
                           "street_external_id": r["street_external_id"]} for r in rows}
