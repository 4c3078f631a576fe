"""Readers open every format, stream it in bounded chunks, and refuse bad files clearly."""

import struct
import sys
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geo.errors import CRSError, InvalidInput
from ingest import readers
from ingest.readers import open_layer, read_chunks


def _assets(n, crs="EPSG:4326", x0=-122.45, y0=37.75, step=1e-4):
    """n point assets with an id and a depth, in the given CRS."""
    return gpd.GeoDataFrame(
        {"asset_id": [f"MH-{i:05d}" for i in range(n)], "depth_m": np.arange(n) * 0.25},
        geometry=shapely.points(x0 + np.arange(n) * step, y0 + np.arange(n) * step),
        crs=crs,
    )


def _read(info, **kwargs):
    chunks = list(read_chunks(info, **kwargs))
    return pd.concat(chunks, ignore_index=True) if chunks else None


def _zip(zip_path, files):
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, file.name)
    return zip_path


def _write(kind, gdf, directory):
    """Write gdf as one of the supported kinds; return the path and the open_layer arguments."""
    drivers = {"gpkg": "GPKG", "geojson": "GeoJSON", "json": "GeoJSON", "shp": "ESRI Shapefile"}
    if kind in {"gpkg", "geojson", "json", "shp", "geojsonl", "geojsons", "ndjson"}:
        path = directory / f"assets.{kind}"
        gdf.to_file(path, driver=drivers.get(kind, "GeoJSONSeq"))
        return path, {}
    if kind == "zip":
        (directory / "shp").mkdir()
        gdf.to_file(directory / "shp" / "assets.shp")
        path = _zip(directory / "assets.zip", sorted((directory / "shp").iterdir()))
        with zipfile.ZipFile(path, "a") as archive:  # as zipped on a Mac
            archive.writestr("__MACOSX/._assets.shp", b"\x00\x05\x16\x07")
        return path, {}
    if kind == "parquet":
        path = directory / "assets.parquet"
        gdf.to_parquet(path)
        return path, {}
    frame = pd.DataFrame(gdf.drop(columns="geometry"))
    path = directory / "assets.csv"
    if kind == "csv-lonlat":
        frame["Longitude"], frame["LAT"] = gdf.geometry.x, gdf.geometry.y
        frame.to_csv(path, index=False)
        return path, {}
    frame["geom"] = gdf.geometry.to_wkt()
    frame.to_csv(path, index=False)
    return path, {"crs": gdf.crs.to_string()}


KINDS = [
    "gpkg", "geojson", "json", "geojsonl", "geojsons", "ndjson", "shp", "zip", "csv-lonlat",
    "csv-wkt", "parquet",
]  # fmt: skip
FORMAT_OF = {
    "gpkg": "GPKG", "geojson": "GeoJSON", "json": "GeoJSON", "geojsonl": "GeoJSONSeq",
    "geojsons": "GeoJSONSeq", "ndjson": "GeoJSONSeq", "shp": "ESRI Shapefile",
    "zip": "ESRI Shapefile", "csv-lonlat": "CSV", "csv-wkt": "CSV", "parquet": "Parquet",
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_each_format_reads_features_crs_values_and_row_numbers(kind, tmp_path):
    gdf = _assets(7)
    path, kwargs = _write(kind, gdf, tmp_path)

    info = open_layer(path, **kwargs)
    got = _read(info)

    assert info.format == FORMAT_OF[kind]
    assert info.crs.equals("EPSG:4326", ignore_axis_order=True)
    assert info.fields == ("asset_id", "depth_m")
    assert got.crs == info.crs
    assert got.geometry.name == "geometry"
    assert got["row_number"].tolist() == list(range(1, 8))
    assert got["asset_id"].tolist() == gdf["asset_id"].tolist()
    # CSV values are text: typing them is validation's job.
    assert got["depth_m"].astype(float).tolist() == gdf["depth_m"].tolist()
    np.testing.assert_allclose(shapely.get_coordinates(got.geometry), gdf.get_coordinates())


@pytest.mark.parametrize("kind", ["gpkg", "geojsonl", "shp", "csv-lonlat", "csv-wkt"])
def test_chunks_are_bounded_and_numbered_in_file_order(kind, tmp_path):
    path, kwargs = _write(kind, _assets(2500), tmp_path)

    chunks = list(read_chunks(open_layer(path, **kwargs), chunk_rows=1000))

    assert [len(chunk) for chunk in chunks] == [1000, 1000, 500]
    rows = np.concatenate([chunk["row_number"].to_numpy() for chunk in chunks])
    assert rows.tolist() == list(range(1, 2501))
    assert chunks[2]["asset_id"].iloc[-1] == "MH-02499"
    assert chunks[0]["row_number"].dtype == np.int64


def test_parquet_chunks_and_projected_crs(tmp_path):
    path = tmp_path / "assets.geoparquet"
    _assets(2500, crs="EPSG:2227", x0=6_010_000, y0=2_110_000, step=3).to_parquet(path)

    info = open_layer(path)
    chunks = list(read_chunks(info, chunk_rows=1000))

    assert info.crs.to_epsg() == 2227 and info.feature_count == 2500
    assert [len(chunk) for chunk in chunks] == [1000, 1000, 500]
    assert chunks[1]["row_number"].iloc[0] == 1001
    assert chunks[0].geometry.iloc[0].x == 6_010_000


def test_parquet_without_geo_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)

    with pytest.raises(InvalidInput, match="is a Parquet file without GeoParquet") as caught:
        open_layer(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", ["parquet", "gpkg"])
def test_without_pyarrow_the_message_names_the_package(kind, tmp_path, monkeypatch):
    path, _ = _write(kind, _assets(2), tmp_path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    with pytest.raises(InvalidInput) as caught:
        list(read_chunks(open_layer(path)))
    assert str(caught.value) == (
        f"Reading {path} needs the pyarrow package, which is not installed (pip install pyarrow)."
    )


def test_geopackage_with_two_layers_needs_a_layer_name(tmp_path):
    path = tmp_path / "county.gpkg"
    _assets(3).to_file(path, layer="manholes")
    _assets(4).to_file(path, layer="hydrants")

    with pytest.raises(InvalidInput) as caught:
        open_layer(path)
    assert str(caught.value) == f"{path} has 2 layers; name one of manholes, hydrants."

    info = open_layer(path, layer_name="hydrants")
    assert info.layer_name == "hydrants" and info.feature_count == 4
    assert len(_read(info)) == 4

    with pytest.raises(InvalidInput, match="has no layer 'parks'; its layers are") as caught:
        open_layer(path, layer_name="parks")
    assert "manholes" in str(caught.value) and str(path) in str(caught.value)


def test_a_table_without_geometry_beside_one_layer_is_not_a_choice(tmp_path):
    path = tmp_path / "styled.gpkg"
    _assets(3).to_file(path, layer="manholes")
    pyogrio.write_dataframe(pd.DataFrame({"style": ["<qgis/>"]}), path, layer="layer_styles")

    assert open_layer(path).layer_name == "manholes"
    with pytest.raises(InvalidInput, match="has no geometry in layer 'layer_styles'"):
        open_layer(path, layer_name="layer_styles")


@pytest.mark.parametrize("packed", [False, True], ids=["shp", "zip"])
def test_shapefile_in_us_feet_keeps_coordinates_and_unit(packed, tmp_path):
    gdf = _assets(5, crs="EPSG:2227", x0=6_010_123.25, y0=2_110_456.5, step=10.5)
    path, _ = _write("zip" if packed else "shp", gdf, tmp_path)

    info = open_layer(path)
    got = _read(info)

    assert info.crs.to_epsg() == 2227
    assert info.crs.axis_info[0].unit_name == "US survey foot"
    assert info.layer_name == "assets"
    assert shapely.get_coordinates(got.geometry).tolist() == gdf.get_coordinates().values.tolist()


def test_csv_coordinate_columns_given_by_name_with_a_crs(tmp_path):
    path = tmp_path / "hydrants.csv"
    path.write_text("id,E,N,note\n1,6010000.5,2110000.25,a\n2,oops,2110001,b\n3,6010002,,\n")

    info = open_layer(path, x_column="E", y_column="N", crs="EPSG:2227")
    got = _read(info)

    assert info.crs.to_epsg() == 2227 and info.fields == ("id", "note")
    assert got["row_number"].tolist() == [1, 2, 3]
    assert got.geometry.iloc[0].coords[0] == (6010000.5, 2110000.25)
    # Rows with unusable coordinates stay, without geometry, for validation to reject.
    assert got.geometry.iloc[1] is None and got.geometry.iloc[2] is None
    assert got["note"].tolist()[:2] == ["a", "b"] and pd.isna(got["note"].iloc[2])


def test_csv_lonlat_without_crs_is_wgs84(tmp_path):
    path = tmp_path / "stops.csv"
    path.write_text("name,lng,latitude\nA,-122.4,37.7\n")

    info = open_layer(path)

    assert info.crs.to_epsg() == 4326 and (info.x_column, info.y_column) == ("lng", "latitude")


def test_csv_with_wkt_keeps_a_row_whose_wkt_is_bad(tmp_path):
    path = tmp_path / "streets.csv"
    path.write_text(
        'name,WKT\nElm,"LINESTRING (0 0, 1 1)"\nOak,LINESTRING (0 0\nAsh,POINT (2 3)\nFir,\n'
    )

    info = open_layer(path, crs="EPSG:4326")
    got = _read(info)

    assert info.wkt_column == "WKT" and info.fields == ("name",)
    assert got["row_number"].tolist() == [1, 2, 3, 4]
    assert got["name"].tolist() == ["Elm", "Oak", "Ash", "Fir"]
    assert got.geometry.iloc[0].geom_type == "LineString"
    assert got.geometry.iloc[1] is None and got.geometry.iloc[3] is None
    assert got.geometry.iloc[2].coords[0] == (2.0, 3.0)


def test_csv_without_geometry_columns_names_its_columns(tmp_path):
    path = tmp_path / "owners.csv"
    path.write_text("parcel,owner\n1,Smith\n")

    with pytest.raises(InvalidInput, match="no lon/lat or WKT geometry column") as caught:
        open_layer(path)
    assert str(path) in str(caught.value) and "parcel, owner" in str(caught.value)


def test_crs_is_required_when_the_file_has_none(tmp_path):
    path, _ = _write("shp", _assets(3, crs="EPSG:2227", x0=6e6, y0=2e6), tmp_path)
    path.with_suffix(".prj").unlink()

    with pytest.raises(CRSError) as caught:
        open_layer(path)
    assert str(caught.value) == (
        f"{path} has no coordinate reference system; give one with --crs EPSG:N."
    )

    info = open_layer(path, crs="EPSG:2227")
    assert info.crs.to_epsg() == 2227
    assert _read(info).crs.to_epsg() == 2227


def test_geoparquet_with_a_null_crs_needs_one(tmp_path):
    path = tmp_path / "assets.parquet"
    _assets(2).set_crs(None, allow_override=True).to_parquet(path)

    with pytest.raises(CRSError, match="has no coordinate reference system"):
        open_layer(path)
    assert open_layer(path, crs="EPSG:4326").crs.to_epsg() == 4326


def test_csv_wkt_without_crs_is_refused(tmp_path):
    path, _ = _write("csv-wkt", _assets(2), tmp_path)

    with pytest.raises(CRSError, match="has no coordinate reference system"):
        open_layer(path)


def test_a_crs_given_must_agree_with_the_files(tmp_path):
    path = tmp_path / "streets.gpkg"
    _assets(3, crs="EPSG:2227", x0=6e6, y0=2e6).to_file(path)

    assert open_layer(path, crs="EPSG:2227").crs.to_epsg() == 2227
    with pytest.raises(CRSError) as caught:
        open_layer(path, crs="EPSG:4326")
    message = str(caught.value)
    assert str(path) in message and "EPSG:2227" in message and "EPSG:4326" in message


def test_an_unknown_crs_is_refused(tmp_path):
    path, _ = _write("csv-lonlat", _assets(2), tmp_path)

    with pytest.raises(CRSError, match="'EPSG:999999', given as the CRS of .* is not a known CRS"):
        open_layer(path, crs="EPSG:999999")


@pytest.mark.parametrize("kind", ["gpkg", "geojson", "shp"])
def test_an_empty_layer_yields_nothing(kind, tmp_path):
    path, _ = _write(kind, _assets(1).iloc[:0], tmp_path)

    assert list(read_chunks(open_layer(path))) == []


def test_a_csv_with_only_a_header_yields_nothing(tmp_path):
    path = tmp_path / "none.csv"
    path.write_text("id,lon,lat\n")

    assert list(read_chunks(open_layer(path))) == []


def _truncated_gpkg(tmp_path):
    path = tmp_path / "assets.gpkg"
    _assets(500).to_file(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _binary_geojson(tmp_path):
    path = tmp_path / "assets.geojson"
    path.write_bytes(bytes(range(256)) * 20)
    return path


def _two_shapefiles_zip(tmp_path):
    for name in ("a", "b"):
        _assets(2).to_file(tmp_path / f"{name}.shp")
    return _zip(tmp_path / "two.zip", sorted(tmp_path.glob("[ab].*")))


def _shapefile_zip_without_dbf(tmp_path):
    _assets(2).to_file(tmp_path / "a.shp")
    return _zip(tmp_path / "nodbf.zip", [tmp_path / "a.shp", tmp_path / "a.shx"])


def _not_a_zip(tmp_path):
    path = tmp_path / "assets.zip"
    path.write_text("this is not a zip archive")
    return path


def _empty(name):
    def make(tmp_path):
        path = tmp_path / name
        path.touch()
        return path

    return make


def _missing(tmp_path):
    return tmp_path / "nowhere.gpkg"


def _unknown_extension(tmp_path):
    path = tmp_path / "assets.kml"
    path.write_text("<kml/>")
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_truncated_gpkg, "cannot be read as GPKG (database disk image is malformed)"),
        (
            _binary_geojson,
            "cannot be read as GeoJSON (not recognized as being in a supported file format)",
        ),
        (_two_shapefiles_zip, "must hold one .shp file but holds 2: a.shp, b.shp"),
        (_shapefile_zip_without_dbf, "holds a.shp without its .dbf file"),
        (_not_a_zip, "is not a readable zip archive"),
        (_empty("a.gpkg"), "is empty (0 bytes)"),
        (_empty("a.geojson"), "is empty (0 bytes)"),
        (_empty("a.csv"), "is empty (0 bytes)"),
        (_empty("a.zip"), "is empty (0 bytes)"),
        (_missing, "does not exist"),
        (_unknown_extension, "is not of a supported kind; the extensions read are .gpkg, .geojson"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_bad_files_are_refused_with_a_sentence_naming_them(make, expected, tmp_path):
    path = make(tmp_path)

    with pytest.raises(InvalidInput) as caught:
        open_layer(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message
    assert "Traceback" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('id,name,lon,lat\n1,ok,1,2\n2,"broken,3,4\n3,x,5,6\n', "quoted field opened at row 2"),
        ("id,name,lon,lat\n1,a,1,2\n2,b,3,4\n3,c,5,6,7\n", "has 5 fields at row 3"),
        ("id,name,lon,lat\n1,caf\xe9,1,2\n", "is not UTF-8 text"),
    ],
    ids=["unterminated-quote", "extra-field", "latin-1"],
)
def test_malformed_csv_is_refused_naming_file_and_row(text, expected, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(text.encode("latin-1"))

    with pytest.raises(InvalidInput) as caught:
        list(read_chunks(open_layer(path), chunk_rows=1))
    assert str(caught.value).startswith(str(path)) and expected in str(caught.value)


def test_a_zip_bomb_is_refused_from_its_directory(tmp_path, monkeypatch):
    path = tmp_path / "bomb.zip"
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("assets.shp", "w") as member:
            for _ in range(100):  # 100 MiB of zeros, streamed; about 100 KB on disk
                member.write(zeros)
    assert path.stat().st_size < 1 << 20
    # GDAL must never be asked to open it.
    monkeypatch.setattr(readers.pyogrio, "list_layers", lambda *a, **k: pytest.fail("opened"))

    with pytest.raises(InvalidInput, match="refused as a possible zip bomb") as caught:
        open_layer(path)
    assert str(caught.value).startswith(str(path))


def test_a_zip_declaring_a_huge_size_is_refused(tmp_path):
    path = tmp_path / "forged.zip"
    gdf = _assets(2)
    gdf.to_file(tmp_path / "a.shp")
    _zip(path, sorted(tmp_path.glob("a.*")))
    # Forge the central directory entry of the first member: 3 GiB uncompressed.
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    data[entry + 24 : entry + 28] = struct.pack("<I", 3 * 1024**3)
    path.write_bytes(bytes(data))

    with pytest.raises(InvalidInput, match=r"to 3,2\d\d,\d{3},\d{3} bytes"):
        open_layer(path)


def test_unused_layer_name_for_a_single_layer_format_is_refused(tmp_path):
    path, _ = _write("csv-lonlat", _assets(2), tmp_path)

    with pytest.raises(InvalidInput, match="has no layers to choose from, yet layer 'x' was named"):
        open_layer(path, layer_name="x")


@pytest.mark.parametrize("column", ["row_number", "geometry"])
def test_a_column_named_like_those_the_reader_adds_is_refused(column, tmp_path):
    path = tmp_path / "assets.csv"
    path.write_text(f"{column},lon,lat\n1,2,3\n")

    with pytest.raises(InvalidInput) as caught:
        open_layer(path)
    assert str(caught.value) == f"{path} has a column named {column!r}, which the reader adds."


def test_a_directory_is_not_a_file(tmp_path):
    path = tmp_path / "folder.gpkg"
    path.mkdir()

    with pytest.raises(InvalidInput, match="is not a file"):
        open_layer(path)


def test_chunk_rows_must_be_positive(tmp_path):
    path, _ = _write("csv-lonlat", _assets(2), tmp_path)

    with pytest.raises(ValueError):
        list(read_chunks(open_layer(path), chunk_rows=0))
