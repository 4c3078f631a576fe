"""The simplest loader: a directory written by ``twin sample generate`` into the twin.

Each file is loaded in one transaction (all of its rows or none) and recorded in
``ingest_runs``; loading the same sample twice changes nothing. General ingest of any
city's files, with mappings and per-row rejects, builds on this.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from rich.console import Console
from rich.progress import Progress
from sqlalchemy.engine import Engine

from geo import STORAGE_SRID, store
from geo.errors import CRSError, InvalidInput

SAMPLE_SOURCE = "sample"
ASSET_FILE = "neighbourhood.gpkg"
OBSERVATION_FILES = {"road_damage": "road_damage.geojson", "debris_piles": "debris_piles.geojson"}
READINGS_FILE = "readings.csv"
READINGS_CHUNK_ROWS = 200_000


@dataclass
class LoadResult:
    """What loading one layer did."""

    layer: str
    rows_read: int
    rows_new: int
    rows_updated: int
    rows_unchanged: int


def sha256_of(path: Path) -> str:
    """Checksum of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_value(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value


def layer_frame(gdf: gpd.GeoDataFrame, layer: str, source: str) -> pd.DataFrame:
    """Shape a layer for ``store.upsert_layer``: schema columns, JSON properties, EWKB in 4326."""
    if gdf.crs is None:
        raise CRSError(f"Layer '{layer}' has no coordinate reference system.")
    gdf = gdf.to_crs(STORAGE_SRID)
    columns = store.LAYER_COLUMNS[layer]
    missing = [c for c in ("external_id", *columns) if c not in gdf.columns]
    if missing:
        raise InvalidInput(f"Layer '{layer}' lacks the column(s) {', '.join(missing)}.")
    frame = pd.DataFrame(gdf[list(columns)])
    frame["source"] = gdf["source"] if "source" in gdf.columns else source
    frame["external_id"] = gdf["external_id"].astype(str)
    extra = [c for c in gdf.columns if c not in (*columns, "external_id", "source", "geometry")]
    frame["properties"] = [
        json.dumps({c: _json_value(v) for c, v in zip(extra, row, strict=True)}, sort_keys=True)
        for row in gdf[extra].itertuples(index=False)
    ]
    geoms = shapely.set_srid(gdf.geometry.values, STORAGE_SRID)
    frame["geom"] = shapely.to_wkb(geoms, hex=True, include_srid=True)
    for column in ("lanes", "capacity", "households", "built_year"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def _load_layer(
    engine: Engine, layer: str, gdf: gpd.GeoDataFrame, path: Path, checksum: str
) -> LoadResult:
    started_at = datetime.now(UTC)
    frame = layer_frame(gdf, layer, SAMPLE_SOURCE)
    with engine.begin() as conn:
        counts = store.upsert_layer(conn, layer, frame)
        store.record_run(
            conn, layer=layer, source=SAMPLE_SOURCE, path=str(path), checksum_sha256=checksum,
            status="succeeded", started_at=started_at, rows_read=len(frame), counts=counts,
        )
    return LoadResult(layer, len(frame), counts.rows_new, counts.rows_updated,
                      counts.rows_unchanged)


def _load_readings(engine: Engine, path: Path, checksum: str) -> LoadResult:
    started_at = datetime.now(UTC)
    total = 0
    with engine.begin() as conn:
        for chunk in pd.read_csv(path, chunksize=READINGS_CHUNK_ROWS, dtype={
            "asset_layer": str, "asset_external_id": str, "metric": str, "source": str,
        }):
            missing = [c for c in store.READING_COLUMNS if c not in chunk.columns]
            if missing:
                raise InvalidInput(f"{path} lacks the column(s) {', '.join(missing)}.")
            chunk["observed_at"] = pd.to_datetime(chunk["observed_at"], utc=True, format="ISO8601")
            store.ensure_reading_partitions(
                conn, chunk["observed_at"].min(), chunk["observed_at"].max()
            )
            chunk["observed_at"] = chunk["observed_at"].map(pd.Timestamp.isoformat)
            store.stage_readings(conn, chunk)
            total += len(chunk)
        unknown = store.unknown_reading_keys(conn, SAMPLE_SOURCE)
        if len(unknown):
            first = unknown.iloc[0]
            what = "metric" if first.unknown_metric else "asset"
            raise InvalidInput(
                f"{path} has readings of an unknown {what} (first: {first.asset_layer} "
                f"{first.asset_external_id}, metric {first.metric}); nothing was loaded."
            )
        counts = store.upsert_staged_readings(conn, SAMPLE_SOURCE, total)
        store.record_run(
            conn, layer="readings", source=SAMPLE_SOURCE, path=str(path), checksum_sha256=checksum,
            status="succeeded", started_at=started_at, rows_read=total, counts=counts,
        )
    return LoadResult("readings", total, counts.rows_new, counts.rows_updated,
                      counts.rows_unchanged)


def load_sample(engine: Engine, directory: Path, console: Console | None = None) -> list[LoadResult]:
    """Load every layer and the readings of a generated sample directory.

    Parameters
    ----------
    engine : Engine
        A migrated twin database.
    directory : Path
        A directory written by ``twin sample generate``.
    console : Console, optional
        Where to show progress.

    Raises
    ------
    InvalidInput
        When a file of the sample is missing or unreadable; layers already loaded stay.
    """
    directory = Path(directory)
    files = [directory / ASSET_FILE, *(directory / f for f in OBSERVATION_FILES.values()),
             directory / READINGS_FILE]
    for path in files:
        if not path.is_file():
            raise InvalidInput(f"{path} is missing; is {directory} a sample written by "
                               f"`twin sample generate`?")
    steps = [*store.ASSET_LAYERS, *OBSERVATION_FILES, "readings"]
    results = []
    with Progress(console=console or Console(quiet=True), transient=True) as progress:
        task = progress.add_task("Loading the sample", total=len(steps))
        checksum = sha256_of(directory / ASSET_FILE)
        for layer in store.ASSET_LAYERS:
            progress.update(task, description=f"Loading {layer}")
            gdf = _read(directory / ASSET_FILE, layer)
            results.append(_load_layer(engine, layer, gdf, directory / ASSET_FILE, checksum))
            progress.advance(task)
        for layer, name in OBSERVATION_FILES.items():
            progress.update(task, description=f"Loading {layer}")
            path = directory / name
            gdf = _read(path, None)
            gdf["observed_at"] = pd.to_datetime(gdf["observed_at"], utc=True, format="ISO8601")
            results.append(_load_layer(engine, layer, gdf, path, sha256_of(path)))
            progress.advance(task)
        progress.update(task, description="Loading readings")
        path = directory / READINGS_FILE
        results.append(_load_readings(engine, path, sha256_of(path)))
        progress.advance(task)
    return results


def _read(path: Path, layer: str | None) -> gpd.GeoDataFrame:
    try:
        return pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        where = f"{path}" + (f" (layer {layer})" if layer else "")
        raise InvalidInput(f"Cannot read {where}: {exc}") from None
