"""Implausible reading times through every way in (issue 17, findings 1 and 2).

A reading dated 1900-01-15 or 0001-01-01T00:00:00+01:00 is rejected per row with the window
in its reason, by ``twin ingest`` of a CSV, by ``POST /readings`` and by the MQTT watcher
(on the machine's broker, a topic of the test's own); the good readings beside it land with
their exact time, and ``readings`` gains a partition only for the month they fall in.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from geo import keys
from ingest.watch import LOGGER
from service.app import create_app
from service.settings import ServiceSettings
from tests.ingest.test_pipeline import run_twin
from tests.ingest.test_watch import Watcher, publish

BROKER_PORT = 1883  # the machine's mosquitto
GOOD = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
WINDOW = "is outside the plausible window 1970-01-01 to "


@pytest.fixture(scope="module")
def assets(engine):
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO manholes (source, external_id, kind, geom) VALUES "
            "('test', 'MH-1', 'sewer', ST_SetSRID(ST_Point(108.54, 32.52), 4326))"))
    return engine


def partitions(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'readings'::regclass")).scalars())


def stored_times(engine, source: str) -> list[datetime]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT observed_at FROM readings WHERE source = :s ORDER BY observed_at"),
            {"s": source}).scalars())


def rejects_of_source(engine, source: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT j.row_number, j.field, j.value, j.reason FROM ingest_rejects j "
            "JOIN ingest_runs r ON r.id = j.run_id WHERE r.source = :s "
            "ORDER BY j.row_number"), {"s": source}).all()


def good_month(engine) -> str:
    return f"readings_y{GOOD.year:04d}m{GOOD.month:02d}"


def test_csv_with_1900_and_year_1_rejects_those_rows(assets, tmp_path):
    engine = assets
    before = partitions(engine)
    source = f"csv-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "readings.csv"
    pd.DataFrame({
        "asset_layer": ["manholes"] * 3,
        "asset_external_id": ["MH-1"] * 3,
        "metric": ["tilt_deg"] * 3,
        "observed_at": ["1900-01-15", GOOD.isoformat(), "0001-01-01T00:00:00+01:00"],
        "value": [1.0, 2.0, 3.0],
    }).to_csv(path, index=False)
    done = run_twin(engine, "ingest", "readings", path, "--source", source)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stored_times(engine, source) == [GOOD]
    found = rejects_of_source(engine, source)
    assert [(r.row_number, r.field, r.value) for r in found] == [
        (1, "observed_at", "1900-01-15"), (3, "observed_at", "0001-01-01T00:00:00+01:00")]
    assert all(r.reason.startswith(WINDOW) for r in found)
    assert partitions(engine) - before <= {good_month(engine)}
    assert not any(p.startswith(("readings_y1900", "readings_y0001", "readings_y1972"))
                   for p in partitions(engine))


@pytest.fixture(scope="module")
def client(assets):
    with assets.begin() as conn:
        key = keys.create_key(conn, name="hostile-crew", role="crew")
    with TestClient(create_app(assets, ServiceSettings()),
                    raise_server_exceptions=False) as test_client:
        test_client.headers["X-API-Key"] = key
        yield test_client


def _item(observed_at: str, value: float, source: str) -> dict:
    return {"asset_layer": "manholes", "asset_external_id": "MH-1", "metric": "tilt_deg",
            "observed_at": observed_at, "value": value, "source": source}


def test_http_post_rejects_1900_and_year_1_per_item(client, assets):
    engine = assets
    before = partitions(engine)
    source = f"http-{uuid.uuid4().hex[:8]}"
    answer = client.post("/readings", json=[_item("1900-01-15", 1.0, source),
                                             _item((GOOD + timedelta(minutes=1)).isoformat(),
                                                   2.0, source)])
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]
    assert results[0]["reason"].startswith(f"observed_at '1900-01-15' {WINDOW}")
    # On its own, year 1 east of UTC was a 500; now a rejected item.
    alone = client.post("/readings", json=[_item("0001-01-01T00:00:00+01:00", 3.0, source)])
    assert alone.status_code == 200, alone.text
    (result,) = alone.json()["results"]
    assert result["status"] == "rejected"
    assert result["reason"].startswith(f"observed_at '0001-01-01T00:00:00+01:00' {WINDOW}")
    assert stored_times(engine, source) == [GOOD + timedelta(minutes=1)]
    assert partitions(engine) - before <= {good_month(engine)}


def test_a_span_of_years_makes_no_partitions_in_between(client, assets):
    engine = assets
    before = partitions(engine)
    source = f"span-{uuid.uuid4().hex[:8]}"
    early = datetime(1971, 3, 1, tzinfo=UTC)
    answer = client.post("/readings", json=[_item(early.isoformat(), 1.0, source),
                                             _item((GOOD + timedelta(minutes=2)).isoformat(),
                                                   2.0, source)])
    assert [r["status"] for r in answer.json()["results"]] == ["accepted", "accepted"]
    assert partitions(engine) - before <= {"readings_y1971m03", good_month(engine)}
    assert stored_times(engine, source) == [early, GOOD + timedelta(minutes=2)]


def test_mqtt_batch_spanning_years_1_to_1500_is_rejected_and_the_watcher_goes_on(assets,
                                                                                  caplog):
    caplog.set_level(logging.INFO, logger=LOGGER.name)  # the watcher says when it subscribed
    engine = assets
    before = partitions(engine)
    tag = uuid.uuid4().hex[:10]
    topic, source = f"twin-test/{tag}/hostile", f"mqtt-{tag}"
    url = f"mqtt://127.0.0.1:{BROKER_PORT}/{topic}"
    bad = [_item(f"{year:04d}-06-01T00:00:00+01:00", 1.0, source)
           for year in (1, 2, 500, 1000, 1500)]
    good = _item((GOOD + timedelta(minutes=3)).isoformat(), 2.0, source)
    with Watcher(engine, url, f"twin-test-{tag}", source=source, batch_seconds=1) as watcher:
        publish(BROKER_PORT, topic, [*bad, good])
        watcher.wait_messages(len(bad) + 1)
        publish(BROKER_PORT, topic, [_item("0001-01-01T00:00:00+01:00", 3.0, source)])
        watcher.wait_messages(len(bad) + 2)  # alone it made the watcher exit; now rejected
        later = _item((GOOD + timedelta(minutes=4)).isoformat(), 4.0, source)
        publish(BROKER_PORT, topic, [later])
        watcher.wait_messages(len(bad) + 3)
        assert watcher.thread.is_alive()
        stats = watcher.finish()
    assert stats.rejected == len(bad) + 1
    assert stored_times(engine, source) == [GOOD + timedelta(minutes=3),
                                            GOOD + timedelta(minutes=4)]
    found = rejects_of_source(engine, source)
    assert len(found) == len(bad) + 1
    assert all(r.field == "observed_at" and r.reason.startswith(WINDOW) for r in found)
    assert partitions(engine) - before <= {good_month(engine)}


# -- findings 8 and 11: an empty readings file, a huge source ---------------------------------


def test_a_header_only_readings_csv_exits_2_with_a_sentence(assets, tmp_path):
    engine = assets
    path = tmp_path / "empty.csv"
    path.write_text("asset_layer,asset_external_id,metric,observed_at,value\n")
    with engine.connect() as conn:
        runs_before = conn.execute(sa.text("SELECT count(*) FROM ingest_runs")).scalar_one()
    done = run_twin(engine, "ingest", "readings", path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{path} has a header but no rows of data; nothing was loaded." in (
        " ".join((done.stdout + done.stderr).split()))
    assert "bug" not in done.stdout + done.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_runs WHERE status = "
                                    "'succeeded' AND id > :n"), {"n": runs_before}
                            ).scalar_one() == 0


@pytest.mark.parametrize("layer", ["readings", "manholes"])
def test_a_csv_of_a_million_columns_exits_2_at_once_in_one_sentence(assets, tmp_path, layer):
    path = tmp_path / "wide.csv"
    header = ",".join(f"c{i}" for i in range(1_000_000))
    path.write_text(header + "\n" + ",".join("1" for _ in range(1_000_000)) + "\n")
    done = run_twin(assets, "ingest", layer, path)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, said[:500]
    assert f"{path} has a first line longer than 256 KB" in said
    assert "may have at most 1,000 columns" in said
    assert len(said) < 400  # one sentence, not the 8.9 MB of column names
    with assets.connect() as conn:
        # At most a 'failed' run on record (readings start their run before reading).
        assert conn.execute(sa.text(f"SELECT count(*) FROM ingest_runs WHERE layer = '{layer}' "
                                    "AND path LIKE '%wide.csv' AND status <> 'failed'")
                            ).scalar_one() == 0


def test_a_10_mb_source_is_refused(client, assets):
    source = "s" * 10_000_000
    answer = client.post("/readings", json=[_item((GOOD + timedelta(minutes=9)).isoformat(),
                                                  1.0, source)])
    assert answer.status_code == 200, answer.text[:300]
    (result,) = answer.json()["results"]
    assert result["status"] == "rejected"
    assert result["reason"].endswith("is 10,000,000 characters; at most 256 are allowed")
    with assets.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM readings WHERE length(source) > 256")
                            ).scalar_one() == 0
