"""The generator: deterministic, real formats with their CRS, values the schema accepts."""

import hashlib
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from geo.errors import InvalidInput
from sample_data import SAMPLE_DIR
from sample_data.generate import generate


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small")
    generate(out, seed=11, scale=0.3, months=4)
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(small, tmp_path):
    generate(tmp_path / "again", seed=11, scale=0.3, months=4)
    generate(tmp_path / "other", seed=12, scale=0.3, months=4)
    first, again, other = (_digests(d) for d in (small, tmp_path / "again", tmp_path / "other"))
    assert first == again
    assert len(first) >= 10
    assert first["neighbourhood.gpkg"] != other["neighbourhood.gpkg"]


def test_committed_sample_is_what_its_manifest_says_the_generator_makes(tmp_path):
    manifest = json.loads((SAMPLE_DIR / "manifest.json").read_text())
    generate(tmp_path, seed=manifest["seed"], scale=manifest["scale"], months=manifest["months"])
    assert _digests(tmp_path) == _digests(SAMPLE_DIR)


def _ogrinfo(*args) -> str:
    result = subprocess.run(["ogrinfo", "-ro", "-so", *map(str, args)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("layer", ["streets", "manholes", "parking", "compounds", "buildings"])
def test_asset_layers_open_in_gdal_with_the_local_crs(small, layer):
    info = _ogrinfo(small / "neighbourhood.gpkg", layer)
    assert "CGCS2000 / 3-degree Gauss-Kruger CM 108E" in info
    manifest = json.loads((small / "manifest.json").read_text())
    count = manifest["files"]["neighbourhood.gpkg"]["layers"][layer]
    assert f"Feature Count: {count}" in info and count > 0


@pytest.mark.parametrize("name", ["road_damage", "debris_piles"])
def test_observations_are_geojson_in_wgs84(small, name):
    info = _ogrinfo(small / f"{name}.geojson", name)
    assert 'GEOGCRS["WGS 84"' in info or "WGS 84" in info


def test_readings_are_valid_for_the_declared_metrics(small, engine):
    readings = pd.read_csv(small / "readings.csv")
    times = pd.to_datetime(readings["observed_at"], format="ISO8601")
    assert str(times.dt.tz) == "UTC+08:00"
    assert not readings.duplicated(["asset_layer", "asset_external_id", "metric",
                                    "observed_at"]).any()
    with engine.connect() as conn:
        ranges = {name: (lo, hi) for name, lo, hi in conn.execute(
            sa.text("SELECT name, min_value, max_value FROM metrics"))}
    for metric, values in readings.groupby("metric")["value"]:
        low, high = ranges[metric]
        assert low <= values.min() and values.max() <= high, metric


def test_ground_truth_is_kept_apart(small):
    truth = small / "truth"
    assert {"pci_weekly.csv", "manhole_faults.csv", "debris_piles.csv"} <= {
        p.name for p in truth.iterdir()}
    faults = pd.read_csv(truth / "manhole_faults.csv")
    assert len(faults) > 0 and set(faults.columns) >= {"manhole_external_id", "fault", "start",
                                                         "end"}


def test_an_existing_file_is_not_overwritten(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    with pytest.raises(InvalidInput, match="precious.txt"):
        generate(target, seed=1, scale=0.3, months=2)
    assert target.read_text() == "keep me"


def test_every_compound_has_houses_that_stand_inside_it_apart_with_plausible_floors(small):
    import geopandas as gpd

    houses = gpd.read_file(small / "neighbourhood.gpkg", layer="buildings")
    compounds = gpd.read_file(small / "neighbourhood.gpkg", layer="compounds").set_index(
        "external_id")
    assert set(houses["compound_external_id"]) == set(compounds.index)
    assert houses["external_id"].is_unique
    assert houses["external_id"].str.fullmatch(r"B-CP-\d{4}-\d{2}").all()
    around = compounds.geometry[houses["compound_external_id"]].to_numpy()
    assert all(c.contains(h) for c, h in zip(around, houses.geometry, strict=True))
    pairs = gpd.sjoin(houses, houses, predicate="intersects")
    assert (pairs.index == pairs["index_right"]).all()  # each touches only itself
    homes = houses[houses["use"] != "public"].join(compounds["management_type"],
                                                    on="compound_external_id")
    floors = homes.groupby("management_type")["floors"]
    low, high = floors.min(), floors.max()
    assert 6 <= low["commodity"] and high["commodity"] <= 18  # mid-rise blocks to towers
    assert 5 <= low["resettlement"] and high["resettlement"] <= 18
    assert high["unmanaged"] <= 7 and high["old"] <= 7  # village houses, walk-ups, bungalows
    assert (houses["floors"] >= 1).all() and houses["households"].sum() > 0
