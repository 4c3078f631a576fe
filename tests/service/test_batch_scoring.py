"""Scoring split by district over job workers: exactly the forecasts of one process.

A run is planned once (one model version), its parts are queued in procrastinate on the
suite's PostGIS, and real ``twin worker`` processes score them. The published run must hold
the same rows as ``pipeline.score`` in one process; a worker killed mid-part leaves its part
to another worker (stalled-job recovery), and nothing shows as current before the last part.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from geo import score_runs
from predict import batch, pipeline

FAST = {"max_iter": 40, "learning_rate": 0.2}  # a small model: the tests check the split
# What makes a forecast the same forecast: asset, metric, horizon, values, model version.
COLUMNS = ["asset_layer", "asset_id", "metric_id", "horizon_days", "target_date", "value",
           "lower", "upper", "days_to_threshold", "model_version", "as_of"]
PUBLISHED_WITHIN_S = 300  # generous on a shared 2-core machine; the benchmark measures it


def _rows(engine, run_id: str) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.text(
            f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE run_id = :run "
            "ORDER BY asset_id, horizon_days"), {"run": run_id})
        return pd.DataFrame([tuple(r) for r in result], columns=COLUMNS)


def _state(engine, run_id: str) -> tuple[bool, int]:
    """Whether the run is published, and how many of its rows are in predictions."""
    with engine.connect() as conn:
        published, rows = conn.execute(sa.text(
            "SELECT published_at IS NOT NULL, (SELECT count(*) FROM predictions "
            "WHERE run_id = :run) FROM score_runs WHERE run_id = :run"), {"run": run_id}).one()
    return bool(published), int(rows)


def _wait_published(engine, run_id: str, worker_list: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + PUBLISHED_WITHIN_S
    while time.monotonic() < deadline:
        published, rows = _state(engine, run_id)
        if published:
            return
        # Half a run is never current: no row of it in predictions before it is published.
        assert rows == 0, f"{rows} forecasts of run {run_id} shown before all its parts ended"
        for worker in worker_list:
            assert worker.poll() is None, worker.communicate()[0]
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} was not published within {PUBLISHED_WITHIN_S} s")


class Workers:
    """``twin worker`` processes on the module's database, stopped at the end."""

    def __init__(self, engine, **env: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        self.env["TWIN_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
        self.env.update(env)
        self.engine = engine
        self.started: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        before = self._newest()
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "twin"), "worker", "--concurrency", "1"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.started.append(worker)
        deadline = time.monotonic() + 60  # listening once procrastinate has its row
        while self._newest() == before and time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.2)
        assert self._newest() != before, "the worker did not start"
        return worker

    def _newest(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT coalesce(max(id), 0) FROM procrastinate_workers")).scalar_one()

    def stop(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.started:
            output, _ = worker.communicate(timeout=60)
            if worker.returncode != -signal.SIGKILL:
                assert worker.returncode == 0, output
                assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def version(sample_engine) -> str:
    return pipeline.train(sample_engine, "pci", **FAST).version


@pytest.fixture(scope="module")
def one_process(sample_engine, version) -> pd.DataFrame:
    """The forecasts of today's one-process ``twin predict score`` with that model."""
    rows = _rows(sample_engine, pipeline.score(sample_engine, "pci", version=version).run_id)
    assert len(rows) > 100
    return rows


@pytest.fixture(scope="module")
def part_streets(sample_engine) -> int:
    """A part size that cuts the sample into several parts (packed and sliced districts)."""
    with sample_engine.connect() as conn:
        groups = score_runs.streets_by_district(conn)
    streets = sum(len(ids) for _, ids in groups)
    size = max(1, streets // 5)
    assert len(batch.split_parts(groups, size)) >= 4
    return size


@pytest.fixture
def workers(sample_engine) -> Iterator[Workers]:
    # Stalled workers are looked for every 2 s here (every minute by default).
    started = Workers(sample_engine, TWIN_STALLED_CRON="* * * * * */2")
    yield started
    started.stop()


def test_parts_are_districts_packed_or_sliced_to_a_size():
    groups = [(1, [1, 2]), (2, [3]), (3, [4, 5, 6, 7, 8]), (None, [9, 10, 11])]
    assert batch.split_parts(groups, 3) == [
        (None, [1, 2, 3]), (3, [4, 5, 6]), (3, [7, 8]), (None, [9, 10, 11])]
    assert batch.split_parts(groups, 2) == [
        (1, [1, 2]), (2, [3]), (3, [4, 5]), (3, [6, 7]), (3, [8]), (None, [9, 10]),
        (None, [11])]
    # Streets in no district are never packed with a district's.
    assert batch.split_parts([(1, [1]), (None, [2])], 10) == [(1, [1]), (None, [2])]


def test_a_split_run_in_one_process_is_exactly_the_one_process_score(
        sample_engine, version, one_process, part_streets):
    stale = batch.plan(sample_engine, "pci", version=version, part_streets=part_streets)
    run = batch.score_split(sample_engine, "pci", version=version, part_streets=part_streets)
    assert run.parts >= 4 and run.model_version == version
    # An older run still unfinished is superseded: it can never publish over this one.
    with sample_engine.connect() as conn:
        assert score_runs.get_run(conn, stale.run_id) is None
    assert batch.score_part(sample_engine, stale.run_id, 0) is None
    pd.testing.assert_frame_equal(_rows(sample_engine, run.run_id), one_process,
                                  check_exact=True)
    # A part scored again after it was done writes nothing more.
    assert batch.score_part(sample_engine, run.run_id, 0) is None
    assert batch.publish(sample_engine, run.run_id) is None
    assert len(_rows(sample_engine, run.run_id)) == len(one_process)


def test_a_run_split_over_two_workers_is_exactly_the_run_of_one(
        sample_engine, version, one_process, part_streets, workers):
    first, second = workers.start(), workers.start()
    run = batch.plan(sample_engine, "pci", version=version, part_streets=part_streets,
                     enqueue=True)
    _wait_published(sample_engine, run.run_id, [first, second])
    pd.testing.assert_frame_equal(_rows(sample_engine, run.run_id), one_process,
                                  check_exact=True)
    with sample_engine.connect() as conn:
        scored_by = conn.execute(sa.text(
            "SELECT DISTINCT split_part(scored_by, ':', 2)::int FROM score_parts "
            "WHERE run_id = :run"), {"run": run.run_id}).scalars().all()
        refreshes = conn.execute(sa.text(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task"),
            {"task": score_runs.DISTRICT_TASK}).scalar_one()
    # Both workers took parts (each takes one at a time, and there are more parts than two).
    assert sorted(scored_by) == sorted([first.pid, second.pid])
    assert refreshes > 0, "publishing the run queued no refresh of the districts"
    # The workers then refresh the districts' alerts; each job succeeds (and is deleted).
    deadline = time.monotonic() + PUBLISHED_WITHIN_S
    left = refreshes
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        with sample_engine.connect() as conn:
            left = conn.execute(sa.text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name IN (:d, :t)"),
                {"d": score_runs.DISTRICT_TASK, "t": score_runs.TOWN_TASK}).scalar_one()
    assert left == 0, "the refresh jobs did not all succeed"


@pytest.mark.slow
def test_a_worker_killed_mid_part_leaves_the_part_to_another_and_the_run_unchanged(
        sample_engine, version, one_process, part_streets, workers):
    doomed = workers.start()
    run = batch.plan(sample_engine, "pci", version=version, part_streets=part_streets,
                     enqueue=True)
    # The test holds the parts' rows, so the worker's first part computes its forecasts and
    # then waits to write them: it is surely mid-part when it is killed.
    with sample_engine.connect() as holder:
        holder.execute(sa.text("SELECT part FROM score_parts WHERE run_id = :run FOR UPDATE"),
                       {"run": run.run_id})
        deadline = time.monotonic() + 120
        waiting = 0
        while not waiting and time.monotonic() < deadline:
            with sample_engine.connect() as conn:
                waiting = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar_one()
            assert doomed.poll() is None
            time.sleep(0.1)
        assert waiting, "the worker never came to write its part"
        with sample_engine.connect() as conn:
            taken = conn.execute(sa.text(
                "SELECT (args->>'part')::int FROM procrastinate_jobs WHERE task_name = :task "
                "AND status = 'doing' AND args->>'run_id' = :run"),
                {"task": score_runs.PART_TASK, "run": run.run_id}).scalar_one()
        doomed.kill()
        doomed.wait(30)
        holder.rollback()
    published, rows = _state(sample_engine, run.run_id)
    assert not published and rows == 0
    with sample_engine.connect() as conn:
        part = score_runs.get_part(conn, run.run_id, taken)
        staged = conn.execute(sa.text(
            "SELECT count(*) FROM staged_predictions WHERE run_id = :run"),
            {"run": run.run_id}).scalar_one()
    assert part is not None and part["done_at"] is None and staged == 0
    rescuer = workers.start()
    _wait_published(sample_engine, run.run_id, [rescuer])
    pd.testing.assert_frame_equal(_rows(sample_engine, run.run_id), one_process,
                                  check_exact=True)
    with sample_engine.connect() as conn:
        done = conn.execute(sa.text(
            "SELECT count(*) FILTER (WHERE done_at IS NOT NULL), count(*) FROM score_parts "
            "WHERE run_id = :run"), {"run": run.run_id}).one()
        left = conn.execute(sa.text(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
            "AND args->>'run_id' = :run AND status <> 'succeeded'"),
            {"task": score_runs.PART_TASK, "run": run.run_id}).scalar_one()
        again = score_runs.get_part(conn, run.run_id, taken)
    assert done[0] == done[1] == run.parts
    assert left == 0, "a part's job was left undone"
    # The killed worker's part was retried by the other worker.
    assert again is not None and again["scored_by"].endswith(f":{rescuer.pid}")


def test_twin_predict_score_queue_plans_a_run_for_the_workers(sample_engine, version):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env["TWIN_DATABASE_URL"] = sample_engine.url.render_as_string(hide_password=False)
    twin = str(Path(sys.executable).parent / "twin")
    done = subprocess.run([twin, "predict", "score", "--queue", "--part-streets", "100",
                           "--version", version], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    with sample_engine.begin() as conn:
        run = conn.execute(sa.text(
            "SELECT run_id, parts, model_version, published_at FROM score_runs "
            "ORDER BY created_at DESC LIMIT 1")).one()
        queued = conn.execute(sa.text(
            "DELETE FROM procrastinate_jobs WHERE task_name = :task AND status = 'todo' "
            "AND args->>'run_id' = :run"), {"task": score_runs.PART_TASK, "run": run.run_id}
        ).rowcount
    assert run.run_id in done.stdout and run.model_version == version
    assert queued == run.parts > 1 and run.published_at is None
    refused = subprocess.run([twin, "predict", "score", "--queue", "--out", "x.csv"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "--out" in refused.stderr and "Traceback" not in refused.stderr


ALERT_COLUMNS = "kind, severity, asset_layer, asset_id, reason, details::text, status"


def _alerts(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY kind, asset_layer, asset_id"))]


def test_the_refresh_per_district_raises_exactly_what_one_refresh_raises(
        make_database, sample_template):
    from geo.database import create_engine
    from predict import alerts

    whole = create_engine(make_database(template=sample_template))
    pipeline.train(whole, "pci", **FAST)
    pipeline.score(whole, "pci")
    whole.dispose()  # a template must have no connection
    split = create_engine(make_database(template=whole.url.database))
    try:
        alerts.refresh(whole)
        with split.connect() as conn:
            districts = score_runs.district_ids(conn)
            parts = [(score_runs.assets_in_district(conn, "streets", d),
                      score_runs.assets_in_district(conn, "manholes", d)) for d in districts]
        assert len(districts) > 1
        for streets, manholes in parts:
            alerts.refresh_district(split, streets, manholes)
        alerts.refresh_town(split)
        raised = _alerts(whole)
        assert len({row[0] for row in raised}) >= 3  # road wear, manholes, debris or damage
        assert _alerts(split) == raised
    finally:
        whole.dispose()
        split.dispose()


def test_a_district_refresh_queued_twice_waits_once(sample_engine):
    tasks = {"d": score_runs.DISTRICT_TASK, "t": score_runs.TOWN_TASK}
    with sample_engine.begin() as conn:  # no worker runs here: start from none waiting
        conn.execute(sa.text("DELETE FROM procrastinate_jobs WHERE status = 'todo' "
                             "AND task_name IN (:d, :t)"), tasks)
    for _ in range(2):
        with sample_engine.begin() as conn:
            districts = score_runs.queue_refresh(conn)
    with sample_engine.begin() as conn:
        waiting = conn.execute(sa.text(
            "SELECT task_name, count(*) FROM procrastinate_jobs WHERE status = 'todo' "
            "AND task_name IN (:d, :t) GROUP BY task_name ORDER BY task_name"), tasks).all()
        conn.execute(sa.text("DELETE FROM procrastinate_jobs WHERE status = 'todo' "
                             "AND task_name IN (:d, :t)"), tasks)
    assert districts > 1
    assert [tuple(row) for row in waiting] == [(score_runs.DISTRICT_TASK, districts),
                                               (score_runs.TOWN_TASK, 1)]
