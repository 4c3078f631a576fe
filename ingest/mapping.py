"""Mapping files (TOML): how a department's columns become the twin's fields.

Example (the San Jose dumping records as debris observations)::

    layer = "debris"
    source = "sanjose-dumping"
    timezone = "UTC"

    [geometry]
    x = "LONGITUDE"
    y = "LATITUDE"
    crs = "EPSG:4326"

    [fields]
    external_id = "WORKORDERREFNO"
    observed_at = { column = "DATETIMERECEIVEDUTC", format = "epoch_ms" }
    confidence = { value = 0.8 }

    [properties]
    keep = ["STATUS", "DETAILSUMMARY", "NOTES"]

A field is a column name, or a table with ``column`` or a constant ``value``, and optionally
``default`` (for rows where the column is empty), ``format`` (dates: ``iso``, ``epoch_s``,
``epoch_ms`` or a strftime pattern), ``map`` (source value -> twin value),
``multiply``/``add`` or ``from_unit`` (numbers). Wide readings name one metric per value
column under ``[readings.values]``.

``unmapped`` says what happens to a value of an open vocabulary (road classes, manhole kinds,
... see ``geo.vocabulary``) that is not one of the twin's values after the ``map``: ``"other"``
(the default for a mapping file) stores ``other`` and keeps the original in ``properties``;
``"reject"`` rejects the row (or, for an optional field, drops the value). Without a mapping
file, columns named as the twin's fields are taken to hold the twin's values, so ``reject``.
``twin mapping draft`` writes a mapping for a file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from geo.errors import InvalidInput
from geo.i18n import N_, _

# Factors to the twin's units (metres, square and cubic metres, m/km).
UNIT_FACTORS: dict[str, float] = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "km": 1000.0,
    "ft": 0.3048,
    "ft_us": 1200 / 3937,
    "in": 0.0254,
    "yd": 0.9144,
    "mi": 1609.344,
    "m2": 1.0,
    "ft2": 0.3048**2,
    "yd2": 0.9144**2,
    "m3": 1.0,
    "ft3": 0.3048**3,
    "yd3": 0.9144**3,
    "l": 0.001,
    "m/km": 1.0,
    "in/mi": 0.0254 / 1.609344,  # IRI: 63.36 in/mi = 1 m/km
    "mm/m": 1.0,
    "%": 1.0,
    "fraction": 100.0,  # 0-1 shares to percent
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRule(_Strict):
    """Where one twin field comes from and how its values are converted."""

    column: str | None = None
    value: Any = None
    default: Any = None  # for rows where the column is empty
    format: str | None = None
    map: dict[str, Any] | None = None
    multiply: float | None = None
    add: float | None = None
    from_unit: str | None = None

    @field_validator("from_unit")
    @classmethod
    def _known_unit(cls, unit: str | None) -> str | None:
        if unit is not None and unit not in UNIT_FACTORS:
            # Said to the user, as the end of load_mapping's sentence about the key.
            raise ValueError(_("unknown unit '{unit}'; known: {known}", unit=unit,
                               known=", ".join(UNIT_FACTORS)))
        return unit

    @model_validator(mode="after")
    def _one_origin(self) -> FieldRule:
        if (self.column is None) == (self.value is None):
            raise ValueError(_("give either 'column' or a constant 'value'"))
        return self

    def factor(self) -> float:
        """The multiplier this rule applies to numbers."""
        factor = UNIT_FACTORS[self.from_unit] if self.from_unit else 1.0
        return factor * (self.multiply if self.multiply is not None else 1.0)


class MetricRule(FieldRule):
    """A value column of a wide readings file, and the metric it holds."""

    metric: str
    column: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> MetricRule:
        return self


class GeometryRule(_Strict):
    """Where a CSV's geometry is, and its CRS if the file does not say."""

    x: str | None = None
    y: str | None = None
    wkt: str | None = None
    crs: str | None = None


class ReadingsRule(_Strict):
    """Wide readings: each value column holds one metric."""

    values: dict[str, MetricRule | str]


class PropertiesRule(_Strict):
    """Which unmapped columns go into ``properties`` (all of them when ``keep`` is absent)."""

    keep: list[str] | None = None
    drop: list[str] = []


class Mapping(_Strict):
    """A mapping file, parsed and checked."""

    layer: str | None = None
    source: str | None = None
    timezone: str = "UTC"
    unmapped: Literal["other", "reject"] = "other"
    geometry: GeometryRule = GeometryRule()
    fields: dict[str, FieldRule | str] = {}
    properties: PropertiesRule = PropertiesRule()
    readings: ReadingsRule | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(_("unknown time zone '{zone}'", zone=zone)) from None
        return zone

    def rule(self, field: str) -> FieldRule | None:
        """The rule for a twin field, or None when the mapping does not name it."""
        rule = self.fields.get(field)
        return FieldRule(column=rule) if isinstance(rule, str) else rule

    def metric_rules(self) -> dict[str, MetricRule]:
        """Value column -> metric rule, for wide readings."""
        if self.readings is None:
            return {}
        return {
            column: MetricRule(metric=rule, column=column)
            if isinstance(rule, str)
            else rule.model_copy(update={"column": column})
            for column, rule in self.readings.values.items()
        }


SHAPEFILE_NAME_LENGTH = 10


def identity_mapping(columns: list[str], fields: tuple[str, ...]) -> Mapping:
    """Map each twin field to the column of the same name (ignoring case), if there is one.

    A shapefile cuts names to 10 characters, so ``external_i`` stands for ``external_id``.
    """
    by_lower = {c.lower(): c for c in columns}
    found: dict[str, FieldRule | str] = {}
    for field in fields:
        column = by_lower.get(field) or by_lower.get(field[:SHAPEFILE_NAME_LENGTH])
        if column is not None:
            found[field] = column
    return Mapping(fields=found, unmapped="reject")


def _union_tag(part: str) -> bool:
    # pydantic names the member of a union (``FieldRule | str``) in an error's location: the
    # class, ``str``, or ``function-after[_one_origin(), FieldRule]`` for a validated model.
    # They are not keys of the file; a key that merely starts with "str" is one.
    return part in {"str", "FieldRule", "MetricRule"} or part.startswith("function-")


def read_toml(path: Path, *, missing: str, unreadable: str) -> dict:
    """The TOML file at ``path``, or ``InvalidInput`` in one sentence of the caller's.

    ``missing`` (with ``{path}``) and ``unreadable`` (with ``{path}`` and ``{error}``) are
    messages marked with ``N_``: each file says what it is in a whole sentence.
    """
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(_(missing, path=path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(_(unreadable, path=path, error=exc)) from None


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file.

    Raises
    ------
    InvalidInput
        With the file and the first problem in it, in one sentence.
    """
    path = Path(path)
    data = read_toml(path, missing=N_("Mapping file {path} does not exist."),
                     unreadable=N_("Mapping file {path} is not valid TOML: {error}."))
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not _union_tag(str(p)))
        raise InvalidInput(_("Mapping file {path}: '{key}' {problem}.", path=path, key=where,
                             problem=first["msg"].removeprefix("Value error, "))) from None
