"""Readings per second through 1 and 2 MQTT watchers in one shared subscription.

    .venv/bin/python benchmarks/watch_group_bench.py                  # 20,000 readings, 1 and 2
    .venv/bin/python benchmarks/watch_group_bench.py --messages 5000  # a quick check

An embedded PostGIS cluster in a temporary TWIN_HOME gets 100 manholes; a private mosquitto
(127.0.0.1:--port, max_queued_messages 0) carries the feed. For each watcher count N, N
``twin ingest watch --group`` processes subscribe once (creating their persistent sessions) and
are stopped; then ``--messages`` readings (one per message, QoS 1) are published into their
queues, where the broker deals them round robin; then the N watchers start together and the
time from their start to the last reading committed is measured. So the figure is intake
(parse, validate, stage, upsert, acknowledge), not the publisher's speed. Results go to
``benchmarks/results/watch_group.json``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geo import migrate  # noqa: E402
from geo.cluster import EmbeddedCluster  # noqa: E402
from geo.database import create_engine  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "watch_group.json"
TWIN = REPO / ".venv" / "bin" / "twin"
ASSETS = [f"BM-{n}" for n in range(100)]


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def publish(port: int, topic: str, messages: list[bytes]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, m, qos=1) for m in messages]
    for info in infos:
        info.wait_for_publish(timeout=120)
    client.disconnect()
    client.loop_stop()


def count(engine, source: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM readings WHERE source = :s"),
                            {"s": source}).scalar_one()


def run(engine, env: dict, port: int, watchers: int, total: int, log: Path) -> dict:
    tag = uuid.uuid4().hex[:8]
    topic, source = f"bench/{tag}/r", f"bench-{tag}"
    url = f"mqtt://127.0.0.1:{port}/{topic}"
    args = [[str(TWIN), "ingest", "watch", url, "--group", f"g{tag}", "--client-id",
             f"{tag}-{n}", "--source", source] for n in range(watchers)]

    def start() -> list[subprocess.Popen]:
        with open(log, "ab") as out:
            return [subprocess.Popen(a, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL) for a in args]

    def subscribed() -> bool:
        return log.read_text().count(f"Watching mqtt://127.0.0.1:{port}/$share/g{tag}") >= (
            watchers * rounds)

    rounds = 1
    processes = start()
    wait(subscribed, 120, "the watchers to subscribe")
    for p in processes:
        p.terminate()
        p.wait(60)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
    messages = [json.dumps({"asset_layer": "manholes", "asset_external_id": ASSETS[n % 100],
                            "metric": "tilt_deg", "value": (n % 800) / 10,
                            "observed_at": (base + timedelta(seconds=n // 100)).isoformat()}
                           ).encode() for n in range(total)]
    publish(port, topic, messages)
    rounds = 2
    offset = log.stat().st_size
    processes = start()
    # From the first member's subscription (Python's start-up, a few seconds on a busy
    # machine, is not intake) to the last reading committed.
    wait(lambda: "Watching" in log.read_text()[offset:], 120, "a watcher to subscribe")
    started = time.perf_counter()
    wait(lambda: count(engine, source) >= total, 900, "every reading")
    seconds = time.perf_counter() - started
    batches = re.findall(r"Batch \d+: (\d+) messages.*\((\d+\.\d+) s\)", log.read_text()[offset:])
    for p in processes:
        p.terminate()
        p.wait(60)
    assert count(engine, source) == total
    return {"watchers": watchers, "readings": total, "seconds": round(seconds, 2),
            "readings_per_s": round(total / seconds), "batches": len(batches),
            "batch_seconds_total": round(sum(float(b[1]) for b in batches), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=18720)
    parser.add_argument("--watchers", type=int, nargs="+", default=[1, 2])
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="twin-watch-bench-") as tmp:
        home = Path(tmp)
        os.chmod(home, 0o755)
        cluster = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
        cluster.start()
        broker = None
        try:
            engine = create_engine(cluster.url)
            migrate.upgrade(engine)
            with engine.begin() as conn:
                for external_id in ASSETS:
                    conn.execute(sa.text(
                        "INSERT INTO manholes (source, external_id, kind, geom) VALUES ('bench',"
                        " :id, 'sewer', ST_SetSRID(ST_Point(108.54, 32.52), 4326))"),
                        {"id": external_id})
            (home / "mq").mkdir()
            conf = home / "mq" / "mosquitto.conf"
            conf.write_text(f"listener {options.port} 127.0.0.1\nallow_anonymous true\n"
                            f"max_queued_messages 0\nuser {getpass.getuser()}\n")
            broker = subprocess.Popen(["mosquitto", "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def listening() -> bool:
                with socket.socket() as s:
                    return s.connect_ex(("127.0.0.1", options.port)) == 0

            wait(listening, 10, "mosquitto")
            env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
            env["TWIN_DATABASE_URL"] = cluster.url.render_as_string(hide_password=False)
            results = []
            for n in options.watchers:
                result = run(engine, env, options.port, n, options.messages, home / "w.log")
                print(json.dumps(result), flush=True)
                results.append(result)
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps({"cores": os.cpu_count(), "runs": results},
                                          indent=2) + "\n")
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(10)
            cluster.destroy()


if __name__ == "__main__":
    main()
