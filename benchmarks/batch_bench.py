"""Scale-out of scoring: one scoring run split by district, scored by 1 and by 2 job workers.

    .venv/bin/python benchmarks/batch_bench.py                     # scale 10, parts of 500
    .venv/bin/python benchmarks/batch_bench.py --scale 1 --part-streets 100   # a smoke check

1. A sample of ``--scale`` (seed 7, 24 months) is generated into ``--data-dir`` (cached) and
   loaded through the real ingest into the database of an embedded cluster that this script
   starts in a temporary TWIN_HOME and destroys at the end (``benchmarks/harness.py``); a
   road-wear model is trained (``--max-iter`` trees). None of this is timed.
2. *One process*: ``pipeline.score`` (today's ``twin predict score``), wall and CPU time.
3. *Split*, for each worker count in ``--workers``: that many ``twin worker --concurrency 1``
   processes are started and registered first; then the run is planned and its parts queued
   (``predict.batch.plan(enqueue=True)``), and the time from planning to the run's publication
   is taken, with the CPU seconds the workers used meanwhile (from ``/proc``: their start-up
   is not counted, their polling of the queue is).
   Every split run's forecasts are checked equal to the one-process run's.

Workers run with ``OMP_NUM_THREADS=1`` (``--threads``), so one worker is one core and two
workers can show what a second machine adds; the one-process run gets the same limit.
Results are printed as JSON (recorded by hand in ``docs/benchmarks.md``, "Scale-out").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_ROWS = ("SELECT asset_id, metric_id, horizon_days, target_date, value, lower, upper, "
         "days_to_threshold, model_version, as_of FROM predictions WHERE run_id = %s "
         "ORDER BY asset_id, horizon_days")


def _rows(engine, run_id: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(_ROWS, (run_id,)).all()]


def _scalar(engine, statement: str, *params):
    with engine.connect() as conn:
        return conn.exec_driver_sql(statement, params).scalar()


def _split(engine, url: str, workers: int, threads: int, version: str,
           part_streets: int) -> dict:
    from predict import batch

    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(TWIN_DATABASE_URL=url, OMP_NUM_THREADS=str(threads))
    before = _scalar(engine, "SELECT coalesce(max(id), 0) FROM procrastinate_workers")
    started = [subprocess.Popen([str(Path(sys.executable).parent / "twin"), "worker",
                                 "--concurrency", "1"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(workers)]
    try:
        while _scalar(engine, "SELECT count(*) FROM procrastinate_workers WHERE id > %s",
                      before) < workers:
            time.sleep(0.2)
        cpu0 = sum(_cpu_s(w.pid) for w in started)
        t0 = time.perf_counter()
        run = batch.plan(engine, "pci", version=version, part_streets=part_streets,
                         enqueue=True)
        while not _scalar(engine, "SELECT published_at IS NOT NULL FROM score_runs "
                                  "WHERE run_id = %s", run.run_id):
            time.sleep(0.1)
        seconds = time.perf_counter() - t0
        cpu1 = sum(_cpu_s(w.pid) for w in started)
    finally:
        for worker in started:
            worker.send_signal(signal.SIGTERM)
        for worker in started:
            worker.wait(120)
    parts = _scalar(engine, "SELECT json_agg(json_build_object('by', scored_by, 'rows', rows)) "
                            "FROM score_parts WHERE run_id = %s", run.run_id)
    return {"run_id": run.run_id, "workers": workers, "parts": run.parts,
            "seconds": round(seconds, 2),
            "worker_cpu_s": round(cpu1 - cpu0, 2),
            "parts_per_worker": _per_worker(parts)}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_worker(parts: list[dict]) -> dict:
    count: dict[str, int] = {}
    for part in parts:
        count[part["by"]] = count.get(part["by"], 0) + 1
    return count


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--part-streets", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=None,
                        help="Trees of the model (default: the estimator's).")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/twin-predict-bench"))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before sklearn starts its threads

    # Imported after that: the harness brings in numpy, whose BLAS reads it once.
    from benchmarks.harness import embedded_cluster, load_generated_sample
    from predict import pipeline

    results: dict = {"scale": args.scale, "cpus": os.cpu_count(), "threads": args.threads,
                     "part_streets": args.part_streets, "python": platform.python_version(),
                     "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    with embedded_cluster("twin-batch-bench-") as (_home, cluster):
        engine = load_generated_sample(cluster, args.data_dir / f"scale-{args.scale:g}",
                                       scale=args.scale, months=24)
        results["streets"] = _scalar(engine, "SELECT count(*) FROM streets")
        results["districts_with_streets"] = _scalar(
            engine, "SELECT count(DISTINCT district_id) FROM streets")
        params = {} if args.max_iter is None else {"max_iter": args.max_iter}
        version = pipeline.train(engine, "pci", **params).version

        t0, c0 = time.perf_counter(), time.process_time()
        one = pipeline.score(engine, "pci", version=version)
        results["one_process"] = {"seconds": round(time.perf_counter() - t0, 2),
                                  "cpu_s": round(time.process_time() - c0, 2),
                                  "rows": one.rows}
        expected = _rows(engine, one.run_id)
        results["split"] = []
        for n in args.workers:
            entry = _split(engine, engine.url.render_as_string(hide_password=False), n,
                           args.threads, version, args.part_streets)
            entry["equal_to_one_process"] = _rows(engine, entry.pop("run_id")) == expected
            results["split"].append(entry)
        results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        engine.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
