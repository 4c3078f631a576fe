"""The planner map: street condition now and forecast, damage, debris, manholes, compounds.

Pure: data in, ``folium.Map`` out. Streets, manholes and compounds come from the twin's
vector tiles (or GeoJSON in an offline file); the street colouring is a choice of base layer:
the latest PCI, or the forecast PCI at each horizon scored (the ``predictions`` table), looked
up by street id in the page.
"""

from __future__ import annotations

from collections.abc import Mapping

import folium
from folium.plugins import HeatMap

from maps.assets import use_local_assets
from maps.crew import DEFAULT_CENTRE, _fit, add_panes
from maps.elements import Legend, Page, Script, TwinMap, VectorLayer, js_value
from maps.styles import (
    COMPOUND_COLOURS,
    COMPOUND_LABELS,
    COMPOUND_STYLE,
    HOTSPOT_COLOURS,
    MANHOLE_COLOURS,
    MANHOLE_STYLE,
    NO_DATA,
    PCI_BANDS,
    pci_band_js,
    popup_js,
    street_style,
)

DENSITY_COLOURS = ("#ffffb2", "#fd8d3c", "#bd0026")
STREET_FIELDS = [("name", "Street"), ("external_id", "Id"), ("road_class", "Class"),
                 ("surface", "Surface"), ("pci", "PCI now"), ("pci_observed_at", "Observed")]
PLANNER_LAYERS = {
    "compounds": ("Compounds by management type", COMPOUND_STYLE,
                  [("name", "Compound"), ("management_type", "Management"),
                   ("households", "Households"), ("built_year", "Built")]),
    "manholes": ("Manholes by status", MANHOLE_STYLE,
                 [("external_id", "Manhole"), ("kind", "Kind"), ("cover_state", "Cover"),
                  ("status", "Worst alert"), ("active_alerts", "Active alerts")]),
}


def _forecast_popup(horizon: int) -> str:
    base = popup_js("Street", STREET_FIELDS)
    return (f"function (p) {{ var f = (TWIN_FORECAST[{horizon}] || {{}})[p.id]; "
            f"var extra = f ? '<div class=\"twin-popup\">PCI forecast in {horizon} days: ' + "
            f"f[0].toFixed(1) + ' (' + f[1].toFixed(1) + '-' + f[2].toFixed(1) + "
            f"'), as of ' + TWIN_FORECAST_AS_OF + '</div>' : "
            f"'<div class=\"twin-popup\">No forecast for this street.</div>'; "
            f"return ({base})(p) + extra; }}")


def planner_map(sources: Mapping[str, str | dict], *,
                forecasts: Mapping[int, Mapping[int, tuple[float, float, float]]] | None = None,
                forecast_as_of: str = "", damage: list[list[float]] | None = None,
                hotspots: dict | None = None,
                bounds: tuple[float, float, float, float] | None = None,
                static_prefix: str = "/static", subtitle: str = "") -> folium.Map:
    """Build the planner map.

    Parameters
    ----------
    sources : mapping
        Layer id (``streets``, ``manholes``, ``compounds``) -> a same-origin tile URL template,
        or a GeoJSON FeatureCollection (features carrying ``id`` in their properties).
    forecasts : mapping, optional
        Horizon in days -> {street id: (value, lower, upper)}: the newest forecast per street.
        Each horizon becomes a choice of street colouring; none means a note says so.
    forecast_as_of : str
        When the forecasts were made (shown in popups and the subtitle).
    damage : list of [lat, lon, weight], optional
        Road damage density (``maps.analysis.damage_density``).
    hotspots : dict, optional
        Debris hotspot cells (``maps.analysis.debris_hotspots``).
    bounds : tuple, optional
        west, south, east, north to show first.
    static_prefix : str
        Where the vendored browser files are served.
    subtitle : str
        A line under the title.
    """
    forecasts = dict(forecasts or {})
    m = TwinMap(location=DEFAULT_CENTRE, zoom_start=15, tiles=None, control_scale=True,
                max_zoom=22)
    add_panes(m)
    note = subtitle or (f"Forecasts as of {forecast_as_of}" if forecasts else
                        "No forecast yet: run `twin predict train` and `twin predict score`")
    Page("Planner map: street condition and hotspots", note).add_to(m)
    table = {int(h): {int(k): [round(float(x), 2) for x in v] for k, v in rows.items()}
             for h, rows in forecasts.items()}
    Script(f"var TWIN_FORECAST = {js_value(table)};\n"
           f"var TWIN_FORECAST_AS_OF = {js_value(forecast_as_of)};\n"
           f"{pci_band_js()}").add_to(m)

    streets = sources.get("streets")
    if streets is not None:
        where = {"tile_url": streets} if isinstance(streets, str) else {"geojson": streets}
        VectorLayer("streets", "Street condition now (PCI)", street_style("p.pci"),
                    popup_js=popup_js("Street", STREET_FIELDS), overlay=False, show=True,
                    pane="twin-lines", **where).add_to(m)
        for horizon in sorted(table):
            VectorLayer("streets", f"Forecast PCI in {horizon} days",
                        street_style(f"((TWIN_FORECAST[{horizon}] || {{}})[p.id] || [null])[0]"),
                        popup_js=_forecast_popup(horizon), overlay=False, show=False,
                        pane="twin-lines", **where).add_to(m)

    for layer_id in PLANNER_LAYERS:
        if layer_id in sources:
            _add_one(m, layer_id, sources[layer_id])

    if damage:
        HeatMap(damage, name="Road damage density (last year)", radius=16, blur=12,
                min_opacity=0.05, max_zoom=17, show=True,
                gradient={0.35: DENSITY_COLOURS[0], 0.65: DENSITY_COLOURS[1],
                          1.0: DENSITY_COLOURS[2]}).add_to(m)
    if hotspots and hotspots.get("features"):
        folium.GeoJson(
            hotspots, name="Debris hotspots (reports per 100 m cell)",
            style_function=lambda f: {
                "color": HOTSPOT_COLOURS[f["properties"]["level"]], "weight": 1,
                "fillColor": HOTSPOT_COLOURS[f["properties"]["level"]], "fillOpacity": 0.55},
            tooltip=folium.GeoJsonTooltip(["reports", "last_seen"],
                                          aliases=["Debris reports", "Last seen"]),
        ).add_to(m)

    Legend("Legend", [
        ("Street PCI (now or forecast)",
         [(c, f"{name} ({lo}-{hi})", "line") for (lo, name, c), hi in
          zip(PCI_BANDS, (100, 85, 70, 55, 40, 25, 10), strict=True)]
         + [(NO_DATA, "no data", "line")]),
        ("Manholes: worst active alert", [(c, s, "circle") for s, c in MANHOLE_COLOURS.items()]),
        ("Compounds", [(COMPOUND_COLOURS[k], label, "box")
                       for k, label in COMPOUND_LABELS.items()]),
        ("Debris hotspots: reports per cell",
         [(c, label, "box") for c, label in zip(HOTSPOT_COLOURS,
                                                 ("few", "some", "many", "most"), strict=True)]),
        ("Road damage density", [(f"linear-gradient(90deg, {', '.join(DENSITY_COLOURS)})",
                                  "low to high", "box")]),
    ]).add_to(m)
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    _fit(m, bounds, [(p[0], p[1]) for p in damage or []])
    return use_local_assets(m, static_prefix)


def _add_one(m: folium.Map, layer_id: str, source: str | dict) -> None:
    pane = "twin-areas" if layer_id == "compounds" else "twin-points"
    name, style, fields = PLANNER_LAYERS[layer_id]
    where = {"tile_url": source} if isinstance(source, str) else {"geojson": source}
    VectorLayer(layer_id, name, style, popup_js=popup_js(name, fields), pane=pane,
                **where).add_to(m)

