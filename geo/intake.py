"""SQL of sensor intake over HTTP: what became of each reading of a posted batch.

A batch is staged with each reading's item number; the load then tells per reading whether
it was new, changed a stored value, or was stored already as it is: file ingest counts what
a load did, but a sensor posting a batch needs the answer per reading, so each statement
returns the items it wrote. Values travel as COPY data or bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import rule_queue, store

INTAKE_STAGE = "stage_intake"
INTAKE_STAGE_COLUMNS = ("item", "metric_id", "asset_id", "observed_at", "value", "source")


@dataclass
class IntakeOutcome:
    """What loading a staged batch did, by item number.

    ``updated`` maps an item to the value it replaced; items staged but in neither dict were
    stored already with the same value.
    """

    new: set[int]
    updated: dict[int, float]


def asset_keys_of(conn: Connection, layers: list[str], external_ids: list[str]) -> pd.DataFrame:
    """The (layer, external_id) -> id of the named assets only, like ``store.asset_keys``.

    A batch names a handful of assets; reading every asset of a city for each post would
    cost more than the post. Ids used by several sources are left out, as in file ingest.
    """
    rows = conn.execute(
        sa.text(
            "SELECT a.layer, a.external_id, min(a.id) FROM assets a "
            "WHERE (a.layer, a.external_id) IN ("
            "  SELECT * FROM unnest(CAST(:layers AS text[]), CAST(:ids AS text[]))) "
            "GROUP BY a.layer, a.external_id HAVING count(*) = 1"
        ),
        {"layers": layers, "ids": external_ids},
    ).all()
    return pd.DataFrame(rows, columns=["layer", "external_id", "id"])


def create_intake_stage(conn: Connection) -> None:
    """Create this transaction's staging table for a posted batch (one row per reading)."""
    conn.execute(
        sa.text(
            f"CREATE TEMP TABLE {INTAKE_STAGE} (item integer PRIMARY KEY, metric_id smallint,"
            " asset_id bigint, observed_at timestamptz, value double precision, source text)"
            " ON COMMIT DROP"
        )
    )


def load_intake(conn: Connection) -> IntakeOutcome:
    """Move the staged readings into ``readings`` and say what happened to each item.

    The stage must hold one row per (metric, asset, time). Insert first, then update: an
    INSERT ... ON CONFLICT waits for a concurrent load of the same key to commit, so the
    UPDATE that follows sees that load's value and a changed value is never taken for an
    unchanged one. A reading stored already with the same value is left alone (its source
    included), so posting a batch again changes nothing.
    """
    first, last = conn.execute(
        sa.text(f"SELECT min(observed_at), max(observed_at) FROM {INTAKE_STAGE}")
    ).one()
    if first is None:
        return IntakeOutcome(new=set(), updated={})
    store.ensure_partitions_of_stage(conn, INTAKE_STAGE)
    new = conn.execute(
        sa.text(
            f"WITH inserted AS ("
            f"  INSERT INTO readings (metric_id, asset_id, observed_at, value, source)"
            f"  SELECT metric_id, asset_id, observed_at, value, source FROM {INTAKE_STAGE}"
            f"  ON CONFLICT (metric_id, asset_id, observed_at) DO NOTHING"
            f"  RETURNING metric_id, asset_id, observed_at) "
            f"SELECT s.item FROM {INTAKE_STAGE} s JOIN inserted i"
            f"  USING (metric_id, asset_id, observed_at)"
        )
    ).scalars().all()
    # The second readings row (o) is the row as this statement found it: its old value.
    updated = conn.execute(
        sa.text(
            f"UPDATE readings r SET value = s.value, source = s.source "
            f"FROM {INTAKE_STAGE} s JOIN readings o ON o.metric_id = s.metric_id"
            f"  AND o.asset_id = s.asset_id AND o.observed_at = s.observed_at"
            f"  AND o.observed_at BETWEEN :first AND :last "
            f"WHERE r.metric_id = s.metric_id AND r.asset_id = s.asset_id"
            f"  AND r.observed_at = s.observed_at"
            f"  AND r.observed_at BETWEEN :first AND :last"  # prunes to the batch's months
            f"  AND r.value IS DISTINCT FROM s.value "
            f"RETURNING s.item, o.value"
        ),
        {"first": first, "last": last},
    ).all()
    if new or updated:  # readings have no trigger: their writers tell the service
        store.touch_layer(conn, "readings")
        rule_queue.note_assets(
            conn, f"SELECT asset_id FROM {INTAKE_STAGE} WHERE item = ANY(:items)",
            {"items": [*new, *(item for item, _ in updated)]})
    return IntakeOutcome(new=set(new), updated={item: value for item, value in updated})
