"""The committed sample loads through the simplest loader: completely, once, and atomically."""

import pandas as pd
import pyogrio
import pytest
import sqlalchemy as sa

from geo.errors import InvalidInput
from ingest.fields import LAYER_TABLES
from ingest.sample import load_sample
from sample_data import SAMPLE_DIR


def _sample_layers():
    """Every layer of the committed sample, read off its files: (twin layer, file, its layer)."""
    gpkg = SAMPLE_DIR / "neighbourhood.gpkg"
    for name, _ in pyogrio.list_layers(gpkg):
        yield name, gpkg, name
    for path in sorted(SAMPLE_DIR.glob("*.geojson")):
        yield path.stem, path, None


@pytest.fixture(scope="module")
def loaded(engine):
    return {r.layer: r for r in load_sample(engine, SAMPLE_DIR)}


def _count(engine, table):
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_every_feature_and_reading_of_the_sample_lands(engine, loaded):
    layers = list(_sample_layers())
    assert len(layers) == 8
    for layer, path, layer_name in layers:
        features = pyogrio.read_info(path, layer=layer_name)["features"]
        assert features > 0
        assert loaded[layer].rows_new == features and loaded[layer].rows_rejected == 0
        assert _count(engine, LAYER_TABLES[layer]) == features
    readings = len(pd.read_csv(SAMPLE_DIR / "readings.csv"))
    assert loaded["readings"].rows_new == readings == _count(engine, "readings")


def test_the_sample_has_houses_in_every_compound_each_linked_to_the_compound_it_names(
        engine, loaded):
    with engine.connect() as conn:
        empty = conn.execute(sa.text(
            "SELECT count(*) FROM compounds c WHERE NOT EXISTS "
            "(SELECT 1 FROM buildings b WHERE b.compound_id = c.id)")).scalar_one()
        mislinked = conn.execute(sa.text(
            "SELECT count(*) FROM buildings b LEFT JOIN compounds c ON c.id = b.compound_id "
            "WHERE c.external_id IS DISTINCT FROM b.properties->>'compound_external_id'"
        )).scalar_one()
        floors = conn.execute(sa.text(
            "SELECT min(floors), max(floors), count(height_m), count(*) FROM buildings")).one()
        # ... and its district, the one its point on surface lies in (migration 0009's rule).
        districts = conn.execute(sa.text(
            "SELECT count(*) FILTER (WHERE district_id IS NULL), count(*) FILTER (WHERE "
            "district_id IS DISTINCT FROM district_of(geom)) FROM buildings")).one()
    assert empty == 0 and mislinked == 0 and tuple(districts) == (0, 0)
    assert floors[0] >= 1 and floors[1] >= 11 and 0 < floors[2] < floors[3]


def test_features_land_where_the_file_puts_them(engine, loaded):
    streets = pyogrio.read_dataframe(SAMPLE_DIR / "neighbourhood.gpkg", layer="streets")
    first = streets.to_crs(4326).iloc[0]
    with engine.connect() as conn:
        distance = conn.execute(
            sa.text(
                "SELECT ST_Distance(geom::geography, ST_GeomFromText(:wkt, 4326)::geography) "
                "FROM streets WHERE external_id = :id"
            ),
            {"wkt": first.geometry.wkt, "id": first.external_id},
        ).scalar_one()
        extent = conn.execute(
            sa.text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                "FROM (SELECT ST_Extent(geom) e FROM streets) x"
            )
        ).one()
    assert distance < 0.01
    # the hilly county town on the river: about 32.52 N, 108.54 E
    assert 108.4 < extent[0] < extent[2] < 108.7 and 32.4 < extent[1] < extent[3] < 32.6


def test_attributes_without_a_column_are_kept_in_properties(engine, loaded):
    with engine.connect() as conn:
        keys = (
            conn.execute(sa.text("SELECT DISTINCT jsonb_object_keys(properties) FROM streets"))
            .scalars()
            .all()
        )
        snapped = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE street_id IS NOT NULL)::float / count(*) "
                "FROM road_damage"
            )
        ).scalar_one()
    assert {"built_year", "grade_pct", "heavy_vehicles_per_day"} <= set(keys)
    assert snapped > 0.95  # damage lies on streets, so nearly all of it finds its street


def test_loading_again_changes_nothing(engine, loaded):
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT max(updated_at) FROM streets")).scalar_one()
    again = {r.layer: r for r in load_sample(engine, SAMPLE_DIR)}
    for layer, result in again.items():
        assert (result.rows_new, result.rows_updated) == (0, 0), layer
        assert result.rows_unchanged == loaded[layer].rows_new
    with engine.connect() as conn:
        after = conn.execute(sa.text("SELECT max(updated_at) FROM streets")).scalar_one()
        runs = conn.execute(
            sa.text("SELECT count(*) FROM ingest_runs WHERE status = 'succeeded'")
        ).scalar_one()
    assert after == before
    assert runs == 2 * len(again)


def test_readings_are_partitioned_by_month(engine, loaded):
    with engine.connect() as conn:
        partitions = conn.execute(
            sa.text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass")
        ).scalar_one()
    assert partitions >= 24


def test_a_missing_file_is_named(engine, tmp_path):
    with pytest.raises(InvalidInput, match="neighbourhood.gpkg is missing"):
        load_sample(engine, tmp_path)
