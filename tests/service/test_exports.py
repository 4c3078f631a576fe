"""Exports: each format downloaded (HTTP and CLI), then opened as an analyst would, with GDAL.

The files are checked with GDAL's own ``ogrinfo`` (what QGIS reads them with): layer name,
feature count against the database's, geometry type, CRS, field types, and one known
feature's values. GeoParquet is read with pyarrow and geopandas when this machine's GDAL has
no Parquet driver.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
import shapely
import sqlalchemy as sa

from geo.database import create_engine
from service import export_formats
from service.app import create_app
from service.settings import ServiceSettings
from tests.tools import find_tool, problem_of, requires_tool

OGRINFO = find_tool("ogrinfo")
BBOX = (108.53, 32.515, 108.54, 32.52)
BBOX_TEXT = ",".join(map(str, BBOX))
KNOWN_STREET = "ST-00001"

pytestmark = requires_tool("ogrinfo")  # GDAL's, from gdal-bin


# -- helpers ------------------------------------------------------------------------------------


def ogrinfo_summary(source: str, layer: str, *options: str) -> dict:
    """What ``ogrinfo -ro -so`` says of a layer: name, geometry, count, EPSG, field types."""
    text = subprocess.run([OGRINFO, "-ro", "-so", *options, source, layer], check=True,
                          capture_output=True, text=True, timeout=30).stdout
    fields = dict(re.findall(r"^(\w+): (\w+) \(", text, flags=re.MULTILINE))
    ids = re.findall(r'ID\["EPSG",(\d+)\]\]\s*$', text, flags=re.MULTILINE)
    return {
        "layer": re.search(r"^Layer name: (.+)$", text, flags=re.MULTILINE).group(1),
        "geometry": re.search(r"^Geometry: (.+)$", text, flags=re.MULTILINE).group(1),
        "count": int(re.search(r"^Feature Count: (\d+)$", text, flags=re.MULTILINE).group(1)),
        "epsg": int(ids[-1]) if ids else None,
        "crs_name": (m.group(1) if (m := re.search(r'^GEOGCRS\["([^"]+)"', text, re.MULTILINE))
                     else None),
        "fields": fields,
    }


def ogrinfo_feature(source: str, layer: str, where: str, *options: str) -> dict:
    """One feature's values as ``ogrinfo`` prints them (text), and its geometry."""
    text = subprocess.run([OGRINFO, "-ro", "-q", "-al", *options, "-where", where, source],
                          check=True, capture_output=True, text=True, timeout=30).stdout
    values = dict(re.findall(r"^  (\w+) \(\w+\) = (.*)$", text, flags=re.MULTILINE))
    geometries = re.findall(r"^  ((?:MULTI)?(?:POINT|LINESTRING|POLYGON) .*)$", text,
                            flags=re.MULTILINE)
    assert len(geometries) == 1, text
    values["geometry"] = shapely.from_wkt(geometries[0])
    return values


def download(client, url: str, path: Path) -> Path:
    response = client.get(url)
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return path


def twin_export(sample_engine, *args: str, **settings: str) -> subprocess.CompletedProcess:
    """Run ``twin export ...`` as a subprocess on the sample database (``settings``: more
    environment variables, such as ``TWIN_LANGUAGE``)."""
    command = [str(Path(sys.executable).parent / "twin"), "export", *args]
    env = {**os.environ,
           "TWIN_DATABASE_URL": sample_engine.url.render_as_string(hide_password=False),
           **settings}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def streets_truth(sample_engine) -> dict:
    """Counts of streets in the database, and the known street as the database holds it."""
    with sample_engine.connect() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM streets")).scalar_one()
        in_box = conn.execute(sa.text(
            "SELECT count(*) FROM streets WHERE ST_Intersects(geom, "
            "ST_MakeEnvelope(:w, :s, :e, :n, 4326))"),
            dict(zip("wsen", BBOX, strict=True))).scalar_one()
        row = conn.execute(sa.text(
            "SELECT s.id, s.name, s.width_m, s.lanes, s.resurfaced_on, ST_AsText(s.geom), "
            "p.value, p.observed_at AT TIME ZONE 'UTC' FROM streets s LEFT JOIN LATERAL "
            "(SELECT r.value, r.observed_at FROM readings r JOIN metrics m ON m.id = r.metric_id "
            " WHERE m.name = 'pci' AND r.asset_id = s.id AND r.observed_at <= now() "
            " ORDER BY r.observed_at DESC LIMIT 1) p ON TRUE WHERE s.external_id = :ext"),
            {"ext": KNOWN_STREET}).one()
    known = dict(zip(("id", "name", "width_m", "lanes", "resurfaced_on", "wkt", "pci",
                      "pci_observed_at"), row, strict=True))
    assert 0 < in_box < total and known["pci"] is not None
    return {"total": total, "in_box": in_box, "known": known}


def assert_known_street(values: dict, known: dict, *, names: dict | None = None,
                        datetime_as_text: bool = False) -> None:
    names = names or {}

    def value(name: str) -> str:
        return values[names.get(name, name)]

    assert int(value("id")) == known["id"]
    assert value("name") == known["name"]
    assert float(value("width_m")) == pytest.approx(known["width_m"])
    assert int(value("lanes")) == known["lanes"]
    assert value("resurfaced_on") == f"{known['resurfaced_on']:%Y/%m/%d}"
    assert float(value("pci")) == pytest.approx(known["pci"])
    observed: datetime = known["pci_observed_at"]
    if datetime_as_text:
        assert value("pci_observed_at") == f"{observed:%Y-%m-%dT%H:%M:%S}Z"
    else:
        assert value("pci_observed_at").startswith(f"{observed:%Y/%m/%d %H:%M:%S}")
        assert value("pci_observed_at").endswith("+00")
    assert values["geometry"].equals_exact(shapely.from_wkt(known["wkt"]), tolerance=1e-6)


STREET_TYPES = {"width_m": "Real", "lanes": "Integer", "resurfaced_on": "Date",
                "pci": "Real", "pci_observed_at": "DateTime", "name": "String"}


# -- each format, as QGIS would open it -----------------------------------------------------------


@pytest.mark.parametrize("suffix", ["gpkg", "geojson"])
def test_gpkg_and_geojson_keep_layer_types_and_crs(client, streets_truth, tmp_path, suffix):
    path = download(client, f"/exports/streets.{suffix}", tmp_path / f"streets.{suffix}")
    summary = ogrinfo_summary(str(path), "streets")
    assert summary["layer"] == "streets"
    assert summary["count"] == streets_truth["total"]
    assert summary["geometry"] == "Line String"
    assert summary["epsg"] == 4326 and summary["crs_name"] == "WGS 84"
    assert {k: summary["fields"][k] for k in STREET_TYPES} == STREET_TYPES
    assert summary["fields"]["id"] in ("Integer", "Integer64")
    known = streets_truth["known"]
    assert_known_street(ogrinfo_feature(str(path), "streets", f"id = {known['id']}"), known)

    boxed = download(client, f"/exports/streets.{suffix}?bbox={BBOX_TEXT}",
                     tmp_path / f"boxed.{suffix}")
    assert ogrinfo_summary(str(boxed), "streets")["count"] == streets_truth["in_box"]


def test_geojson_is_rfc7946(client):
    response = client.get("/exports/compounds.geojson")
    assert response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    feature = collection["features"][0]
    assert feature["properties"]["id"] == feature["id"]
    rings = [shapely.geometry.shape(f["geometry"]).exterior for f in collection["features"]]
    assert rings and all(ring.is_ccw for ring in rings)  # outer rings counter-clockwise


def test_csv_has_header_wkt_and_types(client, streets_truth, tmp_path):
    path = download(client, "/exports/streets.csv", tmp_path / "streets.csv")
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("WKT,id,external_id,")
    # QGIS's "detect field types" is GDAL's AUTODETECT_TYPE; CSV itself holds no CRS.
    summary = ogrinfo_summary(str(path), "streets", "-oo", "AUTODETECT_TYPE=YES")
    assert summary["layer"] == "streets"
    assert summary["count"] == streets_truth["total"]
    assert {k: summary["fields"][k] for k in STREET_TYPES} == STREET_TYPES
    known = streets_truth["known"]
    values = ogrinfo_feature(str(path), "streets", f"id = {known['id']}",
                             "-oo", "AUTODETECT_TYPE=YES")
    assert_known_street(values, known)

    # A CSV's layer is named after the file, as it is served: streets.csv.
    (tmp_path / "boxed").mkdir()
    boxed = download(client, f"/exports/streets.csv?bbox={BBOX_TEXT}",
                     tmp_path / "boxed" / "streets.csv")
    assert ogrinfo_summary(str(boxed), "streets")["count"] == streets_truth["in_box"]


def test_shapefile_zip_has_all_parts_and_mapped_fields(client, streets_truth, tmp_path):
    path = download(client, "/exports/streets.shp.zip", tmp_path / "streets.shp.zip")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == sorted(
            ["README.txt"] + [f"streets.{ext}" for ext in ("shp", "shx", "dbf", "prj", "cpg")])
        assert archive.read("streets.cpg").decode().strip() == "UTF-8"
        readme = archive.read("README.txt").decode()
    names = export_formats.shapefile_field_names(export_formats.find_layer("streets"))
    assert names["pci_observed_at"] == "pci_observ" and names["resurfaced_on"] == "resurfaced"
    assert re.search(r"^pci_observ\s+pci_observed_at\s+text: ISO 8601", readme, re.MULTILINE)

    summary = ogrinfo_summary(f"/vsizip/{path}", "streets")
    assert summary["layer"] == "streets"
    assert summary["count"] == streets_truth["total"]
    assert summary["geometry"] == "Line String"
    assert summary["epsg"] == 4326 and summary["crs_name"] == "WGS 84"
    # dBASE has dates but no date-times: those are ISO 8601 text (see README.txt).
    expected = {**STREET_TYPES, "pci_observed_at": "String"}
    assert {k: summary["fields"][names[k]] for k in expected} == expected
    assert all(len(field) <= 10 for field in summary["fields"])
    known = streets_truth["known"]
    values = ogrinfo_feature(f"/vsizip/{path}", "streets", f"id = {known['id']}")
    assert_known_street(values, known, names=names, datetime_as_text=True)

    boxed = download(client, f"/exports/streets.shp.zip?bbox={BBOX_TEXT}",
                     tmp_path / "boxed.shp.zip")
    assert ogrinfo_summary(f"/vsizip/{boxed}", "streets")["count"] == streets_truth["in_box"]


def test_shapefile_of_a_mixed_layer_has_one_file_per_geometry_kind(client, sample_engine,
                                                                   tmp_path):
    path = download(client, "/exports/parking.shp.zip?properties=occupancy_observed_at",
                    tmp_path / "parking.shp.zip")
    with sample_engine.connect() as conn:
        kinds = dict(conn.execute(sa.text(
            "SELECT CASE WHEN GeometryType(geom) = 'POINT' THEN 'points' ELSE 'polygons' END, "
            "count(*) FROM parking GROUP BY 1")).all())
    with zipfile.ZipFile(path) as archive:
        shapefiles = sorted(n for n in archive.namelist() if n.endswith(".shp"))
    assert shapefiles == sorted(f"parking_{kind}.shp" for kind in kinds)
    for kind, count in kinds.items():
        summary = ogrinfo_summary(f"/vsizip/{path}", f"parking_{kind}")
        assert summary["count"] == count
        # The same field name as in a full export: the mapping depends on the layer only.
        assert set(summary["fields"]) == {"id", "occupanc_1"}


def test_geoparquet_keeps_types_crs_and_metadata(client, streets_truth, tmp_path):
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = download(client, "/exports/streets.parquet", tmp_path / "streets.parquet")
    schema = pq.read_schema(path)
    geo = json.loads(schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["LineString"]
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    assert schema.field("lanes").type == pa.int32()
    assert schema.field("id").type == pa.int64()
    assert schema.field("width_m").type == pa.float64()
    assert schema.field("resurfaced_on").type == pa.date32()
    assert schema.field("pci_observed_at").type == pa.timestamp("us", tz="UTC")

    frame = gpd.read_parquet(path)
    assert frame.crs.to_epsg() == 4326
    assert len(frame) == streets_truth["total"]
    known = streets_truth["known"]
    row = frame.set_index("id").loc[known["id"]]
    assert row["name"] == known["name"] and row["lanes"] == known["lanes"]
    assert row["width_m"] == pytest.approx(known["width_m"])
    assert row["resurfaced_on"] == known["resurfaced_on"]
    assert row["pci_observed_at"].to_pydatetime().replace(tzinfo=None) == known["pci_observed_at"]
    assert row["geometry"].equals_exact(shapely.from_wkt(known["wkt"]), tolerance=1e-9)

    boxed = download(client, f"/exports/streets.parquet?bbox={BBOX_TEXT}",
                     tmp_path / "boxed.parquet")
    assert pq.read_metadata(boxed).num_rows == streets_truth["in_box"]
    formats = subprocess.run([OGRINFO, "--formats"], capture_output=True, text=True).stdout
    if "Parquet" in formats:  # GDAL built with Arrow: check what QGIS would see, too
        summary = ogrinfo_summary(str(path), "streets")
        assert summary["count"] == streets_truth["total"] and summary["epsg"] == 4326


# -- HTTP details ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", list(export_formats.FORMATS))
def test_headers(client, suffix):
    fmt = export_formats.FORMATS[suffix]
    response = client.get(f"/exports/compounds.{suffix}")
    assert response.status_code == 200
    assert response.headers["content-type"] == fmt.media_type
    assert response.headers["content-disposition"] == f'attachment; filename="compounds.{suffix}"'
    # Streamed formats have no length known in advance; file formats are sent from the file.
    assert ("content-length" in response.headers) != fmt.streamed


@pytest.mark.parametrize(("name", "suffix"), [("compounds.json", "geojson"),
                                              ("compounds.zip", "shp.zip"),
                                              ("compounds.geoparquet", "parquet")])
def test_alias_suffixes_are_served_as_their_format(client, name, suffix):
    # The layer and format of every alias must come back as a pair (a bare format was a 500).
    assert export_formats.split_file_name(name)[1] is export_formats.FORMATS[suffix]
    response = client.get(f"/exports/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == export_formats.FORMATS[suffix].media_type
    assert response.headers["content-disposition"] == f'attachment; filename="compounds.{suffix}"'


def test_file_exports_leave_no_temporary_files(client, tmp_path, monkeypatch):
    # A temporary directory of the test's own: exports running at the same time elsewhere
    # (other test workers on this machine) come and go in the shared one.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pattern = "twin-export-*"
    before = set(Path(tempfile.gettempdir()).glob(pattern))
    for suffix in ("gpkg", "shp.zip", "parquet"):
        assert client.get(f"/exports/manholes.{suffix}").status_code == 200
    assert set(Path(tempfile.gettempdir()).glob(pattern)) == before


def test_rows_are_read_in_chunks_from_a_server_side_cursor(sample_engine):
    from geo.exports import read_features

    query = export_formats.export_query(export_formats.find_layer("compounds"))
    sizes, open_cursors = [], []
    with sample_engine.connect() as conn:
        _, chunks = read_features(conn, query, chunk_rows=10)
        for rows in chunks:
            sizes.append(len(rows))
            open_cursors.append(conn.execute(sa.text(
                "SELECT count(*) FROM pg_cursors WHERE name <> ''")).scalar_one())
    assert max(sizes) == 10 and sum(sizes) == 54
    assert all(n == 1 for n in open_cursors)  # a server-side cursor, fetched 10 rows at a time


def test_filters_datetime_and_properties(client, sample_engine):
    with sample_engine.connect() as conn:
        primary = conn.execute(sa.text(
            "SELECT count(*) FROM streets WHERE road_class = 'primary'")).scalar_one()
        in_2025_h1 = conn.execute(sa.text(
            "SELECT count(*) FROM road_damage WHERE observed_at >= '2025-01-01T00:00:00Z' "
            "AND observed_at <= '2025-06-30T23:59:59.999999Z'")).scalar_one()
        by_then = conn.execute(sa.text(
            "SELECT count(*) FROM road_damage WHERE observed_at <= '2025-03-01T00:00:00Z'"
        )).scalar_one()
        pothole_or_alligator = conn.execute(sa.text(
            "SELECT count(*) FROM road_damage WHERE damage_class IN ('D40', 'D20')"
        )).scalar_one()
    response = client.get("/exports/streets.geojson?road_class=primary&properties=lanes,id,name")
    features = response.json()["features"]
    assert len(features) == primary > 0
    assert list(features[0]["properties"]) == ["id", "lanes", "name"]

    def rows(url: str) -> int:
        return len(client.get(url).text.strip().splitlines()) - 1

    assert rows("/exports/road_damage.csv?datetime=2025-03-01T00:00:00Z") == by_then
    assert rows("/exports/road_damage.csv?datetime=2025-01-01/2025-06-30") == in_2025_h1
    assert rows("/exports/road_damage.csv?damage_class=D40&damage_class=D20") \
        == pothole_or_alligator
    assert 0 < by_then and 0 < in_2025_h1 and 0 < pothole_or_alligator
    # The last day there is: its end is the state asked for, and nothing overflows.
    assert client.get("/exports/road_damage.csv?datetime=9999-12-31").status_code == 200


def test_an_empty_export_is_a_valid_file(client, tmp_path):
    path = download(client, "/exports/streets.gpkg?bbox=0,0,1,1", tmp_path / "empty.gpkg")
    summary = ogrinfo_summary(str(path), "streets")
    assert summary["count"] == 0 and summary["fields"]["lanes"] == "Integer"
    assert client.get("/exports/streets.geojson?bbox=0,0,1,1").json()["features"] == []


@pytest.mark.parametrize(("url", "status"), [
    ("/exports/nowhere.gpkg", 404),
    ("/exports/streets.xlsx", 404),
    ("/exports/streets.shp", 404),
    ("/exports/streets.gpkg?bbox=1,2", 400),
    ("/exports/streets.gpkg?bbox=a,b,c,d", 400),
    ("/exports/streets.gpkg?bbox=108.6,32.5,108.5,32.6", 400),
    ("/exports/streets.csv?bbox=0,0,200,1", 400),
    ("/exports/streets.csv?bbox=nan,0,1,1", 400),
    ("/exports/streets.geojson?datetime=yesterday", 400),
    ("/exports/streets.geojson?datetime=2025-13-01", 400),
    ("/exports/streets.geojson?datetime=2025-06-01T00:00:00", 400),
    ("/exports/road_damage.csv?datetime=2025-06-01/2025-01-01", 400),
    ("/exports/road_damage.csv?datetime=0001-01-01T00:00:00%2B01:00", 400),
    ("/exports/road_damage.csv?datetime=9999-12-31T23:00:00-05:00", 400),
    ("/exports/streets.parquet?lanes=two", 400),
    ("/exports/streets.parquet?lanes=99999999999999999999", 400),
    ("/exports/streets.parquet?width_m=inf", 400),
    ("/exports/streets.gpkg?resurfaced_on=soon", 400),
    ("/exports/streets.gpkg?name=a%00b", 400),
    ("/exports/streets.gpkg?colour=red", 400),
    ("/exports/streets.shp.zip?properties=lanes,colour", 400),
])
def test_bad_requests_are_problems(client, url, status):
    body = problem_of(client.get(url), status)
    assert body["status"] == status and body["detail"]


def test_reading_needs_a_key_when_reading_is_closed(sample_engine, api_keys):
    from fastapi.testclient import TestClient

    app = create_app(sample_engine, ServiceSettings(open_read=False))
    with TestClient(app, raise_server_exceptions=False) as closed:
        assert closed.get("/exports/compounds.csv").status_code == 401
        answer = closed.get("/exports/compounds.csv", headers={"X-API-Key": api_keys["viewer"]})
        assert answer.status_code == 200


def test_index_links_every_layer_and_format(client):
    body = client.get("/exports").json()
    assert [f["suffix"] for f in body["formats"]] == list(export_formats.FORMATS)
    hrefs = {link["href"] for layer in body["layers"] for link in layer["links"]}
    assert "http://testserver/exports/road_damage.shp.zip" in hrefs


# -- the command ----------------------------------------------------------------------------------


def test_cli_help_names_every_format():
    from service.cli.export import FORMAT_HELP

    assert FORMAT_HELP.replace(" or ", ", ").split(", ") == list(export_formats.FORMATS)


def test_cli_writes_a_geopackage(sample_engine, streets_truth, tmp_path):
    out = tmp_path / "boxed.gpkg"
    done = twin_export(sample_engine, "streets", "--format", "gpkg", "--out", str(out),
                       "--bbox", BBOX_TEXT, "--datetime", f"{date.today().isoformat()}")
    assert done.returncode == 0, done.stderr
    summary = ogrinfo_summary(str(out), "streets")
    assert summary["count"] == streets_truth["in_box"]
    assert summary["geometry"] == "Line String" and summary["epsg"] == 4326
    assert {k: summary["fields"][k] for k in STREET_TYPES} == STREET_TYPES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxed.gpkg"]


def test_cli_infers_the_format_and_filters(sample_engine, streets_truth, tmp_path):
    out = tmp_path / "known.geojson"
    done = twin_export(sample_engine, "streets", "--out", str(out),
                       "--where", f"external_id={KNOWN_STREET}")
    assert done.returncode == 0, done.stderr
    assert "Wrote 1 feature of streets" in done.stdout
    known = streets_truth["known"]
    assert_known_street(ogrinfo_feature(str(out), "streets", f"id = {known['id']}"), known)


@pytest.mark.parametrize("args", [
    ("streets", "--format", "gpkg", "--bbox", "1,2,3"),
    ("streets", "--format", "csv", "--datetime", "last week"),
    ("streets", "--format", "xlsx"),
    ("nowhere", "--format", "gpkg"),
    ("streets", "--format", "gpkg", "--where", "lanes=two"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(sample_engine, tmp_path, args):
    out = tmp_path / "out.file"
    done = twin_export(sample_engine, *args, "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr.strip()
    assert message.startswith("Error:") and len(message.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_refusals_speak_the_deployments_language(sample_engine, tmp_path):
    # Both are refused before the database is used: a name without a format, a missing
    # directory for --out.
    cases = [
        (str(tmp_path / "out.xyz"),
         "无法从文件名“out.xyz”判断格式；请给出 --format（可用：gpkg, geojson, csv, shp.zip, "
         "parquet, fgb）。",
         "Cannot tell the format from the name 'out.xyz'; give --format (one of: gpkg, "
         "geojson, csv, shp.zip, parquet, fgb)."),
        (str(tmp_path / "missing" / "x.gpkg"),
         f"--out 所在的目录“{tmp_path / 'missing'}”不存在。",
         f"The directory '{tmp_path / 'missing'}' of --out does not exist."),
    ]
    for out, chinese, english in cases:
        for language, expected in (("zh", f"错误： {chinese}"), ("en", f"Error: {english}")):
            done = twin_export(sample_engine, "streets", "--out", out, TWIN_LANGUAGE=language)
            assert done.returncode == 2, done.stdout + done.stderr
            assert done.stderr.strip() == expected
    assert list(tmp_path.iterdir()) == []


def test_cli_failure_midway_leaves_no_file(sample_engine, tmp_path):
    out = tmp_path / "streets.gpkg"
    out.write_bytes(b"an earlier export")
    gone = create_engine(sample_engine.url.set(database="no_such_database"))
    query = export_formats.export_query(export_formats.find_layer("streets"))
    with pytest.raises(sa.exc.OperationalError):
        export_formats.write_export_to(gone, query, export_formats.FORMATS["gpkg"], out)
    gone.dispose()
    assert [p.name for p in tmp_path.iterdir()] == ["streets.gpkg"]
    assert out.read_bytes() == b"an earlier export"  # the old file is untouched
