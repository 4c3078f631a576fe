"""Assets with new readings, waiting for their rules to be evaluated by the job queue.

Every writer of readings (file ingest, the MQTT watcher, ``POST /readings``) notes the assets
it touched in ``rule_queue`` and queues one ``evaluate_rules`` job, in the transaction that
writes the readings: if they commit, the job exists; if they roll back, neither does. The job
has a procrastinate queueing lock, so however many commits arrive while it waits there is one
job, and it evaluates every asset noted by then. Assets are taken off the queue only after
their evaluation committed, so a failed evaluation is retried with nothing lost.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

RULES_QUEUE = "rules"
EVALUATE_TASK = "evaluate_rules"  # procrastinate task name (service/jobs.py registers it)
EVALUATE_LOCK = "evaluate_rules"


def note_assets(conn: Connection, select_asset_ids: str, params: dict | None = None) -> None:
    """Note the assets a statement's ``asset_id`` column names, and queue their evaluation.

    ``select_asset_ids`` is a SELECT (or a CTE's name in a WITH) giving ``asset_id``; a
    SELECT with no rows queues nothing.
    """
    # In asset order, as done_with locks them: concurrent writers of the same assets then
    # wait for each other instead of deadlocking.
    noted = conn.execute(sa.text(
        f"INSERT INTO rule_queue (asset_id) SELECT DISTINCT asset_id FROM ({select_asset_ids}) s "
        f"WHERE asset_id IS NOT NULL ORDER BY asset_id "
        f"ON CONFLICT (asset_id) DO UPDATE SET noted_at = clock_timestamp()"), params or {}
    ).rowcount
    if noted:
        queue_evaluation(conn)


def queue_evaluation(conn: Connection) -> None:
    """Queue one ``evaluate_rules`` job unless one is already waiting.

    A row in procrastinate's job table, written in the caller's transaction so the job exists
    exactly when the readings do; its insert trigger wakes the workers (LISTEN/NOTIFY) on
    commit. The conflict target is procrastinate's queueing-lock index, so a waiting job is
    the one job.
    """
    conn.execute(sa.text(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, lock, args) "
        "VALUES (:queue, :task, :lock, :lock, '{}'::jsonb) "
        "ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING"),
        {"queue": RULES_QUEUE, "task": EVALUATE_TASK, "lock": EVALUATE_LOCK})


def waiting_assets(conn: Connection, limit: int = 50_000) -> list[tuple[int, object]]:
    """(asset id, noted at) of the assets waiting, oldest first."""
    return [(r[0], r[1]) for r in conn.execute(sa.text(
        "SELECT asset_id, noted_at FROM rule_queue ORDER BY noted_at LIMIT :limit"),
        {"limit": limit}).all()]


def done_with(conn: Connection, taken: list[tuple[int, object]]) -> None:
    """Take evaluated assets off the queue, unless noted again since they were taken."""
    if not taken:
        return
    conn.execute(sa.text(
        "DELETE FROM rule_queue q WHERE q.asset_id IN (SELECT r.asset_id FROM rule_queue r "
        "JOIN unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS t(asset_id, "
        "noted_at) ON r.asset_id = t.asset_id AND r.noted_at = t.noted_at "
        "ORDER BY r.asset_id FOR UPDATE OF r)"),
        {"ids": [a for a, _ in taken], "ats": [t for _, t in taken]})
