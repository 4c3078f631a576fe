"""Background work on procrastinate (a PostgreSQL job queue): rules, refresh, scoring, training.

- ``evaluate_rules`` (queue ``rules``): every commit of readings notes the assets it touched
  and queues this job in the same transaction (geo/rule_queue.py); it evaluates the manhole
  rules and the street survey rule for exactly those assets, so a cover-open reading is an
  alert within a second or two.
- ``deliver_webhooks`` (queue ``webhooks``): queued with every change of a resident request
  (geo/outbox.py); posts it to the subscribed webhooks (service/webhooks.py), plus a sweep
  every minute.
- ``refresh_alerts`` (every 15 minutes by default), ``score_forecasts`` (daily) and
  ``train_model`` (weekly) run on the schedules of ``geo.settings.LoopSettings``; procrastinate
  defers each periodic job once per tick however many workers run.
- Scoring and refresh are split (queue ``batch``, predict/batch.py): ``score_forecasts`` plans
  a run (one model version for all) and queues one ``score_part`` job per district or
  ``score_part_streets`` streets; the part that finds every other done publishes the run and
  queues ``refresh_district`` per district and one ``refresh_town``. ``refresh_alerts``
  queues those refresh jobs too. Any number of workers share the parts.
- ``retry_stalled_jobs`` (every minute): a job left in ``doing`` by a worker that stopped
  sending heartbeats (killed, or its machine lost) is put back to ``todo`` for another.

``twin worker`` runs workers; ``twin serve`` runs one inside the service unless ``--no-worker``.
Any number of workers on any number of machines share the queue: jobs are taken with row locks
and the ``evaluate_rules`` jobs carry a lock, so one runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import procrastinate
from sqlalchemy.engine import Engine

from geo import outbox, rule_queue, score_runs
from geo.errors import TwinError
from geo.settings import LoopSettings
from service.changes import conninfo_of

log = logging.getLogger("twin.jobs")
SCHEDULE_QUEUE = "schedule"
QUEUES = (rule_queue.RULES_QUEUE, SCHEDULE_QUEUE, outbox.DELIVER_QUEUE, score_runs.BATCH_QUEUE)
# A worker that sent no heartbeat for this long is taken for dead (procrastinate's workers
# send one every 10 s by default and call a worker stalled after 30 s).
STALLED_AFTER_S = 30
METRIC = "pci"
# A job waiting for the evaluate_rules lock is not announced again when the lock frees (the
# worker is told only of new jobs), so the worker also looks every 0.2 s rather than procrastinate's
# default 5 s: that was the whole latency of an alert under steady traffic.
FETCH_POLL_S = 0.2

# The tasks are declared on an app without a database; ``worker_app`` gives it one.
app = procrastinate.App(connector=procrastinate.PsycopgConnector())
_engine: Engine | None = None
_schedule = LoopSettings()


def _db() -> Engine:
    if _engine is None:
        raise RuntimeError("the job worker was started without a database")
    return _engine


@app.task(name=rule_queue.EVALUATE_TASK, queue=rule_queue.RULES_QUEUE,
          retry=procrastinate.RetryStrategy(max_attempts=5, wait=2))
def evaluate_rules() -> dict:
    """Evaluate the rules of the assets with new readings, then take them off the queue."""
    from predict.alerts import evaluate_assets

    engine = _db()
    with engine.connect() as conn:
        taken = rule_queue.waiting_assets(conn)
    if not taken:
        return {"assets": 0}
    report = evaluate_assets(engine, [asset for asset, _ in taken])
    with engine.begin() as conn:
        rule_queue.done_with(conn, taken)
    return {"assets": len(taken), "opened": report.opened, "resolved": report.resolved}


@app.task(name=outbox.DELIVER_TASK, queue=outbox.DELIVER_QUEUE, lock=outbox.DELIVER_LOCK)
def deliver_webhooks() -> dict:
    """Post the due changes of residents' requests to their webhooks (service/webhooks.py)."""
    from service.webhooks import deliver

    return deliver(_db())


@app.periodic(cron="* * * * *", periodic_id="webhooks")
@app.task(name="sweep_webhooks", queue=outbox.DELIVER_QUEUE, queueing_lock="sweep_webhooks",
          lock=outbox.DELIVER_LOCK)
def sweep_webhooks(timestamp: int) -> dict:
    """Every minute: deliver what is due, should a queued delivery job ever have been lost."""
    from service.webhooks import deliver

    return deliver(_db())


@app.periodic(cron=_schedule.refresh_cron, periodic_id="refresh")
@app.task(name="refresh_alerts", queue=SCHEDULE_QUEUE, queueing_lock="refresh_alerts",
          lock="refresh_alerts")
def refresh_alerts(timestamp: int) -> dict:
    """Queue the refresh of the alerts: one job per district, one for the town-wide kinds."""
    with _db().begin() as conn:
        districts = score_runs.queue_refresh(conn)
    return {"districts": districts}


@app.task(name=score_runs.DISTRICT_TASK, queue=score_runs.BATCH_QUEUE,
          retry=procrastinate.RetryStrategy(max_attempts=5, wait=5))
def refresh_district(district_id: int | None) -> dict:
    """Raise, update and resolve the road-wear and manhole alerts of one district's assets."""
    from predict.alerts import refresh_district as refresh

    engine = _db()
    with engine.connect() as conn:
        streets = score_runs.assets_in_district(conn, "streets", district_id)
        manholes = score_runs.assets_in_district(conn, "manholes", district_id)
    report = refresh(engine, streets, manholes)
    return {"district_id": district_id, "opened": report.opened, "resolved": report.resolved}


@app.task(name=score_runs.TOWN_TASK, queue=score_runs.BATCH_QUEUE,
          retry=procrastinate.RetryStrategy(max_attempts=5, wait=5))
def refresh_town() -> dict:
    """Debris and new-damage alerts (town-wide), and overdue residents' requests."""
    from civic.workflow import escalate_overdue
    from predict.alerts import refresh_town as refresh

    engine = _db()
    report = refresh(engine)
    with engine.begin() as conn:
        escalated = escalate_overdue(conn)
    return {"opened": report.opened, "resolved": report.resolved,
            "requests_escalated": len(escalated)}


@app.periodic(cron=_schedule.score_cron, periodic_id="score")
@app.task(name="score_forecasts", queue=SCHEDULE_QUEUE, queueing_lock="score_forecasts",
          lock="forecasts")
def score_forecasts(timestamp: int) -> dict:
    """Plan a scoring run with the newest model and queue its parts for any worker."""
    from predict.batch import plan
    from predict.road import DEFAULT_HORIZONS

    try:
        run = plan(_db(), METRIC, DEFAULT_HORIZONS, part_streets=_schedule.score_part_streets,
                   enqueue=True)
    except TwinError as error:  # no model or no readings yet: said, not retried
        log.warning("scoring skipped: %s", error)
        return {"skipped": str(error)}
    return {"run_id": run.run_id, "model_version": run.model_version, "parts": run.parts}


@app.task(name=score_runs.PART_TASK, queue=score_runs.BATCH_QUEUE,
          retry=procrastinate.RetryStrategy(max_attempts=5, wait=5))
def score_part(run_id: str, part: int) -> dict:
    """Score one part of a run; the part that completes the run publishes it."""
    from predict.batch import publish
    from predict.batch import score_part as score

    engine = _db()
    # Host and process: every `twin worker` is named "twin", and an operator asks which one.
    rows = score(engine, run_id, part, scored_by=f"{socket.gethostname()}:{os.getpid()}")
    published = publish(engine, run_id, refresh=True)
    return {"run_id": run_id, "part": part, "rows": rows, "published": published}


@app.periodic(cron=_schedule.stalled_cron, periodic_id="stalled")
@app.task(name="retry_stalled_jobs", queue=SCHEDULE_QUEUE, queueing_lock="retry_stalled_jobs",
          pass_context=True)
async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> dict:
    """Put the jobs of workers that stopped sending heartbeats back in the queue."""
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_S))
    for job in stalled:
        log.warning("job %s (%s) was left by a stalled worker: retried", job.id, job.task_name)
        await manager.retry_job(job)
    return {"retried": len(stalled)}


@app.periodic(cron=_schedule.train_cron, periodic_id="train")
@app.task(name="train_model", queue=SCHEDULE_QUEUE, queueing_lock="train_model",
          lock="forecasts")
def train_model(timestamp: int) -> dict:
    """Train a road-wear model on everything observed so far and store it."""
    from predict.pipeline import train

    try:
        result = train(_db(), METRIC)
    except TwinError as error:
        log.warning("training skipped: %s", error)
        return {"skipped": str(error)}
    return {"version": result.version, "rows": result.rows}


async def run_worker(engine: Engine, *, concurrency: int = 2,
                     install_signal_handlers: bool = True, name: str = "twin") -> None:
    """Run a worker on every queue until cancelled (or, with signal handlers, SIGINT/SIGTERM).

    Two jobs at a time by default, so a rule evaluation never waits for a training.
    Finished jobs are deleted: every commit of readings makes one.
    """
    global _engine
    _engine = engine
    connector = procrastinate.PsycopgConnector(conninfo=conninfo_of(engine.url), min_size=1,
                                               max_size=concurrency + 2)
    with app.replace_connector(connector) as jobs:
        async with jobs.open_async():
            await jobs.run_worker_async(
                queues=list(QUEUES), concurrency=concurrency, name=name,
                delete_jobs="successful", install_signal_handlers=install_signal_handlers,
                fetch_job_polling_interval=FETCH_POLL_S)


def start_in_background(engine: Engine) -> asyncio.Task:
    """Start a worker on the running event loop (the service's), returning its task."""
    task = asyncio.get_running_loop().create_task(
        run_worker(engine, install_signal_handlers=False, name="twin-serve"))

    def report(done: asyncio.Task) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("the in-process job worker stopped: %s", done.exception())

    task.add_done_callback(report)
    return task
