"""CQL2 filtering, queryables and schemas, forecasts and asset history under /ogc, on the sample.

Every filter is checked three ways against the database itself: GDAL's OAPIF driver with
``-where`` (which pushes it to the server as CQL text), the same filter as CQL2 text and as
CQL2 JSON over HTTP, and SQL on the layer's own query.
"""

import csv
import io
import json
import re
import subprocess
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from geo import alerts
from geo.layers import LAYERS
from predict import pipeline
from tests.tools import problem_of, requires_tool

PROBLEM = "application/problem+json"
GEOJSON = "application/geo+json"
NOW = datetime.now(UTC)
gdal = requires_tool("ogr2ogr")


def _sql_ids(engine, layer_id: str, where: str, **params) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            f"SELECT q.id FROM ({LAYERS[layer_id].select}) q WHERE {where} ORDER BY q.id"),
            {"as_of": datetime.now(UTC), **params}).scalars())


def _http_ids(client, layer_id: str, **params) -> list[int]:
    ids: list[int] = []
    url, query = f"/ogc/collections/{layer_id}/items", {"limit": 10_000, **params}
    response = client.get(url, params=query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not any(link["rel"] == "next" for link in body["links"])
    ids = [feature["id"] for feature in body["features"]]
    assert [f["properties"]["id"] for f in body["features"]] == ids  # the id as a property
    return sorted(ids)


def _gdal_ids(live_url: str, layer_id: str, where: str | None = None,
              spat: tuple[float, ...] | None = None) -> tuple[list[int], str]:
    """The ids GDAL's OAPIF driver reads, and its debug log (the URLs it fetched)."""
    args = ["ogr2ogr", "--config", "CPL_DEBUG", "ON", "-f", "GeoJSON", "/vsistdout/",
            f"OAPIF:{live_url}/ogc", layer_id]
    if where is not None:
        args += ["-where", where]
    if spat is not None:
        args += ["-spat", *(repr(v) for v in spat)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    collection = json.loads(done.stdout)
    return sorted(f["properties"]["id"] for f in collection["features"]), done.stderr


@pytest.fixture(scope="module")
def days(sample_engine) -> dict[str, str]:
    """Days inside the sample's span of road damage, to filter by (from the data, not typed)."""
    with sample_engine.connect() as conn:
        first, middle, last = conn.execute(sa.text(
            "SELECT min(observed_at), percentile_disc(0.5) WITHIN GROUP (ORDER BY observed_at),"
            " max(observed_at) FROM road_damage")).one()
    return {"middle": middle.astimezone(UTC).date().isoformat(),
            "first": first.astimezone(UTC).date().isoformat(),
            "last": last.astimezone(UTC).date().isoformat()}


# (layer, OGR SQL for GDAL's -where, CQL2 text, CQL2 JSON, SQL on the layer's query q)
CASES = {
    "number": ("streets", "pci < 55", "pci < 55",
               {"op": "<", "args": [{"property": "pci"}, 55]}, "q.pci < 55"),
    "text": ("streets", "road_class = 'residential'", "road_class = 'residential'",
             {"op": "=", "args": [{"property": "road_class"}, "residential"]},
             "q.road_class = 'residential'"),
    "like": ("streets", "name LIKE 'B%'", "name LIKE 'B%'",
             {"op": "like", "args": [{"property": "name"}, "B%"]}, "q.name LIKE 'B%'"),
    "null": ("manholes", "sensor_id IS NULL", "sensor_id IS NULL",
             {"op": "isNull", "args": [{"property": "sensor_id"}]}, "q.sensor_id IS NULL"),
    "between": ("manholes", "depth_m BETWEEN 1.5 AND 3", "depth_m BETWEEN 1.5 AND 3",
                {"op": "between", "args": [{"property": "depth_m"}, 1.5, 3]},
                "q.depth_m BETWEEN 1.5 AND 3"),
    "combined": ("streets", "pci < 70 AND (road_class = 'residential' OR lanes >= 2)",
                 "pci < 70 AND (road_class = 'residential' OR lanes >= 2)",
                 {"op": "and", "args": [
                     {"op": "<", "args": [{"property": "pci"}, 70]},
                     {"op": "or", "args": [
                         {"op": "=", "args": [{"property": "road_class"}, "residential"]},
                         {"op": ">=", "args": [{"property": "lanes"}, 2]}]}]},
                 "q.pci < 70 AND (q.road_class = 'residential' OR q.lanes >= 2)"),
    "not": ("manholes", "NOT (kind = 'sewer')", "NOT (kind = 'sewer')",
            {"op": "not", "args": [{"op": "=", "args": [{"property": "kind"}, "sewer"]}]},
            "NOT (q.kind = 'sewer')"),
}


@gdal
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_filters_agree_across_gdal_cql2_text_json_and_sql(case, client, live_url,
                                                          sample_engine):
    layer_id, ogr_where, text, cql_json, sql = CASES[case]
    expected = _sql_ids(sample_engine, layer_id, sql)
    assert expected, f"{case}: the filter keeps nothing on the sample; choose another"
    assert len(expected) < len(_sql_ids(sample_engine, layer_id, "TRUE")), case
    assert _http_ids(client, layer_id, filter=text) == expected
    assert _http_ids(client, layer_id, filter=json.dumps(cql_json),
                     **{"filter-lang": "cql2-json"}) == expected
    found, log = _gdal_ids(live_url, layer_id, ogr_where)
    assert found == expected
    # GDAL evaluated it on the server: its requests carried the filter as CQL text.
    fetched = re.findall(r"HTTP: Fetch\((\S+)\)", log)
    assert any(f"/collections/{layer_id}/items" in u and "filter=" in u for u in fetched), (
        log[-3000:])


@gdal
def test_dates_agree_across_gdal_cql2_and_sql(client, live_url, sample_engine, days):
    day = days["middle"]
    expected = _sql_ids(sample_engine, "road_damage", "q.observed_at >= :t",
                        t=datetime.fromisoformat(f"{day}T00:00:00+00:00"))
    assert 0 < len(expected) < len(_sql_ids(sample_engine, "road_damage", "TRUE"))
    assert _http_ids(client, "road_damage", filter=f"observed_at >= DATE('{day}')") == expected
    assert _http_ids(client, "road_damage",
                     filter=f"T_AFTER(observed_at, TIMESTAMP('{day}T00:00:00Z')) OR "
                            f"observed_at = TIMESTAMP('{day}T00:00:00Z')") == expected
    found, _ = _gdal_ids(live_url, "road_damage", f"observed_at >= '{day}'")
    assert found == expected


def test_temporal_operators_agree_with_sql(client, sample_engine, days):
    start, end = days["first"], days["middle"]
    low = datetime.fromisoformat(f"{start}T00:00:00+00:00")
    high = datetime.fromisoformat(f"{end}T23:59:59.999999+00:00")
    between = _sql_ids(sample_engine, "road_damage", "q.observed_at BETWEEN :a AND :b",
                       a=low, b=high)
    assert 0 < len(between)
    assert _http_ids(client, "road_damage", filter=(
        f"T_INTERSECTS(observed_at, INTERVAL('{start}', '{end}'))")) == between
    assert _http_ids(client, "road_damage", filter=(
        f"T_BEFORE(observed_at, DATE('{end}'))")) == _sql_ids(
        sample_engine, "road_damage", "q.observed_at < :a",
        a=datetime.fromisoformat(f"{end}T00:00:00+00:00"))
    cql_json = {"op": "t_after", "args": [{"property": "observed_at"},
                                          {"timestamp": f"{end}T12:00:00Z"}]}
    assert _http_ids(client, "road_damage", filter=json.dumps(cql_json),
                     **{"filter-lang": "cql2-json"}) == _sql_ids(
        sample_engine, "road_damage", "q.observed_at > :a",
        a=datetime.fromisoformat(f"{end}T12:00:00+00:00"))


def _box(engine) -> tuple[float, float, float, float]:
    """The south-west quarter of the streets' extent (from the data)."""
    with engine.connect() as conn:
        w, s, e, n = conn.execute(sa.text(
            "SELECT ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM "
            "(SELECT ST_Extent(geom) AS x FROM streets) q")).one()
    return w, s, (w + e) / 2, (s + n) / 2


@gdal
def test_spatial_filters_agree_across_gdal_cql2_and_sql(client, live_url, sample_engine):
    w, s, e, n = _box(sample_engine)
    expected = _sql_ids(sample_engine, "streets",
                        "ST_Intersects(q.geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326))",
                        w=w, s=s, e=e, n=n)
    assert 0 < len(expected) < len(_sql_ids(sample_engine, "streets", "TRUE"))
    assert _http_ids(client, "streets",
                     filter=f"S_INTERSECTS(geometry, BBOX({w}, {s}, {e}, {n}))") == expected
    polygon = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    assert _http_ids(client, "streets", filter=json.dumps(
        {"op": "s_intersects", "args": [{"property": "geometry"}, polygon]}),
        **{"filter-lang": "cql2-json"}) == expected
    found, _ = _gdal_ids(live_url, "streets", spat=(w, s, e, n))
    assert found == expected
    # Within, and the same box given latitude first (filter-crs EPSG:4326).
    within = _sql_ids(sample_engine, "streets",
                      "ST_Within(q.geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326))",
                      w=w, s=s, e=e, n=n)
    assert _http_ids(client, "streets", filter=(
        f"S_WITHIN(geometry, POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s})))")) == within
    assert _http_ids(client, "streets", filter=(
        f"S_WITHIN(geometry, POLYGON(({s} {w}, {s} {e}, {n} {e}, {n} {w}, {s} {w})))"),
        **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}) == within
    combined = _sql_ids(sample_engine, "streets",
                        "ST_Intersects(q.geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326)) "
                        "AND q.pci < 70", w=w, s=s, e=e, n=n)
    found, _ = _gdal_ids(live_url, "streets", "pci < 70", spat=(w, s, e, n))
    assert found == combined


def test_dwithin_agrees_with_geography_distance_in_sql(client, sample_engine):
    with sample_engine.connect() as conn:
        x, y = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM manholes "
                                    "ORDER BY id LIMIT 1")).one()
    expected = _sql_ids(sample_engine, "manholes", "ST_DWithin(q.geom::geography, "
                        "ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography, 150)", x=x, y=y)
    assert 1 < len(expected)
    assert _http_ids(client, "manholes",
                     filter=f"S_DWITHIN(geometry, POINT({x} {y}), 150, meters)") == expected
    assert _http_ids(client, "manholes",
                     filter=f"S_DWITHIN(geometry, POINT({x} {y}), 0.15, kilometers)") == expected


@pytest.fixture(scope="module")
def alerted(sample_engine) -> list[int]:
    """Alerts of three severities on manholes (the sample has none until rules run)."""
    made = []
    with sample_engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT id, ST_AsEWKT(geom) FROM manholes ORDER BY id "
                                    "LIMIT 6")).all()
        for (asset_id, ewkt), severity in zip(rows, ("low", "high", "critical", "medium",
                                                    "high", "low"), strict=True):
            alert_id, _ = alerts.raise_alert(
                conn, kind="manhole_tilt", severity=severity, asset_layer="manholes",
                asset_id=asset_id, geom_ewkt=ewkt, reason=f"tilted ({severity})",
                details={"tilt_deg": 12.5}, evidence="tilt 12.5 degrees",
                evidence_at=NOW)
            made.append(alert_id)
    return made


def test_filters_work_on_alerts_and_exports(client, sample_engine, alerted):
    expected = _sql_ids(sample_engine, "alerts", "q.severity IN ('high', 'critical')")
    assert expected
    assert _http_ids(client, "alerts", filter="severity IN ('high', 'critical')") == expected
    # GET /alerts takes the same CQL2, over the alert's own columns.
    response = client.get("/alerts", params={"filter": "severity IN ('high','critical')",
                                             "status": "open,acknowledged,in_progress,"
                                             "resolved,dismissed", "limit": 10_000})
    assert response.status_code == 200, response.text
    assert sorted(f["id"] for f in response.json()["features"]) == expected
    response = client.get("/exports/streets.geojson", params={"filter": "pci < 55"})
    assert response.status_code == 200, response.text
    assert sorted(f["id"] for f in response.json()["features"]) == _sql_ids(
        sample_engine, "streets", "q.pci < 55")


HOSTILE = {
    "syntax": ("pci <", "line 1, column"),
    "unknown property": ("nope = 1", "'nope' is not a queryable"),
    "wrong type": ("pci = 'abc'", "'pci' is a number"),
    "text compared with a number": ("name < 5", "'name' is text"),
    "statement after the filter": ("pci < 55; DROP TABLE streets", "not valid CQL2"),
    "quote injection": ("name = 'x' OR '1'='1'", "expected a property"),
    "comment injection": ("pci < 55 --", "not valid CQL2"),
    "deep nesting": ("(" * 3000 + "pci < 55" + ")" * 3000, "nested"),
    "deep NOT": ("NOT " * 200 + "pci < 55", "nested"),
    "too long": ("name = '" + "x" * 9000 + "'", "characters"),
    "arithmetic": ("pci + 1 > 2", "arithmetic"),
    "unknown function": ("upper(name) = 'X'", "not supported"),
    "bad geometry": ("S_INTERSECTS(geometry, POINT(1))", "not a valid geometry"),
    "spatial on a number": ("S_INTERSECTS(pci, POINT(1 2))", "apply to the geometry"),
    "negative distance": ("S_DWITHIN(geometry, POINT(108 32), -5, meters)", "distance"),
    "self-crossing polygon": ("S_WITHIN(geometry, POLYGON((108 32, 109 33, 109 32, 108 33, "
                              "108 32)))", "not valid (Self-intersection"),
    "coordinates out of range": ("S_DWITHIN(geometry, POINT(500 500), 5, meters)",
                                 "outside the range"),
    "unknown unit": ("S_DWITHIN(geometry, POINT(108 32), 5, furlongs)", "unit"),
    "temporal on text": ("T_BEFORE(name, TIMESTAMP('2026-01-01T00:00:00Z'))", "temporal"),
    "bad timestamp": ("pci_observed_at > TIMESTAMP('2026-13-45T00:00:00Z')", "pci_observed_at"),
    "empty": ("  ", "empty"),
    "huge IN": ("lanes IN (" + ",".join(["1"] * 1500) + ")", "at most"),
    "NUL": ("name = 'a\x00b'", "NUL"),
    "property against property": ("pci < lanes", "another property"),
    "LIKE on a number": ("pci LIKE '5%'", "LIKE applies to text"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_malformed_and_hostile_filters_are_400_naming_the_problem(case, client):
    text, said = HOSTILE[case]
    response = client.get("/ogc/collections/streets/items", params={"filter": text})
    assert response.status_code == 400, (case, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    detail = response.json()["detail"]
    assert said in detail, detail
    assert len(detail) < 400 and "\n" not in detail
    for leak in ("SELECT", "psycopg", "Traceback", "q.", "ST_"):
        assert leak not in detail, detail


HOSTILE_JSON = {
    "not JSON": ('{"op": "<"', "not valid JSON"),
    "no args": ('{"op": "<"}', "not valid CQL2"),
    "bare list": ("[1, 2]", "expected a condition"),
    "deep": ('{"op":"not","args":[' * 300 + '{"op":"=","args":[{"property":"pci"},1]}'
             + "]}" * 300, "nested"),
    "unknown op": ('{"op": "drop", "args": [{"property": "pci"}]}', "not supported"),
}


@pytest.mark.parametrize("case", HOSTILE_JSON, ids=list(HOSTILE_JSON))
def test_malformed_cql2_json_is_400(case, client):
    text, said = HOSTILE_JSON[case]
    response = client.get("/ogc/collections/streets/items",
                          params={"filter": text, "filter-lang": "cql2-json"})
    assert response.status_code == 400, (case, response.text[:300])
    assert said in response.json()["detail"], response.json()["detail"]


@pytest.mark.parametrize("params, said", [
    ({"filter": "pci < 55", "filter-lang": "xml"}, "filter-lang"),
    ({"filter": "pci < 55", "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/9999"},
     "filter-crs"),
])
def test_bad_filter_lang_or_crs_is_400(params, said, client):
    response = client.get("/ogc/collections/streets/items", params=params)
    assert response.status_code == 400
    assert said in response.json()["detail"]


# -- queryables, schemas, GDAL's view of the types -------------------------------------------------


def test_queryables_and_schema_list_every_property_with_its_type(client):
    kinds = {"string": ("string", None), "number": ("number", None),
             "integer": ("integer", None), "boolean": ("boolean", None),
             "date": ("string", "date"), "datetime": ("string", "date-time")}
    conformance = client.get("/ogc/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter" in conformance
    assert "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json" in conformance
    for layer in LAYERS.values():
        for path in ("queryables", "schema"):
            response = client.get(f"/ogc/collections/{layer.id}/{path}")
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/schema+json"
            found = response.json()["properties"]
            assert list(found) == ["id", *layer.property_names, "geometry"], (layer.id, path)
            for p in layer.properties:
                kind, fmt = kinds[p.type]
                assert found[p.name]["type"] == kind and found[p.name].get("format") == fmt
            assert found["geometry"]["x-ogc-role"] == "primary-geometry"
        links = {link["rel"] for link in client.get(f"/ogc/collections/{layer.id}").json()[
            "links"]}
        assert {"http://www.opengis.net/def/rel/ogc/1.0/queryables", "describedBy"} <= links


@gdal
def test_gdal_types_fields_from_the_schema(live_url):
    done = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{live_url}/ogc", "streets"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fields = dict(re.findall(r"^(\w+): (\w+)", done.stdout, re.MULTILINE))
    assert fields["pci"] == "Real"
    assert fields["lanes"] in ("Integer", "Integer64")
    assert fields["pci_observed_at"] == "DateTime"
    assert fields["resurfaced_on"] == "Date"
    assert fields["id"] in ("Integer", "Integer64")  # joinable: the server's id as a field


def test_openapi_gives_each_collection_its_page_size_where_gdal_looks(client, live_url):
    # GDAL >= 3.8 takes its page size from the items path of the collection, relative to the
    # landing page, through a $ref'd `limit` parameter's default and maximum.
    landing = client.get("/ogc").json()
    desc = next(link for link in landing["links"] if link["rel"] == "service-desc")
    assert desc["type"] == "application/vnd.oai.openapi+json;version=3.0"
    document = client.get(desc["href"]).json()
    root = document["servers"][0]["url"]
    for layer in LAYERS.values():
        items = client.get(f"/ogc/collections/{layer.id}").json()["links"]
        href = next(link["href"] for link in items if link["rel"] == "items")
        path = document["paths"][href[len(root):]]["get"]
        ref = next(p["$ref"] for p in path["parameters"] if "limit" in p.get("$ref", ""))
        limit = document["components"]["parameters"][ref.rsplit("/", 1)[1]]["schema"]
        assert limit["default"] >= 100 and limit["maximum"] >= 1000
        names = {p.get("name") for p in path["parameters"]}
        assert {"filter", "filter-lang", *layer.property_names} <= names
        lang = next(p for p in path["parameters"] if p.get("name") == "filter-lang")
        assert "cql-text" in lang["schema"]["enum"]  # what GDAL looks for to push -where


@gdal
def test_gdal_reads_a_whole_layer_in_pages_of_1000(live_url, sample_engine):
    # GDAL 3.6 (Debian 12) pages 10 features at a time whatever the server says: the
    # PAGE_SIZE open option sets it, and the server's next links keep it.
    done = subprocess.run(["ogr2ogr", "--config", "CPL_DEBUG", "ON", "-oo", "PAGE_SIZE=1000",
                           "-f", "GeoJSON", "/vsistdout/", f"OAPIF:{live_url}/ogc",
                           "road_damage"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = sorted(f["properties"]["id"] for f in json.loads(done.stdout)["features"])
    assert ids == _sql_ids(sample_engine, "road_damage", "TRUE")
    pages = [u for u in re.findall(r"HTTP: Fetch\((\S+)\)", done.stderr)
             if "/collections/road_damage/items" in u and "offset=" in u]
    assert pages and all("limit=1000" in u for u in pages), pages


def test_gdal_36_date_interval_form_is_taken(client, sample_engine, days):
    day = days["middle"]
    response = client.get("/ogc/collections/road_damage/items",
                          params={"datetime": f"{day}T/..", "limit": 10_000})
    assert response.status_code == 200, response.text
    assert sorted(f["id"] for f in response.json()["features"]) == _sql_ids(
        sample_engine, "road_damage", "q.observed_at >= :t",
        t=datetime.fromisoformat(f"{day}T00:00:00+00:00"))


def test_alerts_collection_carries_the_alert_details(client, sample_engine, alerted):
    with sample_engine.begin() as conn:
        alert_id = conn.execute(sa.text("SELECT min(id) FROM alerts")).scalar_one()
        conn.execute(sa.text("UPDATE alerts SET assignee = 'Crew 3', due_on = '2027-01-15' "
                             "WHERE id = :id"), {"id": alert_id})
        row = conn.execute(sa.text("SELECT details, evidence_at FROM alerts WHERE id = :id"),
                           {"id": alert_id}).one()
    feature = client.get(f"/ogc/collections/alerts/items/{alert_id}").json()
    properties = feature["properties"]
    assert properties["assignee"] == "Crew 3" and properties["due_on"] == "2027-01-15"
    assert json.loads(properties["details"]) == row.details
    assert properties["evidence"] == row.details.get("evidence")
    for name in ("opened_at", "updated_at", "evidence_at"):
        if properties[name] is not None:  # every time states its offset
            assert re.search(r"(Z|[+-]\d\d:\d\d)$", properties[name]), properties[name]


# -- forecasts and the planner's question -------------------------------------------------------


@pytest.fixture(scope="module")
def scored(sample_engine):
    pipeline.train(sample_engine, "pci", max_iter=60, learning_rate=0.15)
    pipeline.score(sample_engine, "pci", [30, 90, 365])
    return sample_engine


def test_planners_question_is_one_request_equal_to_sql_on_predictions(client, scored):
    # "Which streets fall below the repair threshold within 90 days, in this community?"
    crossing = ("FROM predictions p JOIN streets s ON s.id = p.asset_id "
                "JOIN metrics m ON m.id = p.metric_id JOIN districts d ON d.id = s.district_id "
                "WHERE p.asset_layer = 'streets' AND m.name = 'pci' AND p.horizon_days = 90 "
                "AND p.upper < 55")
    with scored.connect() as conn:
        community = conn.execute(sa.text(
            f"SELECT d.community {crossing} GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        ).scalar_one()
        expected = sorted(conn.execute(sa.text(
            f"SELECT s.external_id {crossing} AND d.community = :c"), {"c": community}
        ).scalars())
        everywhere = conn.execute(sa.text(f"SELECT count(*) {crossing}")).scalar_one()
        streets = conn.execute(sa.text("SELECT count(*) FROM streets")).scalar_one()
    question = f"horizon_days = 90 AND upper < 55 AND community = '{community}'"
    body = client.get("/ogc/collections/forecasts/items",
                      params={"filter": question, "limit": 10_000}).json()
    assert 0 < len(expected) < everywhere
    assert sorted(f["properties"]["external_id"] for f in body["features"]) == expected
    first = body["features"][0]
    assert first["geometry"]["type"] in ("LineString", "MultiLineString")
    assert first["properties"]["threshold"] == 55
    assert first["properties"]["metric"] == "pci"
    # One feature per asset, metric and horizon.
    every = client.get("/ogc/collections/forecasts/items", params={"limit": 10_000}).json()
    keys = [(f["properties"]["asset_id"], f["properties"]["metric"],
             f["properties"]["horizon_days"]) for f in every["features"]]
    assert len(keys) == len(set(keys)) == 3 * streets
    # Its extent is the streets' (the forecast rows have no geometry of their own).
    with scored.connect() as conn:
        box = conn.execute(sa.text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                                   "FROM (SELECT ST_Extent(geom) AS e FROM streets) x")).one()
    extent = client.get("/ogc/collections/forecasts").json()["extent"]["spatial"]["bbox"]
    assert extent == [pytest.approx(list(box))]


# -- an asset's history -----------------------------------------------------------------------


def test_a_streets_readings_as_json_and_csv_paged(client, sample_engine):
    with sample_engine.connect() as conn:
        street, count = conn.execute(sa.text(
            "SELECT r.asset_id, count(*) FROM readings r JOIN streets s ON s.id = r.asset_id "
            "WHERE r.metric_id = (SELECT id FROM metrics WHERE name = 'pci') "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")).one()
        expected = [(v, t) for v, t in conn.execute(sa.text(
            "SELECT value, observed_at FROM readings WHERE asset_id = :a AND metric_id = "
            "(SELECT id FROM metrics WHERE name = 'pci') ORDER BY observed_at"), {"a": street})]
    assert count >= 3
    url = f"/ogc/collections/streets/items/{street}/readings"
    body = client.get(url, params={"metric": "pci"}).json()
    assert [r["value"] for r in body["readings"]] == [v for v, _ in expected]
    assert all(r["observed_at"].endswith("Z") for r in body["readings"])
    # Paged: two at a time, following next links, gives the same history.
    seen, page = [], client.get(url, params={"metric": "pci", "limit": 2}).json()
    while True:
        seen += [r["value"] for r in page["readings"]]
        nxt = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        if nxt is None:
            break
        page = client.get(nxt).json()
    assert seen == [v for v, _ in expected]
    response = client.get(url, params={"metric": "pci", "f": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [float(r["value"]) for r in rows] == [v for v, _ in expected]
    # A time range.
    middle = expected[len(expected) // 2][1]
    since = middle.astimezone(UTC).isoformat().replace("+00:00", "Z")
    later = client.get(url, params={"metric": "pci", "datetime": f"{since}/.."}).json()
    assert [r["value"] for r in later["readings"]] == [v for v, t in expected if t >= middle]


@pytest.mark.parametrize("path, params, status", [
    ("/ogc/collections/streets/items/1/readings", {"metric": "no_such_metric"}, 400),
    ("/ogc/collections/streets/items/999999999/readings", {}, 404),
    ("/ogc/collections/streets/items/abc/readings", {}, 404),
    ("/ogc/collections/alerts/items/1/readings", {}, 404),
    ("/ogc/collections/streets/items/1/readings", {"datetime": "yesterday"}, 400),
    ("/ogc/collections/streets/items/1/readings", {"nope": "1"}, 400),
])
def test_readings_refuse_what_is_wrong(path, params, status, client):
    problem_of(client.get(path, params=params), status)
