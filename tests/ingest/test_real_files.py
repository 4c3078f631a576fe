"""Real cities' files load on the first try (issue 13), against a real PostGIS.

Each test writes a file in the shape a city or OpenStreetMap publishes it, drafts a mapping
with `twin mapping draft` and loads it with that mapping unedited.
"""

import json
import re
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from shapely.geometry import LineString, MultiLineString, Point
from typer.testing import CliRunner

from geo.database import create_engine
from ingest.pipeline import distance_to_area_km, ingest_file
from service.cli import app
from tests.ingest.twin_cli import run_twin, scalar

LON, LAT = 108.54, 32.52  # Ziyang, where the twin's sample neighbourhood lies
N = 400


@pytest.fixture
def twin(make_database, migrated_template):
    """An empty, migrated twin of the test's own (a copy of the session's migrated template)."""
    engine = create_engine(make_database(template=migrated_template))
    yield engine
    engine.dispose()


def rows(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def draft(path: Path, layer: str, **options) -> Path:
    """`twin mapping draft` through the CLI; the mapping file it wrote."""
    out = path.with_suffix(".mapping.toml")
    extra = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", v)]
    result = CliRunner().invoke(app, ["mapping", "draft", str(path), "--layer", layer,
                                      "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def segment(i: int, lon: float = LON, lat: float = LAT) -> LineString:
    x, y = lon + (i % 20) * 0.0008, lat + (i // 20) * 0.0006
    return LineString([(x, y), (x + 0.0006, y + 0.0001)])


def osm_streets(n: int = N, lon: float = LON, lat: float = LAT) -> gpd.GeoDataFrame:
    """Streets as an OpenStreetMap extract gives them (osmium / ogr2ogr columns)."""
    rng = np.random.default_rng(13)
    highway = rng.choice(["residential", "unclassified", "living_street", "service", "tertiary",
                          "secondary", "primary", "footway", "trunk_link"], n)
    return gpd.GeoDataFrame(
        {
            "osm_id": [str(24_000_000 + 7 * i) for i in range(n)],
            "name": [None if i % 4 == 0 else f"{['Heping', 'Xinhua', 'Han'][i % 3]} Road"
                     for i in range(n)],
            "highway": highway,
            "surface": rng.choice(["asphalt", "concrete", "paving_stones", None], n),
            "lanes": rng.choice(["2", "1", None, "4", "2;3"], n, p=[0.4, 0.3, 0.2, 0.08, 0.02]),
            "maxspeed": rng.choice(["30", "50", "40 mph", None], n),
        },
        geometry=[segment(i, lon, lat) for i in range(n)],
        crs=4326,
    )


@pytest.mark.parametrize("suffix", ["geojson", "gpkg"])
def test_an_osm_extract_loads_with_its_drafted_mapping(twin, tmp_path, suffix):
    path = tmp_path / f"osm_streets.{suffix}"
    gdf = osm_streets()
    gdf.to_file(path, driver="GeoJSON" if suffix == "geojson" else "GPKG")
    mapping = draft(path, "streets")
    text = mapping.read_text()
    assert "OpenStreetMap" in text and 'external_id = "osm_id"' in text
    assert 'living_street = "residential"' in text and 'footway = "other"' in text

    report = ingest_file(twin, "streets", path, mapping_path=mapping)
    assert report.rows_new >= 0.95 * N and report.rows_rejected == 0
    stored = dict(rows(twin, "SELECT external_id, road_class FROM streets"))
    for osm_id, highway in zip(gdf["osm_id"], gdf["highway"], strict=True):
        expected = {"unclassified": "residential", "living_street": "residential",
                    "footway": "other", "trunk_link": "primary"}.get(highway, highway)
        assert stored[osm_id] == expected
    # What became 'other' or was translated keeps the city's value; unmapped tags stay too.
    footway = gdf.loc[gdf["highway"] == "footway", "osm_id"].iloc[0]
    properties = scalar(twin, "SELECT properties FROM streets WHERE external_id = :id",
                        id=footway)
    assert properties["original_road_class"] == "footway" and "maxspeed" in properties
    # OSM's "2;3" lanes is no number: the value is dropped, the street kept and the reason told.
    rejects = pd.read_csv(report.rejects_path)
    assert set(rejects["outcome"]) == {"kept, value dropped"}
    assert set(rejects["field"]) == {"lanes"}
    assert report.rows_with_values_dropped == (gdf["lanes"] == "2;3").sum()


def municipal_blocks(n: int = N) -> gpd.GeoDataFrame:
    """A city's street blocks: local projected CRS, NULL dates, width 0 for "unknown"."""
    rng = np.random.default_rng(7)
    dates = pd.Series(pd.to_datetime("2015-01-01") + pd.to_timedelta(
        rng.integers(0, 3000, n), unit="D")).dt.date.astype(object)
    dates[rng.random(n) < 0.27] = None  # a quarter of the blocks were never resurfaced
    width = np.round(rng.uniform(4, 18, n), 1)
    width[:12] = 0.0
    gdf = gpd.GeoDataFrame(
        {
            "BLOCK_ID": [f"ZY-{i:05d}" for i in range(n)],
            "STREET": [f"Street {i // 4}" for i in range(n)],
            "ROADCLASS": rng.choice(["Local", "Collector", "Minor Arterial", "Arterial",
                                     "Alley", "Private Way"], n),
            "Date": dates,
            "WIDTH": width,
            "SURF": rng.choice(["AC", "PCC", None], n),
        },
        geometry=[segment(i) for i in range(n)],
        crs=4326,
    )
    return gdf.to_crs(4545)  # CGCS2000 / 3-degree Gauss-Kruger CM 108E


def test_a_municipal_geopackage_with_null_dates_and_zero_widths_keeps_every_row(twin, tmp_path):
    path = tmp_path / "street_blocks.gpkg"
    gdf = municipal_blocks()
    gdf.to_file(path, layer="blocks")
    mapping = draft(path, "streets")
    text = mapping.read_text()
    assert "EPSG:4545" in text and 'format = "iso"' in text

    report = ingest_file(twin, "streets", path, mapping_path=mapping)
    assert (report.rows_new, report.rows_rejected) == (N, 0)
    assert scalar(twin, "SELECT count(*) FROM streets WHERE resurfaced_on IS NULL") == (
        gdf["Date"].isna().sum())
    assert scalar(twin, "SELECT count(*) FROM streets WHERE width_m IS NULL") == 12
    rejects = pd.read_csv(report.rejects_path)
    assert len(rejects) == 12 and set(rejects["outcome"]) == {"kept, value dropped"}
    assert set(rejects["field"]) == {"width_m"}
    assert rejects["reason"].str.contains("below the smallest allowed value").all()
    stored = scalar(twin, "SELECT count(*) FROM ingest_rejects WHERE outcome = "
                          "'kept, value dropped' AND run_id = :r", r=report.run_id)
    assert stored == 12
    classes = dict(rows(twin, "SELECT properties->>'original_road_class', road_class "
                              "FROM streets GROUP BY 1, 2"))
    assert classes["Local"] == "residential" and classes["Minor Arterial"] == "secondary"
    assert classes["Alley"] == "service" and classes["Collector"] == "tertiary"
    # The city's blocks landed where they are: the first one at its known place.
    first = scalar(twin, "SELECT ST_AsText(ST_StartPoint(geom)) FROM streets "
                         "WHERE external_id = 'ZY-00000'")
    x, y = map(float, re.findall(r"[\d.]+", first))
    assert abs(x - LON) < 1e-6 and abs(y - LAT) < 1e-6


def test_a_zipped_shapefile_of_multilinestrings_is_stored_as_it_came(twin, tmp_path):
    n = 120
    gdf = gpd.GeoDataFrame(
        {"SEG_ID": np.arange(1, n + 1), "FULLNAME": [f"Road {i}" for i in range(n)],
         "FUNC_CLASS": np.random.default_rng(3).choice(["Local", "MA", "Collector"], n)},
        geometry=[MultiLineString([segment(i).coords, segment(i + 400).coords])
                  for i in range(n)],
        crs=4326,
    )
    folder = tmp_path / "parts"
    folder.mkdir()
    gdf.to_file(folder / "centerlines.shp")
    path = tmp_path / "centerlines.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for part in folder.iterdir():
            archive.write(part, arcname=part.name)
    report = ingest_file(twin, "streets", path, mapping_path=draft(path, "streets"))
    assert (report.rows_new, report.rows_rejected) == (n, 0)
    kinds = dict(rows(twin, "SELECT GeometryType(geom), count(*) FROM streets GROUP BY 1"))
    assert kinds == {"MULTILINESTRING": n}
    assert scalar(twin, "SELECT min(ST_NumGeometries(geom)) FROM streets") == 2
    # "MA" is a city's own code: kept as 'other', its value in properties.
    assert scalar(twin, "SELECT count(*) FROM streets WHERE road_class = 'other' AND "
                        "properties->>'original_road_class' = 'MA'") == (
        gdf["FUNC_CLASS"] == "MA").sum()


@pytest.mark.parametrize(("column", "codes", "expected"), [
    ("MTFCC", ["S1400", "S1200", "S1100", "S1630", "S1710", "S1730"],
     ["residential", "secondary", "primary", "service", "other", "service"]),
    ("CFCC", ["A41", "A31", "A21", "A11", "A74", "A51"],
     ["residential", "secondary", "primary", "primary", "service", "other"]),
])
def test_tiger_line_classes_are_read_by_their_published_meaning(twin, tmp_path, column, codes,
                                                                 expected):
    n = 240
    gdf = gpd.GeoDataFrame(
        {"TLID": np.arange(600_000, 600_000 + n), "FULLNAME": ["N 1st St"] * n,
         column: [codes[i % len(codes)] for i in range(n)]},
        geometry=[segment(i, -121.885, 37.3375) for i in range(n)],
        crs=4269,  # NAD83, as the Census Bureau publishes TIGER/Line
    )
    path = tmp_path / f"tl_edges_{column.lower()}.geojson"
    gdf.to_file(path, driver="GeoJSON")
    mapping = draft(path, "streets")
    assert "TIGER/Line" in mapping.read_text()
    report = ingest_file(twin, "streets", path, mapping_path=mapping)
    assert report.rows_new >= 0.95 * n
    stored = dict(rows(twin, "SELECT properties->>'original_road_class', road_class "
                              "FROM streets GROUP BY 1, 2"))
    assert stored == dict(zip(codes, expected, strict=True))


# -- whole-file problems: exit 2, one sentence with the next step, nothing written -----------


def nothing_loaded(engine, path: Path) -> bool:
    loaded = scalar(engine, "SELECT count(*) FROM ingest_runs WHERE path = :p AND "
                            "(status = 'succeeded' OR rows_new > 0)", p=str(path))
    return loaded == 0


def test_a_file_without_a_column_for_a_required_field_exits_2_and_names_the_next_step(
        twin, tmp_path):
    path = tmp_path / "osm.geojson"
    osm_streets(50).to_file(path, driver="GeoJSON")
    result = run_twin(twin, "ingest", "streets", path)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "no column for external_id" in message and "osm_id, name, highway" in message
    assert f"twin mapping draft {path} --layer streets" in message
    assert "Traceback" not in message and message.count(". ") == 0
    assert scalar(twin, "SELECT count(*) FROM streets") == 0
    assert scalar(twin, "SELECT count(*) FROM ingest_runs") == 0


def test_a_required_column_empty_in_every_row_exits_2(twin, tmp_path):
    path = tmp_path / "osm.gpkg"
    gdf = osm_streets(60)
    mapping = tmp_path / "m.toml"
    gdf.to_file(path)
    mapping.write_text(draft(path, "streets").read_text())
    gdf.assign(osm_id=None).to_file(path)
    result = run_twin(twin, "ingest", "streets", path, "--mapping", mapping)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no value for external_id in any of its 60 rows" in " ".join(result.stderr.split())
    assert scalar(twin, "SELECT count(*) FROM streets") == 0
    assert nothing_loaded(twin, path)
    assert scalar(twin, "SELECT count(*) FROM ingest_rejects") == 0


def test_a_file_of_another_city_exits_2_with_the_distance_unless_allowed(twin, tmp_path):
    here = tmp_path / "ziyang.gpkg"
    osm_streets(40).to_file(here)
    assert ingest_file(twin, "streets", here, mapping_path=draft(here, "streets")).rows_new == 40
    # Harbin: the same kind of file, about 2,000 km away.
    there = tmp_path / "harbin.gpkg"
    far = osm_streets(30, lon=126.63, lat=45.75)
    far["osm_id"] = "9" + far["osm_id"]
    far.to_file(there)
    mapping = draft(there, "streets")
    result = run_twin(twin, "ingest", "streets", there, "--mapping", mapping)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    km = float(re.search(r"lies ([\d,]+) km from the twin's area", message)[1].replace(",", ""))
    bounds = tuple(rows(twin, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                              "(SELECT ST_Extent(geom) e FROM streets) q")[0])
    assert km == pytest.approx(distance_to_area_km(126.63, 45.75, bounds), abs=25)
    assert 1_500 < km < 2_500
    assert "another city" in message and "--allow-new-area" in message
    assert "swapped" not in message and "CRS" not in message
    assert scalar(twin, "SELECT count(*) FROM streets") == 40 and nothing_loaded(twin, there)

    allowed = run_twin(twin, "ingest", "streets", there, "--mapping", mapping,
                       "--allow-new-area", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["rows_new"] == 30


def test_some_rows_far_away_are_rejected_one_by_one_and_swaps_only_where_they_fit(twin,
                                                                                  tmp_path):
    base = tmp_path / "m.gpkg"
    gpd.GeoDataFrame({"external_id": ["a"], "kind": ["sewer"]},
                     geometry=[Point(LON, LAT)], crs=4326).to_file(base)
    ingest_file(twin, "manholes", base, source="first")
    mixed = gpd.GeoDataFrame(
        {"external_id": ["near", "swapped", "far"], "kind": ["storm"] * 3},
        geometry=[Point(LON + 0.001, LAT), Point(LAT, LON), Point(-121.9, 37.3)], crs=4326)
    mixed.to_file(tmp_path / "mixed.gpkg")
    report = ingest_file(twin, "manholes", tmp_path / "mixed.gpkg", source="county")
    assert (report.rows_new, report.rows_rejected) == (1, 2)
    reasons = pd.read_csv(report.rejects_path).set_index("row_number")["reason"]
    assert reasons[2] == "longitude and latitude look swapped"
    assert reasons[3] == "lies far outside the area already in the twin"


def test_osm_manholes_parking_and_buildings_load_with_their_presets(twin, tmp_path):
    from shapely.geometry import MultiPolygon, Polygon

    def square(i, size=0.0003):
        x, y = LON + (i % 10) * 0.001, LAT + (i // 10) * 0.001
        return Polygon([(x, y), (x + size, y), (x + size, y + size), (x, y + size)])

    manholes = gpd.GeoDataFrame(
        {"osm_id": [str(5_000 + i) for i in range(60)], "man_made": "manhole",
         "manhole": [["sewer", "drain", "telecom", "heating", None][i % 5] for i in range(60)],
         "operator": "Ziyang Water"},
        geometry=[Point(LON + i * 1e-4, LAT) for i in range(60)], crs=4326)
    manholes.to_file(tmp_path / "osm_manholes.geojson", driver="GeoJSON")
    parking = gpd.GeoDataFrame(
        {"osm_id": [str(7_000 + i) for i in range(40)], "amenity": "parking",
         "parking": [["surface", "street_side", "multi-storey", "lane", None][i % 5]
                     for i in range(40)],
         "capacity": [str(20 + i) if i % 3 else None for i in range(40)]},
        geometry=[Point(LON, LAT + i * 1e-4) if i % 4 == 0 else
                  (MultiPolygon([square(i), square(i + 50)]) if i % 4 == 1 else square(i))
                  for i in range(40)], crs=4326)
    parking.to_file(tmp_path / "osm_parking.geojson", driver="GeoJSON")
    buildings = gpd.GeoDataFrame(
        {"osm_id": [str(9_000 + i) for i in range(30)], "building": "apartments",
         "name": [f"Block {i}" for i in range(30)]},
        geometry=[square(i) for i in range(30)], crs=4326)
    buildings.to_file(tmp_path / "osm_buildings.gpkg")

    report = ingest_file(twin, "manholes", tmp_path / "osm_manholes.geojson",
                         mapping_path=draft(tmp_path / "osm_manholes.geojson", "manholes"))
    assert (report.rows_new, report.rows_rejected) == (60, 0)
    kinds = dict(rows(twin, "SELECT coalesce(properties->>'original_kind', kind), kind "
                            "FROM manholes GROUP BY 1, 2"))
    assert kinds == {"sewer": "sewer", "drain": "storm", "telecom": "telecom",
                     "heating": "other", "other": "other"}

    report = ingest_file(twin, "parking", tmp_path / "osm_parking.geojson",
                         mapping_path=draft(tmp_path / "osm_parking.geojson", "parking"))
    assert (report.rows_new, report.rows_rejected) == (40, 0)
    assert dict(rows(twin, "SELECT kind, count(*) FROM parking GROUP BY 1")) == {
        "lot": 16, "on_street": 16, "other": 8}
    assert scalar(twin, "SELECT count(*) FROM parking WHERE GeometryType(geom) = "
                        "'MULTIPOLYGON'") == 10
    assert scalar(twin, "SELECT sum(capacity) FROM parking") == sum(
        20 + i for i in range(40) if i % 3)

    report = ingest_file(twin, "compounds", tmp_path / "osm_buildings.gpkg",
                         mapping_path=draft(tmp_path / "osm_buildings.gpkg", "compounds"))
    assert (report.rows_new, report.rows_rejected) == (30, 0)
    assert scalar(twin, "SELECT count(*) FROM compounds WHERE management_type = 'other' AND "
                        "properties->>'original_management_type' = 'apartments'") == 30


def test_readings_without_a_column_for_a_required_field_exit_2(twin, tmp_path):
    path = tmp_path / "sensors.csv"
    pd.DataFrame({"device": ["MH-1"], "time": ["2024-01-01T00:00:00Z"],
                  "level": [3.0]}).to_csv(path, index=False)
    result = run_twin(twin, "ingest", "readings", path)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "no column for asset_layer; the file has device, time, level" in message
    assert scalar(twin, "SELECT count(*) FROM readings") == 0 and nothing_loaded(twin, path)


def test_a_draft_is_printed_without_out_and_a_bad_file_is_one_sentence(tmp_path):
    path = tmp_path / "osm.geojson"
    osm_streets(20).to_file(path, driver="GeoJSON")
    printed = CliRunner().invoke(app, ["mapping", "draft", str(path), "--layer", "streets"])
    assert printed.exit_code == 0 and 'layer = "streets"' in printed.stdout
    missing = CliRunner().invoke(app, ["mapping", "draft", str(tmp_path / "none.gpkg"),
                                       "--layer", "streets"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_file_the_reader_refuses_is_said_in_the_deployments_language(twin, tmp_path):
    # `twin mapping draft` reads the file without touching the database; `twin metrics set`
    # without a name is refused before connecting. Chinese with TWIN_LANGUAGE=zh, the same
    # English else.
    path = tmp_path / "no_geometry.csv"
    path.write_text("name,width\nMain St,7\n", encoding="utf-8")
    draft = ("mapping", "draft", path, "--layer", "streets")
    chinese = run_twin(twin, *draft, TWIN_LANGUAGE="zh")
    english = run_twin(twin, *draft, TWIN_LANGUAGE="en")
    assert chinese.returncode == english.returncode == 2
    assert chinese.stderr.strip() == (f"错误： {path} 没有经纬度或 WKT 几何列，只有 name, width；"
                                      "请指定要使用的列。"), chinese.stderr
    assert english.stderr.strip() == (f"Error: {path} has no lon/lat or WKT geometry column, "
                                      "only name, width; name the columns to use."), english.stderr
    unnamed = run_twin(twin, "metrics", "set", TWIN_LANGUAGE="zh")
    assert unnamed.returncode == 1
    said = unnamed.stderr.strip()
    assert said == "错误： 请指定指标名，或用 --file 一次声明多个。", said
