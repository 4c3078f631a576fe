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

from geo.i18n import _, _l
from geo.settings import PCI_THRESHOLD
from geo.vocabulary import SEVERITY_LABELS
from geo.vocabulary import label as vocabulary_label
from maps import elements
from maps.assets import use_local_assets
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
# Lazy strings (geo.i18n): each is written in the language of the page being built.
STREET_FIELDS = [("name", _l("Street")), ("external_id", _l("Id")), ("road_class", _l("Class")),
                 ("surface", _l("Surface")), ("pci", _l("PCI now")),
                 ("pci_observed_at", _l("Observed"))]
PLANNER_LAYERS = {
    "compounds": (_l("Compounds by management type"), COMPOUND_STYLE,
                  [("name", _l("Compound")), ("management_type", _l("Management")),
                   ("households", _l("Households")), ("built_year", _l("Built"))]),
    "manholes": (_l("Manholes by status"), MANHOLE_STYLE,
                 [("external_id", _l("Manhole")), ("kind", _l("Kind")),
                  ("cover_state", _l("Cover")), ("status", _l("Worst alert")),
                  ("active_alerts", _l("Active alerts"))]),
}


# The popup's chart of a street's PCI: its latest surveys and its forecasts with their
# intervals, drawn as an inline SVG in the browser from the tables in the page (nothing is
# fetched when a popup opens; a page written to disk draws it too).
CHART_WIDTH, CHART_HEIGHT = 260, 130
CHART_SCRIPT = """
function twinChart(id) {
  var h = TWIN_HISTORY[id] || [], f = [];
  Object.keys(TWIN_FORECAST).forEach(function (k) {
    var r = TWIN_FORECAST[k][id];
    if (r) f.push([TWIN_FORECAST_DAY + Number(k), r[0], r[1], r[2]]);
  });
  if (!h.length && !f.length) return '';
  f.sort(function (a, b) { return a[0] - b[0]; });
  var W = %(width)d, H = %(height)d, L = 26, R = 8, T = 6, B = 30;
  var ts = h.map(function (p) { return p[0]; }).concat(f.map(function (p) { return p[0]; }));
  var t0 = Math.min.apply(null, ts), t1 = Math.max.apply(null, ts);
  if (t1 === t0) { t0 -= 1; t1 += 1; }
  function x(t) { return (L + (t - t0) / (t1 - t0) * (W - L - R)).toFixed(1); }
  function y(v) { return (T + (1 - v / 100) * (H - T - B)).toFixed(1); }
  function day(t) { return new Date(t * 864e5).toISOString().slice(0, 10); }
  function pts(list, i) {
    return list.map(function (p) { return x(p[0]) + ',' + y(p[i]); }).join(' ');
  }
  var s = '<svg class="twin-chart" xmlns="http://www.w3.org/2000/svg" width="' + W
    + '" height="' + H + '" viewBox="0 0 ' + W + ' ' + H + '" role="img" aria-label="'
    + twinEscape(TWIN_CHART_TEXT.title) + '">';
  s += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + y(%(threshold)s) + '" y2="'
    + y(%(threshold)s) + '" stroke="#d62728" stroke-dasharray="2,2" stroke-width="1"/>';
  var start = h.length ? [h[h.length - 1]] : [];
  if (f.length) {
    var up = start.map(function (p) { return [p[0], p[1]]; }).concat(
      f.map(function (p) { return [p[0], p[3]]; }));
    var down = f.map(function (p) { return [p[0], p[2]]; }).reverse().concat(
      start.map(function (p) { return [p[0], p[1]]; }));
    s += '<polygon class="twin-chart-interval" fill="#9ecae1" fill-opacity="0.6" stroke="none" '
      + 'points="' + pts(up.concat(down), 1) + '"/>';
    s += '<polyline class="twin-chart-forecast" fill="none" stroke="#08519c" '
      + 'stroke-width="1.5" stroke-dasharray="4,3" points="'
      + pts(start.map(function (p) { return [p[0], p[1]]; }).concat(f), 1) + '"/>';
  }
  if (h.length) {
    s += '<polyline class="twin-chart-history" fill="none" stroke="#333" stroke-width="1.5" '
      + 'points="' + pts(h, 1) + '"/>';
    h.forEach(function (p) {
      s += '<circle cx="' + x(p[0]) + '" cy="' + y(p[1]) + '" r="2" fill="#333"/>';
    });
  }
  s += '<line x1="' + L + '" x2="' + L + '" y1="' + T + '" y2="' + (H - B)
    + '" stroke="#999"/><line x1="' + L + '" x2="' + (W - R) + '" y1="' + (H - B) + '" y2="'
    + (H - B) + '" stroke="#999"/>';
  s += '<g font-size="9" fill="#555"><text x="' + (L - 3) + '" y="' + (T + 7)
    + '" text-anchor="end">100</text><text x="' + (L - 3) + '" y="' + (H - B)
    + '" text-anchor="end">0</text><text x="' + L + '" y="' + (H - B + 11) + '">' + day(t0)
    + '</text><text x="' + (W - R) + '" y="' + (H - B + 11) + '" text-anchor="end">' + day(t1)
    + '</text><text x="' + L + '" y="' + (H - 3) + '">' + twinEscape(TWIN_CHART_TEXT.legend)
    + '</text></g></svg>';
  return '<div class="twin-chart-box"><div>' + twinEscape(TWIN_CHART_TEXT.title) + '</div>'
    + s + '</div>';
}
"""


def _chart_script() -> str:
    text = {"title": _("PCI: surveys and forecast"),
            "legend": _("line: surveys; dashes: forecast; band: 80 % interval; red: {threshold}",
                        threshold=f"{PCI_THRESHOLD:g}")}
    return (f"var TWIN_CHART_TEXT = {js_value(text)};\n"
            + CHART_SCRIPT % {"width": CHART_WIDTH, "height": CHART_HEIGHT,
                              "threshold": f"{PCI_THRESHOLD:g}"})


def _street_popup() -> str:
    base = popup_js(_("Street"), STREET_FIELDS)
    return f"function (p) {{ return ({base})(p) + twinChart(p.id); }}"


def _forecast_popup(horizon: int) -> str:
    base = popup_js(_("Street"), STREET_FIELDS)
    forecast = js_value(_("PCI forecast in {days} days: {value} ({low}-{high}), as of {as_of}",
                          days=horizon, value="{value}", low="{low}", high="{high}",
                          as_of="{as_of}"))
    none = js_value(_("No forecast for this street."))
    return (f"function (p) {{ var f = (TWIN_FORECAST[{horizon}] || {{}})[p.id]; "
            f"var extra = f ? '<div class=\"twin-popup\">' + {forecast}"
            f".replace('{{value}}', f[0].toFixed(1)).replace('{{low}}', f[1].toFixed(1))"
            f".replace('{{high}}', f[2].toFixed(1)).replace('{{as_of}}', TWIN_FORECAST_AS_OF)"
            f" + '</div>' : '<div class=\"twin-popup\">' + {none} + '</div>'; "
            f"return ({base})(p) + extra + twinChart(p.id); }}")


def planner_map(sources: Mapping[str, str | dict], *,
                forecasts: Mapping[int, Mapping[int, tuple[float, float, float]]] | None = None,
                forecast_as_of: str = "", forecast_day: int | None = None,
                history: Mapping[int, list[tuple[int, float]]] | None = None,
                damage: list[list[float]] | None = None,
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
    forecast_day : int, optional
        The same as-of in days since 1970-01-01: where the popup chart puts the forecasts'
        horizons.
    history : mapping, optional
        Street id -> its latest PCI surveys as (days since 1970-01-01, value), oldest first:
        the popup chart's line.
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
    m = TwinMap(location=elements.DEFAULT_CENTRE, zoom_start=15, tiles=None, control_scale=True,
                max_zoom=22)
    elements.add_panes(m)
    note = subtitle or (
        _("Forecasts as of {as_of}", as_of=forecast_as_of) if forecasts else
        _("No forecast yet: run `twin predict train` and `twin predict score`"))
    Page(_("Planner map: street condition and hotspots"), note).add_to(m)
    table = {int(h): {int(k): [round(float(x), 2) for x in v] for k, v in rows.items()}
             for h, rows in forecasts.items()}
    seen = {int(k): [[int(t), round(float(v), 1)] for t, v in points]
            for k, points in (history or {}).items()}
    Script(f"var TWIN_FORECAST = {js_value(table)};\n"
           f"var TWIN_FORECAST_AS_OF = {js_value(forecast_as_of)};\n"
           f"var TWIN_FORECAST_DAY = {js_value(forecast_day or 0)};\n"
           f"var TWIN_HISTORY = {js_value(seen)};\n"
           f"{_chart_script()}{pci_band_js()}").add_to(m)

    streets = sources.get("streets")
    if streets is not None:
        where = {"tile_url": streets} if isinstance(streets, str) else {"geojson": streets}
        VectorLayer("streets", _("Street condition now (PCI)"), street_style("p.pci"),
                    popup_js=_street_popup(), overlay=False, show=True,
                    pane="twin-lines", **where).add_to(m)
        for horizon in sorted(table):
            VectorLayer("streets", _("Forecast PCI in {days} days", days=horizon),
                        street_style(f"((TWIN_FORECAST[{horizon}] || {{}})[p.id] || [null])[0]"),
                        popup_js=_forecast_popup(horizon), overlay=False, show=False,
                        pane="twin-lines", **where).add_to(m)

    for layer_id in PLANNER_LAYERS:
        if layer_id in sources:
            _add_one(m, layer_id, sources[layer_id])

    if damage:
        HeatMap(damage, name=_("Road damage density (last year)"), radius=16, blur=12,
                min_opacity=0.05, max_zoom=17, show=True,
                gradient={0.35: DENSITY_COLOURS[0], 0.65: DENSITY_COLOURS[1],
                          1.0: DENSITY_COLOURS[2]}).add_to(m)
    if hotspots and hotspots.get("features"):
        folium.GeoJson(
            hotspots, name=_("Debris hotspots (reports per 100 m cell)"),
            style_function=lambda f: {
                "color": HOTSPOT_COLOURS[f["properties"]["level"]], "weight": 1,
                "fillColor": HOTSPOT_COLOURS[f["properties"]["level"]], "fillOpacity": 0.55},
            tooltip=folium.GeoJsonTooltip(["reports", "last_seen"],
                                          aliases=[_("Debris reports"), _("Last seen")]),
        ).add_to(m)

    sev = {s: vocabulary_label(SEVERITY_LABELS, s) for s in MANHOLE_COLOURS}
    sev["none"] = _("none")
    Legend(_("Legend"), [
        (_("Street PCI (now or forecast)"),
         [(c, f"{name} ({lo}-{hi})", "line") for (lo, name, c), hi in
          zip(PCI_BANDS, (100, 85, 70, 55, 40, 25, 10), strict=True)]
         + [(NO_DATA, _("no data"), "line")]),
        (_("Manholes: worst active alert"),
         [(c, sev[s], "circle") for s, c in MANHOLE_COLOURS.items()]),
        (_("Compounds"), [(COMPOUND_COLOURS[k], label, "box")
                          for k, label in COMPOUND_LABELS.items()]),
        (_("Debris hotspots: reports per cell"),
         [(c, label, "box") for c, label in zip(
             HOTSPOT_COLOURS, (_("few"), _("some"), _("many"), _("most")), strict=True)]),
        (_("Road damage density"), [(f"linear-gradient(90deg, {', '.join(DENSITY_COLOURS)})",
                                     _("low to high"), "box")]),
    ]).add_to(m)
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    elements.fit_view(m, bounds, [(p[0], p[1]) for p in damage or []])
    return use_local_assets(m, static_prefix)


def _add_one(m: folium.Map, layer_id: str, source: str | dict) -> None:
    pane = "twin-areas" if layer_id == "compounds" else "twin-points"
    name, style, fields = PLANNER_LAYERS[layer_id]
    where = {"tile_url": source} if isinstance(source, str) else {"geojson": source}
    VectorLayer(layer_id, name, style, popup_js=popup_js(name, fields), pane=pane,
                **where).add_to(m)

