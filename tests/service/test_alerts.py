"""Alerts for crews: list and filter, act with history, conflicts, and the live stream."""

import json
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from geo import alerts
from service.routers import alerts as alerts_router
from tests.tools import problem_of

GEOJSON = "application/geo+json"


def raise_on(engine, manhole, kind: str, severity: str, reason: str) -> int:
    with engine.begin() as conn:
        alert_id, _ = alerts.raise_alert(
            conn, kind=kind, severity=severity, asset_layer="manholes", asset_id=manhole.id,
            geom_ewkt=manhole.ewkt, reason=reason, details={"reason_numbers": reason})
    return alert_id


@pytest.fixture(scope="module")
def manholes(sample_engine) -> list:
    with sample_engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT id, external_id, ST_AsEWKT(geom) AS ewkt, ST_X(geom) AS x, ST_Y(geom) AS y "
            "FROM manholes ORDER BY external_id LIMIT 8")).all()


@pytest.fixture(scope="module")
def raised(sample_engine, manholes) -> dict[str, int]:
    """Three alerts on sample manholes: two tilts (high, medium) and a water level."""
    return {
        "tilt_high": raise_on(sample_engine, manholes[0], "manhole_tilt", "high",
                              "cover tilted 14.2 deg from its baseline (alarm at 10 deg)"),
        "tilt_medium": raise_on(sample_engine, manholes[1], "manhole_tilt", "medium",
                                "cover tilted 10.4 deg from its baseline (alarm at 10 deg)"),
        "water": raise_on(sample_engine, manholes[2], "water_level", "critical",
                          "water at 96 % of the well's depth (alarm at 80 %)"),
    }


@pytest.fixture
def crew(api_keys) -> dict[str, str]:
    return {"X-API-Key": api_keys["crew"]}


def ids_of(response) -> set[int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GEOJSON
    body = response.json()
    assert body["type"] == "FeatureCollection"
    return {feature["id"] for feature in body["features"]}


def test_list_alerts_as_geojson_with_their_asset(client, raised, manholes):
    body = client.get("/alerts").json()
    assert {f["id"] for f in body["features"]} >= set(raised.values())
    feature = next(f for f in body["features"] if f["id"] == raised["tilt_high"])
    assert feature["geometry"]["type"] == "Point"
    assert feature["geometry"]["coordinates"] == pytest.approx([manholes[0].x, manholes[0].y])
    properties = feature["properties"]
    assert properties["asset_external_id"] == manholes[0].external_id
    assert (properties["kind"], properties["severity"], properties["status"]) == (
        "manhole_tilt", "high", "open")
    assert properties["reason"].startswith("cover tilted 14.2 deg")
    assert properties["asset_layer"] == "manholes" and properties["opened_at"]


def test_filters_repeat_or_take_comma_lists(client, raised, manholes):
    everything = set(raised.values())
    assert ids_of(client.get("/alerts", params={"kind": "manhole_tilt"})) & everything == {
        raised["tilt_high"], raised["tilt_medium"]}
    assert ids_of(client.get("/alerts?severity=high,critical")) & everything == {
        raised["tilt_high"], raised["water"]}
    assert ids_of(client.get("/alerts?severity=high&severity=critical")) & everything == {
        raised["tilt_high"], raised["water"]}
    assert ids_of(client.get("/alerts?kind=manhole_tilt&severity=medium")) & everything == {
        raised["tilt_medium"]}
    m = manholes[2]
    bbox = f"{m.x - 1e-5},{m.y - 1e-5},{m.x + 1e-5},{m.y + 1e-5}"
    assert ids_of(client.get("/alerts", params={"bbox": bbox})) == {raised["water"]}
    assert ids_of(client.get("/alerts", params={"bbox": "0,0,1,1"})) == set()
    assert ids_of(client.get("/alerts?status=open,acknowledged")) >= everything
    assert ids_of(client.get("/alerts?status=dismissed")) & everything == set()


def test_paging(client, raised):
    first = client.get("/alerts?limit=2").json()
    assert first["numberReturned"] == 2
    following = next(link for link in first["links"] if link["rel"] == "next")["href"]
    second = client.get(following).json()
    assert not {f["id"] for f in first["features"]} & {f["id"] for f in second["features"]}
    assert ids_of(client.get("/alerts?limit=1&offset=100000")) == set()


@pytest.mark.parametrize("query", [
    "status=closed", "severity=urgent", "bbox=1,2,3", "bbox=a,b,c,d", "bbox=10,0,0,10",
    "bbox=nan,0,1,1", "limit=0", "offset=-1", "kind=%00",
])
def test_bad_filters_are_400(client, query):
    problem_of(client.get(f"/alerts?{query}"), 400)


def test_lifecycle_with_history(client, sample_engine, raised, crew):
    alert_id = raised["tilt_medium"]
    got = client.post(f"/alerts/{alert_id}/acknowledge", headers=crew)
    assert got.status_code == 200, got.text
    assert got.json()["properties"]["status"] == "acknowledged"
    got = client.post(f"/alerts/{alert_id}/start", headers=crew,
                      json={"note": "crew 3 on the way", "actor": "someone else"})
    assert got.json()["properties"]["status"] == "in_progress"
    got = client.post(f"/alerts/{alert_id}/resolve", headers=crew,
                      json={"note": "cover reseated, tilt 0.8 deg"})
    assert got.json()["properties"]["status"] == "resolved"
    assert got.json()["properties"]["closed_at"]

    feature = client.get(f"/alerts/{alert_id}").json()
    assert feature["type"] == "Feature" and feature["id"] == alert_id
    history = [(e["actor"], e["from_status"], e["to_status"], e["note"])
               for e in feature["history"]]
    assert history == [
        ("twin", None, "open", "cover tilted 10.4 deg from its baseline (alarm at 10 deg)"),
        ("test-crew", "open", "acknowledged", None),
        ("test-crew", "acknowledged", "in_progress", "crew 3 on the way"),
        ("test-crew", "in_progress", "resolved", "cover reseated, tilt 0.8 deg"),
    ]
    assert all(set(e) == {"at", "actor", "from_status", "to_status", "note"}
               for e in feature["history"])

    # Resolved is final: any further action conflicts, and changes nothing.
    for action in ("acknowledge", "start", "resolve"):
        detail = problem_of(client.post(f"/alerts/{alert_id}/{action}", headers=crew),
                            409)["detail"]
        assert "resolved" in detail
    assert len(client.get(f"/alerts/{alert_id}").json()["history"]) == 4


def test_acknowledging_twice_conflicts(client, sample_engine, manholes, crew):
    alert_id = raise_on(sample_engine, manholes[3], "manhole_cover_open", "high",
                        "cover open for 35 min")
    assert client.post(f"/alerts/{alert_id}/acknowledge", headers=crew).status_code == 200
    problem_of(client.post(f"/alerts/{alert_id}/acknowledge", headers=crew), 409)


def test_dismiss_needs_a_note(client, sample_engine, manholes, crew):
    alert_id = raise_on(sample_engine, manholes[4], "manhole_tilt", "low",
                        "cover tilted 10.1 deg")
    for body in ({}, {"note": "   "}, {"note": None}):
        assert "note" in problem_of(client.post(f"/alerts/{alert_id}/dismiss", json=body,
                                                headers=crew), 400)["detail"]
    problem_of(client.post(f"/alerts/{alert_id}/dismiss", headers=crew), 400)
    problem_of(client.post(f"/alerts/{alert_id}/dismiss", json={"note": "a\u0000b"},
                           headers=crew), 400)
    got = client.post(f"/alerts/{alert_id}/dismiss", headers=crew,
                      json={"note": "sensor knocked during street works; cover is fine"})
    assert got.status_code == 200
    assert got.json()["properties"]["status"] == "dismissed"
    last = client.get(f"/alerts/{alert_id}").json()["history"][-1]
    assert (last["actor"], last["to_status"], last["note"]) == (
        "test-crew", "dismissed", "sensor knocked during street works; cover is fine")
    assert last["at"]


def test_phone_numbers_in_crews_notes_are_masked_for_readers_below_crew(
        client, sample_engine, manholes, crew):
    alert_id = raise_on(sample_engine, manholes[3], "manhole_tilt", "low",
                        "cover tilted 9.8 deg")
    note = "resident Wang called from 13700001111, cover rocks under traffic"
    assert client.post(f"/alerts/{alert_id}/acknowledge", headers=crew,
                       json={"note": note}).status_code == 200

    def last_note(headers: dict) -> str:
        return client.get(f"/alerts/{alert_id}", headers=headers).json()["history"][-1]["note"]

    anonymous = last_note({})
    assert "13700001111" not in anonymous and "cover rocks under traffic" in anonymous
    listed = client.get("/alerts", params={"kind": "manhole_tilt", "status": "acknowledged"})
    assert "13700001111" not in listed.text
    assert last_note(crew) == note  # the crew that works on it reads it whole


def test_unknown_alerts_are_404(client, crew):
    problem_of(client.get("/alerts/987654321"), 404)
    problem_of(client.post("/alerts/987654321/acknowledge", headers=crew), 404)
    problem_of(client.post("/alerts/987654321/dismiss", json={"note": "x"}, headers=crew), 404)
    problem_of(client.get("/alerts/99999999999999999999999"), 400)
    problem_of(client.get("/alerts/abc"), 400)


def test_acting_needs_a_crew_key(client, raised, api_keys):
    alert_id = raised["water"]
    problem_of(client.post(f"/alerts/{alert_id}/acknowledge"), 401)
    problem_of(client.post(f"/alerts/{alert_id}/acknowledge",
                           headers={"X-API-Key": api_keys["viewer"]}), 403)
    assert client.get(f"/alerts/{alert_id}").json()["properties"]["status"] == "open"


# -- the stream -----------------------------------------------------------------------------


class EventReader:
    """Read server-sent events from a live server in a thread, so a test never hangs."""

    def __init__(self, url: str, headers: dict | None = None) -> None:
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.opened = threading.Event()
        self.status: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self.thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _run(self, url: str, headers: dict) -> None:
        with httpx.Client(timeout=httpx.Timeout(20.0)) as http, \
                http.stream("GET", url, headers=headers) as response:
            self.status = response.status_code
            self.content_type = response.headers.get("content-type", "")
            self.opened.set()
            event: dict = {}
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments.append(line)
                elif line == "":
                    if "data" in event:
                        self.events.append(event)
                    event = {}
                else:
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.events) >= count, f"got {self.events} within {timeout_s} s"
        return self.events

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def test_the_stream_sends_new_and_changed_alerts(live_url, sample_engine, manholes, api_keys,
                                                  monkeypatch):
    # Heartbeats often, so the reading thread sees a line (and its stop flag) every half second.
    monkeypatch.setattr(alerts_router, "STREAM_HEARTBEAT_S", 0.5)
    reader = EventReader(f"{live_url}/alerts/stream")
    try:
        assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
        alert_id = raise_on(sample_engine, manholes[5], "manhole_tilt", "high",
                            "cover tilted 22.0 deg from its baseline (alarm at 10 deg)")
        acked = httpx.post(f"{live_url}/alerts/{alert_id}/acknowledge",
                           headers={"X-API-Key": api_keys["crew"]}, timeout=10)
        assert acked.status_code == 200
        opened, changed = reader.wait_for(2)
        deadline = time.monotonic() + 5  # a quiet stream says it is alive
        while ": heartbeat" not in reader.comments and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ": heartbeat" in reader.comments
    finally:
        reader.close()
    assert not reader.thread.is_alive()
    assert opened["event"] == changed["event"] == "alert"
    assert int(changed["id"]) > int(opened["id"])
    first, second = json.loads(opened["data"]), json.loads(changed["data"])
    assert first["event_id"] == int(opened["id"])
    assert (first["alert_id"], first["to_status"], first["actor"]) == (alert_id, "open", "twin")
    assert first["reason"].startswith("cover tilted 22.0 deg")
    assert (second["alert_id"], second["from_status"], second["to_status"], second["actor"]) == (
        alert_id, "open", "acknowledged", "test-crew")

    # A client that reconnects with Last-Event-ID (or ?after=) gets what it missed.
    for headers, query in (({"Last-Event-ID": opened["id"]}, ""), ({}, f"?after={opened['id']}")):
        again = EventReader(f"{live_url}/alerts/stream{query}", headers)
        try:
            assert [e["id"] for e in again.wait_for(1)][:1] == [changed["id"]]
        finally:
            again.close()


def test_a_bad_last_event_id_is_400(client):
    problem_of(client.get("/alerts/stream", headers={"Last-Event-ID": "yesterday"}), 400)
    problem_of(client.get("/alerts/stream?after=-3"), 400)


def test_the_stream_holds_back_at_a_gap_in_event_ids_until_it_is_filled_or_for_good(
        sample_engine, manholes):
    # Event ids are taken in order, committed in any order: a later id visible before an
    # earlier one must not be sent first, or a stream resumed after it would never send the
    # earlier one. (Writes through geo.alerts also change the alerts table, whose version row
    # they then hold until commit, so they commit in id order; an event written without it, as
    # here, or a rolled-back one, leaves a gap.)
    def raise_on_manhole(conn, manhole) -> int:
        alert_id, _ = alerts.raise_alert(
            conn, kind="manhole_cover_open", severity="low", asset_layer="manholes",
            asset_id=manhole.id, geom_ewkt=manhole.ewkt, reason="gap test")
        return alert_id

    with sample_engine.begin() as conn:
        start = alerts.last_event_id(conn)
        alert_id = raise_on_manhole(conn, manholes[6])
    start += 1
    slow = sample_engine.connect()
    slow_transaction = slow.begin()
    slow.execute(sa.text("INSERT INTO alert_events (alert_id, actor, from_status, to_status, "
                         "note) VALUES (:id, 'test', 'open', 'open', 'a note')"), {"id": alert_id})
    with sample_engine.begin() as conn:
        raise_on_manhole(conn, manholes[7])
    ready, gap = alerts_router._events_after(sample_engine, start, None)
    assert ready == [] and gap is not None
    ready, gap = alerts_router._events_after(sample_engine, start, gap)
    assert ready == []  # its transaction is still open: the missing id may come
    slow_transaction.commit()
    slow.close()
    ready, gap = alerts_router._events_after(sample_engine, start, gap)
    assert [e["event_id"] for e in ready] == [start + 1, start + 2] and gap is None
    # A rolled-back id is a gap for good: passed over once its transaction has ended.
    with sample_engine.connect() as conn:
        conn.begin()
        raise_on_manhole(conn, manholes[5])
        conn.rollback()
    with sample_engine.begin() as conn:
        raise_on_manhole(conn, manholes[4])
    ready, gap = alerts_router._events_after(sample_engine, start + 2, None)
    assert ready == [] and gap is not None
    ready, gap = alerts_router._events_after(sample_engine, start + 2, gap)
    assert [e["event_id"] for e in ready] == [start + 4] and gap is None
