"""Load a directory written by ``twin sample generate`` through the real ingest, file by file."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress
from sqlalchemy.engine import Engine

from geo.errors import InvalidInput
from ingest.pipeline import RunReport, ingest_file

SAMPLE_SOURCE = "sample"
# (twin layer, file, layer inside the file), in load order: districts first (so features
# are placed in them as they land), assets before their readings.
SAMPLE_FILES = (
    ("districts", "neighbourhood.gpkg", "districts"),
    ("streets", "neighbourhood.gpkg", "streets"),
    ("manholes", "neighbourhood.gpkg", "manholes"),
    ("parking", "neighbourhood.gpkg", "parking"),
    ("compounds", "neighbourhood.gpkg", "compounds"),
    ("buildings", "neighbourhood.gpkg", "buildings"),
    ("road_damage", "road_damage.geojson", None),
    ("debris_piles", "debris_piles.geojson", None),
    ("readings", "readings.csv", None),
)


def load_sample(
    engine: Engine, directory: Path, progress: Progress | None = None
) -> list[RunReport]:
    """Ingest every layer and the readings of a generated sample directory.

    Raises
    ------
    InvalidInput
        When a file of the sample is missing or unusable; layers already loaded stay.
    """
    directory = Path(directory)
    for _, name, _ in SAMPLE_FILES:
        if not (directory / name).is_file():
            raise InvalidInput(
                f"{directory / name} is missing; is {directory} a sample written "
                f"by `twin sample generate`?"
            )
    return [
        ingest_file(
            engine,
            layer,
            directory / name,
            layer_name=layer_name,
            source=SAMPLE_SOURCE,
            progress=progress,
        )
        for layer, name, layer_name in SAMPLE_FILES
    ]
