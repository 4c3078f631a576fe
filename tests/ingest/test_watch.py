"""The MQTT watcher against a real PostGIS and real mosquitto brokers of the tests' own.

Each test runs ``watch`` in a thread, publishes with a separate paho client at QoS 1 and looks
at the database. The brokers are private (a free port, a temporary directory), so the tests
neither depend on nor leave sessions in a broker of the machine.
"""

from __future__ import annotations

import getpass
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa

from geo import store
from geo.database import create_engine
from geo.errors import InvalidInput, TwinError
from ingest.watch import LOGGER, WatchStats, parse_mqtt_url, readings_of_message, watch
from tests.tools import find_tool, free_port, requires_tool, wait_until

MOSQUITTO_PATHS = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MOSQUITTO = find_tool(*MOSQUITTO_PATHS)
pytestmark = requires_tool(*MOSQUITTO_PATHS)

WAIT_S = 15  # the most any test waits for one thing to happen


# -- brokers, publishers, watchers ----------------------------------------------------------

def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _until(predicate, timeout: float = WAIT_S, what: str = "the condition"):
    return wait_until(predicate, timeout, what=what)


class Broker:
    """A mosquitto of the test's own, with persistence in a temporary directory."""

    def __init__(self, directory: Path, settings: str = "") -> None:
        self.port = free_port()
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            # Run as root, mosquitto would otherwise switch to a user who cannot write here.
            f"user {getpass.getuser()}\n"
            + settings
        )
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log,
                                            stderr=subprocess.STDOUT)
        _until(lambda: _port_open(self.port) or self.process.poll() is not None,
               what="mosquitto to listen")
        assert self.process.poll() is None, self.log.read_text()

    def stop(self) -> None:
        """SIGTERM, so that mosquitto saves its sessions and queued messages."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def url(self, topic: str) -> str:
        return f"mqtt://127.0.0.1:{self.port}/{topic}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    running = Broker(tmp_path_factory.mktemp("mosquitto"))
    running.start()
    yield running
    running.kill()


@pytest.fixture
def private_broker(tmp_path):
    """A broker the test may stop and start; always killed at the end."""
    own = Broker(tmp_path)
    yield own
    own.kill()


def publish(port: int, topic: str, messages) -> None:
    """Publish at QoS 1 and wait until the broker has taken every message."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        sent = [client.publish(topic, m if isinstance(m, bytes) else json.dumps(m), qos=1)
                for m in messages]
        for info in sent:
            info.wait_for_publish(timeout=WAIT_S)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


class _Ready(logging.Handler):
    def __init__(self, client_id: str) -> None:
        super().__init__()
        self.client_id = client_id
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Watching") and f"'{self.client_id}'" in (
                record.getMessage()):
            self.event.set()


class Watcher:
    """``watch`` in a thread: started, waited for until subscribed, and always stopped."""

    def __init__(self, engine, url: str, client_id: str, *, pause_after_first_s: float = 0,
                 **options) -> None:
        self.pause_after_first_s = pause_after_first_s
        self.stop = threading.Event()
        self.batches: list[WatchStats] = []
        self.result: WatchStats | None = None
        self.error: BaseException | None = None
        self.ready = _Ready(client_id)
        options.setdefault("idle_exit_seconds", 25)  # a backstop: tests stop it sooner
        options.setdefault("batch_seconds", 0.3)
        self.thread = threading.Thread(
            target=self._run, args=(engine, url, client_id, options), daemon=True)

    def _run(self, engine, url, client_id, options) -> None:
        try:
            self.result = watch(engine, url, client_id=client_id, stop=self.stop,
                                on_batch=self._on_batch, **options)
        except BaseException as error:
            self.error = error

    def _on_batch(self, stats: WatchStats) -> None:
        self.batches.append(stats)
        if len(self.batches) == 1:
            time.sleep(self.pause_after_first_s)  # a slow consumer, for a while

    def __enter__(self) -> Watcher:
        LOGGER.addHandler(self.ready)
        self.thread.start()
        _until(lambda: self.ready.event.is_set() or not self.thread.is_alive(),
               what="the watcher to subscribe")
        if self.error:
            raise self.error
        return self

    def messages(self) -> int:
        return self.batches[-1].messages if self.batches else 0

    def wait_messages(self, count: int) -> None:
        self.wait(lambda: self.messages() >= count, f"{count} messages to be loaded")

    def wait(self, predicate, what: str) -> None:
        """Wait for ``predicate``, failing at once if the job ends instead."""
        _until(lambda: predicate() or not self.thread.is_alive(), what=what)
        if not predicate():
            raise AssertionError(f"the watcher ended ({self.error or self.result}) before {what}")

    def join(self, timeout: float = WAIT_S) -> WatchStats:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the watcher did not stop"
        if self.error:
            raise self.error
        return self.result

    def finish(self) -> WatchStats:
        self.stop.set()
        return self.join()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)
        LOGGER.removeHandler(self.ready)


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER.name)


# -- data -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assets(engine):
    with engine.begin() as conn:
        for external_id in ("MH-1", "MH-2", "MH-3"):
            conn.execute(sa.text(
                "INSERT INTO manholes (source, external_id, kind, geom) VALUES "
                "('test', :id, 'sewer', ST_SetSRID(ST_Point(108.54, 32.52), 4326))"
            ), {"id": external_id})
        conn.execute(sa.text(
            "INSERT INTO parking (source, external_id, kind, geom) VALUES "
            "('test', 'PK-1', 'lot', ST_SetSRID(ST_Point(108.541, 32.521), 4326))"))


@pytest.fixture
def feed(assets):
    """A topic, a client id and a source of the test's own."""
    tag = uuid.uuid4().hex[:10]
    return {"topic": f"twin-test/{tag}/report", "client_id": f"twin-test-{tag}",
            "source": f"test-{tag}"}


CST = timezone(timedelta(hours=8))
BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)


def at(minutes: float) -> str:
    """A time in the recent past, with the offset of China Standard Time as sensors send it."""
    return (BASE + timedelta(minutes=minutes)).astimezone(CST).isoformat()


def reading(asset: str, metric: str, value, minutes: float, layer: str = "manholes") -> dict:
    return {"asset_layer": layer, "asset_external_id": asset, "metric": metric,
            "observed_at": at(minutes), "value": value}


def stored(engine, source: str) -> dict[tuple[str, str, datetime], float]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.external_id, m.name, r.observed_at, r.value FROM readings r "
            "JOIN metrics m ON m.id = r.metric_id JOIN assets a ON a.id = r.asset_id "
            "WHERE r.source = :source"), {"source": source}).all()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def runs(engine, url: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT * FROM ingest_runs WHERE path = :url ORDER BY id"), {"url": url}).all()


def rejects(engine, run_id: int) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT row_number, field, value, reason FROM ingest_rejects WHERE run_id = :id "
            "ORDER BY row_number"), {"id": run_id}).all()


# -- 1. a sensor report, and the same report again ------------------------------------------

def test_a_report_lands_as_one_reading_per_metric_and_again_changes_nothing(
        engine, broker, feed):
    url = broker.url(feed["topic"])
    report = {"asset_layer": "manholes", "asset_external_id": "MH-1", "observed_at": at(0),
              "metrics": {"tilt_deg": 1.2, "cover_open": 0, "water_level_pct": 12.5,
                          "battery_pct": 88}}
    with Watcher(engine, url, feed["client_id"], source=feed["source"],
                 idle_exit_seconds=3) as watcher:
        publish(broker.port, feed["topic"], [report])
        watcher.wait_messages(1)
        first = stored(engine, feed["source"])
        publish(broker.port, feed["topic"], [report])  # as a redelivery would bring it
        watcher.wait_messages(2)
        stats = watcher.join()  # stops by itself, 3 s after the last batch

    observed = datetime.fromisoformat(report["observed_at"])
    expected = {("MH-1", m, observed): float(v) for m, v in report["metrics"].items()}
    assert first == expected
    assert stored(engine, feed["source"]) == expected
    assert (stats.messages, stats.readings, stats.readings_new, stats.readings_unchanged,
            stats.readings_updated, stats.rejected) == (2, 8, 4, 4, 0, 0)
    assert watcher.batches[-1].readings_unchanged == 4  # the second batch: all unchanged
    (run,) = runs(engine, url)
    assert (run.layer, run.status, run.source, run.rows_read, run.rows_new, run.rows_unchanged,
            run.rows_rejected) == ("readings", "succeeded", feed["source"], 8, 4, 4, 0)
    assert run.id == stats.run_id and run.finished_at is not None
    assert "without messages" in run.message


# -- 2. bad messages ------------------------------------------------------------------------

def test_bad_messages_are_rejected_with_reasons_and_good_ones_still_land(engine, broker, feed):
    url = broker.url(feed["topic"])
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    messages = [
        b"not json {",                                               # reading 1
        reading("MH-404", "tilt_deg", 1.0, 1),                       # 2: unknown asset
        reading("MH-2", "methane_ppm", 3.0, 2),                      # 3: undeclared metric
        reading("MH-2", "tilt_deg", 400, 3),                         # 4: out of range
        {**reading("MH-2", "tilt_deg", 2.0, 4), "observed_at": future},  # 5: in the future
        {"hello": "world"},                                          # 6: not of the shape
        reading("MH-2", "tilt_deg", 3.5, 5),                         # 7: good
        [reading("PK-1", "occupancy_pct", 40, 6, layer="parking"),   # 8: good
         {"asset_layer": "manholes", "asset_external_id": "MH-3", "observed_at": at(7),
          "metrics": {"battery_pct": 70, "o2_pct": 20.9}}],          # 9, 10: good
    ]
    with Watcher(engine, url, feed["client_id"], source=feed["source"],
                 batch_seconds=2) as watcher:
        publish(broker.port, feed["topic"], messages)
        watcher.wait_messages(len(messages))
        publish(broker.port, feed["topic"], [reading("MH-2", "cover_open", 1, 8)])
        watcher.wait_messages(len(messages) + 1)  # the job is still running
        stats = watcher.finish()

    assert watcher.batches[0].messages == len(messages)  # the bad and the good: one batch
    assert stored(engine, feed["source"]) == {
        ("MH-2", "tilt_deg", datetime.fromisoformat(at(5))): 3.5,
        ("PK-1", "occupancy_pct", datetime.fromisoformat(at(6))): 40.0,
        ("MH-3", "battery_pct", datetime.fromisoformat(at(7))): 70.0,
        ("MH-3", "o2_pct", datetime.fromisoformat(at(7))): 20.9,
        ("MH-2", "cover_open", datetime.fromisoformat(at(8))): 1.0,
    }
    found = {(r.row_number, r.field): (r.value, r.reason) for r in rejects(engine, stats.run_id)}
    assert set(found) == {(1, "message"), (2, "asset_external_id"), (3, "metric"),
                          (4, "value"), (5, "observed_at"), (6, "message")}
    assert found[(1, "message")] == ("not json {", found[(1, "message")][1])
    assert found[(1, "message")][1].startswith("is not JSON")
    assert found[(2, "asset_external_id")][1] == "is not an asset of layer manholes in the twin"
    assert found[(3, "metric")][1].startswith("is not a declared metric")
    assert found[(4, "value")][1] == "is outside the metric's declared range 0-90"
    assert found[(5, "observed_at")][1] == "is in the future"
    assert found[(6, "message")][1].startswith("is not a reading or a sensor report")
    assert (stats.messages, stats.readings, stats.readings_new, stats.rejected) == (9, 11, 5, 6)
    (run,) = runs(engine, url)
    assert (run.status, run.rows_read, run.rows_new, run.rows_rejected) == (
        "succeeded", 11, 5, 6)


HOSTILE_TEXT = ["a\x00b", "bell\x07 escape\x1b[31m", "\u202eevil\u202c", "🚧 井盖",
                "'; DROP TABLE readings; --", "x" * 1_000_000]
HOSTILE_DATES = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z",
                 "9999-12-31T23:59:59-12:00", "2016-12-31T23:59:60Z", "2026-02-30T10:00:00Z",
                 "1e308"]


def test_hostile_text_and_dates_are_rejected_and_the_extreme_offsets_land_right(
        engine, broker, feed):
    url = broker.url(feed["topic"])
    bad = [{**reading("MH-1", "tilt_deg", 1.0, 1), name: value}
           for name in ("asset_layer", "asset_external_id", "metric") for value in HOSTILE_TEXT]
    bad += [{**reading("MH-1", "tilt_deg", 1.0, 1), "observed_at": value}
            for value in HOSTILE_DATES]
    # The world's extreme offsets are real times: the same instant, stored in UTC.
    east = (BASE + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=14)))
    west = (BASE + timedelta(minutes=31)).astimezone(timezone(timedelta(hours=-12)))
    good = [{**reading("MH-1", "tilt_deg", 2.0, 0), "observed_at": east.isoformat()},
            {**reading("MH-1", "tilt_deg", 3.0, 0), "observed_at": west.isoformat()}]
    with Watcher(engine, url, feed["client_id"], source=feed["source"]) as watcher:
        publish(broker.port, feed["topic"], [*bad, *good])
        watcher.wait_messages(len(bad) + len(good))
        stats = watcher.finish()

    assert stored(engine, feed["source"]) == {("MH-1", "tilt_deg", east): 2.0,
                                              ("MH-1", "tilt_deg", west): 3.0}
    assert stats.rejected == len(bad)
    with engine.connect() as conn:
        # Every reading of this source is one of the two; no year-1 partition was made.
        assert conn.execute(sa.text(
            "SELECT count(*) FROM readings WHERE observed_at < '1970-01-01'")).scalar_one() == 0
        kept = conn.execute(sa.text(
            "SELECT row_number, value, reason FROM ingest_rejects WHERE run_id = :id"),
            {"id": stats.run_id}).all()
    assert len({row for row, _, _ in kept}) == len(bad)  # some rows have two reasons
    for _, value, reason in kept:
        # Kept for the record, but never as a terminal escape or a megabyte of text.
        assert "\x1b" not in (value or "") + reason and len(reason) < 300


# -- 3. a job restart -----------------------------------------------------------------------

def test_messages_published_while_the_job_is_down_land_exactly_once(engine, broker, feed):
    url = broker.url(feed["topic"])
    first = reading("MH-1", "water_level_pct", 10.0, 100)
    while_down = [reading("MH-1", "water_level_pct", 11.0 + i, 101 + i) for i in range(5)]

    with Watcher(engine, url, feed["client_id"], source=feed["source"]) as watcher:
        publish(broker.port, feed["topic"], [first])
        watcher.wait_messages(1)
        before = watcher.finish()
    publish(broker.port, feed["topic"], while_down)
    # Back under the same client id, but only for 3 messages: the other 2 stay with the broker.
    with Watcher(engine, url, feed["client_id"], source=feed["source"],
                 max_messages=3, batch_size=2) as watcher:
        partly = watcher.join()  # stops by itself after 3 messages
    with Watcher(engine, url, feed["client_id"], source=feed["source"]) as watcher:
        watcher.wait_messages(2)
        rest = watcher.finish()

    assert (before.messages, partly.messages, rest.messages) == (1, 3, 2)
    assert partly.batches == 2  # 2 + 1: max_messages bounds the last batch
    # Every message once: nothing was delivered twice, so the acknowledgements did go out.
    for stats in (before, partly, rest):
        assert stats.readings_new == stats.messages and stats.readings_unchanged == 0
    assert stored(engine, feed["source"]) == {
        ("MH-1", "water_level_pct", datetime.fromisoformat(m["observed_at"])): m["value"]
        for m in [first, *while_down]}
    assert [r.status for r in runs(engine, url)] == ["succeeded"] * 3
    assert "after 3 messages" in runs(engine, url)[1].message


# -- 4. a broker restart --------------------------------------------------------------------

def test_a_broker_restart_loses_nothing(engine, private_broker, feed):
    topic, broker = feed["topic"], private_broker
    broker.start()
    url = broker.url(topic)
    sent = [reading("MH-3", "h2s_ppm", float(i), 200 + i) for i in range(15)]
    with Watcher(engine, url, feed["client_id"], source=feed["source"],
                 batch_seconds=1.0) as watcher:
        publish(broker.port, topic, sent[:5])
        watcher.wait_messages(5)
        # These are with the broker, and probably with the watcher but not yet acknowledged
        # (its batch waits 1 s), when the broker goes down.
        publish(broker.port, topic, sent[5:10])
        broker.stop()
        assert "Saving in-memory database" in broker.log.read_text()
        broker.start()
        publish(broker.port, topic, sent[10:])
        watcher.wait(lambda: len(stored(engine, feed["source"])) == len(sent),
                     "every message to land")
        stats = watcher.finish()

    assert stored(engine, feed["source"]) == {
        ("MH-3", "h2s_ppm", datetime.fromisoformat(m["observed_at"])): m["value"] for m in sent}
    # Redelivered messages, if any, changed nothing; none was rejected.
    assert stats.readings_new == len(sent) and stats.readings_updated == 0
    assert stats.messages == stats.readings_new + stats.readings_unchanged
    assert stats.rejected == 0


# -- what the broker drops ------------------------------------------------------------------

def test_messages_the_broker_drops_are_reported_not_lost_quietly(engine, tmp_path, feed):
    # Mosquitto's stock queue limit (1000) scaled down: the job's session may hold 20 queued
    # messages while the job is away; the broker drops the rest of a burst of 100 and counts
    # them in $SYS, published every second here.
    broker = Broker(tmp_path, "max_queued_messages 20\nsys_interval 1\n")
    broker.start()
    try:
        url = broker.url(feed["topic"])
        where = f"127.0.0.1:{broker.port}"
        with Watcher(engine, url, feed["client_id"], source=feed["source"]) as watcher:
            # The first sight of the broker's counter is the baseline the next run compares with.
            watcher.wait(lambda: drops_of(engine, where) is not None, "the broker's counter")
            watcher.finish()
        sent = [reading("MH-2", "water_level_pct", float(i % 100), 300 + i) for i in range(100)]
        publish(broker.port, feed["topic"], sent)
        with Watcher(engine, url, feed["client_id"], source=feed["source"]) as watcher:
            watcher.wait(lambda: (drops_of(engine, where) or 0) > 0, "the drops to be reported")
            stats = watcher.finish()
    finally:
        broker.kill()

    landed = len(stored(engine, feed["source"]))
    assert 0 < landed < len(sent)
    # Every message either landed or is reported dropped: none is lost without a word.
    assert landed + stats.broker_dropped == len(sent)
    assert drops_of(engine, where) == stats.broker_dropped
    last = runs(engine, url)[-1]
    assert last.status == "succeeded"
    assert f"the broker reported {stats.broker_dropped} messages dropped" in last.message


def drops_of(engine, broker: str) -> int | None:
    with engine.connect() as conn:
        return store.feed_drops_by_broker(conn).get(broker)


# -- a burst --------------------------------------------------------------------------------

def test_a_burst_beyond_the_brokers_queue_lands_whole_in_full_batches(engine, broker, feed):
    # mosquitto queues at most 1000 messages per client beyond those in flight and drops
    # the rest, so the job must let many be in flight; and behind a backlog it must take
    # full batches at once rather than one message per batch_seconds.
    url = broker.url(feed["topic"])
    sent = [reading(f"MH-{1 + i % 3}", "battery_pct", i % 100, 1000 + i / 10) for i in range(3000)]
    with Watcher(engine, url, feed["client_id"], source=feed["source"], batch_size=250,
                 batch_seconds=0.5, pause_after_first_s=1.5) as watcher:
        publish(broker.port, feed["topic"], sent)
        watcher.wait_messages(len(sent))
        stats = watcher.finish()
    assert len(stored(engine, feed["source"])) == stats.readings_new == len(sent)
    assert stats.batches <= len(sent) // 250 + 3


# -- stopping on a signal -------------------------------------------------------------------

CHILD = """
import json, logging, sys
from sqlalchemy.engine import make_url
from geo import store
from geo.database import create_engine
from ingest.watch import watch
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
url, mqtt_url, client_id, source = sys.argv[1:]
stats = watch(create_engine(make_url(url)), mqtt_url, client_id=client_id, source=source,
              batch_seconds=5, idle_exit_seconds=20)
print(json.dumps(stats.as_dict()))
"""


def test_sigterm_finishes_the_current_batch_and_stops(engine, broker, feed, tmp_path):
    url = broker.url(feed["topic"])
    log = tmp_path / "child.log"
    message = reading("MH-1", "lel_pct", 4.0, 400)
    with open(log, "wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, engine.url.render_as_string(hide_password=False), url,
             feed["client_id"], feed["source"]], stdout=subprocess.PIPE, stderr=err)
    try:
        _until(lambda: "Watching" in log.read_text() or child.poll() is not None,
               what="the job to subscribe")
        publish(broker.port, feed["topic"], [message])
        # Delivered, and waiting in a batch that would close after 5 s.
        _until(lambda: "Received message" in log.read_text(), what="the message to arrive")
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=WAIT_S)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, log.read_text()
    assert time.monotonic() - signalled < 4  # the batch was closed early, not waited out
    stats = json.loads(out)
    assert (stats["messages"], stats["readings_new"]) == (1, 1)
    assert len(stored(engine, feed["source"])) == 1
    (run,) = runs(engine, url)
    assert (run.status, run.message) == ("succeeded", "stopped by SIGTERM; 1 messages")
    # It was acknowledged: the same session has nothing more to give.
    with Watcher(engine, url, feed["client_id"], source=feed["source"],
                 idle_exit_seconds=1) as watcher:
        assert watcher.join().messages == 0


# -- 5. unusable URLs and brokers -----------------------------------------------------------

@pytest.mark.parametrize("url", ["mqtt://", "http://x/y", "mqtt://localhost",
                                 "mqtt://localhost/", "mqtt://localhost:99999/t",
                                 "mqtt://localhost/a/#/b", "mqtt://localhost/a+b"])
def test_a_bad_url_is_refused_in_one_sentence(engine, url):
    with pytest.raises(InvalidInput) as caught:
        watch(engine, url)
    message = str(caught.value)
    assert message.endswith(".") and "\n" not in message


def test_topic_filters_may_hold_wildcards_and_a_default_port():
    target = parse_mqtt_url("mqtt://127.0.0.1/sensors/+/report/#")
    assert (target.host, target.port, target.topic) == ("127.0.0.1", 1883, "sensors/+/report/#")


def test_an_unreachable_broker_is_an_error_not_a_hang(engine):
    started = time.monotonic()
    with pytest.raises(TwinError, match="Cannot reach the MQTT broker"):
        watch(engine, f"mqtt://127.0.0.1:{free_port()}/x")
    assert time.monotonic() - started < 15
    with engine.connect() as conn:  # nothing was recorded
        assert conn.execute(sa.text(
            "SELECT count(*) FROM ingest_runs WHERE path LIKE 'mqtt://127.0.0.1:%/x'")
        ).scalar_one() == 0


def test_a_broker_that_never_answers_times_out(engine, monkeypatch):
    # The job's wait shortened from 10 s: what is tested is that it ends, with the reason.
    monkeypatch.setattr("ingest.watch.CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as silent:  # accepts TCP connections, never speaks MQTT
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(TwinError, match="did not answer within 1 s"):
            watch(engine, f"mqtt://127.0.0.1:{silent.getsockname()[1]}/x")
    assert time.monotonic() - started < 15


# -- the database going away ----------------------------------------------------------------

def test_while_the_database_is_down_the_batch_is_kept_and_retried(engine, server_url, broker,
                                                                  feed, caplog):
    url = broker.url(feed["topic"])
    name = engine.url.database
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    message = reading("MH-2", "co_ppm", 12.0, 300)

    def database_open(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {allowed}"))
            if not allowed:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :name"), {"name": name})

    try:
        with Watcher(engine, url, feed["client_id"], source=feed["source"]) as watcher:
            database_open(False)
            publish(broker.port, feed["topic"], [message])
            watcher.wait(lambda: sum("Database unavailable" in r.getMessage()
                                     for r in caplog.records) >= 2, "two retries")
            assert watcher.messages() == 0
            database_open(True)
            watcher.wait_messages(1)
            stats = watcher.finish()
    finally:
        database_open(True)
        admin.dispose()

    assert stats.readings_new == 1
    assert stored(engine, feed["source"]) == {
        ("MH-2", "co_ppm", datetime.fromisoformat(message["observed_at"])): 12.0}
    (run,) = runs(engine, url)
    assert (run.status, run.rows_new) == ("succeeded", 1)
    retries = [r for r in caplog.records if "Database unavailable" in r.getMessage()]
    assert all("1 messages stay unacknowledged" in r.getMessage() for r in retries)


# -- message shapes (no broker needed) ------------------------------------------------------

def test_message_shapes():
    items = readings_of_message(json.dumps([
        {"asset_layer": "manholes", "asset_external_id": "MH-1", "observed_at": "t",
         "metrics": {"tilt_deg": 1, "cover_open": True}},
        {"asset_layer": "manholes", "asset_external_id": "MH-1", "observed_at": "t",
         "metric": "tilt_deg", "value": "2.5", "source": "vendor"},
        {"asset_layer": "manholes", "metrics": [1, 2]},
        {"metric": "x", "value": 1, "metrics": {"y": 2}},
        7,
    ]).encode())
    assert [i["value"] if isinstance(i, dict) else i.field for i in items] == [
        1, 1, "2.5", "metrics", "metrics", "message"]
    assert items[2]["source"] == "vendor" and items[0]["source"] is None
    assert readings_of_message(b"[]")[0].reason.startswith("is an empty array")
    assert readings_of_message(b"\xff\xfe")[0].reason.startswith("is not JSON")
    nul = readings_of_message(json.dumps({"asset_layer": "manholes",
                                          "asset_external_id": "MH\u0000\ud800"}).encode())
    assert nul[0]["asset_external_id"] == "MH\ufffd?"
