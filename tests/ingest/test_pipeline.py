"""Ingest end to end against a real PostGIS: formats, idempotence, atomicity, rejects, CRS."""

import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import sqlalchemy as sa
from shapely.geometry import LineString, Point, Polygon

from geo.database import create_engine
from geo.errors import InvalidInput
from ingest.metrics import MetricDeclaration, declare_metrics
from ingest.pipeline import ingest_file
from tests.ingest.twin_cli import TWIN, run_twin, scalar

# A real city's records, committed with their licence and source (tests/data/.../README.md).
SANJOSE = Path(__file__).parents[1] / "data" / "sanjose_illegal_dumping"
SANJOSE_CSV = SANJOSE / "illegal_dumping.csv"
SANJOSE_MAPPING = Path(__file__).parents[2] / "sample_data" / "mappings" / (
    "sanjose_illegal_dumping.toml"
)
# Ziyang's centre; test layers sit around it.
LON, LAT = 108.54, 32.52


@pytest.fixture
def twin(make_database, migrated_template):
    """An empty, migrated twin of the test's own (a copy of the session's migrated template)."""
    engine = create_engine(make_database(template=migrated_template))
    yield engine
    engine.dispose()


def manholes(n=5) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "external_id": [f"MH-{i}" for i in range(n)],
            "kind": ["sewer", "storm", "water", "power", "gas"][:n] * (n // 5 or 1),
            "depth_m": [1.5 + i / 10 for i in range(n)],
            "vendor": [f"v{i}" for i in range(n)],
        },
        geometry=[Point(LON + i / 1000, LAT + i / 2000) for i in range(n)],
        crs=4326,
    )


def write_format(gdf: gpd.GeoDataFrame, tmp_path: Path, fmt: str) -> tuple[Path, dict]:
    """Write a layer in one format; return the path and the extra ingest options it needs."""
    if fmt == "gpkg":
        path = tmp_path / "city.gpkg"
        gdf.to_file(path, layer="manholes")
        gdf.head(1).to_file(path, layer="other")
        return path, {"layer_name": "manholes"}
    if fmt == "geojson":
        path = tmp_path / "m.geojson"
        gdf.to_file(path, driver="GeoJSON")
    elif fmt == "geojsonseq":
        path = tmp_path / "m.geojsonl"
        gdf.to_file(path, driver="GeoJSONSeq")
    elif fmt in ("shp", "zip"):
        path = tmp_path / "m.shp"
        gdf.to_file(path)
        if fmt == "zip":
            archive = tmp_path / "m.zip"
            with zipfile.ZipFile(archive, "w") as z:
                for part in tmp_path.glob("m.*"):
                    if part != archive:
                        z.write(part, part.name)
            path = archive
    elif fmt == "csv-lonlat":
        path = tmp_path / "m.csv"
        frame = pd.DataFrame(gdf.drop(columns="geometry"))
        frame["lon"], frame["lat"] = gdf.geometry.x, gdf.geometry.y
        frame.to_csv(path, index=False)
    elif fmt == "csv-wkt":
        path = tmp_path / "m.csv"
        frame = pd.DataFrame(gdf.drop(columns="geometry"))
        frame["wkt"] = gdf.geometry.to_wkt()
        frame.to_csv(path, index=False)
        return path, {"crs": "EPSG:4326"}
    elif fmt == "parquet":
        path = tmp_path / "m.parquet"
        gdf.to_parquet(path)
    return path, {}


FORMATS = ["gpkg", "geojson", "geojsonseq", "shp", "zip", "csv-lonlat", "csv-wkt", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_loads_where_the_features_are(twin, tmp_path, fmt):
    gdf = manholes()
    path, options = write_format(gdf, tmp_path, fmt)
    report = ingest_file(twin, "manholes", path, source="county", **options)
    assert (report.rows_read, report.rows_new, report.rows_rejected) == (5, 5, 0)
    with twin.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT external_id, kind, depth_m, properties->>'vendor', ST_X(geom), ST_Y(geom) "
            "FROM manholes WHERE source = 'county' ORDER BY external_id")).all()
    assert [r[0] for r in rows] == list(gdf["external_id"])
    for row, (_, expected) in zip(rows, gdf.iterrows(), strict=True):
        assert row[1] == expected["kind"] and row[2] == pytest.approx(expected["depth_m"])
        assert row[3] == expected["vendor"]
        assert row[4] == pytest.approx(expected.geometry.x, abs=1e-9)
        assert row[5] == pytest.approx(expected.geometry.y, abs=1e-9)


def test_a_second_run_changes_nothing_and_a_changed_row_is_one_update(twin, tmp_path):
    path = tmp_path / "m.gpkg"
    manholes().to_file(path)
    first = ingest_file(twin, "manholes", path, source="county")
    stamp = scalar(twin, "SELECT max(updated_at) FROM manholes")
    second = ingest_file(twin, "manholes", path, source="county")
    assert (first.rows_new, second.rows_new, second.rows_updated, second.rows_unchanged) == (
        5, 0, 0, 5)
    assert scalar(twin, "SELECT max(updated_at) FROM manholes") == stamp
    assert scalar(twin, "SELECT count(*) FROM manholes") == 5

    changed = manholes()
    changed.loc[2, "depth_m"] = 9.0
    changed.to_file(path)
    third = ingest_file(twin, "manholes", path, source="county")
    assert (third.rows_new, third.rows_updated, third.rows_unchanged) == (0, 1, 4)
    assert scalar(twin, "SELECT count(*) FROM manholes WHERE updated_at > :t", t=stamp) == 1
    runs = scalar(twin, "SELECT count(*) FROM ingest_runs WHERE status = 'succeeded'")
    assert runs == 3


def test_readings_second_run_is_unchanged(twin, tmp_path):
    manholes().to_file(tmp_path / "m.gpkg")
    ingest_file(twin, "manholes", tmp_path / "m.gpkg", source="county")
    readings = pd.DataFrame({
        "asset_layer": "manholes", "asset_external_id": ["MH-0", "MH-1", "MH-0"],
        "metric": ["tilt_deg", "tilt_deg", "water_level_pct"],
        "observed_at": "2026-01-01T08:00:00+08:00", "value": [1.0, 2.0, 40.0],
    })
    readings.to_csv(tmp_path / "r.csv", index=False)
    first = ingest_file(twin, "readings", tmp_path / "r.csv")
    second = ingest_file(twin, "readings", tmp_path / "r.csv")
    assert (first.rows_new, second.rows_new, second.rows_unchanged) == (3, 0, 3)
    assert scalar(twin, "SELECT count(*) FROM readings") == 3
    assert scalar(twin, "SELECT min(observed_at) FROM readings").isoformat() == (
        "2026-01-01T00:00:00+00:00")


def test_rows_are_rejected_with_their_row_field_and_reason(twin, tmp_path):
    gdf = manholes(5)
    gdf.loc[1, "kind"] = "lava"
    gdf.loc[2, "depth_m"] = -3
    gdf.loc[3, "external_id"] = "MH-0"
    gdf.loc[4, "geometry"] = Point(LAT + 0.001, LON + 0.001)  # lat, lon the wrong way round
    path = tmp_path / "m.geojson"
    gdf.to_file(path, driver="GeoJSON")
    ingest_file(twin, "manholes", tmp_path / "m.geojson", source="first")  # sets the area
    report = ingest_file(twin, "manholes", path, source="county")
    # Issue 13: an optional field (depth_m) never costs a row; its bad value is dropped.
    assert (report.rows_new, report.rows_rejected, report.rows_with_values_dropped) == (2, 3, 1)
    rejects = pd.read_csv(report.rejects_path)
    assert Path(report.rejects_path) == tmp_path / "m.rejects.csv"
    reasons = dict(zip(rejects["row_number"], rejects["reason"], strict=False))
    outcomes = dict(zip(rejects["row_number"], rejects["outcome"], strict=False))
    assert "is not one of sewer" in reasons[2]
    assert "below the smallest allowed value" in reasons[3]
    assert outcomes[3] == "kept, value dropped" and outcomes[2] == "rejected"
    assert reasons[4] == "repeats the id of row 1"
    assert reasons[5] == "longitude and latitude look swapped"
    stored = scalar(twin, "SELECT count(*) FROM ingest_rejects WHERE run_id = :r",
                    r=report.run_id)
    assert stored == 4
    assert scalar(twin, "SELECT depth_m IS NULL FROM manholes WHERE source = 'county' "
                        "AND external_id = 'MH-2'")


def test_wrong_geometry_type_empty_and_invalid_geometries(twin, tmp_path):
    square = Polygon([(LON, LAT), (LON + 0.001, LAT), (LON + 0.001, LAT + 0.001),
                      (LON, LAT + 0.001)])
    spike = Polygon([(LON, LAT), (LON + 0.002, LAT), (LON + 0.002, LAT + 0.001),
                     (LON + 0.001, LAT + 0.001), (LON + 0.001, LAT + 0.002),
                     (LON + 0.001, LAT + 0.001), (LON, LAT + 0.001)])  # a dangling spike
    bowtie = Polygon([(LON, LAT), (LON + 0.001, LAT + 0.001), (LON + 0.001, LAT),
                      (LON, LAT + 0.001)])
    gdf = gpd.GeoDataFrame(
        {"external_id": ["ok", "line", "empty", "spike", "bowtie"],
         "management_type": "old"},
        geometry=[square, LineString([(LON, LAT), (LON + 0.001, LAT)]), Polygon(), spike,
                  bowtie], crs=4326)
    path = tmp_path / "c.gpkg"
    gdf.to_file(path, layer="compounds")
    report = ingest_file(twin, "compounds", path, source="county")
    rejects = pd.read_csv(report.rejects_path)
    outcome = {r.row_number: (r.outcome, r.reason) for r in rejects.itertuples()}
    assert outcome[2][0] == "rejected" and "is not a Polygon" in outcome[2][1]
    assert outcome[3] == ("rejected", "is empty")
    assert outcome[4] == ("repaired", "was invalid and was repaired")
    assert outcome[5][0] == "rejected" and "cannot be repaired" in outcome[5][1]
    assert (report.rows_new, report.rows_rejected, report.rows_repaired) == (2, 3, 1)
    assert scalar(twin, "SELECT bool_and(ST_IsValid(geom)) FROM compounds")


def test_a_projected_shapefile_in_us_feet_lands_at_the_known_place(twin, tmp_path):
    # San Jose City Hall, -121.885 E 37.3375 N, in NAD83 / California zone 3 (ftUS),
    # as GDAL's gdaltransform gives it.
    gdf = gpd.GeoDataFrame({"external_id": ["city-hall"], "kind": ["storm"]},
                           geometry=[Point(6159029.18283068, 1948337.97755014)], crs=2227)
    gdf.to_file(tmp_path / "feet.shp")
    report = ingest_file(twin, "manholes", tmp_path / "feet.shp", source="sj")
    assert report.rows_new == 1
    metres = scalar(twin, "SELECT ST_Distance(geom::geography, "
                          "ST_SetSRID(ST_Point(-121.885, 37.3375), 4326)::geography) "
                          "FROM manholes")
    assert metres < 0.01


def test_a_file_without_crs_is_refused_unless_given(twin, tmp_path):
    frame = pd.DataFrame({"external_id": ["a"], "kind": ["sewer"],
                          "wkt": [f"POINT ({LON} {LAT})"]})
    frame.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InvalidInput, match="coordinate reference system.*--crs"):
        ingest_file(twin, "manholes", tmp_path / "m.csv")
    assert ingest_file(twin, "manholes", tmp_path / "m.csv", crs="EPSG:4326").rows_new == 1


def test_undeclared_metric_is_rejected_until_declared(twin, tmp_path):
    gdf = gpd.GeoDataFrame({"external_id": ["S1"], "road_class": ["primary"]},
                           geometry=[LineString([(LON, LAT), (LON + 0.001, LAT)])], crs=4326)
    gdf.to_file(tmp_path / "s.gpkg")
    ingest_file(twin, "streets", tmp_path / "s.gpkg", source="county")
    pd.DataFrame({"asset_layer": ["streets", "streets"], "asset_external_id": ["S1", "S1"],
                  "metric": ["city_rating", "pci"], "observed_at": ["2025-05-01", "2025-05-01"],
                  "value": [7, 64]}).to_csv(tmp_path / "r.csv", index=False)
    report = ingest_file(twin, "readings", tmp_path / "r.csv")
    assert (report.rows_new, report.rows_rejected) == (1, 1)
    assert "is not a declared metric" in pd.read_csv(report.rejects_path)["reason"][0]

    declare_metrics(twin, [MetricDeclaration.checked(
        name="city_rating", unit="rating", min_value=1, max_value=10, higher_is_better=True,
        description=None, where="test")])
    again = ingest_file(twin, "readings", tmp_path / "r.csv")
    assert (again.rows_new, again.rows_unchanged, again.rows_rejected) == (1, 1, 0)
    assert not (tmp_path / "r.rejects.csv").exists()  # no stale report of fixed rejects

    with pytest.raises(InvalidInput, match="1 stored readings outside 1-5"):
        declare_metrics(twin, [MetricDeclaration.checked(
            name="city_rating", unit="rating", min_value=1, max_value=5,
            higher_is_better=True, description=None, where="test")])


def test_reading_rules(twin, tmp_path):
    manholes().to_file(tmp_path / "m.gpkg")
    ingest_file(twin, "manholes", tmp_path / "m.gpkg", source="county")
    rows = [
        ("MH-0", "tilt_deg", "2026-01-01T00:00:00Z", "1.5"),   # 1 fine
        ("MH-0", "tilt_deg", "2026-01-01T00:00:00Z", "1.5"),   # 2 duplicate of 1
        ("MH-1", "tilt_deg", "yesterday", "1"),                # 3 unreadable time
        ("MH-1", "tilt_deg", "2099-01-01T00:00:00Z", "1"),     # 4 future
        ("MH-1", "tilt_deg", "2026-01-02T00:00:00Z", "abc"),   # 5 not a number
        ("MH-1", "tilt_deg", "2026-01-02T00:00:00Z", "400"),   # 6 out of range
        ("MH-99", "tilt_deg", "2026-01-02T00:00:00Z", "1"),    # 7 unknown asset
        ("MH-1", "water_level_pct", "2026-01-03T00:00:00Z", ""),  # 8 missing value
    ]
    pd.DataFrame(rows, columns=["asset_external_id", "metric", "observed_at", "value"]).assign(
        asset_layer="manholes").to_csv(tmp_path / "r.csv", index=False)
    report = ingest_file(twin, "readings", tmp_path / "r.csv")
    rejects = pd.read_csv(report.rejects_path).set_index("row_number")
    assert report.rows_new == 1 and report.rows_rejected == 7
    assert "repeats the asset, metric and time of row 1" in rejects.loc[2, "reason"]
    assert "cannot be read as a date" in rejects.loc[3, "reason"]
    assert rejects.loc[4, "reason"] == "is in the future"
    assert rejects.loc[5, "reason"] == "is not a number"
    assert "outside the metric's declared range 0-90" in rejects.loc[6, "reason"]
    assert "is not an asset of layer manholes" in rejects.loc[7, "reason"]
    assert rejects.loc[8, "reason"] == "is missing"


def test_wide_readings_with_a_mapping_epoch_times_and_units(twin, tmp_path):
    gdf = gpd.GeoDataFrame({"external_id": ["S1"], "road_class": ["primary"]},
                           geometry=[LineString([(LON, LAT), (LON + 0.001, LAT)])], crs=4326)
    gdf.to_file(tmp_path / "s.gpkg")
    ingest_file(twin, "streets", tmp_path / "s.gpkg", source="county")
    pd.DataFrame({"SEG": ["S1", "S1"], "WHEN": [1735689600000, 1738368000000],
                  "PCI_SCORE": [71, 69], "IRI_IN_MI": [126.72, None]}).to_csv(
        tmp_path / "survey.csv", index=False)
    (tmp_path / "survey.toml").write_text(
        'layer = "readings"\nsource = "survey-2025"\n'
        '[fields]\nasset_layer = { value = "streets" }\nasset_external_id = "SEG"\n'
        'observed_at = { column = "WHEN", format = "epoch_ms" }\n'
        '[readings.values]\nPCI_SCORE = "pci"\n'
        'IRI_IN_MI = { metric = "iri_m_per_km", from_unit = "in/mi" }\n')
    report = ingest_file(twin, "readings", tmp_path / "survey.csv",
                         mapping_path=tmp_path / "survey.toml")
    assert (report.rows_read, report.rows_new, report.rows_rejected) == (2, 3, 0)
    with twin.connect() as conn:
        values = dict(conn.execute(sa.text(
            "SELECT m.name || '@' || to_char(r.observed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
            "r.value FROM readings r JOIN metrics m ON m.id = r.metric_id")).all())
        sources = conn.execute(sa.text("SELECT DISTINCT source FROM readings")).scalars().all()
    assert values == {"pci@2025-01-01": 71, "pci@2025-02-01": 69,
                      "iri_m_per_km@2025-01-01": pytest.approx(2.0)}
    assert sources == ["survey-2025"]


def test_sanjose_work_orders_load_as_debris_with_the_committed_mapping(twin, tmp_path):
    report = ingest_file(twin, "debris", SANJOSE_CSV, mapping_path=SANJOSE_MAPPING,
                         rejects_path=tmp_path / "rejects.csv")
    assert (report.rows_read, report.rows_new, report.rows_rejected) == (2000, 2000, 0)
    with twin.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT observed_at, confidence, properties->>'STATUS', ST_X(geom), ST_Y(geom) "
            "FROM debris_piles WHERE external_id = 'WO-0000341544'")).one()
    # the first record: DATETIMERECEIVEDUTC 1590721500000 ms, at 37.328093 N -121.818059 E
    assert row[0].isoformat() == "2020-05-29T03:05:00+00:00"
    assert (row[1], row[2]) == (0.8, "Closed")
    assert (row[3], row[4]) == (pytest.approx(-121.818059), pytest.approx(37.328093))


def test_sanjose_report_names_each_bad_row(twin, tmp_path):
    records = pd.read_csv(SANJOSE_CSV, dtype=str)
    records.loc[4, "WORKORDERREFNO"] = ""
    records.loc[9, ["LATITUDE", "LONGITUDE"]] = records.loc[9, ["LONGITUDE", "LATITUDE"]].values
    records.loc[14, "DATETIMERECEIVEDUTC"] = "not a time"
    records.loc[19, "WORKORDERREFNO"] = records.loc[0, "WORKORDERREFNO"]
    records.to_csv(tmp_path / "dumping.csv", index=False)
    result = run_twin(twin, "ingest", "debris", tmp_path / "dumping.csv", "--mapping",
                      SANJOSE_MAPPING, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["rows_new"], report["rows_rejected"]) == (1996, 4)
    rejects = pd.read_csv(report["rejects_path"]).set_index("row_number")
    assert rejects.loc[5, "reason"] == "is missing"
    assert rejects.loc[10, "reason"] == "is not a valid longitude/latitude (check the file's " \
        "CRS or give --crs)" or "swapped" in rejects.loc[10, "reason"]
    assert "in the format 'epoch_ms'" in rejects.loc[15, "reason"]
    assert rejects.loc[20, "reason"] == "repeats the id of row 1"


BAD_FILES = {
    "truncated.gpkg": lambda p, good: p.write_bytes(good.read_bytes()[:20000]),
    "binary.geojson": lambda p, good: p.write_bytes(bytes(range(256)) * 40),
    "broken.csv": lambda p, good: p.write_text('external_id,kind,wkt\n"a,sewer,POINT (1 2)\n'),
    "empty.geojson": lambda p, good: p.write_bytes(b""),
    "bomb.zip": None,
}


def _zip_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("m.shp", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(300):  # 300 MiB of zeros, a few hundred KiB on disk
                member.write(block)


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_unusable_files_exit_2_with_one_sentence_and_write_nothing(twin, tmp_path, name):
    good = tmp_path / "good.gpkg"
    manholes(50).to_file(good)
    path = tmp_path / name
    if name == "bomb.zip":
        _zip_bomb(path)
    else:
        BAD_FILES[name](path, good)
    result = run_twin(twin, "ingest", "manholes", path, "--crs", "EPSG:4326")
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("Error:") and name in message and "Traceback" not in message
    assert len(message.splitlines()) <= 3  # one sentence, wrapped at most by the terminal
    assert scalar(twin, "SELECT count(*) FROM manholes") == 0
    assert scalar(twin, "SELECT count(*) FROM ingest_rejects") == 0


@pytest.mark.slow
def test_a_run_killed_mid_load_leaves_nothing_and_the_next_run_completes(twin, tmp_path):
    manholes(5).to_file(tmp_path / "m.gpkg")
    ingest_file(twin, "manholes", tmp_path / "m.gpkg", source="county")
    times = pd.date_range("2024-01-01", periods=120_000, freq="5min", tz="UTC")
    readings = pd.DataFrame({
        "asset_layer": "manholes",
        "asset_external_id": [f"MH-{i % 5}" for i in range(len(times) * 5)],
        "metric": "water_level_pct",
        "observed_at": times.repeat(5).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "value": 10.0,
    })
    readings.to_csv(tmp_path / "big.csv", index=False)

    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env["TWIN_DATABASE_URL"] = twin.url.render_as_string(hide_password=False)
    process = subprocess.Popen([TWIN, "ingest", "readings", str(tmp_path / "big.csv")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen_copy = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        copying = scalar(twin, "SELECT count(*) FROM pg_stat_activity "
                               "WHERE query LIKE 'COPY stage_readings%' AND state = 'active'")
        staged = scalar(twin, "SELECT count(*) FROM ingest_runs WHERE status = 'running'")
        if copying and staged:
            seen_copy = True
            break
        time.sleep(0.01)
    assert seen_copy, "the load was never seen in the middle of its COPY"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while scalar(twin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'twin' "
                       "AND pid <> pg_backend_pid() AND state <> 'idle'") and (
            time.monotonic() < deadline):
        time.sleep(0.1)
    assert scalar(twin, "SELECT count(*) FROM readings") == 0

    result = run_twin(twin, "ingest", "readings", tmp_path / "big.csv", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows_new"] == len(readings)
    assert scalar(twin, "SELECT count(*) FROM readings") == len(readings)
    statuses = scalar(twin, "SELECT string_agg(status, ',' ORDER BY id) FROM ingest_runs "
                            "WHERE layer = 'readings'")
    assert statuses == "interrupted,succeeded"


def test_dry_run_keeps_nothing(twin, tmp_path):
    manholes().to_file(tmp_path / "m.gpkg")
    result = run_twin(twin, "ingest", "manholes", tmp_path / "m.gpkg", "--dry-run", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["rows_new"] == 5
    assert scalar(twin, "SELECT count(*) FROM manholes") == 0
    assert scalar(twin, "SELECT count(*) FROM ingest_runs") == 0


def test_cli_mistakes_are_one_sentence(twin, tmp_path):
    for args, expected in [
        (("ingest", "lamps", tmp_path / "x.gpkg"), "Unknown layer 'lamps'"),
        (("ingest", "streets", tmp_path / "nope.gpkg"), "does not exist"),
        (("ingest", "debris", SANJOSE_CSV, "--mapping", tmp_path / "none.toml"),
         "Mapping file"),
    ]:
        result = run_twin(twin, *args)
        assert result.returncode == 2 and expected in result.stderr, result.stderr


def _wait_gone(engine, pid: int) -> None:
    deadline = time.monotonic() + 30
    while scalar(engine, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"):
        assert time.monotonic() < deadline, f"server process {pid} did not end"
        time.sleep(0.05)


def test_a_run_whose_process_ends_during_a_later_run_is_marked_when_that_run_ends(twin):
    from geo import store

    # Run A's client was killed, but its server process is still at work (a long statement)
    # when run B starts: A is still legitimately 'running' then.
    held = twin.connect()
    with twin.begin() as conn:
        a = store.start_run(conn, layer="readings", source="s", path="a.csv", checksum_sha256="",
                            mapping_path=None, pid=store.backend_pid(held))
    with twin.begin() as conn:
        store.mark_interrupted_runs(conn)
        b = store.start_run(conn, layer="readings", source="s", path="b.csv", checksum_sha256="",
                            mapping_path=None, pid=store.backend_pid(conn))
    status = "SELECT status FROM ingest_runs WHERE id = {}"
    assert scalar(twin, status.format(a)) == "running"
    # A's process ends while B works; B's end is the next moment anyone looks.
    pid = store.backend_pid(held)
    held.invalidate()
    _wait_gone(twin, pid)
    with twin.begin() as conn:
        store.finish_run(conn, b, status="succeeded")
    assert (scalar(twin, status.format(a)), scalar(twin, status.format(b))) == (
        "interrupted", "succeeded")


def test_a_reused_server_pid_does_not_keep_a_dead_run_running(twin):
    from geo import store

    with twin.connect() as live:
        pid = store.backend_pid(live)
        with twin.begin() as conn:
            mine = store.start_run(conn, layer="readings", source="s", path="mine.csv",
                                   checksum_sha256="", mapping_path=None, pid=pid)
            # A run of long ago whose process had the same pid as this live one.
            old = store.start_run(conn, layer="readings", source="s", path="old.csv",
                                  checksum_sha256="", mapping_path=None, pid=pid)
            conn.execute(sa.text("UPDATE ingest_runs SET backend_start = '2020-01-01' "
                                 "WHERE id = :id"), {"id": old})
            assert store.mark_interrupted_runs(conn) == 1
        statuses = scalar(twin, "SELECT string_agg(status, ',' ORDER BY id) FROM ingest_runs "
                                f"WHERE id IN ({mine}, {old})")
    assert statuses == "running,interrupted"
