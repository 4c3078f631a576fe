"""The worklist, the backlog, assignment and photos, on the sample with its alerts refreshed."""

import re
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from geo.settings import PCI_THRESHOLD
from predict.alerts import refresh


@pytest.fixture(scope="module")
def refreshed(sample_engine):
    report = refresh(sample_engine)  # what the scheduled job runs: survey and manhole rules
    assert sum(report.opened.values()) > 0
    return report


@pytest.fixture
def crew(api_keys) -> dict[str, str]:
    return {"X-API-Key": api_keys["crew"]}


def _png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _points(reason: str) -> float:
    return float(re.search(r": \+([\d,.]+)$", reason).group(1).replace(",", ""))


def test_the_worklist_is_in_priority_order_and_says_why(client, refreshed, crew):
    assert client.get("/work").status_code == 401
    body = client.get("/work?limit=100000", headers=crew).json()
    items = [f["properties"] for f in body["features"]]
    assert len(items) == body["numberMatched"] > 0
    priorities = [i["priority"] for i in items]
    assert priorities == sorted(priorities, reverse=True)
    assert [i["rank"] for i in items] == list(range(1, len(items) + 1))
    for item in items:
        assert item["why_first"] and f"{item['severity']} severity" in item["why_first"][0]
        # The reasons add up to the score: nothing is hidden from the crew.
        assert sum(_points(r) for r in item["why_first"]) == pytest.approx(item["priority"],
                                                                         abs=0.3)
    critical = [i for i in items if i["severity"] == "critical"]
    if critical and len(critical) < len(items):
        assert items[0]["severity"] == "critical"


def test_the_top_tier_holds_no_more_than_the_weekly_capacity(client, refreshed, crew,
                                                             monkeypatch):
    items = [f["properties"] for f in
             client.get("/work?limit=100000", headers=crew).json()["features"]]
    assert 0 < sum(i["tier"] == "this_week" for i in items) <= 20  # the default capacity
    monkeypatch.setenv("TWIN_WEEKLY_CAPACITY", "3")
    body = client.get("/work?limit=100000", headers=crew).json()
    tiers = [f["properties"]["tier"] for f in body["features"]]
    assert body["weekly_capacity"] == 3
    assert tiers.count("this_week") == min(3, len(tiers))
    assert tiers == sorted(tiers, key=["this_week", "next_week", "later"].index)


def test_worklist_filters_and_sort(client, refreshed, crew):
    everything = [f["properties"] for f in
                  client.get("/work?limit=100000", headers=crew).json()["features"]]
    kinds = {i["kind"] for i in everything}
    kind = sorted(kinds)[0]
    only = [f["properties"] for f in
            client.get(f"/work?kind={kind}&limit=100000", headers=crew).json()["features"]]
    assert only and {i["kind"] for i in only} == {kind}
    assert [i["id"] for i in only] == [i["id"] for i in everything if i["kind"] == kind]
    oldest = [f["properties"]["opened_at"] for f in
              client.get("/work?sortby=opened_at&limit=100000",
                         headers=crew).json()["features"]]
    assert oldest == sorted(oldest)
    assert client.get("/work?sortby=colour", headers=crew).status_code == 400
    assert client.get("/work?severity=urgent", headers=crew).status_code == 400


def test_alerts_can_be_sorted(client, refreshed):
    ranks = ["low", "medium", "high", "critical"]
    got = [f["properties"]["severity"] for f in
           client.get("/alerts?sortby=-severity,opened_at&limit=100000").json()["features"]]
    assert got and [ranks.index(s) for s in got] == sorted((ranks.index(s) for s in got),
                                                           reverse=True)
    assert client.get("/alerts?sortby=geom").status_code == 400


def test_the_backlog_lists_the_streets_already_below_the_threshold(client, sample_engine,
                                                                   refreshed, crew):
    with sample_engine.connect() as conn:
        expected = set(conn.execute(sa.text(
            "SELECT s.external_id FROM streets s JOIN LATERAL (SELECT r.value, r.observed_at "
            "FROM readings r WHERE r.asset_id = s.id AND r.metric_id = (SELECT id FROM metrics "
            "WHERE name = 'pci') ORDER BY r.observed_at DESC LIMIT 1) p ON TRUE "
            "WHERE p.value < :t AND (s.resurfaced_on IS NULL OR p.observed_at >= "
            "s.resurfaced_on)"), {"t": PCI_THRESHOLD}).scalars())
        road_wear = conn.execute(sa.text(
            "SELECT count(*) FROM alerts WHERE kind = 'road_wear' AND status = 'open'")
        ).scalar()
    assert len(expected) > 50  # the sample's long-standing poor streets
    body = client.get("/work/backlog", headers=crew).json()
    listed = [f["properties"] for f in body["features"]]
    assert {s["external_id"] for s in listed} == expected
    assert [s["pci"] for s in listed] == sorted(s["pci"] for s in listed)
    assert road_wear < len(expected) / 2  # a backlog, not hundreds of alerts
    items = client.get("/ogc/collections/backlog/items?limit=10000").json()["features"]
    assert {f["properties"]["external_id"] for f in items} == expected


def test_assignment_is_kept_with_history_and_filters_the_worklist(client, refreshed, crew):
    first = client.get("/work?limit=1", headers=crew).json()["features"][0]["properties"]
    due = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    got = client.patch(f"/alerts/{first['id']}", headers=crew,
                       json={"assignee": "crew north", "due_on": due})
    assert got.status_code == 200, got.text
    assert (got.json()["properties"]["assignee"], got.json()["properties"]["due_on"]) == (
        "crew north", due)
    assert got.json()["history"][-1]["note"] == f"assigned to crew north, due {due}"
    mine = client.get("/work?assignee=crew north", headers=crew).json()["features"]
    assert [f["id"] for f in mine] == [first["id"]]
    assert client.patch(f"/alerts/{first['id']}", json={"assignee": "x"}).status_code == 401
    assert client.patch(f"/alerts/{first['id']}", headers=crew,
                        json={"colour": "red"}).status_code in (400, 422)
    assert client.patch("/alerts/987654321", headers=crew,
                        json={"assignee": "x"}).status_code == 404


def test_photos_are_checked_by_their_bytes_and_served_only_with_a_key(
        client, refreshed, crew, tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_PHOTO_DIR", str(tmp_path))
    alert_id = client.get("/work?limit=1", headers=crew).json()["features"][0]["id"]
    png = _png()
    got = client.post(f"/alerts/{alert_id}/photos", headers=crew,
                      files={"photo": ("IMG_0001.jpg", png, "image/jpeg")})
    assert got.status_code == 201, got.text
    photo = got.json()
    assert photo["media_type"] == "image/png" and photo["bytes"] == len(png)
    assert client.get(photo["href"]).status_code == 401  # never public
    served = client.get(photo["href"], headers=crew)
    assert served.status_code == 200 and served.content == png
    assert served.headers["content-type"] == "image/png"
    listed = client.get(f"/alerts/{alert_id}").json()["photos"]
    assert [p["id"] for p in listed] == [photo["id"]]

    fake = client.post(f"/alerts/{alert_id}/photos", headers=crew,
                       files={"photo": ("x.png", b"<html>not an image</html>", "image/png")})
    assert fake.status_code == 400 and "not a JPEG, PNG or WebP" in fake.json()["detail"]
    monkeypatch.setenv("TWIN_PHOTO_MAX_BYTES", "64")
    big = client.post(f"/alerts/{alert_id}/photos", headers=crew,
                      files={"photo": ("big.png", png + b"\0" * 100, "image/png")})
    assert big.status_code == 400 and "larger" in big.json()["detail"]
    assert len(list(tmp_path.rglob("*.png"))) == 1  # nothing kept of the refused ones


def test_a_work_record_outside_the_vocabulary_is_refused_and_changes_nothing(
        client, sample_engine, refreshed, crew):
    item = next(f["properties"] for f in
                client.get("/work?kind=road_wear&limit=1", headers=crew).json()["features"])
    got = client.post(f"/alerts/{item['id']}/resolve", headers=crew,
                      json={"work": {"action": "cover_replaced"}})
    assert got.status_code == 400 and "mill_and_overlay" in got.json()["detail"]
    assert client.get(f"/alerts/{item['id']}").json()["properties"]["status"] == "open"
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM work_records WHERE alert_id = :a"),
                            {"a": item["id"]}).scalar() == 0
