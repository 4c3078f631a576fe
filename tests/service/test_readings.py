"""POST /readings: sensor intake over HTTP, checked by ingest's rules, answered per reading."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ingest import intake
from tests.tools import problem_of

# Sensor times of our own: a whole number of seconds the sample (minutes only) never uses.
BASE = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0, second=17)


def at(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat()


@pytest.fixture(scope="module")
def assets(sample_engine) -> dict[str, str]:
    with sample_engine.connect() as conn:
        manholes = conn.execute(sa.text(
            "SELECT external_id FROM manholes ORDER BY external_id LIMIT 3")).scalars().all()
        lot = conn.execute(sa.text(
            "SELECT external_id FROM parking ORDER BY external_id LIMIT 1")).scalar_one()
    return {"mh1": manholes[0], "mh2": manholes[1], "mh3": manholes[2], "lot": lot}


@pytest.fixture
def crew(api_keys) -> dict[str, str]:
    return {"X-API-Key": api_keys["crew"]}


def stored(engine, layer: str, external_id: str, metric: str, observed_at: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT r.value, r.source FROM readings r JOIN metrics m ON m.id = r.metric_id "
            "JOIN assets a ON a.id = r.asset_id WHERE a.layer = :layer "
            "AND a.external_id = :ext AND m.name = :metric AND r.observed_at = :at"),
            {"layer": layer, "ext": external_id, "metric": metric,
             "at": datetime.fromisoformat(observed_at)}).first()


def readings_state(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM readings), "
            "(SELECT version FROM layer_versions WHERE layer = 'readings')")).one()


def answers(response) -> dict[tuple[int, str | None], dict]:
    return {(r["index"], r["metric"]): r for r in response.json()["results"]}


def test_a_json_batch_is_answered_per_reading_and_lands(client, sample_engine, assets, crew):
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    batch = [
        {"asset_layer": "manholes", "asset_external_id": assets["mh1"], "metric": "tilt_deg",
         "observed_at": at(0), "value": 12.5},
        {"asset_layer": "manholes", "asset_external_id": assets["mh2"], "observed_at": at(0),
         "metrics": {"water_level_pct": 81, "battery_pct": 64.5}, "source": "vendor-x"},
        {"asset_layer": "manholes", "asset_external_id": "MH-NOPE", "metric": "tilt_deg",
         "observed_at": at(0), "value": 1},
        {"asset_layer": "manholes", "asset_external_id": assets["mh1"], "metric": "radon_bq",
         "observed_at": at(0), "value": 1},
        {"asset_layer": "manholes", "asset_external_id": assets["mh1"], "metric": "tilt_deg",
         "observed_at": at(1), "value": 400},
        {"asset_layer": "manholes", "asset_external_id": assets["mh1"], "metric": "tilt_deg",
         "observed_at": future, "value": 3},
        42,
        {"hello": "world"},
        {"asset_layer": "manholes", "asset_external_id": assets["mh1"], "metric": "tilt_deg",
         "observed_at": at(2)},
        {"asset_layer": "parking", "asset_external_id": assets["lot"], "metric":
         "occupancy_pct", "observed_at": at(0), "value": "lots"},
    ]
    before = readings_state(sample_engine)
    response = client.post("/readings", json=batch, headers=crew)
    assert response.status_code == 200, response.text
    body = response.json()
    got = answers(response)
    assert [r["index"] for r in body["results"]] == [0, 1, 1, *range(2, 10)]
    assert got[0, "tilt_deg"] == {"index": 0, "metric": "tilt_deg", "status": "accepted",
                                  "reason": None}
    assert got[1, "water_level_pct"]["status"] == got[1, "battery_pct"]["status"] == "accepted"
    assert got[2, "tilt_deg"]["status"] == "rejected"
    assert "MH-NOPE" in got[2, "tilt_deg"]["reason"]
    assert "is not an asset of layer manholes" in got[2, "tilt_deg"]["reason"]
    assert "is not a declared metric" in got[3, "radon_bq"]["reason"]
    assert "outside the metric's declared range 0-90" in got[4, "tilt_deg"]["reason"]
    assert "is in the future" in got[5, "tilt_deg"]["reason"]
    assert got[6, None]["status"] == got[7, None]["status"] == "rejected"
    assert "is not a reading or a sensor report" in got[6, None]["reason"]
    assert got[8, "tilt_deg"]["reason"] == "value is missing"
    assert "is not a number" in got[9, "occupancy_pct"]["reason"]
    assert body["totals"] == {"items": 10, "readings": 11, "accepted": 3, "duplicate": 0,
                              "rejected": 8, "updated": 0}

    # The accepted readings are in the database with their values and sources.
    assert tuple(stored(sample_engine, "manholes", assets["mh1"], "tilt_deg", at(0))) == (
        12.5, "api")
    assert tuple(stored(sample_engine, "manholes", assets["mh2"], "water_level_pct",
                        at(0))) == (81, "vendor-x")
    assert stored(sample_engine, "manholes", assets["mh2"], "battery_pct", at(0))[0] == 64.5
    assert stored(sample_engine, "manholes", assets["mh1"], "tilt_deg", at(1)) is None
    count, version = readings_state(sample_engine)
    assert count == before[0] + 3 and version > before[1]

    # The post is an ingest run, its rejects kept with it, and who posted it.
    with sample_engine.connect() as conn:
        run = conn.execute(sa.text("SELECT * FROM ingest_runs WHERE id = :id"),
                           {"id": body["run_id"]}).mappings().one()
        rejects = conn.execute(sa.text("SELECT count(DISTINCT row_number) FROM ingest_rejects "
                                       "WHERE run_id = :id"), {"id": body["run_id"]}).scalar()
    assert run["status"] == "succeeded" and run["path"] == "POST /readings by test-crew"
    assert (run["rows_read"], run["rows_new"], run["rows_rejected"]) == (11, 3, 8)
    assert rejects == 8

    # Posting the same batch again: every stored reading is a duplicate, nothing changes.
    again = client.post("/readings", json=batch, headers=crew)
    assert again.status_code == 200
    got = answers(again)
    for key in ((0, "tilt_deg"), (1, "water_level_pct"), (1, "battery_pct")):
        assert got[key]["status"] == "duplicate"
        assert got[key]["reason"] == "is stored already with the same value"
    assert again.json()["totals"]["rejected"] == 8
    assert again.json()["totals"]["accepted"] == 0
    assert readings_state(sample_engine) == (count, version)


def test_ndjson_batches_and_changed_values(client, sample_engine, assets, crew):
    lines = [
        {"asset_layer": "manholes", "asset_external_id": assets["mh3"], "metric": "tilt_deg",
         "observed_at": at(5), "value": 2},
        {"asset_layer": "manholes", "asset_external_id": assets["mh3"], "observed_at": at(6),
         "metrics": {"cover_open": True, "co_ppm": 4}},
    ]
    body = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    headers = {**crew, "Content-Type": "application/x-ndjson"}
    response = client.post("/readings", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["accepted"] == 3
    assert stored(sample_engine, "manholes", assets["mh3"], "cover_open", at(6))[0] == 1

    # Another value for the same asset, metric and time replaces the stored one, and says so.
    lines[0]["value"] = 7.25
    changed = client.post("/readings", content="\n".join(json.dumps(x) for x in lines),
                          headers=headers)
    got = answers(changed)
    assert got[0, "tilt_deg"] == {"index": 0, "metric": "tilt_deg", "status": "accepted",
                                  "reason": "replaced the stored value 2"}
    assert got[1, "co_ppm"]["status"] == "duplicate"
    assert changed.json()["totals"]["updated"] == 1
    assert stored(sample_engine, "manholes", assets["mh3"], "tilt_deg", at(5))[0] == 7.25


def test_repeats_within_a_batch(client, sample_engine, assets, crew):
    reading = {"asset_layer": "manholes", "asset_external_id": assets["mh1"],
               "metric": "h2s_ppm", "observed_at": at(9), "value": 3}
    response = client.post("/readings", headers=crew, json=[
        reading, dict(reading), {**reading, "value": 4}])
    assert [(r["status"], r["reason"]) for r in response.json()["results"]] == [
        ("accepted", None),
        ("duplicate", "repeats item 0 of this batch"),
        ("rejected", "observed_at repeats the asset, metric and time of item 0 with another "
                     "value"),
    ]
    assert stored(sample_engine, "manholes", assets["mh1"], "h2s_ppm", at(9))[0] == 3


def test_broken_json_is_400_saying_where(client, crew):
    detail = problem_of(client.post("/readings", content=b'[{"asset_layer": "manholes",',
                                    headers={**crew, "Content-Type": "application/json"}),
                        400)["detail"]
    assert "not valid JSON" in detail and "line 1, column 29" in detail
    detail = problem_of(client.post("/readings", content=b'{"metric": "pci"}\n{oops}\n',
                                    headers={**crew, "Content-Type": "application/x-ndjson"}),
                        400)["detail"]
    assert detail.startswith("line 2: ")
    for body in (b"", b'"text"', b"\xff\xfe"):
        problem_of(client.post("/readings", content=body,
                               headers={**crew, "Content-Type": "application/json"}), 400)
    problem_of(client.post("/readings", content=b"a=1", headers={
        **crew, "Content-Type": "application/x-www-form-urlencoded"}), 415)


def test_an_empty_array_is_an_empty_answer(client, crew):
    response = client.post("/readings", json=[], headers=crew)
    assert response.status_code == 200
    assert response.json()["totals"]["readings"] == 0


def test_too_large_batches_are_413(client, sample_engine, crew):
    before = readings_state(sample_engine)
    item = {"asset_layer": "manholes", "asset_external_id": "x", "metric": "tilt_deg",
            "observed_at": at(0), "value": 1}
    detail = problem_of(client.post("/readings", json=[item] * (intake.MAX_ITEMS + 1),
                                    headers=crew), 413)["detail"]
    assert "10,000 items" in detail
    ndjson = (json.dumps(item) + "\n") * (intake.MAX_ITEMS + 1)
    problem_of(client.post("/readings", content=ndjson, headers={
        **crew, "Content-Type": "application/x-ndjson"}), 413)
    big = b"[" + b" " * intake.MAX_BYTES + b"]"
    assert "bytes" in problem_of(client.post("/readings", content=big, headers={
        **crew, "Content-Type": "application/json"}), 413)["detail"]
    report = {"asset_layer": "manholes", "asset_external_id": "x", "observed_at": at(0),
              "metrics": {f"m{i}": 1 for i in range(intake.MAX_READINGS + 1)}}
    assert "readings" in problem_of(client.post("/readings", json=[report], headers=crew),
                                    413)["detail"]
    assert readings_state(sample_engine) == before


def test_posting_needs_a_crew_key(client, api_keys):
    problem_of(client.post("/readings", json=[]), 401)
    problem_of(client.post("/readings", json=[], headers={"X-API-Key": api_keys["viewer"]}), 403)
    for role in ("crew", "planner", "admin"):
        response = client.post("/readings", json=[],
                               headers={"Authorization": f"Bearer {api_keys[role]}"})
        assert response.status_code == 200
