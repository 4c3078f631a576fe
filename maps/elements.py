"""Map elements folium lacks: vector-tile layers, a legend, a plain background, an API key box.

Every element renders plain Leaflet code using only the vendored files (``maps.assets``).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

import folium
from branca.element import Element, MacroElement
from folium.elements import JSCSSMixin
from folium.map import CustomPane, Layer
from folium.template import Template

from geo.i18n import _, html_lang

DEFAULT_CENTRE = (32.52, 108.54)  # the sample neighbourhood, where a map with no data opens
# Panes so areas lie under streets, and streets under points, whatever the add order.
PANES = (("twin-areas", 350), ("twin-lines", 360), ("twin-points", 370))
KEY_STORAGE = "twin-api-key"  # where the crew's API key is kept in the browser (localStorage)
# The page scales to the phone's width and may be zoomed by its user (folium's own tag forbids
# zooming, which makes small print unreadable for a crew in the street).
VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'
NARROW_PX = 600  # below this width (a phone), panels start folded
_FOLIUM_VIEWPORT = re.compile(r'<meta name="viewport"[^>]*>', re.S)


class TwinMap(folium.Map):
    """A ``folium.Map`` whose page has the viewport tag :data:`VIEWPORT` instead of folium's."""

    def render(self, **kwargs):
        """Render as folium does, then swap the viewport tag in the page's header."""
        super().render(**kwargs)
        header = self._template.module.__dict__["header"]
        figure = self.get_root()
        figure.header._children[self.get_name()] = Element(  # type: ignore[attr-defined]
            _FOLIUM_VIEWPORT.sub(VIEWPORT, header(self, kwargs)))


class VectorLayer(JSCSSMixin, Layer):
    """A layer drawn with Leaflet.VectorGrid from the twin's vector tiles or from GeoJSON.

    Parameters
    ----------
    layer_id : str
        The layer's id (its name inside the tiles).
    name : str
        Name shown in the layer control.
    style_js : str
        A JavaScript function ``(properties, zoom) -> Leaflet path options``.
    tile_url : str, optional
        ``/tiles/{layer}/{z}/{x}/{y}.mvt?...`` on the same origin (the served page).
    geojson : dict, optional
        A FeatureCollection, cut into tiles in the browser (the offline file).
    popup_js : str, optional
        A JavaScript function ``(properties) -> HTML`` for a click on a feature.
    """

    default_js = [("vectorgrid", "")]
    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = (function () {
            var style = {{ this.style_js }};
            var options = {
                rendererFactory: L.svg.tile, interactive: true, maxNativeZoom: 22,
                maxZoom: 22, vectorTileLayerName: {{ this.layer_id|tojson }},
                vectorTileLayerStyles: {}, fetchOptions: {headers: twinKeyHeaders()},
                pane: {{ this.pane|tojson }}
            };
            options.vectorTileLayerStyles[{{ this.layer_id|tojson }}] = style;
            {% if this.tile_url %}
            var layer = L.vectorGrid.protobuf({{ this.tile_url|tojson }}, options);
            // The tiles carry each feature's id as the MVT feature id; give it to the style
            // and popup functions as properties.id, as the GeoJSON of an offline file does.
            var fetchTile = layer._getVectorTilePromise;
            layer._getVectorTilePromise = function () {
                return fetchTile.apply(this, arguments).then(function (json) {
                    for (var name in json.layers) {
                        json.layers[name].features.forEach(function (f) {
                            if (f.properties && f.properties.id === undefined) {
                                f.properties.id = f.id;
                            }
                        });
                    }
                    return json;
                });
            };
            {% else %}
            var layer = L.vectorGrid.slicer({{ this.geojson|tojson }}, options);
            {% endif %}
            {% if this.popup_js %}
            var popup = {{ this.popup_js }};
            layer.on("click", function (e) {
                L.popup().setLatLng(e.latlng).setContent(popup(e.layer.properties || {}))
                    .openOn({{ this._parent.get_name() }});
            });
            {% endif %}
            return layer;
        })();
        {% endmacro %}
    """)

    def __init__(self, layer_id: str, name: str, style_js: str, *, tile_url: str | None = None,
                 geojson: dict | None = None, popup_js: str | None = None,
                 overlay: bool = True, show: bool = True, pane: str = "overlayPane") -> None:
        name = str(name)  # a lazy string, in the language of the page being built
        super().__init__(name=name, overlay=overlay, control=True, show=show)
        if (tile_url is None) == (geojson is None):
            raise ValueError("Give exactly one of tile_url and geojson.")
        self._name = "VectorLayer"
        self.layer_id = layer_id
        self.style_js = style_js
        self.tile_url = tile_url
        self.geojson = geojson
        self.popup_js = popup_js
        self.pane = pane
        self.layer_name = name  # for LayerControl
        self.default_js = list(type(self).default_js)


class Legend(MacroElement):
    """A legend in a corner of the map: titled sections of coloured swatches.

    ``sections`` is a list of (title, [(colour, label, shape)]) with shape ``line``,
    ``circle`` or ``box``.
    """

    _template = Template("""
        {% macro header(this, kwargs) %}
        <style>
        .twin-legend { background: rgba(255,255,255,0.92); padding: 6px 9px; font: 12px/1.35
            sans-serif; border-radius: 5px; box-shadow: 0 1px 4px rgba(0,0,0,0.3);
            max-height: 60vh; overflow-y: auto; }
        .twin-legend h4 { margin: 4px 0 2px; font-size: 12px; }
        .twin-legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px;
            vertical-align: middle; }
        .twin-legend i.line { height: 4px; }
        .twin-legend i.circle { width: 10px; border-radius: 50%; border: 1px solid #fff; }
        .twin-legend-toggle { font: bold 12px sans-serif; border: 0; background: none;
            padding: 2px 0; cursor: pointer; min-height: 28px; }
        .twin-legend-toggle::after { content: " \\25BE"; }
        .twin-legend.folded .twin-legend-toggle::after { content: " \\25B8"; }
        .twin-legend.folded .twin-legend-body { display: none; }
        .twin-legend.folded { max-height: none; }
        </style>
        {% endmacro %}
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.control({position: {{ this.position|tojson }}});
        {{ this.get_name() }}.onAdd = function () {
            var div = L.DomUtil.create("div", "twin-legend");
            div.innerHTML = '<button type="button" class="twin-legend-toggle" '
                + 'aria-expanded="true">' + {{ this.title|tojson }} + '</button>'
                + '<div class="twin-legend-body">' + {{ this.html|tojson }} + '</div>';
            var toggle = div.querySelector(".twin-legend-toggle");
            function fold(folded) {
                div.classList.toggle("folded", folded);
                toggle.setAttribute("aria-expanded", folded ? "false" : "true");
            }
            // Folded on a phone: the map comes first; a tap opens it.
            fold(window.innerWidth < {{ this.fold_below }});
            toggle.addEventListener("click", function () {
                fold(!div.classList.contains("folded"));
            });
            L.DomEvent.disableClickPropagation(div);
            L.DomEvent.disableScrollPropagation(div);
            return div;
        };
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        {% endmacro %}
    """)

    def __init__(self, title: str, sections: list[tuple[str, list[tuple[str, str, str]]]],
                 position: str = "bottomright", fold_below: int = NARROW_PX) -> None:
        super().__init__()
        self._name = "Legend"
        self.position = position
        self.title = str(title)
        self.fold_below = int(fold_below)
        parts = []
        for heading, items in sections:
            parts.append(f"<h4>{html.escape(heading)}</h4>")
            parts.extend(f'<div><i class="{shape}" style="background:{colour}"></i>'
                         f"{html.escape(label)}</div>" for colour, label, shape in items)
        self.html = "".join(parts)


class Page(MacroElement):
    """What every twin map shares: plain background, the API key helpers, a title box.

    No base map is drawn (there may be no network): the twin's own layers lie on a plain
    background. ``twinKeyHeaders()`` gives the ``X-API-Key`` header from the key the user
    entered once (kept in the browser's localStorage), for tiles and actions alike.
    """

    _template = Template("""
        {% macro header(this, kwargs) %}
        <link rel="icon" href="data:,">
        <style>
        .leaflet-container { background: {{ this.background }}; }
        .twin-title { background: rgba(255,255,255,0.92); padding: 5px 9px; font: 13px/1.4
            sans-serif; border-radius: 5px; box-shadow: 0 1px 4px rgba(0,0,0,0.3); }
        .twin-title input { width: 9em; font-size: 12px; }
        .twin-title button, .twin-popup button { font-size: 12px; margin: 2px 4px 0 0; }
        .twin-popup { font: 12px/1.4 sans-serif; }
        .twin-popup .answer { margin-top: 4px; font-weight: bold; }
        .twin-chart-box { font: 11px/1.3 sans-serif; margin-top: 4px; }
        /* A density picture lies over the streets: the clicks must reach the streets. */
        canvas.leaflet-heatmap-layer { pointer-events: none; }
        </style>
        <script>
        var TWIN_KEY_TEXT = {{ this.key_text }};
        // The page's language, asked of the twin with every call (Accept-Language).
        var TWIN_LANG = {{ this.lang|tojson }};
        function twinApiKey() {
            try { return window.localStorage.getItem({{ this.key_storage|tojson }}) || ""; }
            catch (e) { return ""; }
        }
        function twinKeyHeaders() {
            var key = twinApiKey();
            return key ? {"X-API-Key": key} : {};
        }
        function twinSaveKey(value) {
            try { window.localStorage.setItem({{ this.key_storage|tojson }}, value.trim()); }
            catch (e) { }
        }
        function twinEscape(value) {
            return String(value === null || value === undefined ? "" : value)
                .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
                .replace(/"/g, "&quot;");
        }
        </script>
        {% endmacro %}
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.control({position: "topleft"});
        {{ this.get_name() }}.onAdd = function () {
            var div = L.DomUtil.create("div", "twin-title");
            div.innerHTML = {{ this.title_html|tojson }}
            {% if this.key_box %}
                + '<div>' + TWIN_KEY_TEXT.label + ' <input type="password" class="twin-key" '
                + 'placeholder="' + TWIN_KEY_TEXT.placeholder + '" autocomplete="off"> '
                + '<button type="button" class="twin-key-save">' + TWIN_KEY_TEXT.save
                + '</button><span class="twin-key-state"></span></div>'
            {% endif %};
            L.DomEvent.disableClickPropagation(div);
            {% if this.key_box %}
            var state = div.querySelector(".twin-key-state");
            state.textContent = twinApiKey() ? TWIN_KEY_TEXT.saved : TWIN_KEY_TEXT.notSet;
            div.querySelector(".twin-key-save").addEventListener("click", function () {
                twinSaveKey(div.querySelector(".twin-key").value);
                div.querySelector(".twin-key").value = "";
                state.textContent = twinApiKey() ? TWIN_KEY_TEXT.saved : TWIN_KEY_TEXT.notSet;
            });
            {% endif %}
            return div;
        };
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        {% endmacro %}
    """)

    def __init__(self, title: str, subtitle: str = "", *, key_box: bool = False,
                 background: str = "#f2efe9") -> None:
        super().__init__()
        self._name = "Page"
        self.key_storage = KEY_STORAGE
        self.key_box = key_box
        self.background = background
        self.lang = html_lang()
        # The key box's words, in the language of the page being built.
        self.key_text = js_value({"label": _("API key:"), "placeholder": _("crew key"),
                                  "save": _("Save"), "saved": " " + _("saved"),
                                  "notSet": " " + _("not set")})
        self.title_html = (f"<strong>{html.escape(title)}</strong>"
                           + (f"<div>{html.escape(subtitle)}</div>" if subtitle else ""))


class Script(MacroElement):
    """Plain JavaScript added to the page's main script, after the map exists."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        {{ this.code }}
        {% endmacro %}
    """)

    def __init__(self, code: str) -> None:
        super().__init__()
        self._name = "Script"
        self.code = code


class BoundPopup(MacroElement):
    """A popup of plain HTML bound to its parent layer (folium's Popup needs jQuery)."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.bindPopup({{ this.html|tojson }},
                                                {maxWidth: {{ this.max_width }}});
        {% endmacro %}
    """)

    def __init__(self, html_text: str, max_width: int = 340) -> None:
        super().__init__()
        self._name = "BoundPopup"
        self.html = html_text
        self.max_width = int(max_width)


def js_value(value: object) -> str:
    """A Python value as a JavaScript literal (JSON; safe inside a ``<script>``).

    Lazy strings (``geo.i18n._l``) are written in the current language.
    """
    return json.dumps(value, default=str, ensure_ascii=False).replace("</", "<\\/")


def add_panes(m: folium.Map) -> None:
    """Add :data:`PANES` to the map: its layers name the pane they are drawn in."""
    for name, z_index in PANES:
        CustomPane(name, z_index=z_index, pointer_events=True).add_to(m)


def fit_view(m: folium.Map, bounds: tuple[float, float, float, float] | None,
             points: Sequence[tuple[float, float]]) -> None:
    """Open the map on ``bounds`` (west, south, east, north), else around ``points`` (lat, lon)."""
    if bounds is not None:
        west, south, east, north = bounds
        m.fit_bounds([(south, west), (north, east)])
    elif points:
        lats, lons = [p[0] for p in points], [p[1] for p in points]
        m.fit_bounds([(min(lats), min(lons)), (max(lats), max(lons))], max_zoom=17)
