"""A crew's photo gets the photo limit, not the small limit of JSON bodies (service/limits.py)."""

import pytest

from geo import alerts, predictions
from geo.settings import LoopSettings


@pytest.fixture(scope="module")
def alert_id(sample_engine) -> int:
    with sample_engine.begin() as conn:
        street = predictions.street_attributes(conn).iloc[0]
        return alerts.raise_alert(conn, kind="road_wear", severity="high",
                                  asset_layer="streets", asset_id=int(street.asset_id),
                                  geom_ewkt=street.geom_ewkt, reason="PCI 50")[0]


def _jpeg(size: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + b"\x00" * (size - 4)  # a JPEG by its magic bytes


def test_a_camera_sized_photo_is_taken(client, api_keys, alert_id):
    crew = {"X-API-Key": api_keys["crew"]}
    sent = client.post(f"/alerts/{alert_id}/photos", headers=crew,
                       files={"photo": ("street.jpg", _jpeg(3_500_000), "image/jpeg")})
    assert sent.status_code == 201, sent.text
    assert sent.json()["bytes"] == 3_500_000
    # JSON bodies on the same alert keep their small limit.
    note = client.post(f"/alerts/{alert_id}/acknowledge", headers=crew,
                       json={"note": "x" * 1_100_000})
    assert note.status_code == 413


def test_a_photo_over_the_photo_limit_is_413(client, api_keys, alert_id):
    limit = LoopSettings().photo_max_bytes
    sent = client.post(f"/alerts/{alert_id}/photos", headers={"X-API-Key": api_keys["crew"]},
                       files={"photo": ("big.jpg", _jpeg(limit + 100_000), "image/jpeg")})
    assert sent.status_code == 413
    assert "a photo upload may hold at most" in sent.json()["detail"]
