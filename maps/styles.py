"""Colours and the JavaScript that styles and describes the twin's layers on the maps.

The colours are those of the service's MapLibre style (``/styles/twin.json``) so every view
of the twin agrees: PCI bands of ASTM D6433, alert severities, manhole status, compound
management types.
"""

from __future__ import annotations

from typing import cast

from babel.support import LazyProxy

from geo.i18n import N_, _, _l
from geo.vocabulary import (
    COVER_STATES,
    DAMAGE_CLASSES,
    DAMAGE_NAMES,
    MANAGEMENT_TYPES,
    MANHOLE_KINDS,
    OTHER,
    ROAD_CLASSES,
    SEVERITIES,
    SEVERITY_LABELS,
)
from geo.vocabulary import label as vocabulary_label
from maps.elements import js_value

SEVERITY_ORDER = SEVERITIES  # least urgent first
SEVERITY_COLOURS = dict(zip(SEVERITIES, ("#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"),
                            strict=True))
# (lowest PCI of the band, name, colour), best first: docs/domain.md / ASTM D6433.
PCI_BANDS = ((86, _l("Good"), "#1a9850"), (71, _l("Satisfactory"), "#91cf60"),
             (56, _l("Fair"), "#fee08b"), (41, _l("Poor"), "#fc8d59"),
             (26, _l("Very poor"), "#e34a33"), (11, _l("Serious"), "#b2182b"),
             (0, _l("Failed"), "#6d0000"))
NO_DATA = "#9e9e9e"
MANHOLE_COLOURS = {"none": "#3b6ea8", **SEVERITY_COLOURS}
# In the order of the vocabulary; ``other`` (a city's own type) is drawn in the default grey.
COMPOUND_COLOURS = dict(zip(MANAGEMENT_TYPES.values, ("#80b1d3", "#fdb462", "#bebada", "#fb8072"),
                            strict=True))
COMPOUND_LABELS = {code: _l(name) for code, name in MANAGEMENT_TYPES.labels.items()}
DAMAGE_COLOURS = dict(zip(DAMAGE_CLASSES.values, ("#e6ab02", "#d95f02", "#7570b3", "#e7298a"),
                          strict=True))


def _capitalised(message: str) -> str:
    # Chinese has no capitals: capitalize() leaves it as it is.
    return _(message).capitalize()


# Capitalised, in the language of the page being built.
DAMAGE_LABELS = {code: cast(str, LazyProxy(_capitalised, name, enable_cache=False))
                 for code, name in DAMAGE_NAMES.items()}
DEBRIS_COLOUR = "#8c510a"
DISTRICT_COLOUR = "#6a51a3"  # outlines only: districts and grids nest and lie under everything
# Parking occupancy: (lowest percent of the band, colour), fullest first; grey-blue: no reading.
OCCUPANCY_BANDS = ((90, "#d73027"), (70, "#fee08b"), (0, "#1a9850"))
OCCUPANCY_NO_DATA = "#8c96c6"
COMPOUND_OTHER = "#cccccc"  # a city's own management type
DAMAGE_OTHER = "#666666"
HOTSPOT_COLOURS = ("#fdd49e", "#fc8d59", "#d7301f", "#7f0000")  # more reports: darker
# Feature properties shown in popups whose values are codes of a vocabulary: shown by name.
VALUE_LABELS = {"road_class": ROAD_CLASSES.labels, "kind": MANHOLE_KINDS.labels,
                "cover_state": COVER_STATES.labels, "management_type": MANAGEMENT_TYPES.labels,
                "damage_class": DAMAGE_CLASSES.labels, "severity": SEVERITY_LABELS,
                "status": {"none": N_("none"), **SEVERITY_LABELS}}


def pci_colour(value: float | None) -> str:
    """The colour of a PCI value's band (grey when there is none).

    Examples
    --------
    >>> pci_colour(90), pci_colour(55), pci_colour(None)
    ('#1a9850', '#fc8d59', '#9e9e9e')
    """
    if value is None:
        return NO_DATA
    for lowest, _name, colour in PCI_BANDS:
        if value >= lowest:
            return colour
    return PCI_BANDS[-1][2]


def pci_band_js() -> str:
    """``twinPciColour(value)`` in JavaScript, the same bands as :func:`pci_colour`."""
    bands = [[lowest, colour] for lowest, _name, colour in PCI_BANDS]
    return (f"function twinPciColour(v) {{ if (v === null || v === undefined || v === '' || "
            f"isNaN(v)) return {js_value(NO_DATA)}; var bands = {js_value(bands)}; "
            f"for (var i = 0; i < bands.length; i++) {{ if (Number(v) >= bands[i][0]) "
            f"return bands[i][1]; }} return bands[bands.length - 1][1]; }}")


def street_style(value_js: str = "p.pci") -> str:
    """Streets as lines coloured by a PCI value (an expression over properties ``p``)."""
    return (f"function (p, z) {{ var v = {value_js}; return {{weight: z >= 17 ? 6 : "
            f"z >= 15 ? 4 : 2, color: twinPciColour(v), opacity: 0.95, lineCap: 'round'}}; }}")


def _match(property_name: str, colours: dict[str, str], default: str) -> str:
    return f"({js_value(colours)}[p.{property_name}] || {js_value(default)})"


def point_style(colour_js: str, radius: int = 4) -> str:
    """Points as small circles (VectorGrid draws points as circle markers)."""
    return (f"function (p, z) {{ return {{radius: z >= 17 ? {radius + 2} : {radius}, "
            f"weight: 1, color: '#ffffff', fill: true, fillColor: {colour_js}, "
            f"fillOpacity: 0.9}}; }}")


MANHOLE_STYLE = point_style(_match("status", MANHOLE_COLOURS, MANHOLE_COLOURS["none"]))
DAMAGE_STYLE = point_style(_match("damage_class", DAMAGE_COLOURS, DAMAGE_OTHER), radius=3)
DEBRIS_STYLE = ("function (p, z) { return {radius: 5, weight: 1, color: '#ffffff', fill: true, "
                f"fillColor: {js_value(DEBRIS_COLOUR)}, fillOpacity: 0.85, "
                f"fillRule: 'nonzero'}}; }}")
COMPOUND_STYLE = ("function (p, z) { var c = "
                  + _match("management_type", COMPOUND_COLOURS, COMPOUND_OTHER)
                  + "; return {weight: 1, color: c, fill: true, fillColor: c, "
                    "fillOpacity: 0.45}; }")


def popup_js(title: str, fields: list[tuple[str, str]]) -> str:
    """``(properties) -> HTML`` listing some properties as label: value.

    Labels are written in the current language; a field with a vocabulary
    (``VALUE_LABELS``) shows its value's name in that language too.
    """
    rows = " + ".join(
        f"(p.{name} !== undefined && p.{name} !== null ? '<div>' + {js_value(str(label))} + "
        f"{js_value(_(': '))} + twinEscape({_value_js(name)}) + '</div>' : '')"
        for name, label in fields)
    rows = rows or "''"
    return (f"function (p) {{ return '<div class=\"twin-popup\"><strong>' + "
            f"{js_value(str(title))} + '</strong>' + {rows} + '</div>'; }}")


def _value_js(name: str) -> str:
    """``p.<name>``, or its name for people where the property has a vocabulary."""
    labels = VALUE_LABELS.get(name)
    if labels is None:
        return f"p.{name}"
    names = {code: vocabulary_label(labels, code) for code in (*labels, OTHER)}
    return f"({js_value(names)}[p.{name}] || p.{name})"


# The crew map's streets: quiet grey context under the alerts, so that a crew sees the network
# and can tap any street for its name.
STREET_CONTEXT_STYLE = ("function (p, z) { return {weight: z >= 17 ? 5 : z >= 15 ? 3 : 1.5, "
                        "color: '#9a948a', opacity: 0.9, lineCap: 'round'}; }")


def alert_line_style(severity: str) -> dict:
    """An alerted street segment: a wide line in its severity's colour, above the grey streets.

    Examples
    --------
    >>> alert_line_style("critical")["color"]
    '#bd0026'
    """
    return {"color": SEVERITY_COLOURS.get(severity, SEVERITY_COLOURS["low"]), "weight": 8,
            "opacity": 0.9, "lineCap": "round"}


def street_popup_js() -> str:
    """``(properties) -> HTML``: the street's name large, its external id small, then facts."""
    pci_now = js_value(_("PCI now: {pci}"))
    return ("function (p) { return '<div class=\"twin-popup\"><strong class=\"twin-place\">' + "
            "twinEscape(p.name || p.external_id) + '</strong> <small class=\"twin-ext\">' + "
            "twinEscape(p.external_id) + '</small>' + (p.road_class ? '<div>' + "
            f"twinEscape({_value_js('road_class')}) + '</div>' : '') + (p.pci !== undefined && "
            f"p.pci !== null ? '<div>' + {pci_now}.replace('{{pci}}', "
            "twinEscape(Number(p.pci).toFixed(0))) + '</div>' : '') + '</div>'; }")
