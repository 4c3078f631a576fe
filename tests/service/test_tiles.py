"""Vector tiles, TileJSON and styles against the sample twin in a real PostGIS."""

import json
import logging
import re
import subprocess
import threading
import time

import mapbox_vector_tile
import morecantile
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from geo import tiles
from geo.alerts import raise_alert
from geo.layers import LAYERS
from maps.styles import NO_DATA, PCI_BANDS
from service.app import create_app
from service.routers.tiles import build_tile_request
from service.settings import ServiceSettings
from service.tile_cache import SHARED_RETRY_S, TileCache
from tests.tools import find_tool, free_port, problem_of, requires_tool

TMS = morecantile.tms.get("WebMercatorQuad")
MVT = "application/vnd.mapbox-vector-tile"


def _decode(body: bytes) -> dict:
    return mapbox_vector_tile.decode(body) if body else {}


def _features(response, layer: str) -> list[dict]:
    assert response.status_code in (200, 204), response.text
    if response.status_code == 204:
        return []
    assert response.headers["content-type"] == MVT
    return _decode(response.content).get(layer, {}).get("features", [])


def _ids(response, layer: str) -> set[int]:
    return {f["id"] for f in _features(response, layer)}


def _tile_of(engine, table: str, z: int, where: str = "TRUE") -> morecantile.Tile:
    """The tile at zoom z holding the first feature of a table (a point on it)."""
    with engine.connect() as conn:
        lon, lat = conn.execute(sa.text(
            f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM {table} "
            f"WHERE {where} ORDER BY id LIMIT 1) q")).one()
    return TMS.tile(lon, lat, z)


def _expected_ids(engine, layer_id: str, tile: morecantile.Tile, *, buffer: int = 64,
                  as_of: str = "now()", extra: str = "TRUE", params: dict | None = None
                  ) -> set[int]:
    """Ids of the layer's rows whose geometry meets the tile grown by its buffer, in PostGIS."""
    b = TMS.xy_bounds(tile)
    grow = (b.right - b.left) * buffer / 4096
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            f"SELECT s.id FROM ({LAYERS[layer_id].select}) s WHERE ST_Intersects(s.geom, "
            "ST_Transform(ST_MakeEnvelope(:w, :s, :e, :n, 3857), 4326)) AND " + extra
        ), {"w": b.left - grow, "s": b.bottom - grow, "e": b.right + grow, "n": b.top + grow,
            "as_of": conn.execute(sa.text(f"SELECT {as_of}::timestamptz")).scalar_one(),
            **(params or {})}).scalars()
        return set(rows)


def _new_manhole_in(engine, tile: morecantile.Tile, external_id: str) -> int:
    """A storm manhole inserted at the centre of the tile: its id."""
    b = TMS.bounds(tile)
    with engine.begin() as conn:
        return conn.execute(sa.text(
            "INSERT INTO manholes (source, external_id, kind, geom) VALUES ('test', :external, "
            "'storm', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id"),
            {"external": external_id, "lon": (b.left + b.right) / 2,
             "lat": (b.bottom + b.top) / 2}).scalar_one()


def _url(layer: str, tile: morecantile.Tile, query: str = "") -> str:
    return f"/tiles/{layer}/{tile.z}/{tile.x}/{tile.y}.mvt" + (f"?{query}" if query else "")


@pytest.mark.parametrize(("layer", "table", "z"), [
    ("streets", "streets", 16), ("streets", "streets", 13), ("manholes", "manholes", 16),
    ("manholes", "manholes", 13), ("compounds", "compounds", 14), ("parking", "parking", 15),
    ("road_damage", "road_damage", 15), ("debris_piles", "debris_piles", 16),
])
def test_a_tile_holds_exactly_the_features_meeting_it(client, sample_engine, layer, table, z):
    tile = _tile_of(sample_engine, table, z)
    response = client.get(_url(layer, tile))
    expected = _expected_ids(sample_engine, layer, tile)
    assert expected, "the chosen tile should cover part of the sample"
    assert _ids(response, layer) == expected
    features = _features(response, layer)
    assert set(features[0]["properties"]) <= set(LAYERS[layer].property_names)
    assert response.headers["etag"] and "no-cache" in response.headers["cache-control"]


def test_a_low_zoom_tile_holds_every_street_of_the_classes_shown_there(client, sample_engine):
    tile = _tile_of(sample_engine, "streets", 10)
    classes = tiles.POLICIES["streets"].classes_at(10)
    assert classes and "service" not in classes  # service lanes start at a higher zoom
    with sample_engine.connect() as conn:
        shown = set(conn.execute(sa.text("SELECT id FROM streets WHERE road_class = ANY(:c)"),
                                 {"c": list(classes)}).scalars())
        total = conn.execute(sa.text("SELECT count(*) FROM streets")).scalar_one()
    response = client.get(_url("streets", tile))
    features = _features(response, "streets")
    assert shown and len(shown) < total
    assert {f["id"] for f in features} == shown  # simplified, but no street of them vanishes
    assert all(f["geometry"]["coordinates"] for f in features)
    assert "tile-truncated" not in response.headers
    # From the highest class minimum zoom on, every street is there.
    z = tiles.POLICIES["streets"].highest_minzoom
    assert len(_features(client.get(_url("streets", _tile_of(sample_engine, "streets", z))),
                         "streets")) == len(_expected_ids(
                             sample_engine, "streets", _tile_of(sample_engine, "streets", z)))


def test_properties_choose_what_goes_in_the_tile(client, sample_engine):
    tile = _tile_of(sample_engine, "streets", 16)
    chosen = _features(client.get(_url("streets", tile, "properties=pci,name")), "streets")
    assert chosen and all(set(f["properties"]) <= {"pci", "name"} for f in chosen)
    assert any("pci" in f["properties"] for f in chosen)
    bare = _features(client.get(_url("streets", tile, "properties=")), "streets")
    assert bare and all(f["properties"] == {} for f in bare)
    assert {f["id"] for f in bare} == {f["id"] for f in chosen}
    every = _features(client.get(_url("streets", tile)), "streets")
    assert any("road_class" in f["properties"] for f in every)
    datetimes = [f["properties"]["pci_observed_at"] for f in every
                 if "pci_observed_at" in f["properties"]]
    assert datetimes and all("T" in d for d in datetimes)  # ISO 8601 text


def test_limit_caps_the_features_of_a_tile(client, sample_engine):
    tile = _tile_of(sample_engine, "manholes", 13)
    assert len(_features(client.get(_url("manholes", tile, "limit=5")), "manholes")) == 5


def test_a_cut_tile_keeps_the_main_roads_and_worst_pavement_and_says_so(client, sample_engine):
    tile = _tile_of(sample_engine, "streets", 13)
    met = _expected_ids(sample_engine, "streets", tile)
    assert len(met) > 20
    # What a planner expects kept, worked out apart from the tile code: primary before
    # secondary ... before service, then the lowest latest PCI first (no survey last).
    with sample_engine.connect() as conn:
        ranked = conn.execute(sa.text(
            f"SELECT s.id FROM ({LAYERS['streets'].select}) s WHERE s.id = ANY(:ids) "
            "ORDER BY array_position(ARRAY['primary','secondary','tertiary','residential',"
            "'service'], s.road_class), s.pci ASC NULLS LAST, s.id"),
            {"ids": list(met), "as_of": conn.execute(sa.text("SELECT now()")).scalar_one()}
        ).scalars().all()
    response = client.get(_url("streets", tile, "limit=20"))
    assert set(_ids(response, "streets")) == set(ranked[:20])
    assert response.headers["tile-truncated"] == f"kept=20; matched={len(met)}"
    (info,) = _decode(response.content)["tile_info"]["features"]
    assert info["properties"] == {"layer": "streets", "kept": 20, "matched": len(met),
                                  "limit": 20, "truncated": True}
    whole = client.get(_url("streets", tile))
    assert "tile-truncated" not in whole.headers and "tile_info" not in _decode(whole.content)
    # The same holds on the fast path (a query seen before) and from the cache.
    again = client.get(_url("streets", tile, "limit=20"))
    assert again.headers["tile-truncated"] == response.headers["tile-truncated"]
    assert again.content == response.content


def test_alerts_keep_the_most_severe_first(client, sample_engine):
    # Far from the first manhole, where other tests raise their alerts.
    tile = _tile_of(sample_engine, "manholes", 14, "id = (SELECT max(id) FROM manholes)")
    with sample_engine.begin() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(geom) FROM manholes WHERE ST_Intersects(geom, "
            "ST_Transform(ST_MakeEnvelope(:w, :s, :e, :n, 3857), 4326)) ORDER BY id DESC LIMIT 4"),
            dict(zip("wsen", TMS.xy_bounds(tile), strict=True))).all()
        made = {}
        for (asset, ewkt), severity in zip(rows, ("low", "critical", "medium", "high"),
                                           strict=True):
            made[severity] = raise_alert(conn, kind="tilt", severity=severity,
                                         asset_layer="manholes", asset_id=asset,
                                         geom_ewkt=ewkt, reason="test order")[0]
    deadline = time.monotonic() + 5
    while True:
        response = client.get(_url("alerts", tile, "limit=2&kind=tilt&status=open"))
        if len(_ids(response, "alerts")) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    kept = _ids(response, "alerts")
    with sample_engine.connect() as conn:
        worst_two = conn.execute(sa.text(
            "SELECT id FROM alerts WHERE kind = 'tilt' AND status = 'open' AND id = ANY(:ids) "
            "ORDER BY array_position(ARRAY['critical','high','medium','low'], severity), "
            "opened_at DESC, id LIMIT 2"),
            {"ids": list(_expected_ids(sample_engine, "alerts", tile))}).scalars().all()
    assert kept == set(worst_two) and made["critical"] in kept
    assert response.headers["tile-truncated"].startswith("kept=2; ")


def test_datetime_gives_the_twin_as_of_then(client, sample_engine):
    tile = _tile_of(sample_engine, "road_damage", 13)
    with sample_engine.connect() as conn:
        first, last = conn.execute(sa.text(
            "SELECT min(observed_at), max(observed_at) FROM road_damage")).one()
    middle = first + (last - first) / 2
    now = _ids(client.get(_url("road_damage", tile)), "road_damage")
    then = _ids(client.get(_url("road_damage", tile,
                                f"datetime={middle.isoformat().replace('+', '%2B')}")),
                "road_damage")
    assert then and then < now
    assert then == _expected_ids(sample_engine, "road_damage", tile,
                                 as_of=f"'{middle.isoformat()}'")
    before = client.get(_url("road_damage", tile, "datetime=2000-01-01"))
    assert before.status_code == 204 and not before.content and before.headers["etag"]


def test_alert_tiles_filter_by_status_severity_and_kind(client, sample_engine):
    tile = _tile_of(sample_engine, "manholes", 16)
    with sample_engine.begin() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(geom) FROM manholes ORDER BY id LIMIT 3")).all()
        made = {}
        for (asset, ewkt), (kind, severity) in zip(
                rows, [("tilt", "low"), ("water_level", "high"), ("gas", "critical")],
                strict=True):
            made[severity] = raise_alert(conn, kind=kind, severity=severity,
                                         asset_layer="manholes", asset_id=asset,
                                         geom_ewkt=ewkt, reason=f"test {kind}")[0]
    expected = _expected_ids(sample_engine, "alerts", tile)
    assert expected and expected <= set(made.values())

    def ids(query: str = "") -> set[int]:
        deadline = time.monotonic() + 5  # the new alerts reach the tile once their version does
        while True:
            found = _ids(client.get(_url("alerts", tile, query)), "alerts")
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    assert ids() == expected
    assert ids("severity=high,critical") == expected & {made["high"], made["critical"]}
    assert ids("kind=tilt") == expected & {made["low"]}
    assert ids("status=open&severity=low") == expected & {made["low"]}
    assert _ids(client.get(_url("alerts", tile, "status=resolved")), "alerts") == set()
    by_status = _features(client.get(_url("manholes", tile, "status=critical")), "manholes")
    assert {f["properties"]["status"] for f in by_status} <= {"critical"}


def test_etag_gives_304_and_follows_the_query(client, sample_engine):
    tile = _tile_of(sample_engine, "compounds", 15)
    first = client.get(_url("compounds", tile))
    etag = first.headers["etag"]
    again = client.get(_url("compounds", tile), headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content and again.headers["etag"] == etag
    assert client.get(_url("compounds", tile),
                      headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(_url("compounds", tile),
                      headers={"If-None-Match": '"stale"'}).status_code == 200
    other = client.get(_url("compounds", tile, "properties=name"))
    assert other.headers["etag"] != etag
    # The same query written differently is the same tile.
    same = client.get(_url("compounds", tile, "properties=name,,name&clip=true"))
    assert same.headers["etag"] == other.headers["etag"]


def test_an_insert_changes_the_tile_and_its_etag_without_restart(client, sample_engine):
    tile = _tile_of(sample_engine, "manholes", 16)
    before = client.get(_url("manholes", tile))
    # A change made by an earlier test may still be on its way (NOTIFY, on a loaded machine):
    # wait for the layer to be steady, then an unchanged layer keeps its ETag.
    again, deadline = client.get(_url("manholes", tile)), time.monotonic() + 5
    while again.headers["etag"] != before.headers["etag"] and time.monotonic() < deadline:
        before, again = again, client.get(_url("manholes", tile))
    assert again.headers["etag"] == before.headers["etag"]
    cache = client.app.state.tile_cache
    cached_before = len(cache)
    new_id = _new_manhole_in(sample_engine, tile, "MH-NEW")
    deadline = time.monotonic() + 5
    after = client.get(_url("manholes", tile))
    while after.headers["etag"] == before.headers["etag"] and time.monotonic() < deadline:
        time.sleep(0.05)
        after = client.get(_url("manholes", tile))
    assert after.headers["etag"] != before.headers["etag"]
    assert new_id in _ids(after, "manholes") and new_id not in _ids(before, "manholes")
    assert client.get(_url("manholes", tile),
                      headers={"If-None-Match": before.headers["etag"]}).status_code == 200
    # The stale manhole tiles left the cache the moment the new version was seen.
    assert cached_before >= 1
    assert all(key[1] == cache._versions["manholes"]
               for key in cache._entries if key[0] == "manholes")


def test_tilejson_describes_the_layer(client):
    document = client.get("/tiles/streets/tilejson.json").json()
    assert document["tilejson"] == "3.0.0"
    # Versioned: the versions of the layer's tables in the path (see the versioned tests).
    assert re.fullmatch(r"http://testserver/tiles/streets/v\d+(-\d+)*/\{z\}/\{x\}/\{y\}\.mvt",
                        document["tiles"][0]), document["tiles"]
    west, south, east, north = document["bounds"]
    assert 108.4 < west < east < 108.7 and 32.4 < south < north < 32.7
    assert document["minzoom"] == 0 and document["maxzoom"] >= 16
    (vector_layer,) = document["vector_layers"]
    assert vector_layer["id"] == "streets"
    assert set(vector_layer["fields"]) == set(LAYERS["streets"].property_names)
    assert vector_layer["fields"]["pci"].startswith("number")
    assert {"minzoom", "maxzoom"} <= set(vector_layer)
    classes = vector_layer["classes"]
    assert classes["property"] == "road_class"
    assert classes["minzoom"]["primary"] == 0
    assert classes["minzoom"]["residential"] > classes["minzoom"]["secondary"]
    assert classes["minzoom"]["service"] > classes["minzoom"]["residential"]
    assert vector_layer["limit"] == 10_000 and "PCI" in vector_layer["order"]
    chosen = client.get("/tiles/alerts/tilejson.json?severity=high&properties=kind").json()
    assert re.fullmatch(r"http://testserver/tiles/alerts/v[\d-]+/\{z\}/\{x\}/\{y\}\.mvt"
                        r"\?severity=high&properties=kind", chosen["tiles"][0])
    assert set(chosen["vector_layers"][0]["fields"]) == {"kind"}
    empty = client.get("/tiles/road_damage/tilejson.json?datetime=2000-01-01").json()
    assert empty["bounds"] == [-180.0, -85.0511287798066, 180.0, 85.0511287798066]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_the_twin_style_uses_only_the_service(client):
    style = client.get("/styles/twin.json").json()
    assert style["version"] == 8
    assert set(style["sources"]) == set(LAYERS)
    for layer_id, source in style["sources"].items():
        assert source == {"type": "vector",
                          "url": f"http://testserver/tiles/{layer_id}/tilejson.json"}
        assert client.get(source["url"]).status_code == 200
    urls = [s for s in _strings(style) if "://" in s]
    assert urls and all(u.startswith("http://testserver/") for u in urls)
    assert "glyphs" not in style and "sprite" not in style
    ids = [layer["id"] for layer in style["layers"]]
    assert len(ids) == len(set(ids))
    drawn = {layer.get("source") for layer in style["layers"]} - {None}
    assert drawn == set(LAYERS)
    assert all(layer.get("source-layer") == layer["source"]
               for layer in style["layers"] if "source" in layer)
    assert 108.4 < style["center"][0] < 108.7
    streets = [x for x in style["layers"] if x.get("source") == "streets"]
    assert "pci" in json.dumps(streets)
    # Colours are constants behind filters (what QGIS's converter keeps), one per PCI band.
    assert {x["paint"]["line-color"] for x in streets} == {
        colour for _, _, colour in PCI_BANDS} | {NO_DATA}
    assert '"step"' not in json.dumps(style) and '"match"' not in json.dumps(style)


def test_each_layer_has_its_own_style_without_background(client):
    for layer_id in LAYERS:
        style = client.get(f"/styles/twin/{layer_id}.json").json()
        assert set(style["sources"]) == {layer_id}
        assert style["layers"] and all(x["source"] == layer_id for x in style["layers"])
    assert client.get("/styles/twin/nope.json").status_code == 404
    qml = client.get("/styles/twin/streets.qml")
    assert qml.status_code == 200 and qml.headers["content-type"].startswith("text/xml")
    assert qml.text.count("<rule ") == len(PCI_BANDS) + 1
    assert client.get("/styles/twin/nope.qml").status_code == 404


@pytest.mark.parametrize(("path", "status"), [
    ("/tiles/streets/25/0/0.mvt", 404),
    ("/tiles/streets/2/4/0.mvt", 404),
    ("/tiles/streets/2/0/4.mvt", 404),
    ("/tiles/streets/-1/0/0.mvt", 404),
    ("/tiles/streets/1/-1/0.mvt", 404),
    ("/tiles/streets/1/0/-1.mvt", 404),
    ("/tiles/streets/99999999999999999999/0/0.mvt", 404),
    ("/tiles/nope/1/0/0.mvt", 404),
    ("/tiles/nope/tilejson.json", 404),
    ("/styles/nope.json", 404),
    ("/tiles/streets/a/0/0.mvt", 400),
    ("/tiles/streets/1/0/0.mvt?datetime=yesterday", 400),
    ("/tiles/streets/1/0/0.mvt?datetime=2026-01-01/2026-02-01", 400),
    ("/tiles/streets/1/0/0.mvt?datetime=2026-13-45", 400),
    ("/tiles/streets/1/0/0.mvt?properties=pci,nope", 400),
    ("/tiles/streets/1/0/0.mvt?status=open", 400),
    ("/tiles/alerts/1/0/0.mvt?severity=high%27%3B%20DROP%20TABLE%20alerts%3B--", 400),
    ("/tiles/alerts/1/0/0.mvt?status=", 400),
    ("/tiles/streets/1/0/0.mvt?limit=0", 400),
    ("/tiles/streets/1/0/0.mvt?limit=50001", 400),
    ("/tiles/streets/1/0/0.mvt?buffer=-1", 400),
    ("/tiles/streets/1/0/0.mvt?extent=10", 400),
    ("/tiles/streets/1/0/0.mvt?clip=maybe", 400),
    ("/tiles/streets/tilejson.json?properties=nope", 400),
])
def test_bad_requests_are_problems_not_500s(client, path, status):
    assert problem_of(client.get(path), status)["status"] == status


def test_tile_errors_speak_the_readers_language(client):
    response = client.get("/tiles/streets/25/0/0.mvt?lang=zh")
    assert response.status_code == 404 and "缩放级别 25" in response.json()["detail"]
    english = client.get("/tiles/streets/2/4/0.mvt", headers={"Accept-Language": "en"})
    assert "x and y go from 0 to 3" in english.json()["detail"]


def test_sql_looking_text_is_only_a_value(client, sample_engine):
    tile = _tile_of(sample_engine, "manholes", 13)
    response = client.get(_url("manholes", tile, "kind=storm%27)%3B%20DROP%20TABLE%20manholes"
                                                 "%3B--&properties=kind%22%2C%22source"))
    assert response.status_code == 400  # no such property: a name, never SQL
    response = client.get(_url("manholes", tile,
                               "kind=storm%27)%3B%20DROP%20TABLE%20manholes%3B--"))
    assert response.status_code == 204
    with sample_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM manholes")).scalar_one() > 0


def test_the_openapi_document_describes_the_tile_parameters(client):
    operation = client.get("/openapi.json").json()["paths"]["/tiles/{layer}/{z}/{x}/{y}.mvt"]
    params = {p["name"]: p for p in operation["get"]["parameters"]}
    for name in ("datetime", "properties", "status", "severity", "kind", "limit", "buffer",
                 "clip", "extent"):
        assert params[name].get("description"), name


def test_the_tile_cache_is_a_bounded_lru_dropping_stale_versions():
    cache = TileCache(max_bytes=3 * (1000 + 300))
    for i in range(4):
        cache.put("manholes", (1, 1), f"t{i}", ('"e"', b"x" * 1000))
    assert cache.get("manholes", (1, 1), "t0") is None  # the oldest went first
    assert cache.get("manholes", (1, 1), "t3") is not None
    assert cache.size_bytes <= cache.max_bytes
    cache.put("streets", (5,), "s", ('"e"', b"y"))
    assert cache.get("manholes", (2, 1), "t3") is None  # newer data: manholes dropped
    assert len(cache) == 1 and cache.get("streets", (5,), "s") is not None
    cache.put("manholes", (1, 1), "late", ('"e"', b"z"))  # rendered before the change
    assert cache.get("manholes", (2, 1), "late") is None and len(cache) == 1

    def hammer(n: int) -> None:
        for i in range(300):
            cache.put("debris_piles", (n,), f"{i % 40}", ('"e"', b"d" * 200))
            cache.get("debris_piles", (n,), f"{(i * 7) % 40}")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.size_bytes == sum(len(b) + 300 for _, b in cache._entries.values())
    assert cache.size_bytes <= cache.max_bytes


def test_tile_requests_are_validated_before_geo_sees_them():
    request = build_tile_request("alerts", 3, 1, 2, filters={"severity": "high,low,high"},
                                      datetime_text="2026-06-01")
    assert request.filters == (("severity", ("high", "low")),)
    assert request.as_of.isoformat() == "2026-06-01T00:00:00+00:00"


def test_the_fast_path_answers_as_the_full_route_does(client, sample_engine, api_keys):
    """A repeated query skips FastAPI's parsing; what it answers must not change."""
    tile = _tile_of(sample_engine, "streets", 16)
    query = "properties=name,pci&limit=500"
    first = client.get(_url("streets", tile, query))  # validated by the full route
    second = client.get(_url("streets", tile, query))  # served by the fast path
    assert (second.status_code, second.content) == (first.status_code, first.content)
    for header in ("etag", "cache-control", "content-type"):
        assert second.headers[header] == first.headers[header]
    cached = client.get(_url("streets", tile, query),
                        headers={"If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304
    # Another tile of the same validated query is rendered for its own place.
    neighbour = morecantile.Tile(tile.x + 1, tile.y, tile.z)
    assert client.get(_url("streets", neighbour, query)).headers["etag"] != first.headers["etag"]
    # Numbers the full route would read differently, and tiles that do not exist, still get
    # the full route's answers.
    assert client.get(f"/tiles/streets/0{tile.z}/{tile.x}/{tile.y}.mvt?{query}").status_code in (
        200, 204, 400, 404)
    assert client.get(f"/tiles/streets/{tile.z}/{2 ** tile.z}/{tile.y}.mvt?{query}"
                      ).status_code == 404
    # A key, even on an open service, takes the full route (and a bad one is refused).
    assert client.get(_url("streets", tile, query),
                      headers={"X-API-Key": "not-a-key"}).status_code == 401
    keyed = client.get(_url("streets", tile, query), headers={"X-API-Key": api_keys["viewer"]})
    assert keyed.content == first.content


def test_forecast_tiles_show_one_horizon_at_a_time(client, sample_engine):
    from predict import pipeline

    pipeline.train(sample_engine, "pci", max_iter=40, learning_rate=0.2)
    pipeline.score(sample_engine, "pci", [30, 90])
    tile = _tile_of(sample_engine, "streets", 14)
    every = _features(client.get(_url("forecasts", tile)), "forecasts")
    ninety = _features(client.get(_url("forecasts", tile, "horizon=90")), "forecasts")
    assert {f["properties"]["horizon_days"] for f in every} == {30, 90}
    assert ninety and {f["properties"]["horizon_days"] for f in ninety} == {90}
    # Exactly the 90-day forecasts of the streets meeting the tile, as PostGIS says.
    assert {f["id"] for f in ninety} == _expected_ids(
        sample_engine, "forecasts", tile, extra="s.horizon_days = 90")
    assert client.get(_url("forecasts", tile, "horizon=soon")).status_code == 400
    tilejson = client.get("/tiles/forecasts/tilejson.json", params={"horizon": "90"}).json()
    assert "horizon=90" in tilejson["tiles"][0]


def test_a_writer_sees_its_own_write_in_the_next_tile(client, sample_engine, api_keys):
    # Read-your-writes: the answer to a write goes out only once this process knows the
    # layers' new versions, so the next tile is never the cached one from before.
    with sample_engine.connect() as conn:
        street_id, external_id = conn.execute(sa.text(
            "SELECT id, external_id FROM streets ORDER BY id LIMIT 1")).one()
    tile = _tile_of(sample_engine, "streets", 16, f"id = {street_id}")
    url = _url("streets", tile, "properties=pci")
    client.get(url)  # cached
    crew = {"X-API-Key": api_keys["crew"]}
    for step in range(15):
        value = 30.0 + step
        observed = f"2026-12-0{1 + step % 6}T0{step % 10}:{step:02d}:00Z"
        posted = client.post("/readings", headers=crew, json=[{
            "asset_layer": "streets", "asset_external_id": external_id, "metric": "pci",
            "observed_at": observed, "value": value}])
        assert posted.status_code in (200, 207), posted.text
        with sample_engine.connect() as conn:
            latest = conn.execute(sa.text(
                "SELECT r.value FROM readings r JOIN metrics m ON m.id = r.metric_id "
                "WHERE m.name = 'pci' AND r.asset_id = :id ORDER BY r.observed_at DESC "
                "LIMIT 1"), {"id": street_id}).scalar_one()
        seen = {f["id"]: f["properties"].get("pci") for f in _features(client.get(url),
                                                                         "streets")}
        assert seen[street_id] == latest, f"step {step}: tile says {seen[street_id]}"


def _versioned(client, layer: str, tile: morecantile.Tile, query: str = "") -> str:
    """The layer's versioned URL of a tile, as its TileJSON hands it out (path and query)."""
    template = client.get(f"/tiles/{layer}/tilejson.json" + (f"?{query}" if query else "")
                          ).json()["tiles"][0]
    url = template.removeprefix("http://testserver")
    return url.replace("{z}", str(tile.z)).replace("{x}", str(tile.x)).replace("{y}", str(tile.y))


def test_versioned_tiles_are_immutable_and_a_change_makes_new_urls(client, sample_engine):
    tile = _tile_of(sample_engine, "manholes", 16)
    plain = client.get(_url("manholes", tile, "properties=kind"))
    url = _versioned(client, "manholes", tile, "properties=kind")
    assert re.fullmatch(r"/tiles/manholes/v\d+(-\d+)*/16/\d+/\d+\.mvt\?properties=kind", url)
    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    # The same tile as the unversioned URL, which answers as before.
    assert first.content == plain.content and first.headers["etag"] == plain.headers["etag"]
    assert plain.headers["cache-control"] == "public, no-cache"
    assert client.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    new_id = _new_manhole_in(sample_engine, tile, "MH-VERSIONED")
    deadline, new_url = time.monotonic() + 5, url
    while new_url == url and time.monotonic() < deadline:
        time.sleep(0.05)
        new_url = _versioned(client, "manholes", tile, "properties=kind")
    assert new_url != url, "the TileJSON still hands out the old version 5 s after a change"
    fresh = client.get(new_url)
    assert fresh.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert new_id in _ids(fresh, "manholes") and new_id not in _ids(first, "manholes")
    # The old URL still works: the current tile, kept only briefly.
    old = client.get(url)
    assert old.status_code == 200 and old.headers["cache-control"] == "public, max-age=30"
    assert old.content == fresh.content and old.headers["etag"] == fresh.headers["etag"]
    # A version this process has not heard of yet is not promised either.
    ahead = re.sub(r"/v(\d+)", lambda m: f"/v{int(m.group(1)) + 1000}", new_url)
    assert client.get(ahead).headers["cache-control"] == "public, max-age=30"


def test_a_versioned_url_that_names_no_version_is_a_404_problem(client):
    for bad in ("/tiles/streets/latest/14/0/0.mvt", "/tiles/streets/v1-x/14/0/0.mvt",
                "/tiles/streets/v/14/0/0.mvt"):
        answer = client.get(bad)
        assert answer.status_code == 404, bad
        assert answer.headers["content-type"] == "application/problem+json"
        assert "TileJSON" in answer.json()["detail"]
    assert client.get("/tiles/nowhere/v1/14/0/0.mvt").status_code == 404


@pytest.fixture
def redis_port(tmp_path):
    """A private redis-server on a free port; stopped at the end (the test may stop it first)."""
    port = free_port()
    command = [find_tool("redis-server", "/usr/bin/redis-server"), "--port", str(port),
               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    started = []

    def start() -> None:
        started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(port=port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop() -> None:
        for server in started:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=10)

    start()
    yield port, start, stop
    stop()


@requires_tool("redis-server", "/usr/bin/redis-server")
def test_nodes_share_tiles_through_redis_and_render_when_it_is_down(sample_engine, redis_port,
                                                                    caplog):
    port, start, stop = redis_port
    # No process cache: every tile goes through Redis, as a node's first look at it would.
    settings = ServiceSettings(redis_url=f"redis://127.0.0.1:{port}/0", tile_cache_mb=0)
    tile = _tile_of(sample_engine, "streets", 15)
    other = _tile_of(sample_engine, "compounds", 15)
    with TestClient(create_app(sample_engine, settings)) as node_a, \
            TestClient(create_app(sample_engine, settings)) as node_b:
        shared_a, shared_b = node_a.app.state.tiles.shared, node_b.app.state.tiles.shared
        drawn = node_a.get(_url("streets", tile))
        assert drawn.status_code == 200 and shared_a.misses == 1
        served = node_b.get(_url("streets", tile))  # drawn by A, taken from Redis by B
        assert shared_b.hits == 1 and shared_b.misses == 0
        assert served.content == drawn.content and served.headers["etag"] == drawn.headers["etag"]
        stop()
        with caplog.at_level(logging.WARNING, logger="twin.service.tile_cache"):
            answers = [node_b.get(_url("compounds", other)) for _ in range(3)]
            answers.append(node_b.get(_url("streets", tile)))
        assert [a.status_code for a in answers] == [200] * 4
        assert _ids(answers[0], "compounds") == _expected_ids(sample_engine, "compounds", other)
        assert answers[3].content == drawn.content
        warned = [r for r in caplog.records if "shared tile cache" in r.getMessage()]
        assert len(warned) == 1 and "not answering" in warned[0].getMessage()
        assert shared_b.away
        start()  # back: used again once the retry interval has passed
        deadline = time.monotonic() + 10 * SHARED_RETRY_S
        while shared_b.away and time.monotonic() < deadline:
            time.sleep(0.1)
            node_b.get(_url("compounds", other))
        assert not shared_b.away
        node_b.get(_url("streets", tile))
        assert node_a.get(_url("streets", tile)).content == drawn.content
        assert shared_a.hits >= 1
