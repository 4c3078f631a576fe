"""Several watchers in one MQTT shared subscription, against real mosquitto and PostGIS.

The watchers are ``twin ingest watch ... --group`` processes, as an operator runs them, so that
one can be killed with SIGKILL mid-burst: no shutdown code of ours runs. What must hold: each of
10,000 readings is stored exactly once, the killed member's share included, once a watcher with
its client id is back (as a supervisor restarts it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from geo.errors import InvalidInput
from ingest.watch import shared_topic
from tests.ingest.test_watch import MOSQUITTO_PATHS, Broker, _until, publish
from tests.ingest.twin_cli import TWIN, run_twin
from tests.tools import requires_tool

pytestmark = requires_tool(*MOSQUITTO_PATHS)

BURST = 10_000
ASSETS = [f"MHG-{n}" for n in range(1, 11)]
BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=3)


@pytest.fixture(scope="module")
def assets(engine):
    with engine.begin() as conn:
        for external_id in ASSETS:
            conn.execute(sa.text(
                "INSERT INTO manholes (source, external_id, kind, geom) VALUES "
                "('test', :id, 'sewer', ST_SetSRID(ST_Point(108.54, 32.52), 4326))"
            ), {"id": external_id})


@pytest.fixture
def broker(tmp_path):
    # As docs/mosquitto.conf: no count limit on a session's queue, so an absent member's share
    # waits for it instead of being dropped.
    own = Broker(tmp_path, "max_queued_messages 0\n")
    own.start()
    yield own
    own.kill()


class WatcherProcess:
    """``twin ingest watch URL --group G --client-id ID`` in its own process."""

    def __init__(self, engine, url: str, group: str, client_id: str, source: str,
                 log_path) -> None:
        self.args = [TWIN, "ingest", "watch", url, "--group", group, "--client-id", client_id,
                     "--source", source]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        self.env["TWIN_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> WatcherProcess:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, stdin=subprocess.DEVNULL)
        _until(lambda: "Watching" in self.log_path.read_text()[offset:]
               or self.process.poll() is not None, timeout=60, what="a watcher to subscribe")
        assert self.process.poll() is None, self.log_path.read_text()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def count(engine, source: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM readings WHERE source = :s"),
                            {"s": source}).scalar_one()


def test_killing_a_member_mid_burst_stores_every_reading_exactly_once(
        engine, assets, broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    topic, group, source = f"twin-test/{tag}/report", f"g{tag}", f"grp-{tag}"
    url = broker.url(topic)
    a = WatcherProcess(engine, url, group, f"{tag}-a", source, tmp_path / "a.log").start()
    b = WatcherProcess(engine, url, group, f"{tag}-b", source, tmp_path / "b.log").start()
    messages = [{"asset_layer": "manholes", "asset_external_id": ASSETS[n % len(ASSETS)],
                 "metric": "tilt_deg", "observed_at": (BASE + timedelta(
                     minutes=n // len(ASSETS))).isoformat(), "value": (n % 900) / 10}
                for n in range(BURST)]
    try:
        sender = threading.Thread(target=publish, args=(broker.port, topic, messages))
        sender.start()
        # Mid-burst: both members have loaded some, the publisher is still going.
        _until(lambda: count(engine, source) >= 1_000, timeout=120, what="1,000 readings")
        b.kill()
        sender.join(180)
        assert not sender.is_alive()
        published_all_at = count(engine, source)
        assert published_all_at < BURST, "the kill came after the burst; nothing was tested"
        # B's share (in flight when it died, and what the broker assigned it since) waits in
        # its session; a watcher under B's client id takes it over.
        b.start()
        _until(lambda: count(engine, source) >= BURST, timeout=180, what="all 10,000 readings")
        time.sleep(2)  # a late duplicate would show as an eleventh thousand-and-first row
    finally:
        a.stop()
        b.stop()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.external_id, r.observed_at, r.value FROM readings r "
            "JOIN assets a ON a.id = r.asset_id WHERE r.source = :s"), {"s": source}).all()
        runs = conn.execute(sa.text(
            "SELECT status, rows_new, rows_unchanged FROM ingest_runs WHERE path = :url"),
            {"url": url}).all()
    expected = {(m["asset_external_id"], datetime.fromisoformat(m["observed_at"]), m["value"])
                for m in messages}
    assert len(rows) == BURST
    assert {(r[0], r[1], r[2]) for r in rows} == expected
    # Each reading was inserted by exactly one batch of one member; a redelivery to B's
    # restart (delivered to the killed B, never acknowledged) counts as unchanged.
    assert sum(r.rows_new for r in runs) == BURST
    assert len(runs) == 3  # A, the killed B (its committed batches kept), B again
    statuses = sorted(r.status for r in runs)
    assert statuses == ["interrupted", "succeeded", "succeeded"], runs


def test_a_group_member_needs_its_own_client_id(engine):
    done = run_twin(engine, "ingest", "watch", "mqtt://127.0.0.1:1/x", "--group", "intake")
    assert done.returncode == 2
    assert "needs its own --client-id" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("name", ["", "a/b", "a+", "#", "x\x00"])
def test_a_group_name_that_cannot_be_a_share_name_is_refused(name):
    with pytest.raises(InvalidInput, match="group name"):
        shared_topic(name, "sensors/#")


def test_shared_topic_of_no_group_is_the_topic():
    assert shared_topic(None, "sensors/+/report") == "sensors/+/report"
    assert json.dumps(shared_topic("g", "s/#")) == '"$share/g/s/#"'
