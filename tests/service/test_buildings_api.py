"""Houses through every interface of the registry: OGC API, vector tiles, exports (read with
GDAL); a resident's request at a house counts on it at once, tile ETag included."""

import subprocess
import time

import mapbox_vector_tile
import morecantile
import pytest
import sqlalchemy as sa

from tests.tools import requires_tool

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def house(sample_engine) -> dict:
    """The first house of the sample, with a point inside it."""
    with sample_engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT b.id, b.external_id, c.name, ST_X(p), ST_Y(p) FROM buildings b "
            "JOIN compounds c ON c.id = b.compound_id, ST_PointOnSurface(b.geom) p "
            "ORDER BY b.id LIMIT 1")).one()
    return dict(zip(("id", "external_id", "compound", "lon", "lat"), row, strict=True))


def test_ogc_api_serves_houses_with_compound_and_open_requests(client, house, api_keys):
    collection = client.get("/ogc/collections/buildings", params={"f": "json"})
    assert collection.status_code == 200, collection.text
    got = client.get(f"/ogc/collections/buildings/items/{house['id']}", params={"f": "json"})
    assert got.status_code == 200, got.text
    props = got.json()["properties"]
    assert props["external_id"] == house["external_id"]
    assert props["compound_name"] == house["compound"] and props["floors"] >= 1
    before = props["open_requests"]

    tile = TMS.tile(house["lon"], house["lat"], 16)
    url = f"/tiles/buildings/{tile.z}/{tile.x}/{tile.y}.mvt"
    first = client.get(url)
    assert first.status_code == 200
    features = mapbox_vector_tile.decode(first.content)["buildings"]["features"]
    mine = next(f for f in features if f["id"] == house["id"])
    assert mine["properties"]["drawn_height_m"] > 0
    assert mine["properties"]["open_requests"] == before

    # A resident reports a blocked drain at the door of the house.
    posted = client.post("/open311/v2/requests.json", data={
        "api_key": api_keys["viewer"], "service_code": "blocked_drain",
        "lat": house["lat"], "long": house["lon"], "attribute[where]": "compound",
        "description": "Drain blocked at our door"})
    assert posted.status_code == 200, posted.text
    got = client.get(f"/ogc/collections/buildings/items/{house['id']}", params={"f": "json"})
    assert got.json()["properties"]["open_requests"] == before + 1
    assert got.json()["properties"]["open_matters"] >= before + 1
    # The tile follows (the request's NOTIFY reaches the service within moments).
    second, deadline = client.get(url), time.monotonic() + 5
    while second.headers["etag"] == first.headers["etag"] and time.monotonic() < deadline:
        time.sleep(0.05)
        second = client.get(url)
    assert second.headers["etag"] != first.headers["etag"]
    mine = next(f for f in mapbox_vector_tile.decode(second.content)["buildings"]["features"]
                if f["id"] == house["id"])
    assert mine["properties"]["open_requests"] == before + 1


@requires_tool("ogrinfo", "/usr/bin/ogrinfo")
def test_houses_export_opens_in_gdal(client, sample_engine, tmp_path):
    answer = client.get("/exports/buildings.gpkg")
    assert answer.status_code == 200, answer.text
    path = tmp_path / "buildings.gpkg"
    path.write_bytes(answer.content)
    info = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    with sample_engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM buildings")).scalar_one()
    assert f"Feature Count: {count}" in info.stdout
    for field in ("floors", "height_m", "compound_name", "open_requests"):
        assert f"{field}:" in info.stdout
