"""Exports a GIS analyst trusts: opened with GDAL's ogrinfo, as QGIS would open them.

CSV with its ``.csvt`` and ``.prj`` (types and CRS without guessing), FlatGeobuf, alert details
in every format, districts exportable and filterable, and the database's own
``geometry_columns`` telling ``ogrinfo PG:`` the truth about mixed layers.
"""

import json
import subprocess

import pytest
import sqlalchemy as sa

from geo.alerts import raise_alert
from tests.service.test_exports import (
    OGRINFO,
    STREET_TYPES,
    download,
    ogrinfo_feature,
    ogrinfo_summary,
    twin_export,
)
from tests.tools import requires_tool

pytestmark = requires_tool("ogrinfo")


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


@pytest.fixture(scope="module")
def alert_id(sample_engine) -> int:
    """An alert with details, raised through the alerts module as the rules raise them."""
    with sample_engine.begin() as conn:
        street, ewkt = conn.execute(sa.text(
            "SELECT id, ST_AsEWKT(ST_PointOnSurface(geom)) FROM streets ORDER BY id LIMIT 1")
        ).one()
        found, _ = raise_alert(conn, kind="road_wear", severity="high", asset_layer="streets",
                               asset_id=street, geom_ewkt=ewkt, reason="PCI below 55.",
                               details={"pci": 51.5, "threshold": 55, "note": "雨季 wet"})
    return found


def test_csv_side_files_give_types_and_crs_without_guessing(sample_engine, tmp_path):
    out = tmp_path / "streets.csv"
    result = twin_export(sample_engine, "streets", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "streets.csvt" in result.stdout and "streets.prj" in result.stdout
    assert (tmp_path / "streets.csvt").read_text().startswith('"WKT","Integer64",')
    summary = ogrinfo_summary(str(out), "streets")  # no AUTODETECT_TYPE: the .csvt says
    assert summary["count"] == _count(sample_engine, "SELECT count(*) FROM streets")
    assert {k: summary["fields"][k] for k in STREET_TYPES} == STREET_TYPES
    assert summary["fields"]["id"] == "Integer64"
    assert summary["epsg"] == 4326 or summary["crs_name"] == "WGS 84"
    assert summary["geometry"] in ("Line String", "Unknown (any)")


def test_csv_side_files_over_http_match_the_cli(client, tmp_path):
    for suffix in ("csv", "csvt", "prj"):
        download(client, f"/exports/compounds.{suffix}", tmp_path / f"compounds.{suffix}")
    summary = ogrinfo_summary(str(tmp_path / "compounds.csv"), "compounds")
    assert summary["fields"]["households"] == "Integer"
    assert summary["fields"]["built_year"] == "Integer"
    assert summary["fields"]["name"] == "String"
    assert summary["crs_name"] == "WGS 84"
    # Side files follow the properties asked for.
    csvt = client.get("/exports/compounds.csvt?properties=households,name").text
    assert csvt.strip() == '"WKT","Integer64","Integer","String"'
    assert client.get("/exports/nowhere.csvt").status_code == 404


@pytest.mark.parametrize("layer", ["streets", "parking", "districts"])
def test_flatgeobuf_opens_in_gdal_with_types_count_and_crs(client, sample_engine, tmp_path,
                                                           layer):
    path = download(client, f"/exports/{layer}.fgb", tmp_path / f"{layer}.fgb")
    summary = ogrinfo_summary(str(path), layer)
    assert summary["count"] == _count(sample_engine, f"SELECT count(*) FROM {layer}")
    assert summary["epsg"] == 4326 or summary["crs_name"] == "WGS 84"
    if layer == "streets":
        # FlatGeobuf's column types have no date: a date is a DateTime at midnight.
        assert {k: summary["fields"][k] for k in STREET_TYPES} == {
            **STREET_TYPES, "resurfaced_on": "DateTime"}
    if layer == "parking":  # points and polygons in one layer
        assert summary["geometry"] == "Unknown (any)"
        assert summary["fields"]["capacity"] == "Integer"
    if layer == "districts":
        assert summary["fields"]["level"] == "String"
        assert summary["fields"]["area_km2"] == "Real"


def test_an_empty_flatgeobuf_still_opens(client, tmp_path):
    path = download(client, "/exports/streets.fgb?bbox=0,0,0.001,0.001",
                    tmp_path / "streets.fgb")
    assert ogrinfo_summary(str(path), "streets")["count"] == 0


@pytest.mark.parametrize("suffix", ["gpkg", "geojson", "csv", "fgb"])
def test_alert_details_are_in_every_format(client, alert_id, tmp_path, suffix):
    path = download(client, f"/exports/alerts.{suffix}", tmp_path / f"alerts.{suffix}")
    if suffix == "csv":
        for side in ("csvt", "prj"):
            download(client, f"/exports/alerts.{side}", tmp_path / f"alerts.{side}")
    values = ogrinfo_feature(str(path), "alerts", f"id = {alert_id}")
    details = json.loads(values["details"])
    assert details == {"pci": 51.5, "threshold": 55, "note": "雨季 wet"}
    assert values["district"] not in ("", "(null)")


def test_export_by_district_keeps_only_its_features(sample_engine, tmp_path):
    with sample_engine.connect() as conn:
        grid, count = conn.execute(sa.text(
            "SELECT d.name, count(*) FROM manholes m JOIN districts d ON d.id = m.district_id "
            "GROUP BY d.name ORDER BY count(*) DESC, d.name LIMIT 1")).one()
    out = tmp_path / "manholes.gpkg"
    result = twin_export(sample_engine, "manholes", "--out", str(out), "--district", grid)
    assert result.returncode == 0, result.stderr
    assert ogrinfo_summary(str(out), "manholes")["count"] == count
    others = ogrinfo_summary(str(out), "manholes", "-where", f"district <> '{grid}'")
    assert others["count"] == 0


def test_geometry_columns_register_mixed_layers_as_geometry(sample_engine):
    with sample_engine.begin() as conn:
        # An on-street bay as a point beside the sample's lots (polygons).
        conn.execute(sa.text(
            "INSERT INTO parking (source, external_id, kind, capacity, geom) SELECT 'test', "
            "'BAY-1', 'on_street', 4, ST_PointOnSurface(geom) FROM parking ORDER BY id LIMIT 1"))
        kinds = dict(conn.execute(sa.text(
            "SELECT f_table_name, type FROM geometry_columns")).all())
        assert conn.execute(sa.text(
            "SELECT count(DISTINCT GeometryType(geom)) FROM parking")).scalar_one() == 2
    assert kinds["parking"] == "GEOMETRY" and kinds["compounds"] == "GEOMETRY"
    assert kinds["manholes"] == "POINT"
    url = sample_engine.url
    pg = (f"PG:dbname={url.database} user={url.username} host={url.query['host']}"
          + (f" port={url.port}" if url.port else ""))
    text = subprocess.run([OGRINFO, "-ro", "-so", pg, "parking"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    assert "Geometry: Unknown (any)" in text
    assert f"Feature Count: {_count(sample_engine, 'SELECT count(*) FROM parking')}" in text


def test_gdal_reading_the_csv_over_http_finds_its_side_files(live_url, sample_engine):
    # GDAL reading a streamed CSV by URL looks for its .csvt and .prj beside it, as on disk
    # (/vsicurl_streaming/: the CSV is streamed, so it has no length for /vsicurl/ to range).
    source = f"/vsicurl_streaming/{live_url}/exports/compounds.csv"
    summary = ogrinfo_summary(source, "compounds")
    assert summary["count"] == _count(sample_engine, "SELECT count(*) FROM compounds")
    assert summary["fields"]["households"] == "Integer"
    assert summary["crs_name"] == "WGS 84"


@pytest.mark.parametrize("suffix", ["fgb", "gpkg", "parquet"])
def test_a_layer_with_multipolygons_is_multipolygon_in_one_type_formats(
        client, sample_engine, tmp_path, suffix):
    # A district in two parts (a city's grid with an exclave) among the sample's polygons.
    with sample_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO districts (source, external_id, name, level, geom) SELECT 'test', "
            "'EXCLAVE', '飞地网格', 'grid', ST_Multi(ST_Union(ST_Buffer(ST_PointOnSurface(geom),"
            " 0.0005), ST_Translate(ST_Buffer(ST_PointOnSurface(geom), 0.0005), 0.01, 0))) "
            "FROM districts WHERE level = 'sub_district'"))
    try:
        path = download(client, f"/exports/districts.{suffix}", tmp_path / f"d.{suffix}")
        if suffix == "parquet":  # Debian 12's GDAL has no Parquet driver: its own metadata
            import pyarrow.parquet as pq

            geo = json.loads(pq.read_schema(path).metadata[b"geo"])
            assert geo["columns"]["geometry"]["geometry_types"] == ["Polygon", "MultiPolygon"]
            return
        summary = ogrinfo_summary(str(path), "districts")
        assert summary["geometry"] == "Multi Polygon"
        assert summary["count"] == _count(sample_engine, "SELECT count(*) FROM districts")
    finally:
        with sample_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM districts WHERE source = 'test'"))
