"""Colours and the JavaScript that styles and describes the twin's layers on the maps.

The colours are those of the service's MapLibre style (``/styles/twin.json``) so every view
of the twin agrees: PCI bands of ASTM D6433, alert severities, manhole status, compound
management types.
"""

from __future__ import annotations

from geo.i18n import N_
from geo.vocabulary import DAMAGE_CLASSES, DAMAGE_NAMES, MANAGEMENT_TYPES, SEVERITIES
from maps.elements import js_value

SEVERITY_ORDER = SEVERITIES  # least urgent first
SEVERITY_COLOURS = dict(zip(SEVERITIES, ("#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"),
                            strict=True))
# (lowest PCI of the band, name, colour), best first: docs/domain.md / ASTM D6433.
# (Names marked for the catalogue: a page shows them with geo.i18n's ``_``.)
PCI_BANDS = ((86, N_("Good"), "#1a9850"), (71, N_("Satisfactory"), "#91cf60"),
             (56, N_("Fair"), "#fee08b"), (41, N_("Poor"), "#fc8d59"),
             (26, N_("Very poor"), "#e34a33"), (11, N_("Serious"), "#b2182b"),
             (0, N_("Failed"), "#6d0000"))
NO_DATA = "#9e9e9e"
MANHOLE_COLOURS = {"none": "#3b6ea8", **SEVERITY_COLOURS}
# In the order of the vocabulary; ``other`` (a city's own type) is drawn in the default grey.
COMPOUND_COLOURS = dict(zip(MANAGEMENT_TYPES.values, ("#80b1d3", "#fdb462", "#bebada", "#fb8072"),
                            strict=True))
COMPOUND_LABELS = {"commodity": N_("Commodity housing, property company"),
                   "resettlement": N_("Affordable / resettlement"),
                   "old": N_("Old compound, bungalows"),
                   "unmanaged": N_("No property management")}
DAMAGE_COLOURS = dict(zip(DAMAGE_CLASSES.values, ("#e6ab02", "#d95f02", "#7570b3", "#e7298a"),
                          strict=True))
DAMAGE_LABELS = {code: name.capitalize() for code, name in DAMAGE_NAMES.items()}
DEBRIS_COLOUR = "#8c510a"
HOTSPOT_COLOURS = ("#fdd49e", "#fc8d59", "#d7301f", "#7f0000")  # more reports: darker
# Houses by their open matters (residents' requests and alerts at them): none in a quiet
# blue-grey, then warmer as they add up; (at least this many, colour).
MATTER_STEPS = ((0, "#c6ccd6"), (1, "#fdae61"), (3, "#f46d43"), (6, "#a50026"))


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
DAMAGE_STYLE = point_style(_match("damage_class", DAMAGE_COLOURS, "#666666"), radius=3)
DEBRIS_STYLE = ("function (p, z) { return {radius: 5, weight: 1, color: '#ffffff', fill: true, "
                f"fillColor: {js_value(DEBRIS_COLOUR)}, fillOpacity: 0.85, "
                f"fillRule: 'nonzero'}}; }}")
COMPOUND_STYLE = ("function (p, z) { var c = "
                  + _match("management_type", COMPOUND_COLOURS, "#cccccc")
                  + "; return {weight: 1, color: c, fill: true, fillColor: c, "
                    "fillOpacity: 0.45}; }")


def popup_js(title: str, fields: list[tuple[str, str]]) -> str:
    """``(properties) -> HTML`` listing some properties as label: value."""
    rows = " + ".join(
        f"(p.{name} !== undefined && p.{name} !== null ? '<div>{label}: ' + "
        f"twinEscape(p.{name}) + '</div>' : '')" for name, label in fields)
    rows = rows or "''"
    return (f"function (p) {{ return '<div class=\"twin-popup\"><strong>{title}</strong>' + "
            f"{rows} + '</div>'; }}")


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
    return ("function (p) { return '<div class=\"twin-popup\"><strong class=\"twin-place\">' + "
            "twinEscape(p.name || p.external_id) + '</strong> <small class=\"twin-ext\">' + "
            "twinEscape(p.external_id) + '</small>' + (p.road_class ? '<div>' + "
            "twinEscape(p.road_class) + ' road</div>' : '') + (p.pci !== undefined && "
            "p.pci !== null ? '<div>PCI now: ' + twinEscape(Number(p.pci).toFixed(0)) + "
            "'</div>' : '') + '</div>'; }")
