"""Districts: loaded like any layer, and every located row knows the district it lies in.

The sample's districts come through the real ingest; a city-shaped file (its own projection,
multipolygons, NULLs and codes, read through a mapping) is loaded with `twin ingest`. What a
feature's district is, is checked against an independent spatial join, before and after the
feature moves and the districts are loaded again.
"""

import json
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import morecantile
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings
from tests.ingest.twin_cli import run_twin, scalar

LOCATED = ("streets", "manholes", "parking", "compounds", "road_damage", "debris_piles")


def _misplaced(conn, table: str) -> int:
    """Rows whose district_id is not the finest district containing their point on surface."""
    return conn.execute(sa.text(
        f"SELECT count(*) FROM {table} t LEFT JOIN LATERAL (SELECT d.id FROM districts d "
        f"WHERE ST_Contains(d.geom, ST_PointOnSurface(t.geom)) "
        f"ORDER BY d.rank DESC, ST_Area(d.geom) LIMIT 1) d ON TRUE "
        f"WHERE t.district_id IS DISTINCT FROM d.id")).scalar_one()


def test_sample_districts_nest_and_every_feature_lies_in_its_grid(sample_engine):
    with sample_engine.connect() as conn:
        levels = dict(conn.execute(sa.text(
            "SELECT level, count(*) FROM districts GROUP BY level")).all())
        assert levels["sub_district"] == 1 and levels["community"] >= 3
        assert levels["grid"] == 4 * levels["community"]
        # Every grid's parent is the community its code says, and the names nest.
        assert conn.execute(sa.text(
            "SELECT count(*) FROM districts g JOIN districts c ON c.id = g.parent_id "
            "WHERE g.level = 'grid' AND c.level = 'community' AND g.parent_code = c.external_id "
            "AND g.community = c.name AND g.sub_district = c.sub_district "
            "AND g.name LIKE c.name || '%'")).scalar_one() == levels["grid"]
        for table in LOCATED:
            assert conn.execute(sa.text(
                f"SELECT count(*) FROM {table} WHERE district_id IS NULL")).scalar_one() == 0
            assert _misplaced(conn, table) == 0, table
            assert conn.execute(sa.text(
                f"SELECT count(DISTINCT district_id) FROM {table}")).scalar_one() > 1, table


def test_moving_an_asset_and_reloading_districts_keep_its_district_current(
        sample_engine, tmp_path):
    with sample_engine.begin() as conn:
        manhole, before = conn.execute(sa.text(
            "SELECT id, district_id FROM manholes ORDER BY id LIMIT 1")).one()
        # Move it to the centre of a grid of another community.
        target = conn.execute(sa.text(
            "SELECT id FROM districts WHERE level = 'grid' AND community <> "
            "(SELECT community FROM districts WHERE id = :d) ORDER BY id LIMIT 1"),
            {"d": before}).scalar_one()
        conn.execute(sa.text(
            "UPDATE manholes SET geom = (SELECT ST_PointOnSurface(geom) FROM districts "
            "WHERE id = :t) WHERE id = :m"), {"t": target, "m": manhole})
    assert scalar(sample_engine, "SELECT district_id FROM manholes WHERE id = :m",
                  m=manhole) == target

    # A city's own grid file: local projection (EPSG:4545), a multipolygon grid (a strip at
    # the west end and an island; smaller than the sample's grids, so the finer one where they
    # overlap), codes and level names of its own, a NULL English name, no parent codes
    # (parents found spatially).
    with sample_engine.connect() as conn:
        west, south, east, north = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
            "ST_Extent(geom) AS e FROM districts WHERE level = 'sub_district') x")).one()
    middle = west + (east - west) * 0.15
    left = shapely.box(west, south, middle, south + (north - south) * 0.3)
    island = shapely.box(middle + (east - middle) * 0.4, south, middle + (east - middle) * 0.5,
                         south + (north - south) * 0.1)
    frame = gpd.GeoDataFrame({
        "WG_DM": ["ZY-W-01"], "WG_MC": ["城关西网格"], "YWMC": [None], "CJ": ["网格"],
        "geometry": [shapely.MultiPolygon([left, island])]}, crs="EPSG:4326").to_crs("EPSG:4545")
    path = tmp_path / "grids.gpkg"
    frame.to_file(path, layer="wangge", driver="GPKG")
    mapping = tmp_path / "grids.toml"
    mapping.write_text(
        'layer = "districts"\nsource = "city-grids"\n\n[fields]\nexternal_id = "WG_DM"\n'
        'name = "WG_MC"\nname_en = "YWMC"\n'
        'level = { column = "CJ", map = { "网格" = "grid", "社区" = "community" } }\n',
        encoding="utf-8")
    result = run_twin(sample_engine, "ingest", "districts", path, "--mapping", mapping)
    assert result.returncode == 0, result.stdout + result.stderr
    with sample_engine.connect() as conn:
        new = conn.execute(sa.text(
            "SELECT id, name_en, parent_id, sub_district, GeometryType(geom) AS kind "
            "FROM districts WHERE source = 'city-grids'")).one()
        assert new.name_en is None and new.kind == "MULTIPOLYGON"
        assert new.parent_id is not None and new.sub_district == "城关街道"
        for table in LOCATED:
            assert _misplaced(conn, table) == 0, table
        # Features in the new grid now say so, in the published layer too.
        moved = conn.execute(sa.text(
            "SELECT count(*) FROM streets WHERE district_id = :d"), {"d": new.id}).scalar_one()
        assert moved > 0
    # Deleting it puts them back in the sample's grids.
    with sample_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM districts WHERE source = 'city-grids'"))
    with sample_engine.connect() as conn:
        for table in LOCATED:
            assert _misplaced(conn, table) == 0, table


def test_district_of_is_there_for_other_tables(sample_engine):
    # The function other helpers (buildings) use: a point in a grid gives that grid.
    with sample_engine.connect() as conn:
        grid, inside = conn.execute(sa.text(
            "SELECT id, ST_AsText(ST_PointOnSurface(geom)) FROM districts "
            "WHERE level = 'grid' ORDER BY id DESC LIMIT 1")).one()
        assert conn.execute(sa.text("SELECT district_of(ST_GeomFromText(:p, 4326))"),
                            {"p": inside}).scalar_one() == grid
        assert conn.execute(sa.text(
            "SELECT district_of(ST_SetSRID(ST_MakePoint(0, 0), 4326))")).scalar_one() is None


@pytest.fixture(scope="module")
def client(sample_engine):
    with TestClient(create_app(sample_engine, ServiceSettings()),
                    raise_server_exceptions=False) as test_client:
        yield test_client


def test_published_layers_carry_and_filter_by_district(client, sample_engine):
    with sample_engine.connect() as conn:
        grid, count = conn.execute(sa.text(
            "SELECT d.name, count(*) FROM streets s JOIN districts d ON d.id = s.district_id "
            "GROUP BY d.name ORDER BY count(*) DESC, d.name LIMIT 1")).one()
        community = scalar(sample_engine, "SELECT community FROM districts WHERE name = :g",
                           g=grid)
        in_community = conn.execute(sa.text(
            "SELECT count(*) FROM streets s JOIN districts d ON d.id = s.district_id "
            "WHERE d.community = :c"), {"c": community}).scalar_one()
    page = client.get("/ogc/collections/streets/items", params={"district": grid,
                                                                "limit": 1000})
    assert page.status_code == 200, page.text
    features = page.json()["features"]
    assert len(features) == count
    assert {f["properties"]["district"] for f in features} == {grid}
    assert {f["properties"]["community"] for f in features} == {community}
    page = client.get("/ogc/collections/streets/items", params={"community": community,
                                                                "limit": 1000})
    assert len(page.json()["features"]) == in_community > count
    districts = client.get("/ogc/collections/districts/items").json()["features"]
    assert {f["properties"]["level"] for f in districts} == {"sub_district", "community", "grid"}


def test_tiles_filter_by_district(client, sample_engine):
    import mapbox_vector_tile

    with sample_engine.connect() as conn:
        grid = conn.execute(sa.text(
            "SELECT d.name FROM manholes m JOIN districts d ON d.id = m.district_id "
            "GROUP BY d.name ORDER BY count(*) DESC, d.name LIMIT 1")).scalar_one()
        bounds = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(geom) AS e FROM manholes) x")).one()
    whole, only = 0, 0
    for tile in morecantile.tms.get("WebMercatorQuad").tiles(*bounds, zooms=[14]):
        x, y = tile.x, tile.y
        all_tile = client.get(f"/tiles/manholes/14/{x}/{y}.mvt")
        grid_tile = client.get(f"/tiles/manholes/14/{x}/{y}.mvt", params={"district": grid})
        assert all_tile.status_code in (200, 204) and grid_tile.status_code in (200, 204)
        for body, counter in ((all_tile.content, "whole"), (grid_tile.content, "only")):
            layers = mapbox_vector_tile.decode(body) if body else {}
            found = layers.get("manholes", {}).get("features", [])
            if counter == "only":
                assert {f["properties"]["district"] for f in found} <= {grid}
                only += len(found)
            else:
                whole += len(found)
    assert 0 < only < whole
    # A TileJSON asked for one district hands the filter on to its tiles.
    document = client.get("/tiles/manholes/tilejson.json", params={"district": grid}).json()
    assert parse_qs(urlsplit(document["tiles"][0]).query)["district"] == [grid]


def test_requests_are_routed_by_their_district(client, sample_engine):
    from geo import requests as requests_sql
    from geo.requests import SERVICES

    with sample_engine.connect() as conn:
        # A point in a grid and in no compound: a small matter goes to that community.
        lon, lat, grid, community, sub_district = conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p), d.name, d.community, d.sub_district FROM ("
            " SELECT ST_PointOnSurface(s.geom) AS p FROM streets s) q "
            "JOIN districts d ON d.id = district_of(q.p) WHERE NOT EXISTS (SELECT 1 FROM "
            "compounds c WHERE ST_Intersects(c.geom, q.p)) ORDER BY ST_X(p) LIMIT 1")).one()
        small = requests_sql.route(conn, SERVICES["ground_lock"], "small", lon, lat)
        big = requests_sql.route(conn, SERVICES["pothole"], "big", lon, lat)
        nowhere = requests_sql.route(conn, SERVICES["ground_lock"], "small", 0.0, 0.0)
    assert small.kind == "community" and small.party.startswith(community)
    assert grid in small.party
    assert big.kind == "department" and big.party.endswith(f"({sub_district})")
    assert nowhere.kind == "department"
    text = json.dumps([small.party, big.party])
    assert "Chengguan sub-district, Ziyang County" not in text


def test_worklist_filters_by_district(client, sample_engine):
    from geo import keys
    from predict.alerts import refresh

    with sample_engine.begin() as conn:
        crew = {"X-API-Key": keys.create_key(conn, name="districts-crew", role="crew")}
    refresh(sample_engine)  # the alerts the sample's evidence raises, through the real rules
    with sample_engine.connect() as conn:
        grid, count = conn.execute(sa.text(
            "SELECT d.name, count(*) FROM alerts a JOIN districts d ON d.id = a.district_id "
            "WHERE a.status IN ('open', 'acknowledged', 'in_progress') "
            "GROUP BY d.name ORDER BY count(*) DESC, d.name LIMIT 1")).one()
        total = conn.execute(sa.text(
            "SELECT count(*) FROM alerts WHERE status IN ('open', 'acknowledged', "
            "'in_progress')")).scalar_one()
    assert 0 < count < total
    body = client.get("/work", params={"district": grid, "limit": 100000},
                      headers=crew).json()
    assert body["numberMatched"] == count
    assert {f["properties"]["district"] for f in body["features"]} == {grid}
    # Ranks are over the whole list, so a district's items keep their place in the week.
    everything = client.get("/work", params={"limit": 100000}, headers=crew).json()
    ranks = {f["id"]: f["properties"]["rank"] for f in everything["features"]}
    assert all(ranks[f["id"]] == f["properties"]["rank"] for f in body["features"])


def test_a_drafted_mapping_reads_chinese_level_names(sample_engine, tmp_path):
    # A community file as a Chinese city keeps it: level names in Chinese (社区, 网格), codes.
    with sample_engine.connect() as conn:
        west, south, east, north = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
            "ST_Extent(geom) AS e FROM districts WHERE level = 'sub_district') x")).one()
    mid = (west + east) / 2
    frame = gpd.GeoDataFrame({
        "DM": ["CX", "CX-01", "CX-02"], "name": ["城西社区", "城西第一网格", "城西第二网格"],
        "CJ": ["社区", "网格", "网格"],
        "geometry": [shapely.box(west, south, east, north), shapely.box(west, south, mid, north),
                     shapely.box(mid, south, east, north)]}, crs="EPSG:4326").to_crs("EPSG:4545")
    path = tmp_path / "shequ.gpkg"
    frame.to_file(path, layer="sq", driver="GPKG")
    mapping = tmp_path / "shequ.toml"
    drafted = run_twin(sample_engine, "mapping", "draft", path, "--layer", "districts",
                       "--out", mapping)
    assert drafted.returncode == 0, drafted.stdout + drafted.stderr
    loaded = run_twin(sample_engine, "ingest", "districts", path, "--mapping", mapping)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    try:
        with sample_engine.connect() as conn:
            levels = dict(conn.execute(sa.text(
                "SELECT external_id, level FROM districts WHERE source = :s"),
                {"s": "shequ"}).all())
        assert levels == {"CX": "community", "CX-01": "grid", "CX-02": "grid"}
    finally:
        with sample_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM districts WHERE source = 'shequ'"))
