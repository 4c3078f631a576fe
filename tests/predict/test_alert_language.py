"""Alert texts are kept as messages and read in the reader's language, not stored in one."""

import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from predict import alerts as refresh
from service.app import create_app
from service.settings import ServiceSettings

CJK = re.compile(r"[\u3400-\u9fff]")


def test_debris_and_damage_alerts_read_in_both_languages(sample_engine):
    report = refresh.RefreshReport(as_of="test")
    refresh.debris_alerts(sample_engine, report)
    refresh.damage_alerts(sample_engine, report)
    assert sum(report.opened.values()) > 0, report
    with sample_engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT reason, details FROM alerts WHERE kind IN ('debris_pile', 'road_damage')"
        )).all()
    # The column keeps the English (for SQL readers); the message is kept beside it.
    assert all(not CJK.search(reason) and "reason_message" in details
               for reason, details in stored)
    with TestClient(create_app(sample_engine, ServiceSettings())) as client:
        for kind in ("debris_pile", "road_damage"):
            chinese = client.get(f"/alerts?kind={kind}&lang=zh").json()["features"]
            english = client.get(f"/alerts?kind={kind}",
                                 headers={"Accept-Language": "en-US"}).json()["features"]
            assert chinese and len(chinese) == len(english)
            for zh, en in zip(chinese, english, strict=True):
                assert zh["id"] == en["id"]
                assert CJK.search(zh["properties"]["reason"]), zh["properties"]["reason"]
                assert not CJK.search(en["properties"]["reason"].replace(
                    zh["properties"].get("street_name") or "", ""))
        # A date in a reason is written the reader's way.
        damage = client.get("/alerts?kind=road_damage&lang=zh").json()["features"][0]
        assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", damage["properties"]["reason"])
        english = client.get(f"/alerts/{damage['id']}?lang=en").json()["properties"]["reason"]
        assert english.startswith("new damage on ") and re.search(r"[A-Z][a-z]{2} \d", english)
