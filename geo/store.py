"""SQL that writes layers and readings: bulk COPY into staging, then one upsert per layer.

Identifiers come only from the constants below; values always travel as COPY data or bound
parameters.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

# Columns each layer keeps besides source, external_id, properties and geom.
LAYER_COLUMNS: dict[str, tuple[str, ...]] = {
    "streets": ("name", "road_class", "surface", "width_m", "lanes", "resurfaced_on"),
    "manholes": ("kind", "depth_m", "cover_state", "sensor_id"),
    "parking": ("name", "kind", "capacity"),
    "compounds": ("name", "management_type", "households", "built_year"),
    "road_damage": ("observed_at", "confidence", "damage_class", "severity", "size_m2"),
    "debris_piles": ("observed_at", "confidence", "pile_ref", "volume_m3", "material"),
}
ASSET_LAYERS = ("streets", "manholes", "parking", "compounds")
OBSERVATION_LAYERS = ("road_damage", "debris_piles")
READING_COLUMNS = ("asset_layer", "asset_external_id", "metric", "observed_at", "value", "source")
# A damage observation belongs to the nearest street within this distance (degrees, ~30 m).
DAMAGE_STREET_SNAP_DEG = 0.0003


@dataclass
class UpsertCounts:
    """What one load did to a table."""

    rows_new: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0

    def add(self, other: UpsertCounts) -> None:
        """Add the counts of another batch to these."""
        self.rows_new += other.rows_new
        self.rows_updated += other.rows_updated
        self.rows_unchanged += other.rows_unchanged


def copy_frame(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    """Send a frame to a (staging) table with COPY in CSV form; NULLs travel as empty fields."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, lineterminator="\n")
    columns = ", ".join(frame.columns)
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getvalue())


def _counts(flags: Iterable[bool], total: int) -> UpsertCounts:
    flags = list(flags)
    new = sum(1 for inserted in flags if inserted)
    updated = len(flags) - new
    return UpsertCounts(rows_new=new, rows_updated=updated, rows_unchanged=total - new - updated)


def upsert_layer(conn: Connection, layer: str, frame: pd.DataFrame) -> UpsertCounts:
    """Insert new features of a layer and update changed ones, keyed on (source, external_id).

    ``frame`` holds ``source``, ``external_id``, ``properties`` (JSON text), ``geom``
    (hex EWKB in SRID 4326) and the layer's columns. Unchanged rows are left alone, so
    loading the same data twice changes nothing, ``updated_at`` included.
    """
    columns = ("source", "external_id", "properties", "geom", *LAYER_COLUMNS[layer])
    stage = f"stage_{layer}"
    conn.execute(sa.text(
        f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
        f"SELECT {', '.join(columns)} FROM {layer} WITH NO DATA"
    ))
    copy_frame(conn, stage, frame[list(columns)])
    compared = [c for c in columns if c not in ("source", "external_id")]
    assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in compared)
    old = ", ".join(f"{layer}.{c}" for c in compared)
    new = ", ".join(f"EXCLUDED.{c}" for c in compared)
    flags = conn.execute(sa.text(
        f"INSERT INTO {layer} ({', '.join(columns)}) "
        f"SELECT {', '.join(columns)} FROM {stage} "
        f"ON CONFLICT (source, external_id) DO UPDATE SET {assignments}, updated_at = now() "
        f"WHERE ({old}) IS DISTINCT FROM ({new}) "
        f"RETURNING (xmax = 0) AS inserted"
    )).scalars()
    counts = _counts(flags, len(frame))
    conn.execute(sa.text(f"DROP TABLE {stage}"))
    if layer == "road_damage":
        snap_damage_to_streets(conn)
    return counts


def snap_damage_to_streets(conn: Connection) -> None:
    """Give each damage observation without a street the nearest street within ~30 m."""
    conn.execute(
        sa.text(
            "UPDATE road_damage d SET street_id = ("
            "  SELECT s.id FROM streets s WHERE ST_DWithin(s.geom, d.geom, :snap)"
            "  ORDER BY s.geom <-> d.geom LIMIT 1"
            ") WHERE d.street_id IS NULL"
        ),
        {"snap": DAMAGE_STREET_SNAP_DEG},
    )


def ensure_reading_partitions(conn: Connection, first: datetime, last: datetime) -> None:
    """Create the monthly partitions of ``readings`` that hold ``first`` to ``last``."""
    month = pd.Timestamp(first).tz_convert("UTC").to_period("M")
    end = pd.Timestamp(last).tz_convert("UTC").to_period("M")
    while month <= end:
        following = month + 1
        name = f"readings_y{month.year:04d}m{month.month:02d}"
        conn.execute(sa.text(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings "
            f"FOR VALUES FROM ('{month.start_time.date()} 00:00+00') "
            f"TO ('{following.start_time.date()} 00:00+00')"
        ))
        month = following


def unknown_reading_keys(conn: Connection, asset_source: str) -> pd.DataFrame:
    """Rows of the readings stage whose asset or metric the twin does not know."""
    rows = conn.execute(
        sa.text(
            "SELECT s.asset_layer, s.asset_external_id, s.metric, "
            "       (m.id IS NULL) AS unknown_metric, (a.id IS NULL) AS unknown_asset "
            "FROM stage_readings s "
            "LEFT JOIN metrics m ON m.name = s.metric "
            "LEFT JOIN assets a ON a.layer = s.asset_layer "
            "  AND a.external_id = s.asset_external_id AND a.source = :asset_source "
            "WHERE m.id IS NULL OR a.id IS NULL LIMIT 5"
        ),
        {"asset_source": asset_source},
    ).all()
    return pd.DataFrame(rows, columns=[
        "asset_layer", "asset_external_id", "metric", "unknown_metric", "unknown_asset"])


def stage_readings(conn: Connection, frame: pd.DataFrame) -> None:
    """COPY a batch of long-form readings into this transaction's staging table."""
    conn.execute(sa.text(
        "CREATE TEMP TABLE IF NOT EXISTS stage_readings ("
        " asset_layer text, asset_external_id text, metric text,"
        " observed_at timestamptz, value double precision, source text) ON COMMIT DROP"
    ))
    copy_frame(conn, "stage_readings", frame[list(READING_COLUMNS)])


def upsert_staged_readings(conn: Connection, asset_source: str, total: int) -> UpsertCounts:
    """Move staged readings into ``readings``, keyed on (metric, asset, observed_at)."""
    flags = conn.execute(
        sa.text(
            "INSERT INTO readings (metric_id, asset_id, observed_at, value, source) "
            "SELECT m.id, a.id, s.observed_at, s.value, s.source FROM stage_readings s "
            "JOIN metrics m ON m.name = s.metric "
            "JOIN assets a ON a.layer = s.asset_layer "
            "  AND a.external_id = s.asset_external_id AND a.source = :asset_source "
            "ON CONFLICT (metric_id, asset_id, observed_at) DO UPDATE "
            "SET value = EXCLUDED.value, source = EXCLUDED.source "
            "WHERE (readings.value, readings.source) IS DISTINCT FROM "
            "      (EXCLUDED.value, EXCLUDED.source) "
            "RETURNING (xmax = 0) AS inserted"
        ),
        {"asset_source": asset_source},
    ).scalars()
    return _counts(flags, total)


def record_run(
    conn: Connection,
    *,
    layer: str,
    source: str,
    path: str,
    checksum_sha256: str,
    status: str,
    started_at: datetime,
    rows_read: int,
    counts: UpsertCounts,
    message: str | None = None,
) -> int:
    """Write one row of ``ingest_runs`` and return its id."""
    return conn.execute(
        sa.text(
            "INSERT INTO ingest_runs (layer, source, path, checksum_sha256, status, started_at,"
            " finished_at, rows_read, rows_new, rows_updated, rows_unchanged, message) "
            "VALUES (:layer, :source, :path, :checksum, :status, :started_at, now(),"
            " :rows_read, :rows_new, :rows_updated, :rows_unchanged, :message) RETURNING id"
        ),
        {
            "layer": layer,
            "source": source,
            "path": path,
            "checksum": checksum_sha256,
            "status": status,
            "started_at": started_at,
            "rows_read": rows_read,
            "rows_new": counts.rows_new,
            "rows_updated": counts.rows_updated,
            "rows_unchanged": counts.rows_unchanged,
            "message": message,
        },
    ).scalar_one()
