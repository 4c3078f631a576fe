"""QGIS layer styles (QML) of the twin's layers, for the layers QGIS opens through OGC API.

The same colour rules as the MapLibre styles (:data:`maps.maplibre.RULES`, from the palette
of :mod:`maps.styles`), written as a QGIS rule-based renderer: each rule's MapLibre filter
becomes a QGIS expression. Load one in QGIS with Layer Properties > Style > Load Style, or
``layer.loadNamedStyle(path)``.

Examples
--------
>>> expression(["all", ["has", "pci"], [">=", ["get", "pci"], 86]])
'("pci" IS NOT NULL) AND ("pci" >= 86)'
>>> print(expression(["all", ["!=", ["get", "status"], "high"], ["!", ["has", "x"]]]))
("status" IS NOT 'high') AND (NOT ("x" IS NOT NULL))
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from geo.layers import Layer
from maps.maplibre import DEFAULT_COLOUR, DEFAULT_FILL_OPACITY, FILL_OPACITY, RULES

_COMPARISONS = {"==": "IS", "!=": "IS NOT", ">=": ">=", ">": ">", "<=": "<=", "<": "<"}


def _field(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def expression(rule: list) -> str:
    """A QGIS expression for a MapLibre filter of the forms :mod:`maps.maplibre` writes.

    ``==``/``!=`` become ``IS``/``IS NOT`` so that a missing value compares as MapLibre's
    does (``null != "high"`` is true), as QGIS's own MapLibre converter writes them.
    """
    operator = rule[0]
    if operator == "all":
        return " AND ".join(f"({expression(part)})" for part in rule[1:])
    if operator == "!":
        return f"NOT ({expression(rule[1])})"
    if operator == "has":
        return f"{_field(rule[1])} IS NOT NULL"
    if operator == "==" and rule[1] == ["geometry-type"]:
        return f"geometry_type($geometry) = {_literal(rule[2])}"
    if operator in _COMPARISONS and isinstance(rule[1], list) and rule[1][0] == "get":
        return f"{_field(rule[1][1])} {_COMPARISONS[operator]} {_literal(rule[2])}"
    raise ValueError(f"no QGIS expression for the filter {rule!r}")


def _rgba(colour: str, alpha: int = 255) -> str:
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"{red},{green},{blue},{alpha}"


def _options(values: dict[str, str]) -> str:
    return "".join(f'<Option name={quoteattr(k)} type="QString" value={quoteattr(v)}/>'
                   for k, v in values.items())


def _symbol(index: int, kind: str, colour: str, fill_opacity: float) -> str:
    if kind == "line":
        layer = ("SimpleLine", {"line_color": _rgba(colour), "line_width": "0.8",
                                "line_width_unit": "MM", "capstyle": "round",
                                "joinstyle": "round"})
    elif kind == "marker":
        layer = ("SimpleMarker", {"color": _rgba(colour), "size": "2.4", "size_unit": "MM",
                                  "outline_color": "255,255,255,255", "outline_width": "0.2",
                                  "name": "circle"})
    else:
        layer = ("SimpleFill", {"color": _rgba(colour, round(255 * fill_opacity)),
                                "style": "solid" if fill_opacity else "no",
                                "outline_color": _rgba(colour), "outline_width": "0.26"})
    return (f'<symbol type="{kind}" name="{index}" alpha="1" clip_to_extent="1" '
            f'force_rhr="0"><layer class="{layer[0]}" enabled="1" locked="0" pass="0">'
            f'<Option type="Map">{_options(layer[1])}</Option></layer></symbol>')


def layer_qml(layer: Layer) -> str:
    """The QML document styling ``layer`` in QGIS by its condition, as the maps do."""
    rules = RULES.get(layer.id, [("all", None, DEFAULT_COLOUR)])
    kinds = {"Point": ("marker",), "LineString": ("line",), "Polygon": ("fill",)}.get(
        layer.geometry_type, ("fill", "line", "marker"))
    geometry = {"marker": "Point", "line": "Line", "fill": "Polygon"}
    rule_xml: list[str] = []
    symbols: list[str] = []
    for kind in kinds:
        for name, rule, colour in rules:
            parts = [expression(rule)] if rule is not None else []
            if len(kinds) > 1:  # a mixed layer: each symbol for its own geometry type
                parts.insert(0, f"geometry_type($geometry) = '{geometry[kind]}'")
            text = " AND ".join(f"({p})" for p in parts) if len(parts) > 1 else (
                parts[0] if parts else "")
            index = len(symbols)
            filter_attr = f" filter={quoteattr(text)}" if text else ""
            rule_xml.append(f'<rule key="r{index}" symbol="{index}" '
                            f'label={quoteattr(name)}{filter_attr}/>')
            symbols.append(_symbol(index, kind, colour,
                                   FILL_OPACITY.get(layer.id, DEFAULT_FILL_OPACITY)))
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            '<qgis version="3.22.16" styleCategories="Symbology">'
            '<renderer-v2 type="RuleRenderer" symbollevels="0" enableorderby="0" '
            'forceraster="0"><rules key="root">' + "".join(rule_xml) + "</rules><symbols>"
            + "".join(symbols) + "</symbols></renderer-v2></qgis>\n")
