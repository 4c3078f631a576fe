"""The crew map: open alerts near the crew, to acknowledge and resolve on the spot.

Pure: data in, ``folium.Map`` out. Alerts are markers coloured by severity and clustered when
zoomed out; each popup says what, where, why and since when, with buttons that call
``POST /alerts/{id}/acknowledge|resolve`` with the crew's API key (entered once, kept in the
browser). Manholes, road damage and debris come from the twin's vector tiles (or, in an
offline file, from GeoJSON) and can be switched on and off.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime

import folium
from branca.element import MacroElement
from folium.map import CustomPane
from folium.plugins import LocateControl, MarkerCluster
from folium.template import Template

from maps.assets import use_local_assets
from maps.elements import (
    NARROW_PX,
    BoundPopup,
    Legend,
    Page,
    Script,
    TwinMap,
    VectorLayer,
    js_value,
)
from maps.styles import (
    DAMAGE_COLOURS,
    DAMAGE_LABELS,
    DAMAGE_STYLE,
    DEBRIS_COLOUR,
    DEBRIS_STYLE,
    MANHOLE_COLOURS,
    MANHOLE_STYLE,
    SEVERITY_COLOURS,
    SEVERITY_ORDER,
    STREET_CONTEXT_STYLE,
    alert_line_style,
    popup_js,
    street_popup_js,
)

DEFAULT_CENTRE = (32.52, 108.54)  # the sample neighbourhood
KIND_LABELS = {"road_wear": "Road wear", "manhole_tilt": "Manhole cover tilted",
               "manhole_cover_open": "Manhole cover open",
               "manhole_flooding": "Water high in manhole", "manhole_gas": "Gas in manhole",
               "sensor_silent": "Manhole sensor silent", "sensor_stuck": "Manhole sensor stuck",
               "sensor_drift": "Manhole sensor drifting",
               "sensor_low_battery": "Manhole sensor battery low"}
# Layer id -> (name in the layer control, style, popup fields).
CREW_LAYERS = {
    "streets": ("Streets", STREET_CONTEXT_STYLE,
                [("name", "Street"), ("external_id", "Id"), ("road_class", "Class"),
                 ("pci", "PCI now")]),
    "manholes": ("Manholes", MANHOLE_STYLE,
                 [("external_id", "Manhole"), ("kind", "Kind"), ("cover_state", "Cover"),
                  ("status", "Worst alert"), ("active_alerts", "Active alerts")]),
    "road_damage": ("Road damage", DAMAGE_STYLE,
                    [("damage_class", "Class"), ("severity", "Severity"),
                     ("size_m2", "Size m2"), ("observed_at", "Seen")]),
    "debris_piles": ("Debris piles", DEBRIS_STYLE,
                     [("pile_ref", "Pile"), ("volume_m3", "Volume m3"),
                      ("material", "Material"), ("observed_at", "Seen")]),
}

CREW_SHOWN = ("streets", "manholes", "debris_piles")  # road damage: one click away
LINE_LAYERS = ("streets",)  # drawn in the lines pane, under the points
LAYER_WORDS = {"streets": "street", "manholes": "manhole", "debris_piles": "debris pile",
               "road_damage": "road damage", "parking": "parking", "compounds": "compound"}

_ACT_JS = """
function twinAct(id, action, button) {
    var box = button.parentNode;
    var answer = box.querySelector(".answer");
    var key = twinApiKey();
    if (!key) {
        key = (window.prompt("API key of a crew member (kept in this browser):") || "").trim();
        if (key) { twinSaveKey(key); }
    }
    if (!key) {
        answer.textContent = "An API key is needed: enter it in the box at the top left.";
        return;
    }
    answer.textContent = "Sending...";
    fetch(TWIN_API + "/alerts/" + id + "/" + action,
          {method: "POST", headers: {"X-API-Key": key}})
        .then(function (r) {
            return r.json().then(function (b) { return [r, b]; },
                                 function () { return [r, {}]; });
        })
        .then(function (rb) {
            var r = rb[0], b = rb[1];
            if (r.ok) {
                var status = (b.properties || {}).status || action;
                answer.textContent = "Done: the alert is now " + status.replace("_", " ") + ".";
                var line = box.parentNode.querySelector(".status");
                if (line) { line.textContent = status.replace("_", " "); }
            } else {
                answer.textContent = "Refused (" + r.status + "): "
                    + (b.detail || b.title || r.statusText);
            }
        })
        .catch(function (e) { answer.textContent = "No answer from the twin: " + e; });
}

// Fly to an alert's marker and open its popup (from the worklist or a street line).
function twinOpenAlert(id) {
    var marker = twinMarkers[id];
    if (!marker) { return false; }
    var zoom = Math.max(TWIN_MAP.getZoom(), 18);
    TWIN_MAP.once("moveend", function () {
        TWIN_ALERTS.zoomToShowLayer(marker, function () { marker.openPopup(); });
    });
    TWIN_MAP.flyTo(marker.getLatLng(), zoom, {duration: 0.6});
    return true;
}

TWIN_ALERT_LINES.on("click", function (e) {
    var id = e.layer && e.layer.feature && e.layer.feature.properties.id;
    if (id !== undefined) { twinOpenAlert(id); }
});

// On a phone the layer list starts folded behind its button; a tap on the map folds it again.
function twinFitControls(layers) {
    if (window.innerWidth < TWIN_NARROW_PX) {
        layers.collapse();
        TWIN_MAP.on("click", function () { layers.collapse(); });
    }
}
"""

_CREW_CSS = """
.twin-popup .twin-place { font-size: 14px; font-weight: bold; margin: 3px 0 1px; }
.twin-popup .twin-ext { font-size: 10px; font-weight: normal; color: #666; }
.twin-popup button { min-height: 32px; padding: 3px 9px; }
@media (max-width: NARROWpx) {
    .twin-title { font-size: 12px; max-width: calc(100vw - 90px); padding: 4px 7px; }
    .twin-title input { width: 7em; }
    .twin-popup { font-size: 13px; }
    .twin-popup button { min-height: 40px; font-size: 14px; margin: 4px 4px 0 0; }
    .leaflet-popup-content { margin: 10px 12px; }
    .twin-legend { max-height: 45vh; }
}
""".replace("NARROW", str(NARROW_PX - 1))

_CLUSTER_ICON = """
function (cluster) {
    var order = %s, worst = 0, name = "low";
    cluster.getAllChildMarkers().forEach(function (m) {
        var found = /twin-sev-(\\w+)/.exec(m.options.icon.options.className || "");
        if (found && order.indexOf(found[1]) > worst) {
            worst = order.indexOf(found[1]); name = found[1];
        }
    });
    return L.divIcon({html: "<div><span>" + cluster.getChildCount() + "</span></div>",
                      className: "marker-cluster twin-cluster twin-sev-" + name,
                      iconSize: L.point(36, 36)});
}
"""


def representative_point(geometry: Mapping | None) -> tuple[float, float] | None:
    """A (lat, lon) on or near a GeoJSON geometry: the point, a middle vertex, a ring's mean.

    Examples
    --------
    >>> representative_point({"type": "Point", "coordinates": [108.5, 32.5]})
    (32.5, 108.5)
    >>> representative_point({"type": "LineString", "coordinates": [[0, 0], [1, 1], [2, 2]]})
    (1, 1)
    """
    if not geometry or not geometry.get("coordinates"):
        return None
    kind, coords = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        return coords[1], coords[0]
    if kind in ("LineString", "MultiPoint"):
        lon, lat = coords[len(coords) // 2][:2]
        return lat, lon
    if kind in ("MultiLineString", "Polygon"):
        ring = coords[0]
        if kind == "MultiLineString":
            lon, lat = ring[len(ring) // 2][:2]
            return lat, lon
        return (sum(p[1] for p in ring) / len(ring), sum(p[0] for p in ring) / len(ring))
    if kind == "MultiPolygon":
        ring = coords[0][0]
        return (sum(p[1] for p in ring) / len(ring), sum(p[0] for p in ring) / len(ring))
    return None


def _when(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value.utcoffset() is not None \
            else value.strftime("%Y-%m-%d %H:%M")
    return str(value or "")


def alert_place(alert: Mapping) -> tuple[str, str]:
    """(the street's name as a crew reads it, the external id to show small).

    Examples
    --------
    >>> alert_place({"asset_layer": "streets", "asset_external_id": "ST-35",
    ...              "street_name": "Jiefang Road", "street_external_id": "ST-35"})
    ('Jiefang Road', 'ST-35')
    >>> alert_place({"asset_layer": "manholes", "asset_external_id": "MH-7",
    ...              "street_name": "Jiefang Road", "street_external_id": "ST-35"})
    ('near Jiefang Road', 'MH-7')
    >>> alert_place({"asset_layer": "manholes", "asset_external_id": "MH-7"})
    ('manhole MH-7', '')
    """
    layer = str(alert.get("asset_layer") or "")
    external = str(alert.get("asset_external_id") or alert.get("asset_id") or "")
    name = alert.get("street_name")
    if name:
        return (str(name) if layer == "streets" else f"near {name}"), external
    return f"{LAYER_WORDS.get(layer, layer or 'place')} {external}".strip(), ""


def alert_popup(alert: Mapping, lat: float, lon: float) -> str:
    """The popup of one alert: what, where (the street's name), why, since when, status, actions.

    Start and Acknowledge are sent at once; Resolve opens the work record form and Dismiss
    asks for its note (``twinAct``).
    """
    e = html.escape
    alert_id = int(alert["id"])
    kind = KIND_LABELS.get(str(alert.get("kind")), str(alert.get("kind", "")).replace("_", " "))
    layer = str(alert.get("asset_layer") or "")
    where = (f"{LAYER_WORDS.get(layer, layer or 'place')} "
             f"{alert.get('asset_external_id') or alert.get('asset_id') or ''}").strip()
    place, small = alert_place(alert)
    status = str(alert.get("status", "")).replace("_", " ")
    buttons = "".join(
        f"<button type=\"button\" onclick=\"twinAct({alert_id}, '{action}', this)\">"
        f"{label}</button>"
        for action, label in (("start", "Start"), ("acknowledge", "Acknowledge"),
                              ("resolve", "Resolve"), ("dismiss", "Dismiss")))
    return (
        f'<div class="twin-popup" data-alert="{alert_id}" data-layer="{e(layer)}">'
        f"<strong>{e(kind)}</strong> "
        f'<span style="color:{SEVERITY_COLOURS.get(str(alert.get("severity")), "#333")}">'
        f'({e(str(alert.get("severity", "")))})</span>'
        f'<div class="twin-place">{e(place)}'
        + (f' <small class="twin-ext">{e(small)}</small>' if small else "") + "</div>"
        f"<div>Where: {e(where)} at {lat:.5f} N, {lon:.5f} E</div>"
        f"<div>Why: {e(str(alert.get('reason', '')))}</div>"
        f"<div>Since: {e(_when(alert.get('opened_at')))}</div>"
        f'<div>Status: <span class="status">{e(status)}</span> (alert {alert_id})</div>'
        f'<div class="actions">{buttons}<div class="twin-form"></div>'
        f'<div class="answer"></div></div></div>'
    )


def _severity_css() -> str:
    rules = [".twin-alert div { width: 18px; height: 18px; border-radius: 50%; "
             "border: 2px solid #fff; box-shadow: 0 0 3px rgba(0,0,0,.6); }"]
    for name, colour in SEVERITY_COLOURS.items():
        rules.append(f".twin-alert.twin-sev-{name} div {{ background: {colour}; }}")
        rules.append(f".twin-cluster.twin-sev-{name} {{ background: {colour}99; }}")
        rules.append(f".twin-cluster.twin-sev-{name} div {{ background: {colour}; "
                     f"color: #fff; font-weight: bold; }}")
    return "\n".join(rules)


PANES = (("twin-areas", 350), ("twin-lines", 360), ("twin-points", 370))


def add_panes(m: folium.Map) -> None:
    """Panes so areas lie under streets, and streets under points, whatever the add order."""
    for name, z_index in PANES:
        CustomPane(name, z_index=z_index, pointer_events=True).add_to(m)


def add_sources(m: folium.Map, layers: Mapping[str, tuple[str, str, list]],
                sources: Mapping[str, str | dict], show: Sequence[str] | None = None,
                popups: Mapping[str, str] | None = None) -> None:
    """Add a VectorLayer per layer present in ``sources`` (tile URL or GeoJSON).

    ``popups`` gives a layer its own popup function instead of the label: value list.
    """
    for layer_id, (name, style, fields) in layers.items():
        source = sources.get(layer_id)
        if source is None:
            continue
        VectorLayer(layer_id, name, style,
                    popup_js=(popups or {}).get(layer_id) or popup_js(name, fields),
                    show=show is None or layer_id in show,
                    pane="twin-lines" if layer_id in LINE_LAYERS else "twin-points",
                    **({"tile_url": source} if isinstance(source, str) else {"geojson": source})
                    ).add_to(m)


class AlertMarker(MacroElement):
    """Puts its parent marker in ``twinMarkers`` under the alert's id (lists open its popup)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        twinMarkers[{{ this.alert_id }}] = {{ this._parent.get_name() }};
        {% endmacro %}
    """)

    def __init__(self, alert_id: int) -> None:
        super().__init__()
        self._name = "AlertMarker"
        self.alert_id = int(alert_id)


def alert_lines(points: Sequence[tuple[Mapping, tuple[float, float]]]) -> dict:
    """The alerts on line assets (street segments) as a FeatureCollection to draw as lines."""
    features = []
    for alert, _where in points:
        geometry = alert.get("geometry") or {}
        if geometry.get("type") not in ("LineString", "MultiLineString"):
            continue
        place, small = alert_place(alert)
        features.append({"type": "Feature", "geometry": geometry, "properties": {
            "id": int(alert["id"]), "severity": str(alert.get("severity") or "low"),
            "place": place, "external_id": small,
            "kind": KIND_LABELS.get(str(alert.get("kind")), str(alert.get("kind")))}})
    return {"type": "FeatureCollection", "features": features}


def crew_map(alerts: Sequence[Mapping], sources: Mapping[str, str | dict], *,
             bounds: tuple[float, float, float, float] | None = None, api_base: str = "",
             static_prefix: str = "/static", subtitle: str = "") -> folium.Map:
    """Build the crew map.

    Parameters
    ----------
    alerts : sequence of mapping
        Active alerts as ``geo.alerts.list_alerts`` gives them (id, kind, severity, status,
        reason, asset_layer, asset_external_id, opened_at, geometry as GeoJSON), with
        ``street_name`` and ``street_external_id`` when they have a street
        (``geo.places.alert_streets``).
    sources : mapping
        Layer id (``streets``, ``manholes``, ``road_damage``, ``debris_piles``) -> a
        same-origin tile URL template, or a GeoJSON FeatureCollection for a file that works
        offline.
    bounds : tuple, optional
        west, south, east, north to show first (default: the alerts' extent).
    api_base : str
        Where the alert actions are sent ("" : the page's own origin).
    static_prefix : str
        Where the vendored browser files are served.
    subtitle : str
        A line under the title (e.g. how many alerts, as of when).
    """
    points = []
    for alert in alerts:
        where = representative_point(alert.get("geometry"))
        if where is not None:
            points.append((alert, where))
    m = TwinMap(location=DEFAULT_CENTRE, zoom_start=15, tiles=None, control_scale=True,
                max_zoom=22)
    add_panes(m)
    Page("Crew map: open alerts",
         subtitle or f"{len(points)} active alert{'s' if len(points) != 1 else ''}",
         key_box=True).add_to(m)
    add_sources(m, CREW_LAYERS, sources, show=CREW_SHOWN,
                popups={"streets": street_popup_js()})

    lines = alert_lines(points)
    line_layer = folium.GeoJson(
        lines, name="Alerted streets", pane="twin-lines",
        style_function=lambda f: alert_line_style(f["properties"]["severity"]),
        # folium checks the tooltip's fields against the features: none, no tooltip.
        tooltip=folium.GeoJsonTooltip(["place", "kind"], labels=False)
        if lines["features"] else None)
    line_layer.add_to(m)

    cluster = MarkerCluster(name="Alerts", overlay=True, control=True,
                            icon_create_function=_CLUSTER_ICON % js_value(list(SEVERITY_ORDER)),
                            options={"maxClusterRadius": 50, "disableClusteringAtZoom": 18})
    cluster.add_to(m)
    rank = {name: i for i, name in enumerate(SEVERITY_ORDER)}
    for alert, (lat, lon) in sorted(points, key=lambda p: rank.get(str(p[0].get("severity")), 0)):
        severity = alert.get("severity") if alert.get("severity") in SEVERITY_COLOURS else "low"
        place, _small = alert_place(alert)
        marker = folium.Marker(
            (lat, lon),
            icon=folium.DivIcon(html="<div></div>", icon_size=(22, 22), icon_anchor=(11, 11),
                                class_name=f"twin-alert twin-sev-{severity}"),
            tooltip=html.escape(
                f"{KIND_LABELS.get(str(alert.get('kind')), alert.get('kind'))} ({severity}), "
                f"{place}"),
        ).add_to(cluster)
        BoundPopup(alert_popup(alert, lat, lon)).add_to(marker)
        AlertMarker(int(alert["id"])).add_to(marker)

    LocateControl(position="topright", strings={"title": "Show where I am"},
                  flyTo=True, keepCurrentZoomLevel=False).add_to(m)
    Legend("Legend", [
        ("Alerts by severity", [(SEVERITY_COLOURS[s], s, "circle") for s in SEVERITY_ORDER]),
        ("Alerted streets", [(SEVERITY_COLOURS[s], s, "line") for s in SEVERITY_ORDER]),
        ("Manholes: worst active alert", [(c, s, "circle") for s, c in MANHOLE_COLOURS.items()]),
        ("Road damage", [(c, DAMAGE_LABELS[k], "circle") for k, c in DAMAGE_COLOURS.items()]),
        ("Debris", [(DEBRIS_COLOUR, "Debris pile report", "circle")]),
    ]).add_to(m)
    control = folium.LayerControl(collapsed=False, position="topright")
    control.add_to(m)
    root = m.get_root()
    root.header.add_child(  # type: ignore[attr-defined]  # the root is a Figure
        folium.Element(f"<style>{_severity_css()}\n{_CREW_CSS}</style>"
                       f"<script>var twinMarkers = {{}};</script>"), name="twin_crew_head")
    Script(f"var TWIN_API = {js_value(api_base.rstrip('/'))};\n"
           f"var TWIN_MAP = {m.get_name()};\nvar TWIN_ALERTS = {cluster.get_name()};\n"
           f"var TWIN_ALERT_LINES = {line_layer.get_name()};\n"
           f"var TWIN_NARROW_PX = {NARROW_PX};\n{_ACT_JS}\n"
           f"twinFitControls({control.get_name()});").add_to(m)
    _fit(m, bounds, [p for _, p in points])
    return use_local_assets(m, static_prefix)


def _fit(m: folium.Map, bounds: tuple[float, float, float, float] | None,
         points: Sequence[tuple[float, float]]) -> None:
    if bounds is not None:
        west, south, east, north = bounds
        m.fit_bounds([(south, west), (north, east)])
    elif points:
        lats, lons = [p[0] for p in points], [p[1] for p in points]
        m.fit_bounds([(min(lats), min(lons)), (max(lats), max(lons))], max_zoom=17)
