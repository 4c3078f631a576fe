"""Houses from OpenStreetMap: the ready mapping loads heights, floors, uses and years, links each
house to its compound, and explains every value it could not use."""

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from geo.database import create_engine
from ingest.draft import draft_mapping
from ingest.pipeline import ingest_file

OSM_MAPPING = Path(__file__).parents[2] / "sample_data" / "mappings" / "osm_buildings.toml"
LON, LAT = 108.54, 32.52
D = 0.0004  # about 40 m


def _square(x: float, y: float, size: float = 0.0002) -> list:
    return [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]


def _feature(geometry: dict, **tags) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": tags}


def _polygon(i: int) -> dict:
    return {"type": "Polygon", "coordinates": _square(LON + i * D, LAT)}


# An osmtogeojson-like extract: OSM tags as columns, a multipolygon relation, NULLs, odd values.
OSM_BUILDINGS = [
    _feature(_polygon(0), osm_id="way/1001", building="apartments", **{
        "building:levels": "6", "height": "18.5", "start_date": "1998", "name": "Block 3",
        "building:material": "brick", "roof:shape": "flat"}),
    _feature(_polygon(1), osm_id="way/1002", building="residential", **{
        "building:levels": "17", "height": "52 m", "start_date": "~2012-05"}),
    _feature(_polygon(2), osm_id="way/1003", building="house", **{
        "building:levels": "2", "height": "30'", "start_date": "1990s"}),
    _feature({"type": "MultiPolygon", "coordinates": [
        _square(LON + 3 * D, LAT), _square(LON + 3 * D, LAT + D)]},
        osm_id="relation/2001", building="school", **{"building:levels": "4",
                                                       "height": None, "start_date": None}),
    _feature(_polygon(4), osm_id="way/1005", building="yes", **{
        "building:levels": "5;6", "height": "tall", "start_date": "C19"}),
    _feature(_polygon(5), osm_id="way/1006", building="construction", **{
        "building:levels": "-1", "height": "0", "building:material": "stone"}),
    _feature(_polygon(6), osm_id="way/1007", building="garage"),
    # No footprint: OSM has buildings mapped as points; a point is no house footprint.
    _feature({"type": "Point", "coordinates": [LON, LAT]}, osm_id="node/9", building="yes"),
]


@pytest.fixture
def twin(make_database, migrated_template):
    engine = create_engine(make_database(template=migrated_template))
    yield engine
    engine.dispose()


def _write(path: Path, features: list) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _buildings(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text(
            "SELECT b.external_id, b.use, b.floors, b.height_m, b.year_built, b.structure, "
            "b.name, GeometryType(b.geom) AS kind, c.external_id AS compound, b.properties "
            "FROM buildings b LEFT JOIN compounds c ON c.id = b.compound_id"), conn
        ).set_index("external_id")


def test_osm_buildings_load_with_heights_floors_uses_and_years(twin, tmp_path):
    path = _write(tmp_path / "buildings.geojson", OSM_BUILDINGS)
    report = ingest_file(twin, "buildings", path, mapping_path=OSM_MAPPING)
    assert (report.rows_read, report.rows_new, report.rows_rejected) == (8, 7, 1)

    b = _buildings(twin)
    assert b.loc["way/1001", ["use", "floors", "height_m", "year_built", "structure", "name"]
                 ].tolist() == ["residential", 6, 18.5, 1998, "brick_concrete", "Block 3"]
    assert b.loc["way/1001", "properties"]["roof:shape"] == "flat"  # other tags are kept
    assert b.loc["way/1002", ["floors", "height_m", "year_built"]].tolist() == [17, 52.0, 2012]
    assert b.loc["way/1003", "height_m"] == pytest.approx(9.144)  # 30 feet
    assert pd.isna(b.loc["way/1003", "year_built"])  # "1990s" is not a year
    assert b.loc["relation/2001", ["kind", "use", "floors"]].tolist() == ["MULTIPOLYGON",
                                                                          "public", 4]
    assert pd.isna(b.loc["relation/2001", "height_m"])
    # building=yes says only "a building": no use; odd levels and heights are dropped.
    row = b.loc["way/1005"]
    assert pd.isna(row["use"]) and pd.isna(row["floors"]) and pd.isna(row["height_m"])
    row = b.loc["way/1006"]
    assert (row["use"], row["structure"]) == ("other", "other")
    assert row["properties"]["original_use"] == "construction"
    assert pd.isna(row["floors"]) and pd.isna(row["height_m"])
    assert b.loc["way/1007", "use"] == "ancillary"

    rejects = pd.read_csv(report.rejects_path)
    said = {(r.row_number, r.field): (r.reason, r.outcome) for r in rejects.itertuples()}
    assert said[(3, "year_built")] == ("is not a year", "kept, value dropped")
    assert said[(5, "floors")] == ("is not a number", "kept, value dropped")
    assert said[(5, "height_m")] == ("is not a length", "kept, value dropped")
    assert said[(6, "floors")][0] == "is below the smallest allowed value 1"
    assert said[(6, "height_m")][0] == "is below the smallest allowed value 1"
    assert said[(8, "geometry")] == ("is not a Polygon or MultiPolygon", "rejected")

    again = ingest_file(twin, "buildings", path, mapping_path=OSM_MAPPING)
    assert (again.rows_new, again.rows_updated, again.rows_unchanged) == (0, 0, 7)


def test_each_house_knows_its_compound_whichever_is_loaded_first(twin, tmp_path):
    houses = _write(tmp_path / "houses.geojson", OSM_BUILDINGS[:3])
    ingest_file(twin, "buildings", houses, mapping_path=OSM_MAPPING)
    assert _buildings(twin)["compound"].isna().all()
    # A compound around the first two houses, loaded after them.
    ring = [[LON - 0.0001, LAT - 0.0001], [LON + 2 * D - 0.0001, LAT - 0.0001],
            [LON + 2 * D - 0.0001, LAT + 0.0005], [LON - 0.0001, LAT + 0.0005],
            [LON - 0.0001, LAT - 0.0001]]
    compounds = _write(tmp_path / "compounds.geojson", [_feature(
        {"type": "Polygon", "coordinates": [ring]}, external_id="CP-1",
        management_type="old")])
    ingest_file(twin, "compounds", compounds)
    linked = _buildings(twin)["compound"]
    assert linked.fillna("none").to_dict() == {"way/1001": "CP-1", "way/1002": "CP-1",
                                               "way/1003": "none"}
    # A community loaded after the houses: those inside it learn their district.
    districts = _write(tmp_path / "districts.geojson", [_feature(
        {"type": "Polygon", "coordinates": [ring]}, external_id="SQ-1", name="Xinglong",
        level="community")])
    ingest_file(twin, "districts", districts)
    with twin.connect() as conn:
        placed = dict(conn.execute(sa.text(
            "SELECT b.external_id, d.name FROM buildings b "
            "LEFT JOIN districts d ON d.id = b.district_id")).all())
    assert placed == {"way/1001": "Xinglong", "way/1002": "Xinglong", "way/1003": None}


def test_a_drafted_mapping_of_an_osm_extract_recognises_the_building_tags(twin, tmp_path):
    path = _write(tmp_path / "osm.geojson", OSM_BUILDINGS)
    draft = draft_mapping(path, "buildings")
    assert draft.preset == "osm"
    assert {name: draft.fields[name]["column"] for name in ("external_id", "floors", "height_m",
                                                             "year_built", "use", "structure")
            } == {"external_id": "osm_id", "floors": "building:levels", "height_m": "height",
                  "year_built": "start_date", "use": "building",
                  "structure": "building:material"}
    assert draft.fields["use"]["map"]["apartments"] == "residential"
    assert draft.fields["use"]["map"]["school"] == "public"
    mapping = tmp_path / "osm.toml"
    mapping.write_text(draft.text)
    report = ingest_file(twin, "buildings", path, mapping_path=mapping)
    assert report.rows_new == 7  # every footprint; the point is no house
    assert _buildings(twin).loc["way/1002", "height_m"] == 52.0
