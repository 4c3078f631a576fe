"""OGC API - Features under /ogc, against the sample neighbourhood: GDAL's client and raw HTTP."""

import json
import re
import subprocess
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from geo.layers import LAYERS
from service.app import create_app
from service.settings import ServiceSettings
from tests.tools import problem_of, requires_tool

PROBLEM = "application/problem+json"
GEOJSON = "application/geo+json"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
NOW = datetime.now(UTC)


def _rows(engine, statement: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(statement), params).all()


def _layer_rows(engine, layer_id: str, columns: str = "q.id", where: str = "TRUE",
                as_of: datetime = NOW, **params) -> list:
    layer = LAYERS[layer_id]
    return _rows(engine, f"SELECT {columns} FROM ({layer.select}) q WHERE {where} ORDER BY q.id",
                 as_of=as_of, **params)


def _source(layer) -> str:
    # A layer's extent is its table's; a layer made of other tables' rows is measured whole.
    return layer.table if layer.table is not None else f"({layer.select}) q"


def _ids(engine, layer_id: str, where: str = "TRUE", **params) -> list[int]:
    return [row[0] for row in _layer_rows(engine, layer_id, where=where, **params)]


# GDAL's tools: skipped with the reason when missing, failed under CI=true (tests/tools.py).
REQUIRES_GDAL = requires_tool("ogrinfo")


def _gdal(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _items(client, layer_id: str, **params) -> dict:
    response = client.get(f"/ogc/collections/{layer_id}/items", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GEOJSON
    return response.json()


def _link(body: dict, rel: str) -> str | None:
    return next((link["href"] for link in body["links"] if link["rel"] == rel), None)


# -- GDAL's OAPIF client (what QGIS uses) -------------------------------------------------------


@REQUIRES_GDAL
def test_gdal_lists_every_collection(live_url):
    listing = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{live_url}/ogc")
    listed = re.findall(r"^\d+: (\w+)", listing, re.MULTILINE)
    assert listed == list(LAYERS)


@REQUIRES_GDAL
def test_gdal_counts_and_extents_match_the_database(live_url, sample_engine):
    for layer in LAYERS.values():
        summary = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{live_url}/ogc", layer.id)
        count = int(re.search(r"Feature Count: (\d+)", summary).group(1))
        assert count == len(_ids(sample_engine, layer.id)), layer.id
        box = _rows(sample_engine, f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                                   f"FROM (SELECT ST_Extent(geom) AS e FROM {_source(layer)}) x",
                    as_of=NOW)[0]
        found = re.search(r"Extent: \(([-\d.]+), ([-\d.]+)\) - \(([-\d.]+), ([-\d.]+)\)", summary)
        if box[0] is None:
            assert count == 0, layer.id
            continue
        assert found, summary
        assert [float(v) for v in found.groups()] == pytest.approx(list(box), abs=1e-6), layer.id


@REQUIRES_GDAL
def test_gdal_pages_through_a_whole_collection(live_url, sample_engine):
    # GDAL's default page is 10 features: compounds take 6 pages of `next` links.
    out = _gdal("ogr2ogr", "-f", "GeoJSON", "-preserve_fid", "/vsistdout/",
                f"OAPIF:{live_url}/ogc", "compounds")
    read = [feature["id"] for feature in json.loads(out)["features"]]
    assert sorted(read) == _ids(sample_engine, "compounds") and len(set(read)) == len(read)
    # Bigger pages, as a client asking for 1,000 at a time.
    out = _gdal("ogr2ogr", "-f", "GeoJSON", "-preserve_fid", "-oo", "PAGE_SIZE=1000",
                "/vsistdout/", f"OAPIF:{live_url}/ogc", "road_damage")
    read = [feature["id"] for feature in json.loads(out)["features"]]
    assert sorted(read) == _ids(sample_engine, "road_damage") and len(set(read)) == len(read)


@REQUIRES_GDAL
def test_gdal_where_on_streets(live_url, sample_engine):
    out = _gdal("ogrinfo", "-ro", "-q", f"OAPIF:{live_url}/ogc", "streets",
                "-where", "road_class = 'primary'")
    read = sorted(int(fid) for fid in re.findall(r"OGRFeature\(streets\):(\d+)", out))
    assert read == _ids(sample_engine, "streets", "q.road_class = 'primary'") and read


# -- landing page, conformance, collections -----------------------------------------------------


def test_landing_page_links(client):
    response = client.get("/ogc")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    links = {link["rel"]: link for link in response.json()["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= set(links)
    assert links["service-desc"]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert links["service-desc"]["href"] == "http://testserver/ogc/api"
    assert links["service-doc"]["href"] == "http://testserver/docs"
    assert links["data"]["href"] == "http://testserver/ogc/collections"
    api = client.get(urlsplit(links["service-desc"]["href"]).path).json()
    assert api["servers"][0]["url"] == "http://testserver/ogc"
    assert "/collections/{collectionId}/items" in api["paths"]
    params = {p.get("name", p.get("$ref")): p for p in
              api["paths"]["/collections/{collectionId}/items"]["get"]["parameters"]}
    params["limit"] = api["components"]["parameters"]["limit"]
    assert {"bbox", "datetime", "limit", "offset", "sortby", "properties", "f",
            "filter", "filter-lang", "filter-crs"} <= set(params)
    assert params["limit"]["schema"]["default"] == 100
    assert params["limit"]["schema"]["maximum"] == 10_000
    assert all(p.get("description") for p in params.values() if "$ref" not in p)
    conformance = client.get(urlsplit(links["conformance"]["href"]).path).json()["conformsTo"]
    assert {f"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/{c}"
            for c in ("core", "geojson", "oas30")} <= set(conformance)


def test_collections_metadata(client, sample_engine):
    body = client.get("/ogc/collections").json()
    assert _link(body, "self") == "http://testserver/ogc/collections"
    assert [c["id"] for c in body["collections"]] == list(LAYERS)
    for collection in body["collections"]:
        layer = LAYERS[collection["id"]]
        assert collection["title"] == layer.title and collection["itemType"] == "feature"
        assert collection["crs"] == [CRS84]
        assert _link(collection, "items") == \
            f"http://testserver/ogc/collections/{layer.id}/items"
        assert client.get(f"/ogc/collections/{layer.id}").json() == collection
        box = _rows(sample_engine, f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                                   f"FROM (SELECT ST_Extent(geom) AS e FROM {_source(layer)}) x",
                    as_of=NOW)[0]
        if box[0] is None:  # alerts: none raised in the sample
            assert "spatial" not in collection.get("extent", {})
        else:
            assert collection["extent"]["spatial"]["bbox"] == [pytest.approx(list(box))]
        if layer.time_property and box[0] is not None:
            first, last = _rows(sample_engine, f"SELECT min(q.{layer.time_property}), "
                                f"max(q.{layer.time_property}) FROM ({layer.select}) q",
                                as_of=NOW)[0]
            interval = collection["extent"]["temporal"]["interval"][0]
            assert [datetime.fromisoformat(v) for v in interval] == [first, last]


def test_collection_extent_follows_changes(client, sample_engine):
    # The extent is cached per version of the table; a change shows at once.
    before = client.get("/ogc/collections/compounds").json()["extent"]["spatial"]["bbox"][0]
    eastmost = _rows(sample_engine, "SELECT id FROM compounds ORDER BY ST_XMax(geom) DESC "
                                    "LIMIT 1")[0][0]
    move = "UPDATE compounds SET geom = ST_Translate(geom, :dx, 0) WHERE id = :id"
    with sample_engine.begin() as conn:
        conn.execute(sa.text(move), {"dx": 0.01, "id": eastmost})
    try:
        deadline = time.monotonic() + 10
        after = before
        while after == before and time.monotonic() < deadline:
            time.sleep(0.05)
            after = client.get("/ogc/collections/compounds").json()["extent"]["spatial"]["bbox"][0]
        assert after[2] == pytest.approx(before[2] + 0.01)
    finally:
        with sample_engine.begin() as conn:
            conn.execute(sa.text(move), {"dx": -0.01, "id": eastmost})


# -- items: filters, time, paging, sorting, properties ------------------------------------------


def test_items_feature_collection(client, sample_engine):
    body = _items(client, "streets", limit=5)
    assert body["type"] == "FeatureCollection" and body["numberReturned"] == 5
    assert body["numberMatched"] == len(_ids(sample_engine, "streets"))
    assert datetime.fromisoformat(body["timeStamp"]).tzinfo is not None
    feature = body["features"][0]
    assert feature["type"] == "Feature" and isinstance(feature["id"], int)
    assert feature["geometry"]["type"] == "LineString"
    # The id is a property too (QGIS shows only properties as fields: joins need it).
    assert set(feature["properties"]) == {"id", *LAYERS["streets"].property_names}
    assert feature["properties"]["id"] == feature["id"]
    assert _link(body, "self") == "http://testserver/ogc/collections/streets/items?limit=5"
    assert _link(body, "collection") == "http://testserver/ogc/collections/streets"
    assert _link(body, "prev") is None
    one = client.get(f"/ogc/collections/streets/items/{feature['id']}")
    assert one.status_code == 200 and one.headers["content-type"] == GEOJSON
    assert {k: one.json()[k] for k in ("id", "geometry", "properties")} == \
        {k: feature[k] for k in ("id", "geometry", "properties")}
    assert _link(one.json(), "collection") == "http://testserver/ogc/collections/streets"


def test_paging_walks_the_collection_once(client, sample_engine):
    expected = _ids(sample_engine, "road_damage", "q.severity = 'high'")
    url = "/ogc/collections/road_damage/items?severity=high&limit=97"
    seen, pages = [], 0
    while url:
        body = client.get(url).json()
        assert body["numberMatched"] == len(expected)
        assert body["numberReturned"] == len(body["features"]) <= 97
        seen += [feature["id"] for feature in body["features"]]
        assert all(f["properties"]["severity"] == "high" for f in body["features"])
        if pages:
            prev = parse_qs(urlsplit(_link(body, "prev")).query)
            assert prev["offset"] == [str(97 * (pages - 1))] and prev["severity"] == ["high"]
        url = _link(body, "next")
        if url:
            assert url.startswith("http://testserver/") and "severity=high" in url
        pages += 1
    assert seen == expected  # ordered by id, each exactly once
    assert pages == -(-len(expected) // 97)
    past = _items(client, "road_damage", severity="high", offset=len(expected) + 5)
    assert past["features"] == [] and _link(past, "next") is None and _link(past, "prev")


def test_limit_default_and_clamp(client, sample_engine):
    assert _items(client, "manholes")["numberReturned"] == 100
    assert _items(client, "road_damage", limit=1000)["numberReturned"] == 1000
    small = ServiceSettings(items_default_limit=7, items_max_limit=50)
    with TestClient(create_app(sample_engine, small)) as other:
        assert _items(other, "manholes")["numberReturned"] == 7
        body = _items(other, "manholes", limit=100_000)  # above the maximum: clamped
        assert body["numberReturned"] == 50
        assert parse_qs(urlsplit(_link(body, "next")).query)["limit"] == ["50"]


def test_bbox(client, sample_engine):
    west, south, east, north = 108.535, 32.517, 108.545, 32.521
    for layer_id in ("streets", "manholes", "compounds"):
        body = _items(client, layer_id, bbox=f"{west},{south},{east},{north}", limit=10_000)
        expected = _ids(sample_engine, layer_id,
                        "ST_Intersects(q.geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326))",
                        w=west, s=south, e=east, n=north)
        assert sorted(f["id"] for f in body["features"]) == expected and expected
        assert body["numberMatched"] == len(expected)
    six = _items(client, "manholes", bbox=f"{west},{south},0,{east},{north},10", limit=10_000)
    assert six["numberReturned"] == len(_ids(
        sample_engine, "manholes", "ST_Intersects(q.geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326))",
        w=west, s=south, e=east, n=north))


def test_datetime_interval_and_instant_on_observations(client, sample_engine):
    start, end = "2025-03-01T00:00:00Z", "2025-05-31T23:59:59Z"
    body = _items(client, "road_damage", datetime=f"{start}/{end}", limit=10_000)
    expected = _ids(sample_engine, "road_damage", "q.observed_at BETWEEN :a AND :b",
                    a=datetime.fromisoformat(start), b=datetime.fromisoformat(end))
    assert sorted(f["id"] for f in body["features"]) == expected and expected
    opened = _items(client, "road_damage", datetime=f"../{end}", limit=10_000)
    assert opened["numberMatched"] == len(_ids(sample_engine, "road_damage",
                                               "q.observed_at <= :b",
                                               b=datetime.fromisoformat(end)))
    after = _items(client, "road_damage", datetime=f"{start}/..", limit=1)
    assert after["numberMatched"] == len(_ids(sample_engine, "road_damage", "q.observed_at >= :a",
                                              a=datetime.fromisoformat(start)))
    some_id, moment = _layer_rows(sample_engine, "road_damage", "q.id, q.observed_at")[100]
    instant = _items(client, "road_damage", datetime=moment.isoformat())
    assert some_id in [f["id"] for f in instant["features"]]
    assert all(datetime.fromisoformat(f["properties"]["observed_at"]) == moment
               for f in instant["features"])


def test_datetime_sets_the_state_of_asset_layers(client, sample_engine):
    def pci(**params) -> dict[int, float | None]:
        body = _items(client, "streets", properties="pci", limit=10_000, **params)
        return {f["id"]: f["properties"]["pci"] for f in body["features"]}

    early = datetime(2025, 6, 1, tzinfo=UTC)
    expected = dict(_layer_rows(sample_engine, "streets", "q.id, q.pci", as_of=early))
    assert pci(datetime="2025-06-01T00:00:00Z") == expected
    # An interval shows the state at its end.
    assert pci(datetime="2024-01-01T00:00:00Z/2025-06-01T00:00:00Z") == expected
    now = pci()
    assert now == dict(_layer_rows(sample_engine, "streets", "q.id, q.pci"))
    assert now != expected


def test_attribute_filters(client, sample_engine):
    body = _items(client, "manholes", kind="sewer", limit=10_000)
    assert sorted(f["id"] for f in body["features"]) == \
        _ids(sample_engine, "manholes", "q.kind = 'sewer'")
    both = client.get("/ogc/collections/streets/items?road_class=primary&road_class=secondary"
                      "&limit=10000").json()
    assert sorted(f["id"] for f in both["features"]) == \
        _ids(sample_engine, "streets", "q.road_class IN ('primary', 'secondary')")
    lanes = _items(client, "streets", lanes=2, limit=10_000)
    assert lanes["numberMatched"] == len(_ids(sample_engine, "streets", "q.lanes = 2")) > 0
    # SQL-looking text is only a value.
    assert _items(client, "streets", name="x' OR '1'='1")["features"] == []
    assert _items(client, "streets", name="Binjiang Road; DROP TABLE streets")["features"] == []
    assert _ids(sample_engine, "streets")


def test_sortby_and_properties(client):
    body = _items(client, "streets", sortby="-pci,name", limit=10_000,
                  properties="name,pci")
    values = [f["properties"]["pci"] for f in body["features"]]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True) and len(known) > 10
    assert all(set(f["properties"]) == {"id", "name", "pci"} for f in body["features"])
    names = [f["properties"]["name"] for f in
             _items(client, "compounds", sortby="name", limit=1000)["features"]]
    assert names == sorted(names)
    plus = [f["properties"]["households"] for f in
            _items(client, "compounds", sortby="+households", limit=1000)["features"]]
    assert plus == sorted(plus)
    none = _items(client, "compounds", properties="", limit=3)
    assert all(f["properties"] == {"id": f["id"]} for f in none["features"])  # only the id


# -- bad input is a 400/404/406 problem, never a 500 ----------------------------------------------


@pytest.mark.parametrize(("path", "status"), [
    ("/ogc/collections/streets/items?bbox=1,2,3", 400),
    ("/ogc/collections/streets/items?bbox=1,2,3,4,5", 400),
    ("/ogc/collections/streets/items?bbox=10,0,0,10", 400),
    ("/ogc/collections/streets/items?bbox=0,10,10,0", 400),
    ("/ogc/collections/streets/items?bbox=0,0,200,10", 400),
    ("/ogc/collections/streets/items?bbox=0,-95,10,10", 400),
    ("/ogc/collections/streets/items?bbox=a,b,c,d", 400),
    ("/ogc/collections/streets/items?bbox=nan,0,1,1", 400),
    ("/ogc/collections/streets/items?bbox=1e999,0,1,1", 400),
    ("/ogc/collections/road_damage/items?datetime=yesterday", 400),
    ("/ogc/collections/road_damage/items?datetime=2024-02-30T00:00:00Z", 400),
    ("/ogc/collections/road_damage/items?datetime=2024-05-01T00:00:00", 400),
    ("/ogc/collections/road_damage/items?datetime=2025-01-01T00:00:00Z/2024-01-01T00:00:00Z",
     400),
    ("/ogc/collections/road_damage/items?datetime=a/b/c", 400),
    ("/ogc/collections/road_damage/items?datetime=0001-01-01T00:00:00%2B14:00", 400),
    ("/ogc/collections/streets/items?limit=0", 400),
    ("/ogc/collections/streets/items?limit=-1", 400),
    ("/ogc/collections/streets/items?limit=1.5", 400),
    ("/ogc/collections/streets/items?limit=ten", 400),
    ("/ogc/collections/streets/items?offset=-1", 400),
    ("/ogc/collections/streets/items?offset=99999999999999999999999", 400),
    ("/ogc/collections/streets/items?sortby=nope", 400),
    ("/ogc/collections/streets/items?sortby=name;DROP%20TABLE%20streets", 400),
    ("/ogc/collections/streets/items?properties=name,nope", 400),
    ("/ogc/collections/streets/items?limt=10", 400),
    ("/ogc/collections/streets/items?lanes=two", 400),
    ("/ogc/collections/streets/items?lanes=99999999999999999999999", 400),
    ("/ogc/collections/streets/items?width_m=nan", 400),
    ("/ogc/collections/streets/items?resurfaced_on=last-year", 400),
    ("/ogc/collections/streets/items?pci_observed_at=2024", 400),
    ("/ogc/collections/streets/items?name=%00", 400),
    ("/ogc/collections/streets/items?f=html", 400),
    ("/ogc/collections/streets/items?f=xml", 400),
    ("/ogc/collections?f=html", 400),
    ("/ogc?foo=bar", 400),
    ("/ogc/collections/streets/items/abc", 404),
    ("/ogc/collections/streets/items/1.5", 404),
    ("/ogc/collections/streets/items/999999999", 404),
    ("/ogc/collections/streets/items/99999999999999999999999", 404),
    ("/ogc/collections/nope", 404),
    ("/ogc/collections/nope/items", 404),
    ("/ogc/collections/streets'--/items", 404),
])
def test_bad_input_is_a_problem(client, path, status):
    assert problem_of(client.get(path), status)["status"] == status


def test_a_feature_of_another_layer_is_not_found(client, sample_engine):
    street_id = _ids(sample_engine, "streets")[0]
    assert client.get(f"/ogc/collections/manholes/items/{street_id}").status_code == 404


def test_content_negotiation(client):
    html = client.get("/ogc/collections/streets/items", headers={"Accept": "text/html"})
    assert html.status_code == 406 and html.headers["content-type"] == PROBLEM
    for accept in ("application/geo+json", "application/json", "*/*",
                   "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"):
        ok = client.get("/ogc/collections/streets/items?limit=1", headers={"Accept": accept})
        assert ok.status_code == 200 and ok.headers["content-type"] == GEOJSON
    assert client.get("/ogc?f=json", headers={"Accept": "text/html"}).status_code == 200
    assert client.get("/ogc/collections/streets/items?f=geojson&limit=1").status_code == 200


def test_number_matched_policy(sample_engine, monkeypatch):
    from geo import features
    from geo.layers import Layer

    query = features.FeatureQuery(as_of=NOW, limit=10)
    # A table estimated above the threshold is still counted exactly when the count is quick.
    monkeypatch.setattr(features, "EXACT_COUNT_BELOW_ROWS", 0)
    with sample_engine.connect() as conn:
        assert features.count_matched(conn, LAYERS["compounds"], query) == \
            len(_ids(sample_engine, "compounds"))
    # ...and left out when it is not; the connection stays usable.
    monkeypatch.setattr(features, "COUNT_TIMEOUT_MS", 50)
    slow = Layer("slow", "Slow", "A layer that takes 10 ms a row.", "Polygon",
                 "SELECT t.id, t.geom FROM compounds t, "
                 "LATERAL (SELECT pg_sleep(0.01) WHERE t.id > 0) s",
                 (), table="compounds")
    with sample_engine.connect() as conn:
        assert features.count_matched(conn, slow, query) is None
        assert features.features_page(conn, LAYERS["compounds"], query).returned == 10
