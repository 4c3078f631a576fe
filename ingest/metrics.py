"""Declaring metrics: a reading lands only if its metric, unit and valid range are known.

A TOML file declares many at once::

    [metrics.city_rating]
    unit = "rating"
    min = 1
    max = 10
    higher_is_better = true
    description = "The city's own 1-10 street rating, surveyed yearly"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from geo import store
from geo.errors import InvalidInput
from geo.i18n import N_, _, format_decimal
from ingest.mapping import read_toml

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class MetricDeclaration:
    """A metric's name, unit, valid range and direction."""

    name: str
    unit: str
    min_value: float
    max_value: float
    higher_is_better: bool | None
    description: str | None = None

    @classmethod
    def checked(
        cls, *, name, unit, min_value, max_value, higher_is_better, description, where: str
    ) -> MetricDeclaration:
        """Build a declaration, refusing what cannot be one with a sentence naming ``where``."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise InvalidInput(_("Metric name {name} in {where} must be lower-case letters, "
                                 "digits and underscores, starting with a letter.",
                                 name=repr(name), where=where))
        if not unit:
            raise InvalidInput(_("Metric '{name}' in {where} needs a unit (--unit).", name=name,
                                 where=where))
        for label, value in (("min", min_value), ("max", max_value)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(_("Metric '{name}' in {where} needs a numeric {label} "
                                     "(--{label}).", name=name, where=where, label=label))
        if min_value >= max_value:
            raise InvalidInput(_("Metric '{name}' in {where}: min {min} must be below max {max}.",
                                 name=name, where=where, min=format(min_value, "g"),
                                 max=format(max_value, "g")))
        if higher_is_better is not None and not isinstance(higher_is_better, bool):
            raise InvalidInput(_("Metric '{name}' in {where}: higher_is_better must be true or "
                                 "false.", name=name, where=where))
        return cls(
            name, str(unit), float(min_value), float(max_value), higher_is_better, description
        )


def metrics_from_toml(path: Path) -> list[MetricDeclaration]:
    """Read many declarations from a TOML file's ``[metrics.NAME]`` tables."""
    data = read_toml(path, missing=N_("Metrics file {path} does not exist."),
                     unreadable=N_("Metrics file {path} is not valid TOML: {error}."))
    tables = data.get("metrics")
    if not isinstance(tables, dict) or not tables:
        raise InvalidInput(_("Metrics file {path} declares no [metrics.NAME] tables.",
                             path=path))
    declarations = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise InvalidInput(_("Metrics file {path}: 'metrics.{name}' must be a table.",
                                 path=path, name=name))
        unknown = set(table) - {"unit", "min", "max", "higher_is_better", "description"}
        if unknown:
            raise InvalidInput(_("Metrics file {path}: 'metrics.{name}' has unknown key(s) "
                                 "{keys}.", path=path, name=name, keys=", ".join(sorted(unknown))))
        declarations.append(
            MetricDeclaration.checked(
                name=name,
                unit=table.get("unit"),
                min_value=table.get("min"),
                max_value=table.get("max"),
                higher_is_better=table.get("higher_is_better"),
                description=table.get("description"),
                where=str(path),
            )
        )
    return declarations


def declare_metrics(engine: Engine, declarations: list[MetricDeclaration]) -> list[bool]:
    """Declare metrics in one transaction; return for each whether it is new.

    Raises
    ------
    InvalidInput
        When a new range would leave readings already stored outside it; nothing changes.
    """
    with engine.begin() as conn:
        results = []
        for d in declarations:
            outside = store.readings_outside(conn, d.name, d.min_value, d.max_value)
            if outside:
                raise InvalidInput(_("Metric '{name}' has {count} stored readings outside "
                                     "{min}-{max}; nothing was changed.", name=d.name,
                                     count=format_decimal(outside), min=format(d.min_value, "g"),
                                     max=format(d.max_value, "g")))
            results.append(
                store.upsert_metric(
                    conn,
                    name=d.name,
                    unit=d.unit,
                    min_value=d.min_value,
                    max_value=d.max_value,
                    higher_is_better=d.higher_is_better,
                    description=d.description,
                )
            )
    return results
