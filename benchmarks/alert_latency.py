"""Latency from a committed reading to its alert on ``/alerts/stream``, under background traffic.

    .venv/bin/python benchmarks/alert_latency.py                 # 1,000 readings/s, 30 probes
    .venv/bin/python benchmarks/alert_latency.py --rate 200 --probes 10   # a quick check

An embedded PostGIS cluster in a temporary TWIN_HOME gets the committed sample (through the
real ingest); ``twin serve`` runs as its own process with its in-process job worker on
127.0.0.1:PORT. Background threads POST batches of normal heartbeat readings (battery_pct of
every sensor manhole, each a new time) at ``--rate`` readings a second; every one of those
commits queues rule evaluation too. Meanwhile a probe posts ``cover_open = 1`` for one sensor
manhole and waits for its alert on an open SSE stream; then posts ``cover_open = 0`` so the
worker resolves it before that manhole is used again.

Reported: the time from the probe's POST returning (its reading committed) to the alert's
event arriving, and from the POST being sent; p50, p95 and max, and the background rate
achieved. Results go to ``benchmarks/results/alert_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geo import keys, migrate  # noqa: E402
from geo.cluster import EmbeddedCluster  # noqa: E402
from geo.database import create_engine  # noqa: E402
from ingest.sample import load_sample  # noqa: E402
from sample_data import SAMPLE_DIR  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "alert_latency.json"
TWIN = REPO / ".venv" / "bin" / "twin"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Stream(threading.Thread):
    """The alert stream, read as a browser would; arrival time of each event."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.events: list[tuple[float, dict]] = []
        self.ready = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=120))

    def run(self) -> None:
        try:
            with self.client.stream("GET", f"{self.base}/alerts/stream") as response:
                for line in response.iter_lines():
                    self.ready.set()
                    if line.startswith("data: "):
                        self.events.append((time.perf_counter(), json.loads(line[6:])))
        except httpx.HTTPError:
            return

    def wait(self, predicate, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for arrived, event in list(self.events):
                if predicate(event):
                    return arrived
            time.sleep(0.005)
        return None


class Traffic(threading.Thread):
    """POST /readings of normal heartbeats at a steady rate (readings a second)."""

    def __init__(self, base: str, key: str, manholes: list[str], rate: float,
                 batch: int, offset_s: int) -> None:
        super().__init__(daemon=True)
        self.base, self.key, self.manholes = base, key, manholes
        self.rate, self.batch = rate, batch
        self.stop = threading.Event()
        self.sent = 0
        self.errors = 0
        self.offset_s = offset_s
        self.clock = datetime.now(UTC) - timedelta(hours=2)

    def run(self) -> None:
        interval = self.batch / self.rate
        with httpx.Client(timeout=30, headers={"X-API-Key": self.key}) as client:
            step = 0
            next_at = time.perf_counter()
            while not self.stop.is_set():
                items = []
                for i in range(self.batch):
                    n = step * self.batch + i
                    at = self.clock + timedelta(milliseconds=n, seconds=self.offset_s)
                    items.append({"asset_layer": "manholes",
                                  "asset_external_id": self.manholes[n % len(self.manholes)],
                                  "metric": "battery_pct", "observed_at": at.isoformat(),
                                  "value": 80.0})
                step += 1
                answer = client.post(f"{self.base}/readings", json=items)
                if answer.status_code == 200:
                    self.sent += len(items)
                else:
                    self.errors += 1
                    print(f"background POST: {answer.status_code} {answer.text[:200]}",
                          flush=True)
                next_at += interval
                time.sleep(max(0.0, next_at - time.perf_counter()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="background readings/s")
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--threads", type=int, default=4, help="background posting threads")
    parser.add_argument("--batch", type=int, default=50, help="readings per background POST")
    parser.add_argument("--port", type=int, default=18120)
    parser.add_argument("--separate-worker", action="store_true",
                        help="twin serve --no-worker and a `twin worker` process")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="twin-latency-"))
    cluster = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    cluster.start()
    server = worker = None
    try:
        engine = create_engine(cluster.url)
        migrate.upgrade(engine)
        started = time.perf_counter()
        load_sample(engine, SAMPLE_DIR)
        print(f"sample loaded in {time.perf_counter() - started:.1f} s", flush=True)
        with engine.begin() as conn:
            key = keys.create_key(conn, name="bench-crew", role="crew")
            manholes = conn.execute(sa.text(
                "SELECT external_id FROM manholes WHERE sensor_id IS NOT NULL ORDER BY id")
            ).scalars().all()
        env = {**os.environ, "TWIN_HOME": str(home),
               "TWIN_DATABASE_URL": cluster.url.render_as_string(hide_password=False)}
        serve = [str(TWIN), "serve", "--port", str(args.port)]
        if args.separate_worker:
            serve.append("--no-worker")
            worker = subprocess.Popen([str(TWIN), "worker"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{args.port}"
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        # The sample's own readings are evaluated first (one job); wait for that.
        while time.perf_counter() < deadline + 240:
            with engine.connect() as conn:
                if not conn.execute(sa.text("SELECT count(*) FROM rule_queue")).scalar():
                    break
            time.sleep(0.5)
        print("service up; the sample's readings evaluated", flush=True)

        probes = manholes[: max(1, min(10, len(manholes) // 4))]
        background = [m for m in manholes if m not in probes]
        stream = Stream(base)
        stream.start()
        stream.ready.wait(10)
        traffic = [Traffic(base, key, background, args.rate / args.threads, args.batch,
                           offset_s=i * 3600) for i in range(args.threads)]
        for t in traffic:
            t.start()
        time.sleep(3)  # traffic settles
        t0, sent0 = time.perf_counter(), sum(t.sent for t in traffic)
        from_commit, from_send, missed = [], [], 0
        with httpx.Client(timeout=30, headers={"X-API-Key": key}) as client:
            for n in range(args.probes):
                manhole = probes[n % len(probes)]
                sent = time.perf_counter()
                at = datetime.now(UTC) - timedelta(milliseconds=10)
                answer = client.post(f"{base}/readings", json=[{
                    "asset_layer": "manholes", "asset_external_id": manhole,
                    "metric": "cover_open", "observed_at": at.isoformat(), "value": 1}])
                committed = time.perf_counter()
                assert answer.status_code == 200, answer.text
                arrived = stream.wait(
                    lambda e, m=manhole: e["kind"] == "manhole_cover_open"
                    and e["to_status"] == "open" and e["reason"].startswith(m), timeout=30)
                if arrived is None or arrived < sent:
                    missed += 1
                else:
                    from_commit.append(arrived - committed)
                    from_send.append(arrived - sent)
                # Close it again (the worker resolves the alert) before the manhole's next turn.
                client.post(f"{base}/readings", json=[{
                    "asset_layer": "manholes", "asset_external_id": manhole,
                    "metric": "cover_open", "value": 0,
                    "observed_at": (at + timedelta(milliseconds=5)).isoformat()}])
                stream.wait(lambda e, m=manhole: e["kind"] == "manhole_cover_open"
                            and e["to_status"] == "resolved" and e["reason"].startswith(m),
                            timeout=30)
                stream.events.clear()
        elapsed = time.perf_counter() - t0
        achieved = (sum(t.sent for t in traffic) - sent0) / elapsed
        for t in traffic:
            t.stop.set()
        for t in traffic:
            t.join(30)
        result = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "background_target_per_s": args.rate,
            "background_achieved_per_s": round(achieved, 1),
            "background_errors": sum(t.errors for t in traffic),
            "probes": args.probes, "missed": missed,
            "commit_to_sse_s": {"p50": round(statistics.median(from_commit), 3),
                                "p95": round(percentile(from_commit, 0.95), 3),
                                "max": round(max(from_commit), 3)} if from_commit else None,
            "send_to_sse_s": {"p50": round(statistics.median(from_send), 3),
                              "p95": round(percentile(from_send, 0.95), 3),
                              "max": round(max(from_send), 3)} if from_send else None,
            "worker": "twin worker process" if args.separate_worker else "in twin serve",
            "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        for process in (server, worker):
            if process is not None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
        cluster.destroy()


if __name__ == "__main__":
    main()
