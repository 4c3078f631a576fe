"""The twin's MapLibre styles (version 8), generated from the palette of :mod:`maps.styles`.

Every colour rule is a style layer of its own, a ``filter`` with one constant colour (one per
PCI band, per alert severity, per manhole status...), rather than a data-driven ``step``,
``interpolate`` or ``match`` expression. MapLibre draws both alike, but QGIS's MapLibre
converter (QGIS 3.22) turns filters into its own rule expressions faithfully, while it drops
``step``/``interpolate`` on properties and collapses bare-string ``match`` labels, which left
every street grey. A layer's own style (:func:`layer_style`) has no background: QGIS applies
a style to one vector tile layer at a time, and an opaque background there hides the layers
drawn below.

Examples
--------
>>> [rule[0] for rule in RULES["streets"]][:3]
['good', 'satisfactory', 'fair']
>>> RULES["streets"][0][1]
['all', ['has', 'pci'], ['>=', ['get', 'pci'], 86]]
"""

from __future__ import annotations

from typing import Any

from geo.layers import LAYERS, Layer
from maps.styles import (
    COMPOUND_COLOURS,
    COMPOUND_OTHER,
    DAMAGE_COLOURS,
    DAMAGE_OTHER,
    DEBRIS_COLOUR,
    DISTRICT_COLOUR,
    MANHOLE_COLOURS,
    NO_DATA,
    OCCUPANCY_BANDS,
    OCCUPANCY_NO_DATA,
    PCI_BANDS,
    SEVERITY_COLOURS,
)

WORLD = (-180.0, -85.0511287798066, 180.0, 85.0511287798066)
DEFAULT_COLOUR = "#607d8b"
BACKGROUND = "#f2efe9"
DRAW_ORDER = ("districts", "compounds", "parking", "streets", "debris_piles", "road_damage",
              "manholes", "alerts")

Rule = tuple[str, list | None, str]  # (name, filter or None for every feature, colour)


def _bands(name: str, bands: tuple[tuple[float, str], ...], no_data: str) -> list[Rule]:
    """One rule per band of a number, best (highest) band first, and one for no value."""
    rules: list[Rule] = []
    upper = None
    for index, (lowest, colour) in enumerate(bands):
        tests: list = [["has", name]]
        if index < len(bands) - 1:  # the lowest band takes everything below it too
            tests.append([">=", ["get", name], lowest])
        if upper is not None:
            tests.append(["<", ["get", name], upper])
        rules.append((str(lowest), ["all", *tests], colour))
        upper = lowest
    rules.append(("no-data", ["!", ["has", name]], no_data))
    return rules


def _categories(name: str, colours: dict[str, str], other: str) -> list[Rule]:
    """One rule per value of a text property, and one for any other value (or none)."""
    rules: list[Rule] = [(value, ["==", ["get", name], value], colour)
                         for value, colour in colours.items()]
    rules.append(("other", ["all", *(["!=", ["get", name], value] for value in colours)],
                  other))
    return rules


_PCI_RULES = [(band_name.lower().replace(" ", "-"), rule[1], rule[2]) for rule, band_name in zip(
    _bands("pci", tuple((low, colour) for low, _, colour in PCI_BANDS), NO_DATA),
    (*(name for _, name, _ in PCI_BANDS), "no-data"), strict=True)]
RULES: dict[str, list[Rule]] = {
    "streets": _PCI_RULES,
    "manholes": _categories("status", MANHOLE_COLOURS, MANHOLE_COLOURS["none"]),
    "alerts": _categories("severity", SEVERITY_COLOURS, SEVERITY_COLOURS["critical"]),
    "compounds": _categories("management_type", COMPOUND_COLOURS, COMPOUND_OTHER),
    "parking": _bands("occupancy_pct", OCCUPANCY_BANDS, OCCUPANCY_NO_DATA),
    "road_damage": _categories("damage_class", DAMAGE_COLOURS, DAMAGE_OTHER),
    "debris_piles": [("all", None, DEBRIS_COLOUR)],
    "districts": [("all", None, DISTRICT_COLOUR)],
}
# Polygons' fill opacity; districts (nested, under every other layer) are outlines only.
FILL_OPACITY = {"districts": 0.0}
DEFAULT_FILL_OPACITY = 0.45


def draw_rank(layer: Layer) -> float:
    """Where a layer is drawn: lower ranks first (under the others)."""
    if layer.id in DRAW_ORDER:
        return DRAW_ORDER.index(layer.id)
    # Layers added to the registry later go above the base layers, below alerts.
    return DRAW_ORDER.index("alerts") - 0.5


def style_layers(layer: Layer) -> list[dict]:
    """The MapLibre style layers drawing one twin layer, one per colour rule and geometry."""
    rules = RULES.get(layer.id, [("all", None, DEFAULT_COLOUR)])
    base = {"source": layer.id, "source-layer": layer.id}
    kinds = {"Point": ("Point",), "LineString": ("LineString",), "Polygon": ("Polygon",)}.get(
        layer.geometry_type, ("Polygon", "LineString", "Point"))
    mixed = len(kinds) > 1
    out: list[dict] = []
    for kind in kinds:
        for rule_name, rule, colour in rules:
            tests = ([["==", ["geometry-type"], kind]] if mixed else []) + (
                [rule] if rule is not None else [])
            only = {"filter": tests[0] if len(tests) == 1 else ["all", *tests]} if tests else {}
            prefix = f"{layer.id}-{rule_name}"
            if kind == "Polygon":
                out.append({"id": f"{prefix}-fill", "type": "fill", **base, **only,
                            "paint": {"fill-color": colour, "fill-opacity": FILL_OPACITY.get(
                                layer.id, DEFAULT_FILL_OPACITY)}})
                out.append({"id": f"{prefix}-outline", "type": "line", **base, **only,
                            "paint": {"line-color": colour, "line-width": 1}})
            elif kind == "LineString":
                width = ["interpolate", ["linear"], ["zoom"], 12, 1, 16, 3, 19, 10]
                out.append({"id": f"{prefix}-line", "type": "line", **base, **only,
                            "layout": {"line-cap": "round", "line-join": "round"},
                            "paint": {"line-color": colour, "line-width": width}})
            else:
                big = layer.id == "alerts"
                radius = ["interpolate", ["linear"], ["zoom"], 12, 2 if not big else 4,
                          18, 6 if not big else 10]
                out.append({"id": f"{prefix}-circle", "type": "circle", **base, **only,
                            "paint": {"circle-color": colour, "circle-radius": radius,
                                      "circle-stroke-color": "#ffffff",
                                      "circle-stroke-width": 1.5 if big else 0.5}})
    return out


def _source(base_url: str, layer: Layer) -> dict:
    return {"type": "vector", "url": f"{base_url}/tiles/{layer.id}/tilejson.json"}


def twin_style(base_url: str, bounds: tuple[float, float, float, float] | None) -> dict:
    """The ``twin`` style: every layer of the registry on a background, coloured by condition."""
    ordered = sorted(LAYERS.values(), key=draw_rank)
    west, south, east, north = bounds or WORLD
    style: dict[str, Any] = {
        "version": 8,
        "name": "Neighbourhood Twin",
        "center": [(west + east) / 2, (south + north) / 2],
        "zoom": 14 if bounds else 1,
        "sources": {layer.id: _source(base_url, layer) for layer in ordered},
        "layers": [{"id": "background", "type": "background",
                    "paint": {"background-color": BACKGROUND}}],
    }
    for layer in ordered:
        style["layers"].extend(style_layers(layer))
    return style


def layer_style(base_url: str, layer: Layer,
                bounds: tuple[float, float, float, float] | None) -> dict:
    """One layer's own style, without background: what QGIS applies to its vector tile layer."""
    west, south, east, north = bounds or WORLD
    return {
        "version": 8,
        "name": f"Neighbourhood Twin: {layer.title}",
        "center": [(west + east) / 2, (south + north) / 2],
        "zoom": 14 if bounds else 1,
        "sources": {layer.id: _source(base_url, layer)},
        "layers": style_layers(layer),
    }


STYLES = {"twin": twin_style}
