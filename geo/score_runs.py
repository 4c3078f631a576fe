"""SQL of scoring runs split into parts (migration 0015): plan, write a part, publish whole.

A run is planned once (model version, as-of, horizons, and the streets of each part); any
number of workers then score its parts; the last part to finish publishes the run, moving its
staged forecasts into ``predictions`` in one transaction. Until then the run is invisible to
everything that reads forecasts.
"""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.predictions import PREDICTION_COLUMNS, copy_forecasts

_STAGED = tuple(c for c in PREDICTION_COLUMNS if c != "run_id")
# Procrastinate queue and task names of the split work (service/jobs.py registers the tasks).
BATCH_QUEUE = "batch"
PART_TASK = "score_part"
DISTRICT_TASK = "refresh_district"
TOWN_TASK = "refresh_town"


def streets_by_district(conn: Connection) -> list[tuple[int | None, list[int]]]:
    """Every street's id grouped by its district (``None``: in no district), in id order."""
    rows = conn.execute(sa.text(
        "SELECT district_id, array_agg(id ORDER BY id) FROM streets GROUP BY district_id "
        "ORDER BY district_id NULLS LAST")).all()
    return [(row[0], [int(i) for i in row[1]]) for row in rows]


def create_run(conn: Connection, *, run_id: str, target: str, metric: str | None,
               model_version: str, as_of: datetime, horizons: list[int],
               threshold: float | None, parts: list[tuple[int | None, list[int]]]) -> None:
    """Keep a planned run and its parts (each a district or ``None`` and its street ids)."""
    conn.execute(sa.text(
        "INSERT INTO score_runs (run_id, target, metric, model_version, as_of, horizons, "
        "threshold, parts) VALUES (:run, :target, :metric, :version, :as_of, :horizons, "
        ":threshold, :parts)"),
        {"run": run_id, "target": target, "metric": metric, "version": model_version,
         "as_of": as_of, "horizons": list(horizons), "threshold": threshold,
         "parts": len(parts)})
    if parts:
        conn.execute(sa.text(
            "INSERT INTO score_parts (run_id, part, district_id, asset_ids) "
            "VALUES (:run, :part, :district, :ids)"),
            [{"run": run_id, "part": i, "district": district, "ids": ids}
             for i, (district, ids) in enumerate(parts)])


def get_run(conn: Connection, run_id: str) -> dict | None:
    """A run's plan and state, or None."""
    row = conn.execute(sa.text(
        "SELECT run_id, target, metric, model_version, as_of, horizons, threshold, parts, "
        "created_at, published_at, rows FROM score_runs WHERE run_id = :run"),
        {"run": run_id}).mappings().first()
    return dict(row) if row else None


def get_part(conn: Connection, run_id: str, part: int) -> dict | None:
    """One part of a run (its district, street ids and whether it is done), or None."""
    row = conn.execute(sa.text(
        "SELECT run_id, part, district_id, asset_ids, done_at, rows, scored_by FROM score_parts "
        "WHERE run_id = :run AND part = :part"), {"run": run_id, "part": part}
    ).mappings().first()
    return dict(row) if row else None


def write_part(conn: Connection, run_id: str, part: int, frame: pd.DataFrame, *,
               scored_by: str | None = None) -> int | None:
    """Stage a part's forecasts and mark it done; None if the part was done already.

    Call inside one transaction: the part's row is locked first, so two attempts of one part
    (a stalled job retried while the first still runs) write one after the other, and the
    second finds it done. Rows of an attempt that did not commit are gone with it, and any
    staged by an earlier attempt are deleted before writing: each forecast is staged once.
    """
    done = conn.execute(sa.text(
        "SELECT done_at IS NOT NULL FROM score_parts WHERE run_id = :run AND part = :part "
        "FOR UPDATE"), {"run": run_id, "part": part}).scalar()
    if done is None or done:
        return None
    conn.execute(sa.text("DELETE FROM staged_predictions WHERE run_id = :run AND part = :part"),
                 {"run": run_id, "part": part})
    written = 0
    if not frame.empty:
        staged = frame.reindex(columns=list(_STAGED)).assign(run_id=run_id, part=part)
        written = copy_forecasts(conn, "staged_predictions",
                                 staged[["run_id", "part", *_STAGED]])
    conn.execute(sa.text(
        "UPDATE score_parts SET done_at = clock_timestamp(), rows = :rows, scored_by = :by "
        "WHERE run_id = :run AND part = :part"),
        {"run": run_id, "part": part, "rows": written, "by": scored_by})
    return written


def publish(conn: Connection, run_id: str) -> int | None:
    """Move a run's staged forecasts into ``predictions`` once every part is done.

    Returns the rows published, or None when parts are still to do or the run was published
    already (or superseded). Call inside one transaction: the run's row is locked first, so
    of the parts finishing together exactly one publishes, and it sees every other part's
    commit.
    """
    published = conn.execute(sa.text(
        "SELECT published_at IS NOT NULL FROM score_runs WHERE run_id = :run FOR UPDATE"),
        {"run": run_id}).scalar()
    if published is None or published:
        return None
    waiting = conn.execute(sa.text(
        "SELECT count(*) FROM score_parts WHERE run_id = :run AND done_at IS NULL"),
        {"run": run_id}).scalar_one()
    if waiting:
        return None
    columns = ", ".join(PREDICTION_COLUMNS)
    # In part, asset and horizon order: the same run published twice gets the same id order.
    rows = conn.execute(sa.text(
        f"INSERT INTO predictions ({columns}) SELECT {columns} FROM staged_predictions "
        "WHERE run_id = :run ORDER BY part, asset_id, horizon_days"), {"run": run_id}).rowcount
    conn.execute(sa.text("DELETE FROM staged_predictions WHERE run_id = :run"), {"run": run_id})
    conn.execute(sa.text(
        "UPDATE score_runs SET published_at = clock_timestamp(), rows = :rows "
        "WHERE run_id = :run"), {"run": run_id, "rows": rows})
    # Older runs still unfinished are superseded: published later, their older forecasts
    # would shadow these (the newest created wins). Their parts and staged rows go with them.
    conn.execute(sa.text(
        "DELETE FROM score_runs WHERE published_at IS NULL AND created_at < "
        "(SELECT created_at FROM score_runs WHERE run_id = :run)"), {"run": run_id})
    return rows


def parts_waiting(conn: Connection, run_id: str) -> int:
    """How many parts of a run are not done yet."""
    return conn.execute(sa.text(
        "SELECT count(*) FROM score_parts WHERE run_id = :run AND done_at IS NULL"),
        {"run": run_id}).scalar_one()


def district_ids(conn: Connection) -> list[int | None]:
    """Every district that holds a street or a manhole, then ``None`` for those in none."""
    return [row[0] for row in conn.execute(sa.text(
        "SELECT DISTINCT district_id FROM (SELECT district_id FROM streets UNION ALL "
        "SELECT district_id FROM manholes) a ORDER BY district_id NULLS LAST")).all()]


def assets_in_district(conn: Connection, table: str, district_id: int | None) -> list[int]:
    """The ids of a layer's assets in a district (``None``: in no district)."""
    if table not in ("streets", "manholes"):
        raise ValueError(f"not a layer refreshed per district: {table}")
    return [int(i) for i in conn.execute(sa.text(
        f"SELECT id FROM {table} WHERE district_id IS NOT DISTINCT FROM :d ORDER BY id"),
        {"d": district_id}).scalars()]


def _queue(conn: Connection, task: str, args: list[dict], lock: str | None = None) -> None:
    # Rows in procrastinate's job table, as rule_queue.queue_evaluation writes them: in the
    # caller's transaction, so the jobs exist exactly when what they work on does. A lock is
    # also the queueing lock: one job of it waiting is enough, however often it is queued.
    if args:
        conn.execute(sa.text(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args) "
            "VALUES (:queue, :task, :lock, :lock, CAST(:args AS jsonb)) "
            "ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING"),
            [{"queue": BATCH_QUEUE, "task": task, "lock": lock, "args": json.dumps(a)}
             for a in args])


def queue_parts(conn: Connection, run_id: str, parts: int) -> None:
    """Queue one ``score_part`` job per part of a run."""
    _queue(conn, PART_TASK, [{"run_id": run_id, "part": i} for i in range(parts)])


def queue_refresh(conn: Connection) -> int:
    """Queue one ``refresh_district`` job per district with assets, and one ``refresh_town``.

    Returns the number of districts. Each district's job carries a lock of its own, so two
    refreshes of one district never run at once, and at most one of them waits.
    """
    districts = district_ids(conn)
    for district in districts:
        _queue(conn, DISTRICT_TASK, [{"district_id": district}],
               lock=f"{DISTRICT_TASK}:{district if district is not None else 'none'}")
    _queue(conn, TOWN_TASK, [{}], lock=TOWN_TASK)
    return len(districts)
