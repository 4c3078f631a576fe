"""SQL that writes layers and readings: bulk COPY into staging, then one upsert per layer.

Identifiers come only from the constants below; values always travel as COPY data or bound
parameters.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import rule_queue

ASSET_LAYERS = ("streets", "manholes", "parking", "compounds", "buildings")
READING_STAGE_COLUMNS = ("metric_id", "asset_id", "observed_at", "value", "source", "row_number")
REJECT_STAGE_COLUMNS = ("row_number", "field", "value", "reason", "outcome")
# A damage observation belongs to the nearest street within this distance (degrees, ~30 m).
DAMAGE_STREET_SNAP_DEG = 0.0003


@dataclass
class UpsertCounts:
    """What one load did to a table."""

    rows_new: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0


def copy_frame(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    """Send a frame to a (staging) table with COPY in CSV form; NULLs travel as empty fields."""
    if frame.empty:
        return
    # pyarrow's CSV writer is several times faster than pandas' (timestamps above all), and
    # quotes only what needs it: an empty field is NULL to COPY, a quoted "" an empty string.
    buffer = io.BytesIO()
    pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buffer,
                     pa_csv.WriteOptions(include_header=False))
    driver = conn.connection.driver_connection
    assert driver is not None  # a checked-out connection always has its psycopg one
    cursor = driver.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getbuffer())


def _count_upsert(conn: Connection, statement: str, total: int, **params) -> UpsertCounts:
    # Count on the server: xmax = 0 marks a row this statement inserted rather than updated.
    new, changed = conn.execute(
        sa.text(
            f"WITH written AS ({statement} RETURNING (xmax = 0) AS inserted) "
            f"SELECT count(*) FILTER (WHERE inserted), count(*) FROM written"
        ),
        params,
    ).one()
    return UpsertCounts(rows_new=new, rows_updated=changed - new, rows_unchanged=total - changed)


# -- layers ---------------------------------------------------------------------------------


def layer_stage_columns(fields: Sequence[str]) -> tuple[str, ...]:
    """Columns a layer's staging table takes, in COPY order, for the layer's own fields."""
    return ("source", "external_id", "properties", "geom",
            *(f for f in fields if f != "external_id"))


def create_layer_stage(conn: Connection, table: str, columns: Sequence[str]) -> str:
    """Create this transaction's staging table for a layer, typed like it; return its name."""
    stage = f"stage_{table}"
    conn.execute(
        sa.text(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {', '.join(columns)} FROM {table} WITH NO DATA"
        )
    )
    return stage


def upsert_layer_from_stage(conn: Connection, table: str, columns: Sequence[str]
                            ) -> UpsertCounts:
    """Insert new features and update changed ones, keyed on (source, external_id).

    Unchanged rows are left alone, so loading the same data twice changes nothing,
    ``updated_at`` included.
    """
    stage = f"stage_{table}"
    compared = [c for c in columns if c not in ("source", "external_id")]
    total = conn.execute(sa.text(f"SELECT count(*) FROM {stage}")).scalar_one()
    counts = _count_upsert(
        conn,
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT {', '.join(columns)} FROM {stage} "
        f"ON CONFLICT (source, external_id) DO UPDATE SET "
        f"{', '.join(f'{c} = EXCLUDED.{c}' for c in compared)}, updated_at = now() "
        f"WHERE ({', '.join(f'{table}.{c}' for c in compared)}) IS DISTINCT FROM "
        f"({', '.join(f'EXCLUDED.{c}' for c in compared)})",
        total,
    )
    if table == "road_damage":
        snap_damage_to_streets(conn)
    if table in ("buildings", "compounds"):
        assign_buildings_to_compounds(conn)
    return counts


def assign_buildings_to_compounds(conn: Connection) -> int:
    """Give each building the compound it stands in (by a point inside its footprint).

    Run after buildings or compounds change, so a house loaded before its compound, or a
    compound redrawn, is linked all the same. Only links that change are written (an
    unchanged twin bumps no version). Returns how many buildings changed compound.
    """
    return conn.execute(
        sa.text(
            "WITH placed AS (SELECT b.id, (SELECT c.id FROM compounds c "
            "  WHERE ST_Intersects(c.geom, ST_PointOnSurface(b.geom)) ORDER BY c.id LIMIT 1) "
            "  AS compound_id FROM buildings b) "
            "UPDATE buildings b SET compound_id = p.compound_id FROM placed p "
            "WHERE b.id = p.id AND b.compound_id IS DISTINCT FROM p.compound_id"
        )
    ).rowcount


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


def twin_area(conn: Connection) -> tuple[float, float, float, float] | None:
    """The lon/lat extent of every asset in the twin, or None while there are none."""
    union = " UNION ALL ".join(
        f"SELECT ST_Extent(geom)::geometry AS e FROM {t}" for t in ASSET_LAYERS
    )
    row = conn.execute(
        sa.text(
            f"SELECT ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) "
            f"FROM (SELECT ST_Extent(e) AS x FROM ({union}) parts) area"
        )
    ).one()
    return None if row[0] is None else tuple(row)


# -- readings -------------------------------------------------------------------------------


def create_readings_stage(conn: Connection) -> None:
    """Create this transaction's staging table for readings (already resolved to ids)."""
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE stage_readings (metric_id smallint, asset_id bigint,"
            " observed_at timestamptz, value double precision, source text, row_number bigint)"
            " ON COMMIT DROP"
        )
    )


def take_duplicate_readings(conn: Connection) -> pd.DataFrame:
    """Remove staged readings that repeat an earlier row's (metric, asset, time); list them."""
    rows = conn.execute(
        sa.text(
            "WITH ranked AS ("
            "  SELECT row_number, first_value(row_number) OVER ("
            "    PARTITION BY metric_id, asset_id, observed_at ORDER BY row_number) AS first_row"
            "  FROM stage_readings) "
            "DELETE FROM stage_readings s USING ranked r "
            "WHERE s.row_number = r.row_number AND r.first_row <> r.row_number "
            "RETURNING s.row_number, r.first_row"
        )
    ).all()
    return pd.DataFrame(rows, columns=["row_number", "first_row"])


def _create_month_partition(conn: Connection, month: pd.Period) -> None:
    following = month + 1
    name = f"readings_y{month.year:04d}m{month.month:02d}"
    # Two writers starting the same new month at once would both create it (and one
    # fail): the first to take this lock creates it, the other then finds it.
    if conn.execute(sa.text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
    conn.execute(
        sa.text(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings "
            f"FOR VALUES FROM ('{month.start_time.date()} 00:00+00') "
            f"TO ('{following.start_time.date()} 00:00+00')"
        )
    )


def ensure_reading_partitions(conn: Connection, first: datetime, last: datetime) -> None:
    """Create the monthly partitions of ``readings`` that hold ``first`` to ``last``."""
    month = pd.Timestamp(first).tz_convert("UTC").tz_localize(None).to_period("M")
    end = pd.Timestamp(last).tz_convert("UTC").tz_localize(None).to_period("M")
    while month <= end:
        _create_month_partition(conn, month)
        month = month + 1


def ensure_partitions_of_stage(conn: Connection, stage: str) -> None:
    """Create the monthly partitions of ``readings`` for the months staged readings fall in.

    Only those months: two readings years apart make two partitions, not one per month in
    between (each partition costs every later query on ``readings`` planning time).
    """
    months = conn.execute(sa.text(
        f"SELECT DISTINCT date_trunc('month', observed_at AT TIME ZONE 'UTC') FROM {stage}"
    )).scalars().all()
    for month in months:
        _create_month_partition(conn, pd.Timestamp(month).to_period("M"))


def upsert_readings_from_stage(conn: Connection) -> UpsertCounts:
    """Move staged readings into ``readings``, keyed on (metric, asset, observed_at).

    Two statements rather than one upsert: PostgreSQL cannot tell inserted from updated rows
    of a partitioned table in RETURNING, and the counts are part of every run's record.
    """
    total, first, last = conn.execute(
        sa.text("SELECT count(*), min(observed_at), max(observed_at) FROM stage_readings")
    ).one()
    if total == 0:
        return UpsertCounts()
    ensure_partitions_of_stage(conn, "stage_readings")
    # Each statement also says which assets it changed: their rules are evaluated next.
    updated, updated_assets = conn.execute(
        sa.text(
            "WITH changed AS (UPDATE readings r SET value = s.value, source = s.source "
            "FROM stage_readings s "
            "WHERE r.metric_id = s.metric_id AND r.asset_id = s.asset_id "
            "  AND r.observed_at = s.observed_at "
            "  AND r.observed_at BETWEEN :first AND :last "  # prunes to the file's months
            "  AND (r.value, r.source) IS DISTINCT FROM (s.value, s.source) "
            "RETURNING r.asset_id) "
            "SELECT count(*), array_agg(DISTINCT asset_id) FROM changed"
        ),
        {"first": first, "last": last},
    ).one()
    new, new_assets = conn.execute(
        sa.text(
            "WITH added AS (INSERT INTO readings (metric_id, asset_id, observed_at, value, source) "
            "SELECT metric_id, asset_id, observed_at, value, source FROM stage_readings "
            "ON CONFLICT (metric_id, asset_id, observed_at) DO NOTHING RETURNING asset_id) "
            "SELECT count(*), array_agg(DISTINCT asset_id) FROM added"
        )
    ).one()
    if new or updated:
        touch_layer(conn, "readings")
        rule_queue.note_assets(conn, "SELECT unnest(CAST(:ids AS bigint[])) AS asset_id",
                               {"ids": sorted(set(updated_assets or ()) | set(new_assets or ()))})
    return UpsertCounts(rows_new=new, rows_updated=updated, rows_unchanged=total - new - updated)


def touch_layer(conn: Connection, table: str) -> None:
    """Tell the service a table changed (on commit): its tiles and ETags are stale."""
    conn.execute(sa.text("SELECT twin_touch_layer(:table)"), {"table": table})


def tune_for_bulk_load(conn: Connection) -> None:
    """Tune this transaction for a bulk load.

    Sorts of a million staged rows stay in memory, and statements that run once are not
    JIT-compiled.
    """
    conn.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    conn.execute(sa.text("SET LOCAL jit = off"))


def asset_keys(conn: Connection) -> pd.DataFrame:
    """Every asset's (layer, external_id) -> id; ids used by several sources are left out."""
    rows = conn.execute(
        sa.text(
            "SELECT layer, external_id, min(id) FROM assets GROUP BY layer, external_id "
            "HAVING count(*) = 1"
        )
    ).all()
    return pd.DataFrame(rows, columns=["layer", "external_id", "id"])


# -- metrics --------------------------------------------------------------------------------


def metric_ranges(conn: Connection) -> pd.DataFrame:
    """Declared metrics, indexed by name, with id, unit, range and direction.

    The rows stay locked against deletion until the transaction ends: readings refer to
    them without a foreign key.
    """
    rows = conn.execute(
        sa.text(
            "SELECT name, id, unit, min_value, max_value, higher_is_better, description "
            "FROM metrics ORDER BY name FOR KEY SHARE"
        )
    ).all()
    return pd.DataFrame(
        rows,
        columns=["name", "id", "unit", "min_value", "max_value", "higher_is_better", "description"],
    ).set_index("name")


def readings_outside(conn: Connection, name: str, min_value: float, max_value: float) -> int:
    """How many stored readings of a metric fall outside a proposed range."""
    return conn.execute(
        sa.text(
            "SELECT count(*) FROM readings r JOIN metrics m ON m.id = r.metric_id "
            "WHERE m.name = :name AND (r.value < :lo OR r.value > :hi)"
        ),
        {"name": name, "lo": min_value, "hi": max_value},
    ).scalar_one()


def upsert_metric(
    conn: Connection,
    *,
    name: str,
    unit: str,
    min_value: float,
    max_value: float,
    higher_is_better: bool | None,
    description: str | None,
) -> bool:
    """Declare a metric or change its declaration; return True if it is new."""
    return conn.execute(
        sa.text(
            "INSERT INTO metrics (name, unit, min_value, max_value, higher_is_better, description) "
            "VALUES (:name, :unit, :lo, :hi, :hib, :description) "
            "ON CONFLICT (name) DO UPDATE SET unit = EXCLUDED.unit, min_value = EXCLUDED.min_value,"
            " max_value = EXCLUDED.max_value, higher_is_better = EXCLUDED.higher_is_better,"
            " description = COALESCE(EXCLUDED.description, metrics.description) "
            "RETURNING (xmax = 0)"
        ),
        {
            "name": name,
            "unit": unit,
            "lo": min_value,
            "hi": max_value,
            "hib": higher_is_better,
            "description": description,
        },
    ).scalar_one()


# -- runs and rejects -----------------------------------------------------------------------


def backend_pid(conn: Connection) -> int:
    """The server process serving this connection."""
    return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def mark_interrupted_runs(conn: Connection) -> int:
    """Mark runs left 'running' by a server process that is gone; return how many.

    A run is its server process's as long as that process lives: the same pid *and* the same
    start time, since the server reuses pids. A client killed mid-statement leaves its process
    at work for a while, so this is checked when a run starts and again when one ends.
    """
    return conn.execute(
        sa.text(
            "UPDATE ingest_runs r SET status = 'interrupted', finished_at = now(), "
            " message = 'the load ended before it committed; none of its rows were kept' "
            "WHERE r.status = 'running' AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
            "  WHERE a.pid = r.backend_pid"
            "  AND (r.backend_start IS NULL OR a.backend_start = r.backend_start))"
        )
    ).rowcount


def start_run(
    conn: Connection,
    *,
    layer: str,
    source: str,
    path: str,
    checksum_sha256: str,
    mapping_path: str | None,
    pid: int,
) -> int:
    """Record a run as 'running' (committed apart, so a run that dies is still on record)."""
    return conn.execute(
        sa.text(
            "INSERT INTO ingest_runs (layer, source, path, checksum_sha256, status, mapping_path,"
            " backend_pid, backend_start) VALUES (:layer, :source, :path, :checksum, 'running',"
            " :mapping, :pid, (SELECT backend_start FROM pg_stat_activity WHERE pid = :pid)) "
            "RETURNING id"
        ),
        {
            "layer": layer,
            "source": source,
            "path": path,
            "checksum": checksum_sha256,
            "mapping": mapping_path,
            "pid": pid,
        },
    ).scalar_one()


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    rows_read: int = 0,
    counts: UpsertCounts | None = None,
    rows_rejected: int = 0,
    rows_repaired: int = 0,
    message: str | None = None,
    pid: int | None = None,
) -> None:
    """Record how a run ended, or, with status 'running', a long job's progress so far.

    ``pid`` is the server process now doing the job's writes (a job that reconnected has a
    new one), so that it is not taken for an interrupted run. A run that ends also marks
    the runs whose process has gone since (``mark_interrupted_runs``).
    """
    counts = counts or UpsertCounts()
    conn.execute(
        sa.text(
            "UPDATE ingest_runs SET status = :status, backend_pid = coalesce(:pid, backend_pid),"
            " backend_start = coalesce((SELECT backend_start FROM pg_stat_activity"
            "  WHERE pid = :pid), backend_start),"
            " finished_at = CASE WHEN :status = 'running' THEN NULL ELSE clock_timestamp() END,"
            " rows_read = :read, rows_new = :new, rows_updated = :updated,"
            " rows_unchanged = :unchanged, rows_rejected = :rejected, rows_repaired = :repaired,"
            " message = :message WHERE id = :id"
        ),
        {
            "status": status,
            "read": rows_read,
            "new": counts.rows_new,
            "updated": counts.rows_updated,
            "unchanged": counts.rows_unchanged,
            "rejected": rows_rejected,
            "repaired": rows_repaired,
            "message": message,
            "id": run_id,
            "pid": pid,
        },
    )
    if status != "running":
        # A run killed while a later one started may have kept its server process busy until
        # now; the end of any run is a moment to see that it is gone.
        mark_interrupted_runs(conn)


def create_rejects_stage(conn: Connection) -> None:
    """Create this transaction's staging table for rejected and repaired rows."""
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE stage_rejects (row_number bigint, field text, value text,"
            " reason text, outcome text) ON COMMIT DROP"
        )
    )


# A rejected value is kept as sent, for the record, except that control characters (a
# terminal's escape sequences among them) are kept as their visible pictures (U+2400 block):
# whoever reads the rejects in a terminal or a spreadsheet sees them, and is not acted upon.
_CONTROLS = "".join(chr(c) for c in (*range(1, 9), 11, 12, *range(14, 32), 127))
_PICTURES = "".join(chr(0x2400 + c) if c < 32 else "\u2421" for c in (
    *range(1, 9), 11, 12, *range(14, 32), 127))


def save_rejects(conn: Connection, run_id: int) -> None:
    """Keep the staged rejects with their run (control characters made visible)."""
    conn.execute(
        sa.text(
            "INSERT INTO ingest_rejects (run_id, row_number, field, value, reason, outcome) "
            "SELECT :run_id, row_number, translate(field, :controls, :pictures),"
            " translate(value, :controls, :pictures), translate(reason, :controls, :pictures),"
            " outcome FROM stage_rejects ORDER BY row_number"
        ),
        {"run_id": run_id, "controls": _CONTROLS, "pictures": _PICTURES},
    )


# -- broker drops ---------------------------------------------------------------------------


def last_feed_drop_total(conn: Connection, broker: str) -> int | None:
    """The broker's dropped-messages counter as last recorded, or None if never read."""
    return conn.execute(
        sa.text("SELECT dropped_total FROM feed_drops WHERE broker = :broker "
                "ORDER BY id DESC LIMIT 1"),
        {"broker": broker},
    ).scalar()


def record_feed_drops(conn: Connection, broker: str, *, total: int,
                      run_id: int | None) -> int | None:
    """Keep a new reading of the broker's counter; how many messages it adds to the lost.

    Every watcher of a group reads the same counter: the change is counted once, by whichever
    records it first (the others find the total recorded already: None, nothing kept). The
    first reading of a broker is a baseline (0); a total below the last means the broker
    restarted and counts from 0 again.
    """
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('feed_drops:' || :broker))"),
                 {"broker": broker})
    last = last_feed_drop_total(conn, broker)
    if last == total:
        return None
    new = 0 if last is None else total - last if total > last else total
    conn.execute(
        sa.text("INSERT INTO feed_drops (broker, dropped_total, dropped_new, run_id) "
                "VALUES (:broker, :total, :new, :run_id)"),
        {"broker": broker, "total": total, "new": new, "run_id": run_id},
    )
    return new


def feed_drops_by_broker(conn: Connection) -> dict[str, int]:
    """Messages each broker is known to have dropped, over all recorded time."""
    rows = conn.execute(sa.text(
        "SELECT broker, sum(dropped_new)::bigint FROM feed_drops GROUP BY broker ORDER BY broker"))
    return {broker: int(total) for broker, total in rows}
