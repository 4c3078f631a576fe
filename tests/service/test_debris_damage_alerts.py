"""Debris and new-damage alerts on the sample: raised from the evidence, in the worklist, and
settled by a crew's work until newer evidence arrives."""

import json
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from ingest.pipeline import ingest_file
from predict.alerts import DEBRIS_LARGE_M3, DEBRIS_VOLUME_M3, RECENT_DAYS, refresh


@pytest.fixture(scope="module")
def refreshed(sample_engine):
    return refresh(sample_engine)


@pytest.fixture
def crew(api_keys) -> dict[str, str]:
    return {"X-API-Key": api_keys["crew"]}


def _active(engine, kind: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text(
            "SELECT id, severity, asset_id, reason, details FROM alerts WHERE kind = :kind "
            "AND status IN ('open', 'acknowledged', 'in_progress') ORDER BY asset_id"),
            conn, params={"kind": kind})


def _latest_piles(engine) -> pd.DataFrame:
    # Worked out here from the raw sightings, apart from the twin's own SQL.
    with engine.connect() as conn:
        seen = pd.read_sql(sa.text(
            "SELECT id, coalesce(pile_ref, 'id:' || id) AS pile, observed_at, volume_m3 "
            "FROM debris_piles"), conn)
    newest = seen["observed_at"].max()
    seen = seen.sort_values(["observed_at", "id"])
    piles = seen.groupby("pile").agg(asset_id=("id", "min"), last=("observed_at", "max"),
                                     volume=("volume_m3", "last"))
    return piles[piles["last"] > newest - timedelta(days=RECENT_DAYS)]


def test_large_recent_piles_are_alerted_with_their_volume(sample_engine, refreshed):
    piles = _latest_piles(sample_engine)
    large = piles[piles["volume"] >= DEBRIS_VOLUME_M3]
    assert len(large) >= 1  # the sample has spoil piles past the threshold
    alerts = _active(sample_engine, "debris_pile").set_index("asset_id")
    for pile in large.itertuples():
        alert = alerts.loc[pile.asset_id]
        assert alert["severity"] == ("high" if pile.volume >= DEBRIS_LARGE_M3 else "medium")
        assert f"pile of about {pile.volume:.0f} m3" in alert["reason"] or \
            f"pile of about {pile.volume:.1f} m3" in alert["reason"]
    # Small piles are alerted only when new and on a street, and say which street.
    small = alerts[alerts["severity"] == "low"]
    assert all(r.startswith("new pile on ") for r in small["reason"])
    assert set(alerts.index) <= set(piles["asset_id"])


def test_new_serious_damage_is_one_alert_per_street(sample_engine, refreshed):
    with sample_engine.connect() as conn:
        damage = pd.read_sql(sa.text(
            "SELECT street_id, damage_class, severity, observed_at FROM road_damage "
            "WHERE street_id IS NOT NULL"), conn)
    recent = damage[damage["observed_at"] > damage["observed_at"].max()
                    - timedelta(days=RECENT_DAYS)]
    serious = recent[(recent["severity"] == "high") | (recent["damage_class"] == "D40")]
    alerts = _active(sample_engine, "road_damage")
    assert sorted(alerts["asset_id"]) == sorted(serious["street_id"].unique())
    with_pothole = set(serious.loc[serious["damage_class"] == "D40", "street_id"])
    for alert in alerts.itertuples():
        assert alert.reason.startswith("new damage on ")
        assert ("pothole" in alert.reason) == (alert.asset_id in with_pothole)


def test_a_second_refresh_raises_nothing_new(sample_engine, refreshed):
    again = refresh(sample_engine)
    assert again.opened.get("debris_pile", 0) == 0 and again.opened.get("road_damage", 0) == 0
    assert again.kept.get("debris_pile", 0) == refreshed.opened.get("debris_pile", 0)


def test_debris_and_damage_are_in_the_worklist(client, refreshed, crew):
    body = client.get("/work", params={"limit": 100000}, headers=crew).json()
    items = [f["properties"] for f in body["features"]]
    kinds = {item["kind"] for item in items}
    assert {"debris_pile", "road_damage"} <= kinds
    damage = next(i for i in items if i["kind"] == "road_damage" and i["severity"] == "high")
    assert any("fresh damage on the carriageway" in why for why in damage["why_first"])


def test_a_cleared_pile_stays_closed_until_it_is_seen_again(client, sample_engine, refreshed,
                                                            crew, tmp_path):
    alerts = _active(sample_engine, "debris_pile")
    target = alerts[alerts["severity"] != "low"].iloc[0]
    details = target["details"] if isinstance(target["details"], dict) else json.loads(
        target["details"])
    last_seen = pd.Timestamp(details["last_seen"])
    done = client.post(f"/alerts/{target['id']}/resolve", headers=crew, json={
        "note": "spoil taken to the county tip",
        "work": {"action": "pile_cleared", "done_at": (last_seen + timedelta(hours=2))
                 .isoformat()}})
    assert done.status_code == 200, done.text
    assert refresh(sample_engine).opened.get("debris_pile", 0) == 0
    assert target["id"] not in set(_active(sample_engine, "debris_pile")["id"])

    # The same pile reported again after the crew's word: a new alert, naming the sighting.
    time.sleep(1.5)
    with sample_engine.connect() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) "
            "FROM debris_piles WHERE id = :id"), {"id": int(target["asset_id"])}).one()
    sighting = tmp_path / "again.geojson"
    sighting.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"external_id": "again-1", "pile_ref": details["pile"],
                       "observed_at": (datetime.now(UTC) - timedelta(seconds=0.5)).isoformat(),
                       "volume_m3": 6.5}}]}))
    report = ingest_file(sample_engine, "debris", sighting, source="crew-report")
    assert report.rows_new == 1
    assert refresh(sample_engine).opened.get("debris_pile", 0) >= 1
    reopened = _active(sample_engine, "debris_pile").set_index("asset_id").loc[
        target["asset_id"]]
    assert reopened["id"] != target["id"] and "6.5 m3" in reopened["reason"]
    opened = client.get(f"/alerts/{reopened['id']}").json()["history"][0]
    assert "raised again on new evidence" in opened["note"] and "6.5 m3" in opened["note"]
    assert opened["evidence"]["follows_alert"] == int(target["id"])
