"""Multi-part geometries, stored as they came, come out of tiles, OGC API and exports whole."""

import io
import zipfile

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon

from ingest.pipeline import ingest_file
from service.app import create_app
from service.settings import ServiceSettings

LON, LAT = 108.54, 32.52
TWO_PARTS = MultiLineString([[(LON, LAT), (LON + 0.001, LAT)],
                             [(LON + 0.002, LAT + 0.0005), (LON + 0.003, LAT + 0.0005)]])
TWO_BLOCKS = MultiPolygon([Polygon([(LON, LAT), (LON + 0.001, LAT), (LON + 0.001, LAT + 0.001)]),
                           Polygon([(LON + 0.002, LAT), (LON + 0.003, LAT),
                                    (LON + 0.003, LAT + 0.001)])])


@pytest.fixture(scope="module")
def client(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multipart")
    streets = gpd.GeoDataFrame(
        {"external_id": ["multi", "single"], "road_class": ["residential", "service"]},
        geometry=[TWO_PARTS, LineString([(LON, LAT + 0.002), (LON + 0.001, LAT + 0.002)])],
        crs=4326)
    streets.to_file(folder / "streets.gpkg")
    compounds = gpd.GeoDataFrame({"external_id": ["c"], "management_type": ["old"]},
                                 geometry=[TWO_BLOCKS], crs=4326)
    compounds.to_file(folder / "compounds.gpkg")
    assert ingest_file(engine, "streets", folder / "streets.gpkg", source="t").rows_new == 2
    assert ingest_file(engine, "compounds", folder / "compounds.gpkg", source="t").rows_new == 1
    with TestClient(create_app(engine, ServiceSettings()), raise_server_exceptions=False) as c:
        yield c


def test_multi_part_rows_are_stored_as_they_came(engine, client):
    import sqlalchemy as sa

    with engine.connect() as conn:
        kinds = dict(conn.execute(sa.text(
            "SELECT external_id, GeometryType(geom) FROM streets")).all())
        compound = conn.execute(sa.text("SELECT GeometryType(geom) FROM compounds")).scalar()
    assert kinds == {"multi": "MULTILINESTRING", "single": "LINESTRING"}
    assert compound == "MULTIPOLYGON"


def test_a_multilinestring_street_comes_out_of_a_tile_with_both_parts(client):
    tile = morecantile.tms.get("WebMercatorQuad").tile(LON + 0.0015, LAT + 0.0002, 15)
    response = client.get(f"/tiles/streets/{tile.z}/{tile.x}/{tile.y}.mvt")
    assert response.status_code == 200, response.text
    features = mapbox_vector_tile.decode(response.content)["streets"]["features"]
    multi = [f for f in features if f["properties"].get("external_id") == "multi"
             or f["geometry"]["type"] == "MultiLineString"]
    assert multi and multi[0]["geometry"]["type"] == "MultiLineString"
    assert len(multi[0]["geometry"]["coordinates"]) == 2


def test_ogc_items_give_the_multilinestring_whole(client):
    response = client.get("/ogc/collections/streets/items", params={"external_id": "multi"})
    assert response.status_code == 200, response.text
    features = [f for f in response.json()["features"]
                if f["properties"]["external_id"] == "multi"]
    assert len(features) == 1
    geometry = shapely.geometry.shape(features[0]["geometry"])
    assert geometry.geom_type == "MultiLineString"
    assert geometry.equals_exact(TWO_PARTS, 1e-7)


@pytest.mark.parametrize("suffix", ["gpkg", "geojson", "shp.zip", "parquet", "csv"])
def test_exports_keep_both_parts(client, tmp_path, suffix):
    response = client.get(f"/exports/streets.{suffix}")
    assert response.status_code == 200, response.text
    path = tmp_path / f"streets.{suffix}"
    path.write_bytes(response.content)
    if suffix == "csv":
        import pandas as pd

        frame = pd.read_csv(io.BytesIO(response.content))
        wkt_column = next(c for c in frame.columns if c.lower() in ("wkt", "geometry", "geom"))
        geometries = dict(zip(frame["external_id"], shapely.from_wkt(frame[wkt_column]),
                              strict=True))
    else:
        if suffix == "shp.zip":
            with zipfile.ZipFile(path) as archive:
                shp = next(n for n in archive.namelist() if n.endswith(".shp"))
            source = f"/vsizip/{path}/{shp}"
        else:
            source = str(path)
        frame = (gpd.read_parquet(path) if suffix == "parquet"
                 else pyogrio.read_dataframe(source))
        id_column = "external_id" if "external_id" in frame.columns else "external_i"
        geometries = dict(zip(frame[id_column], frame.geometry, strict=True))
    multi = geometries["multi"]
    assert multi.geom_type == "MultiLineString" and len(multi.geoms) == 2
    assert multi.equals_exact(TWO_PARTS, 1e-6)


def test_a_multipolygon_compound_comes_out_of_ogc_and_geojson(client):
    items = client.get("/ogc/collections/compounds/items").json()["features"]
    assert items[0]["geometry"]["type"] == "MultiPolygon"
    exported = client.get("/exports/compounds.geojson").json()["features"]
    assert exported[0]["geometry"]["type"] == "MultiPolygon"
