"""The twin's vocabularies: the canonical values of its class fields, defined once.

Validation (``ingest.fields``), the database's CHECK constraints (the migrations), tile filters
(``geo.tiles``), alerts (``geo.alerts``), the maps' colours (``maps.styles``) and
``twin mapping draft`` all read these lists, so they cannot drift apart.

A vocabulary is *open* when every city has codes of its own for the same idea (road classes,
manhole kinds...): a value a mapping does not translate is stored as ``other`` and the
original is kept in the row's ``properties`` as ``original_<field>``, so styling and models
keep to the canonical values and nothing is lost. A *closed* vocabulary (severities, a
cover's state) is an ordered or operational scale where a guess would mislead; there an
unknown value is refused (a required field) or dropped (an optional one).

Each value has a name for people in ``labels`` (English, marked for the catalogues with
``N_``); :meth:`Vocabulary.label` and :func:`label` give it in the current language
(``geo.i18n``), so legends, popups and messages never show a code where a word is meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from geo.i18n import N_, gettext

OTHER = "other"
OTHER_LABEL = N_("other")


def label(labels: Mapping[str, str], value: object) -> str:
    """The name of ``value`` in ``labels``, in the current language; unknown values as they are.

    Examples
    --------
    >>> from geo.i18n import use_locale
    >>> with use_locale("zh"):
    ...     label(SEVERITY_LABELS, "high"), label(SEVERITY_LABELS, "odd_value")
    ('高', 'odd value')
    """
    text = labels.get(str(value), OTHER_LABEL if value == OTHER else None)
    if text is None:
        return str(value if value is not None else "").replace("_", " ")
    return gettext(text)


@dataclass(frozen=True)
class Vocabulary:
    """The canonical values of one field, and whether unmapped values become ``other``."""

    values: tuple[str, ...]
    open: bool = True
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def allowed(self) -> tuple[str, ...]:
        """What the field may hold in the database: the values, plus ``other`` if open."""
        return (*self.values, OTHER) if self.open else self.values

    def label(self, value: object) -> str:
        """The name of ``value`` for people, in the current language."""
        return label(self.labels, value)


# OpenStreetMap's highway=* hierarchy, cut to what a neighbourhood's maintenance uses.
ROAD_CLASSES = Vocabulary(
    ("primary", "secondary", "tertiary", "residential", "service"),
    description="functional class of the street: arterial (primary) to access lane (service)",
    labels={"primary": N_("primary road"), "secondary": N_("secondary road"),
            "tertiary": N_("tertiary road"), "residential": N_("residential street"),
            "service": N_("service lane")},
)
MANHOLE_KINDS = Vocabulary(
    ("sewer", "storm", "water", "power", "telecom", "gas"),
    description="the network the manhole gives access to",
    labels={"sewer": N_("sewer"), "storm": N_("storm drain"), "water": N_("water supply"),
            "power": N_("power"), "telecom": N_("telecom"), "gas": N_("gas")},
)
COVER_STATES = Vocabulary(
    ("ok", "damaged", "missing", "open"), open=False,
    description="state of the manhole's cover (ok when not given)",
    labels={"ok": N_("cover ok"), "damaged": N_("cover damaged"), "missing": N_("cover missing"),
            "open": N_("cover open")},
)
PARKING_KINDS = Vocabulary(
    ("lot", "on_street"), description="an off-street lot, or bays along the street",
    labels={"lot": N_("parking lot"), "on_street": N_("on-street parking")},
)
MANAGEMENT_TYPES = Vocabulary(
    ("commodity", "resettlement", "old", "unmanaged"),
    description="who runs the residential compound: a property company (commodity housing), "
    "an affordable or resettlement scheme, an old compound of bungalows, or no one",
    labels={"commodity": N_("Commodity housing, property company"),
            "resettlement": N_("Affordable / resettlement"),
            "old": N_("Old compound, bungalows"), "unmanaged": N_("No property management")},
)
# What each damage class is called in alerts and legends (English; DAMAGE_CLASSES.label
# translates).
DAMAGE_NAMES = {"D00": N_("longitudinal crack"), "D10": N_("transverse crack"),
                "D20": N_("alligator crack"), "D40": N_("pothole")}
# RDD2022's classes: D00 longitudinal, D10 transverse, D20 alligator cracks, D40 potholes.
DAMAGE_CLASSES = Vocabulary(
    ("D00", "D10", "D20", "D40"),
    description="D00 longitudinal crack, D10 transverse crack, D20 alligator crack, D40 pothole",
    labels=DAMAGE_NAMES,
)
# Alerts: an ordered scale, least urgent first.
SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_LABELS = {"low": N_("low"), "medium": N_("medium"), "high": N_("high"),
                   "critical": N_("critical")}
DAMAGE_SEVERITIES = Vocabulary(
    ("low", "medium", "high"), open=False, description="how bad the damage is",
    labels=SEVERITY_LABELS,
)
ALERT_STATUSES = ("open", "acknowledged", "in_progress", "resolved", "dismissed")
STATUS_LABELS = {"open": N_("open"), "acknowledged": N_("acknowledged"),
                 "in_progress": N_("in progress"), "resolved": N_("resolved"),
                 "dismissed": N_("dismissed")}
READING_ASSET_LAYERS = ("streets", "manholes", "parking", "compounds")
# Administrative nesting in a county, coarsest first: town or sub-district (镇/街道), community
# or village (社区/村), grid (网格). Closed: a level decides nesting, so a guess would mislead.
DISTRICT_LEVELS = Vocabulary(
    ("sub_district", "community", "grid"), open=False,
    description="sub_district (a town or 街道), community (a 社区 or village) or grid (网格)",
)

# (table, field) -> vocabulary: what the CHECK constraints and validation enforce.
FIELD_VOCABULARIES: dict[tuple[str, str], Vocabulary] = {
    ("streets", "road_class"): ROAD_CLASSES,
    ("manholes", "kind"): MANHOLE_KINDS,
    ("manholes", "cover_state"): COVER_STATES,
    ("parking", "kind"): PARKING_KINDS,
    ("compounds", "management_type"): MANAGEMENT_TYPES,
    ("road_damage", "damage_class"): DAMAGE_CLASSES,
    ("road_damage", "severity"): DAMAGE_SEVERITIES,
}


def original_key(field: str) -> str:
    """The ``properties`` key that keeps a value replaced by ``other``.

    Examples
    --------
    >>> original_key("road_class")
    'original_road_class'
    """
    return f"original_{field}"
