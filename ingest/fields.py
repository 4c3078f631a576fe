"""What each layer of the twin holds: its fields, their types and allowed values, its geometry.

Validation checks rows against these before anything is written; the database's own check
constraints stay as the last guard.
"""

from __future__ import annotations

from dataclasses import dataclass

from geo import vocabulary as vocab
from geo.vocabulary import Vocabulary

# The layers files load into, by their one name (geo.layers; older spellings are aliases
# there), and the tables they fill.
LAYER_TABLES = {
    "streets": "streets",
    "manholes": "manholes",
    "parking": "parking",
    "compounds": "compounds",
    "road_damage": "road_damage",
    "debris_piles": "debris_piles",
    "buildings": "buildings",
    "districts": "districts",
}
READINGS = "readings"


@dataclass(frozen=True)
class Field:
    """One field of a layer, as validation sees it."""

    name: str
    # text, float, int, date, datetime; length (a number of metres, or one with its unit, as
    # OSM's height "12 m" or "40'"); year (a year, or the year of a date such as "1995-06")
    kind: str
    required: bool = False
    vocabulary: Vocabulary | None = None
    min_value: float | None = None
    max_value: float | None = None
    default: str | float | None = None  # for a missing value, as the column's default gives

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The canonical values of a class field (without ``other``), or None."""
        return self.vocabulary.values if self.vocabulary else None


@dataclass(frozen=True)
class LayerSpec:
    """A layer's fields and the geometry types it accepts.

    Single-part multis are unwrapped; multi-part ones are stored as they come where the layer
    takes them.
    """

    table: str
    fields: tuple[Field, ...]
    geometry_types: tuple[str, ...]
    is_observation: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the layer's fields."""
        return tuple(f.name for f in self.fields)


EXTERNAL_ID = Field("external_id", "text", required=True)
OBSERVED_AT = Field("observed_at", "datetime", required=True)
# NOT NULL DEFAULT 1.0 in the table: an observation without one is taken as certain.
CONFIDENCE = Field("confidence", "float", min_value=0, max_value=1, default=1.0)

# The fields each layer's files are checked against, by the layer's id in geo.layers.LAYERS (the
# one layer registry; this is what ingest adds to it).
LAYER_FIELDS: dict[str, LayerSpec] = {
    "streets": LayerSpec(
        "streets",
        (
            EXTERNAL_ID,
            Field("name", "text"),
            Field("road_class", "text", required=True, vocabulary=vocab.ROAD_CLASSES),
            Field("surface", "text"),
            Field("width_m", "float", min_value=0.5, max_value=200),
            Field("lanes", "int", min_value=1, max_value=20),
            Field("resurfaced_on", "date"),
        ),
        ("LineString", "MultiLineString"),
    ),
    "manholes": LayerSpec(
        "manholes",
        (
            EXTERNAL_ID,
            Field("kind", "text", required=True, vocabulary=vocab.MANHOLE_KINDS),
            Field("depth_m", "float", min_value=0.1, max_value=100),
            Field("cover_state", "text", vocabulary=vocab.COVER_STATES, default="ok"),
            Field("sensor_id", "text"),
        ),
        ("Point",),
    ),
    "parking": LayerSpec(
        "parking",
        (
            EXTERNAL_ID,
            Field("name", "text"),
            Field("kind", "text", required=True, vocabulary=vocab.PARKING_KINDS),
            Field("capacity", "int", min_value=0, max_value=100_000),
        ),
        ("Point", "Polygon", "MultiPolygon"),
    ),
    "compounds": LayerSpec(
        "compounds",
        (
            EXTERNAL_ID,
            Field("name", "text"),
            Field("management_type", "text", required=True, vocabulary=vocab.MANAGEMENT_TYPES),
            Field("households", "int", min_value=0, max_value=1_000_000),
            Field("built_year", "int", min_value=1000, max_value=2100),
        ),
        ("Polygon", "MultiPolygon"),
    ),
    "road_damage": LayerSpec(
        "road_damage",
        (
            EXTERNAL_ID,
            OBSERVED_AT,
            CONFIDENCE,
            Field("damage_class", "text", required=True, vocabulary=vocab.DAMAGE_CLASSES),
            Field("severity", "text", vocabulary=vocab.DAMAGE_SEVERITIES),
            Field("size_m2", "float", min_value=0, max_value=10_000),
        ),
        ("Point",),
        is_observation=True,
    ),
    "debris_piles": LayerSpec(
        "debris_piles",
        (
            EXTERNAL_ID,
            OBSERVED_AT,
            CONFIDENCE,
            Field("pile_ref", "text"),
            Field("volume_m3", "float", min_value=0, max_value=1_000_000),
            Field("material", "text"),
        ),
        ("Point", "Polygon", "MultiPolygon"),
        is_observation=True,
    ),
    # Administrative areas; external_id is the district's own code, parent_code its parent's
    # (optional: without it the parent is the smallest coarser district containing it).
    "districts": LayerSpec(
        "districts",
        (
            EXTERNAL_ID,
            Field("name", "text", required=True),
            Field("name_en", "text"),
            Field("level", "text", required=True, vocabulary=vocab.DISTRICT_LEVELS),
            Field("parent_code", "text"),
        ),
        ("Polygon", "MultiPolygon"),
    ),
}

LAYER_FIELDS["buildings"] = LayerSpec(
    "buildings",
    (
        EXTERNAL_ID,
        Field("name", "text"),
        Field("use", "text", vocabulary=vocab.BUILDING_USES),
        # Storeys above ground (OSM's building:levels); the tallest towers have about 160.
        Field("floors", "int", min_value=1, max_value=200),
        Field("height_m", "length", min_value=1, max_value=1000),
        Field("year_built", "year", min_value=1000, max_value=2100),
        Field("households", "int", min_value=0, max_value=100_000),
        Field("structure", "text", vocabulary=vocab.BUILDING_STRUCTURES),
        Field("condition", "text", vocabulary=vocab.BUILDING_CONDITIONS),
    ),
    ("Polygon", "MultiPolygon"),
)

# Long-form readings: one value of one metric of one asset at one time.
READING_FIELDS = (
    Field(
        "asset_layer",
        "text",
        required=True,
        vocabulary=Vocabulary(vocab.READING_ASSET_LAYERS, open=False),
    ),
    Field("asset_external_id", "text", required=True),
    Field("metric", "text", required=True),
    OBSERVED_AT,
    Field("value", "float", required=True),
)
