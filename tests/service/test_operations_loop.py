"""The operations loop, end to end: the real service with its in-process procrastinate worker.

Readings posted over HTTP or sent over MQTT become alerts on ``/alerts/stream`` with no
command run by hand.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
import uvicorn

from ingest.watch import watch
from service.app import create_app
from service.settings import ServiceSettings

PORTS = range(18100, 18150)  # this suite's own ports
ALERT_WITHIN_S = 15  # generous on a shared 2-core machine; the benchmark measures it
BROKER = ("127.0.0.1", 1883)


def _serve(app) -> tuple[uvicorn.Server, threading.Thread, int]:
    for port in PORTS:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning",
                                               timeout_graceful_shutdown=5))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.started:
            return server, thread, port
        server.should_exit = True
        thread.join(5)
    raise AssertionError("no free port in 18100-18149")


def _waiting(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM rule_queue")).scalar_one()


@pytest.fixture(scope="module")
def loop_url(sample_engine) -> Iterator[str]:
    """The service with its job worker, once the sample's own readings have been evaluated."""
    server, thread, port = _serve(create_app(sample_engine, ServiceSettings(run_worker=True)))
    deadline = time.monotonic() + 300
    while _waiting(sample_engine) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _waiting(sample_engine) == 0, "the worker did not evaluate the sample's readings"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def sensors(sample_engine) -> list[str]:
    with sample_engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT external_id FROM manholes WHERE sensor_id IS NOT NULL ORDER BY id DESC "
            "LIMIT 4")).scalars().all()


@pytest.fixture
def crew(api_keys) -> dict[str, str]:
    return {"X-API-Key": api_keys["crew"]}


class Stream:
    """``/alerts/stream`` read in a thread from the newest event on, as a browser would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.events: list[dict] = []
        self.open = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(5, read=60))
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        try:
            with self.client.stream("GET", f"{self.base}/alerts/stream") as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith(":") or line.startswith("retry"):
                        self.open.set()
                    if line.startswith("data: "):
                        self.events.append({**json.loads(line[6:]),
                                            "_seen": time.monotonic()})
        except httpx.HTTPError:
            return  # closed by __exit__

    def __enter__(self) -> Stream:
        self.thread.start()
        assert self.open.wait(10), "the alert stream did not open"
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()  # the server may shut down only once its streams are closed
        self.thread.join(5)

    def wait_for(self, predicate, timeout: float = ALERT_WITHIN_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if predicate(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no such alert on the stream within {timeout} s; "
                             f"saw {[(e['kind'], e['reason']) for e in self.events]}")


def _now() -> str:
    return (datetime.now(UTC) - timedelta(seconds=1)).isoformat()


# Runs first, before the service with its own worker starts (the module fixture).
def test_twin_worker_runs_the_jobs_of_a_service_without_one(sample_engine, sensors, api_keys):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from ingest.intake import load_batch

    manhole = sensors[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env["TWIN_DATABASE_URL"] = sample_engine.url.render_as_string(hide_password=False)
    worker = subprocess.Popen([str(Path(sys.executable).parent / "twin"), "worker"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        load_batch(sample_engine, [{"asset_layer": "manholes", "asset_external_id": manhole,
                                    "metric": "cover_open", "observed_at": _now(),
                                    "value": 1}], who="test")
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline and worker.poll() is None:
            with sample_engine.connect() as conn:
                found = conn.execute(sa.text(
                    "SELECT a.id FROM alerts a JOIN manholes m ON m.id = a.asset_id "
                    "WHERE a.kind = 'manhole_cover_open' AND a.status = 'open' "
                    "AND m.external_id = :m"), {"m": manhole}).scalar()
            time.sleep(0.3)
        assert found is not None, "twin worker raised no alert"
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.slow
def test_a_cover_open_reading_posted_over_http_is_an_alert_on_the_stream(
        loop_url, sensors, crew):
    manhole = sensors[0]
    with Stream(loop_url) as stream:
        posted = time.monotonic()
        answer = httpx.post(f"{loop_url}/readings", headers=crew, json=[
            {"asset_layer": "manholes", "asset_external_id": manhole, "metric": "cover_open",
             "observed_at": _now(), "value": 1}])
        assert answer.status_code == 200, answer.text
        event = stream.wait_for(lambda e: e["kind"] == "manhole_cover_open"
                                and e["reason"].startswith(manhole) and e["to_status"] == "open")
    assert event["severity"] == "critical" and "cover open since" in event["reason"]
    assert event["_seen"] - posted < ALERT_WITHIN_S
    listed = httpx.get(f"{loop_url}/alerts", params={"kind": "manhole_cover_open",
                                                      "status": "open"}).json()
    assert event["alert_id"] in {f["id"] for f in listed["features"]}


def test_a_gas_reading_sent_over_mqtt_is_an_alert_on_the_stream(loop_url, sample_engine,
                                                                sensors):
    manhole = sensors[1]
    topic = f"twin-test/{uuid.uuid4().hex}/report"
    stop = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True, kwargs={
        "engine": sample_engine, "url": f"mqtt://{BROKER[0]}:{BROKER[1]}/{topic}",
        "client_id": f"twin-test-{uuid.uuid4().hex[:8]}", "stop": stop, "source": "mqtt-test",
        "batch_seconds": 0.2, "idle_exit_seconds": 60})
    watcher.start()
    try:
        with Stream(loop_url) as stream:
            time.sleep(1.0)  # the watcher subscribes (a persistent session keeps what follows)
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                 client_id=f"pub-{uuid.uuid4().hex}")
            client.connect(*BROKER)
            client.loop_start()
            sent = time.monotonic()
            info = client.publish(topic, json.dumps(
                {"asset_layer": "manholes", "asset_external_id": manhole, "metric": "h2s_ppm",
                 "observed_at": _now(), "value": 25.0}), qos=1)
            info.wait_for_publish(timeout=10)
            client.disconnect()
            client.loop_stop()
            event = stream.wait_for(lambda e: e["kind"] == "manhole_gas"
                                    and e["reason"].startswith(manhole)
                                    and e["to_status"] == "open")
    finally:
        stop.set()
        watcher.join(15)
    assert event["severity"] == "critical" and "gas outside the safe limits" in event["reason"]
    assert event["_seen"] - sent < ALERT_WITHIN_S


# -- work that sticks ---------------------------------------------------------------------------


def _street_above(engine, taken: set[str]) -> str:
    """A street whose latest PCI is well above the threshold and that has no alert yet."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT s.external_id FROM streets s JOIN LATERAL (SELECT r.value FROM readings r "
            "WHERE r.asset_id = s.id AND r.metric_id = (SELECT id FROM metrics WHERE name = "
            "'pci') ORDER BY r.observed_at DESC LIMIT 1) p ON TRUE WHERE p.value >= 70 "
            "AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.asset_layer = 'streets' "
            "AND a.asset_id = s.id) ORDER BY s.id")).scalars().all()
    street = next(r for r in rows if r not in taken)
    taken.add(street)
    return street


def _survey(base: str, crew: dict, street: str, pci: float, ago: timedelta) -> None:
    answer = httpx.post(f"{base}/readings", headers=crew, json=[
        {"asset_layer": "streets", "asset_external_id": street, "metric": "pci",
         "observed_at": (datetime.now(UTC) - ago).isoformat(), "value": pci}])
    assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "accepted", (
        answer.text)


def _road_wear(base: str, street: str, status: str = "open,acknowledged,in_progress"
               ) -> list[dict]:
    found = httpx.get(f"{base}/alerts", params={"kind": "road_wear", "status": status,
                                                 "limit": 10000}).json()["features"]
    return [f for f in found if f["properties"]["asset_external_id"] == street]


def _wait_alert(base: str, street: str, not_id: int | None = None) -> dict:
    deadline = time.monotonic() + ALERT_WITHIN_S
    while time.monotonic() < deadline:
        found = [f for f in _road_wear(base, street) if f["id"] != not_id]
        if found:
            return httpx.get(f"{base}/alerts/{found[0]['id']}").json()
        time.sleep(0.2)
    raise AssertionError(f"no road-wear alert on {street} within {ALERT_WITHIN_S} s")


@pytest.fixture(scope="module")
def streets_taken() -> set[str]:
    return set()


def test_a_resurfaced_street_stays_settled_until_a_later_survey_crosses_again(
        loop_url, sample_engine, crew, streets_taken):
    from predict.alerts import refresh

    street = _street_above(sample_engine, streets_taken)
    # A survey below PCI 55 after one above it: a crossing, raised by the worker.
    _survey(loop_url, crew, street, 41.0, timedelta(hours=30))
    first = _wait_alert(loop_url, street)
    assert "below 55" in first["properties"]["reason"]
    resolved = httpx.post(f"{loop_url}/alerts/{first['id']}/resolve", headers=crew, json={
        "note": "milled and overlaid", "work": {
            "action": "mill_and_overlay", "done_by": "crew north",
            "done_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["work"][0]["action"] == "mill_and_overlay"
    with sample_engine.connect() as conn:
        resurfaced = conn.execute(sa.text("SELECT resurfaced_on FROM streets WHERE "
                                          "external_id = :s"), {"s": street}).scalar()
    assert resurfaced == (datetime.now(UTC) - timedelta(hours=1)).date()
    backlog = httpx.get(f"{loop_url}/work/backlog", headers=crew).json()["features"]
    assert street not in {f["properties"]["external_id"] for f in backlog}

    refresh(sample_engine)  # what the scheduled job runs
    assert _road_wear(loop_url, street) == []

    # A survey after the resurfacing that is below the threshold: raised again, with evidence.
    _survey(loop_url, crew, street, 43.0, timedelta(0))  # observed after the resolution
    again = _wait_alert(loop_url, street, not_id=first["id"])
    opened = again["history"][0]
    assert opened["to_status"] == "open" and "raised again on new evidence" in opened["note"]
    assert "PCI 43" in opened["note"] and f"alert {first['id']} was resolved" in opened["note"]
    assert opened["evidence"]["follows_alert"] == first["id"]
    refresh(sample_engine)
    assert [f["id"] for f in _road_wear(loop_url, street)] == [again["id"]]


def test_a_dismissed_alert_stays_dismissed_until_a_later_survey(
        loop_url, sample_engine, crew, streets_taken):
    from predict.alerts import refresh

    street = _street_above(sample_engine, streets_taken)
    _survey(loop_url, crew, street, 45.0, timedelta(hours=30))
    first = _wait_alert(loop_url, street)
    no_note = httpx.post(f"{loop_url}/alerts/{first['id']}/dismiss", headers=crew, json={})
    assert no_note.status_code == 400 and "note" in no_note.json()["detail"]
    dismissed = httpx.post(f"{loop_url}/alerts/{first['id']}/dismiss", headers=crew,
                           json={"note": "resurfaced last week"})
    assert dismissed.status_code == 200, dismissed.text

    refresh(sample_engine)
    refresh(sample_engine)
    assert _road_wear(loop_url, street) == []

    _survey(loop_url, crew, street, 44.0, timedelta(0))
    again = _wait_alert(loop_url, street, not_id=first["id"])
    assert f"alert {first['id']} was dismissed" in again["history"][0]["note"]
    assert "PCI 44" in again["history"][0]["evidence"]["what"]


# -- file ingest, and workers of their own --------------------------------------------------


def test_a_readings_file_ingested_raises_its_alert_through_the_worker(
        loop_url, sample_engine, sensors, tmp_path):
    from ingest.pipeline import ingest_file

    manhole = sensors[2]
    path = tmp_path / "flooding.csv"
    path.write_text("asset_layer,asset_external_id,metric,observed_at,value\n"
                    f"manholes,{manhole},water_level_pct,{_now()},100\n")
    with Stream(loop_url) as stream:
        report = ingest_file(sample_engine, "readings", path)
        assert report.rows_new == 1
        event = stream.wait_for(lambda e: e["kind"] == "manhole_flooding"
                                and e["reason"].startswith(manhole))
    assert event["severity"] == "critical"  # at 100 % of the well's depth: overflow
