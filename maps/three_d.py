"""The 3D view: houses extruded by their height over streets, manholes and alerts (MapLibre GL).

A pure function: data in, one HTML page out. The page takes the twin's own MapLibre style
(``/styles/twin.json``, built from ``maps.styles``' palette by the tiles router), keeps the
layers a 3D view needs (compounds as a faint ground, streets, manholes, alerts), and adds a
``fill-extrusion`` layer for the buildings, so colours and sources stay those of every other
view. For a file that works from disk (``twin map --kind 3d``) the caller passes the style
itself, with the layers' features inline as GeoJSON sources.

Houses are coloured by their compound's management type or by the matters open at them
(residents' requests and alerts); streets by their condition now or a forecast horizon (the
forecasts come with the page and are set as feature state). Nothing is fetched from outside
the twin: MapLibre is vendored, and the style has no glyphs or sprite (no text layers).
"""

from __future__ import annotations

import html

from geo.i18n import _, current_locale
from geo.vocabulary import ALERT_STATUSES
from maps.elements import js_value
from maps.styles import (
    COMPOUND_COLOURS,
    COMPOUND_LABELS,
    MATTER_STEPS,
    NO_DATA,
    PCI_BANDS,
)

# The layers of the twin's style the 3D view keeps (by source), and the one it adds.
KEEP_SOURCES = ("compounds", "streets", "manholes", "alerts")
HOUSES_SOURCE = "buildings"
HOUSES_LAYER = "houses"
INITIAL_PITCH, INITIAL_BEARING = 55, -25
INITIAL_MIN_ZOOM = 15.8  # close enough to tell houses apart, whatever the twin's extent
ACTIVE_STATUSES = ALERT_STATUSES[:3]  # open, acknowledged, in progress

def page_text() -> dict[str, str]:
    """Every text the page shows, in the current locale (``geo.i18n``).

    ``{days}`` is filled in in the browser.
    """
    return {
        "title": _("Neighbourhood Twin: 3D"),
        "houses_by": _("Houses coloured by"),
        "by_compound": _("compound type"),
        "by_matters": _("open matters"),
        "streets_by": _("Streets coloured by"),
        "now": _("condition now (PCI)"),
        "forecast": _("forecast in {days} days"),
        "hint": _("Drag to move; right-drag or Ctrl-drag to tilt and rotate."),
        "no_data": _("no data"),
        "matters_0": _("no open matters"),
        "matters_1": _("1-2 open matters"),
        "matters_3": _("3-5 open matters"),
        "matters_6": _("6 or more open matters"),
        "other_type": _("other or none"),
        "building": _("Building"),
        "floors": _("Storeys"),
        "height_m": _("Height (m)"),
        "use": _("Use"),
        "year_built": _("Built"),
        "households": _("Households"),
        "structure": _("Structure"),
        "condition": _("Safety grade"),
        "compound_name": _("Compound"),
        "compound_type": _("Compound type"),
        "open_requests": _("Open requests"),
        "open_alerts": _("Active alerts"),
        "street": _("Street"),
        "road_class": _("Road class"),
        "pci": _("PCI now"),
        "forecast_popup": _("PCI forecast in {days} days"),
        "manhole": _("Manhole"),
        "kind": _("Kind"),
        "status": _("Status"),
        "active_alerts": _("Active alerts"),
        "alert": _("Alert"),
        "severity": _("Severity"),
        "reason": _("Why"),
    }


def value_text() -> dict[str, dict[str, str]]:
    """The houses' class values as the popup shows them, in the current locale."""
    return {
        "use": {"residential": _("residential"), "commercial": _("commercial"),
                "mixed": _("shops below flats"), "public": _("public"),
                "industrial": _("industrial"), "ancillary": _("garage or shed"),
                "other": _("other")},
        "structure": {"reinforced_concrete": _("reinforced concrete"),
                      "brick_concrete": _("brick and concrete"),
                      "brick_wood": _("brick and timber"), "steel": _("steel"),
                      "timber": _("timber"), "earth": _("rammed earth or adobe"),
                      "other": _("other")},
        "condition": {"A": _("A, sound"), "B": _("B, basically sound"),
                      "C": _("C, locally dangerous"), "D": _("D, dangerous as a whole")},
    }


POPUP_FIELDS = {
    "buildings": ("building", ("floors", "height_m", "use", "year_built", "households",
                               "structure", "condition", "compound_name", "compound_type",
                               "open_requests", "open_alerts")),
    "streets": ("street", ("road_class", "pci")),
    "manholes": ("manhole", ("kind", "status", "active_alerts")),
    "alerts": ("alert", ("kind", "severity", "status", "reason")),
}

_PAGE = """<!DOCTYPE html>
<html lang="__LANG__">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="__STATIC__/vendor/maplibre-gl/maplibre-gl.css">
<script src="__STATIC__/vendor/maplibre-gl/maplibre-gl.js"></script>
<style>
html, body, #map { margin: 0; height: 100%; width: 100%; }
body { font: 13px/1.4 system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; }
#panel { position: absolute; top: 10px; left: 10px; z-index: 2; max-width: 270px;
         background: rgba(255, 255, 255, 0.94); padding: 8px 10px; border-radius: 6px;
         box-shadow: 0 1px 4px rgba(0, 0, 0, 0.3); }
#panel h1 { font-size: 15px; margin: 0 0 2px; }
#panel .sub { color: #555; margin-bottom: 6px; }
#panel fieldset { border: 0; margin: 4px 0; padding: 0; }
#panel legend { font-weight: 600; padding: 0; }
.key { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
       vertical-align: -2px; border: 1px solid rgba(0, 0, 0, 0.2); }
.keys div { white-space: nowrap; }
.twin-popup div { margin-top: 2px; }
.twin-ext { color: #777; }
</style>
</head>
<body>
<div id="map"></div>
<div id="panel">
<h1>__TITLE__</h1>
<div class="sub">__SUBTITLE__</div>
<fieldset id="houses-by"><legend>__HOUSES_BY__</legend>
<label><input type="radio" name="houses" value="compound" checked> __BY_COMPOUND__</label>
<label><input type="radio" name="houses" value="matters"> __BY_MATTERS__</label>
<div class="keys" id="houses-keys"></div></fieldset>
<fieldset><legend>__STREETS_BY__</legend>
<select id="streets-by"></select>
<div class="keys" id="streets-keys"></div></fieldset>
<div class="sub">__HINT__</div>
</div>
<script>
var TWIN_3D = __CONFIG__;
__CODE__
</script>
</body>
</html>
"""

_CODE = r"""
(function () {
  var C = TWIN_3D, T = C.text;
  window.twin3d = {ready: false, errors: []};
  function esc(v) {
    return String(v).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }
  function fmt(s, days) { return s.replace('{days}', days); }
  function pciColour(value) { return ['step', value, C.noData].concat(C.pciSteps); }
  var compoundMatch = ['match', ['get', 'compound_type']];
  Object.keys(C.compoundColours).forEach(function (k) {
    compoundMatch.push(k, C.compoundColours[k]);
  });
  compoundMatch.push(C.otherColour);
  var mattersStep = ['step', ['to-number', ['get', 'open_matters'], 0], C.matters[0][1]];
  C.matters.slice(1).forEach(function (m) { mattersStep.push(m[0], m[1]); });
  var HOUSES = {compound: compoundMatch, matters: mattersStep};
  function streetColour(choice) {
    if (choice === 'now') {
      return ['case', ['has', 'pci'], pciColour(['to-number', ['get', 'pci']]), C.noData];
    }
    return pciColour(['to-number', ['coalesce', ['feature-state', 'f' + choice], -1]]);
  }

  function prepare(style) {
    style.layers = style.layers.filter(function (l) {
      return l.type === 'background' || C.keep.indexOf(l.source) >= 0;
    });
    style.layers.forEach(function (l) {
      if (l.source === 'compounds' && l.type === 'fill') { l.paint['fill-opacity'] = 0.18; }
      if (l.source === 'manholes' && l.type === 'circle') {  // small: the houses lead here
        l.paint['circle-radius'] = ['interpolate', ['linear'], ['zoom'], 14, 1.2, 18, 4];
        l.paint['circle-stroke-width'] = 0;
      }
      if (l.source === 'alerts') {  // the alerts still to deal with, not their history
        var active = ['in', ['get', 'status'], ['literal', C.activeStatuses]];
        l.filter = l.filter ? ['all', l.filter, active] : active;
      }
    });
    var used = {};
    used[C.housesSource] = true;
    style.layers.forEach(function (l) { used[l.source] = true; });
    Object.keys(style.sources).forEach(function (k) { if (!used[k]) delete style.sources[k]; });
    var houses = {id: C.housesLayer, type: 'fill-extrusion', source: C.housesSource,
                  paint: {'fill-extrusion-color': HOUSES.compound,
                          'fill-extrusion-height': ['to-number', ['get', 'drawn_height_m'], 3],
                          'fill-extrusion-base': 0, 'fill-extrusion-opacity': 0.92}};
    if (style.sources[C.housesSource].type === 'vector') {
      houses['source-layer'] = C.housesSource;
    }
    // Houses above the ground layers, below manholes and alerts (which stay in sight).
    var at = style.layers.findIndex(function (l) {
      return l.source === 'manholes' || l.source === 'alerts';
    });
    style.layers.splice(at < 0 ? style.layers.length : at, 0, houses);
    delete style.center; delete style.zoom;
    return style;
  }

  function keys(id, rows) {
    document.getElementById(id).innerHTML = rows.map(function (r) {
      return '<div><span class="key" style="background:' + esc(r[1]) + '"></span>' +
        esc(r[0]) + '</div>';
    }).join('');
  }
  function houseKeys(by) {
    if (by === 'compound') {
      keys('houses-keys', Object.keys(C.compoundColours).map(function (k) {
        return [C.compoundLabels[k] || k, C.compoundColours[k]];
      }).concat([[T.other_type, C.otherColour]]));
    } else {
      keys('houses-keys', C.matters.map(function (m) { return [T['matters_' + m[0]], m[1]]; }));
    }
  }
  function streetKeys() {
    keys('streets-keys', C.pciBands.map(function (b) { return [b[1] + ' (' + b[0] + '+)', b[2]]; })
      .concat([[T.no_data, C.noData]]));
  }

  var select = document.getElementById('streets-by');
  [['now', T.now]].concat(Object.keys(C.forecasts).map(function (h) {
    return [h, fmt(T.forecast, h)];
  })).forEach(function (o) {
    var option = document.createElement('option');
    option.value = o[0]; option.textContent = o[1]; select.appendChild(option);
  });
  houseKeys('compound'); streetKeys();

  function popupHtml(source, p, state) {
    var spec = C.popups[source];
    var head = p.name || p.external_id || p.kind || '';
    var rows = '<strong>' + esc(T[spec[0]]) + ': ' + esc(head) + '</strong>';
    if (p.external_id && p.name) {
      rows += ' <small class="twin-ext">' + esc(p.external_id) + '</small>';
    }
    spec[1].forEach(function (k) {
      var v = p[k];
      if (v === undefined || v === null || v === '') return;
      if (k === 'pci' || k === 'height_m') v = Number(v).toFixed(k === 'pci' ? 0 : 1);
      if (k === 'compound_type') v = C.compoundLabels[v] || v;
      if (C.values[k] && C.values[k][v]) v = C.values[k][v];
      rows += '<div>' + esc(T[k]) + ': ' + esc(v) + '</div>';
    });
    if (source === 'streets' && state) {
      Object.keys(C.forecasts).forEach(function (h) {
        var v = state['f' + h];
        if (v !== undefined && v !== null) {
          rows += '<div>' + esc(fmt(T.forecast_popup, h)) + ': ' +
            esc(Number(v).toFixed(0)) + '</div>';
        }
      });
    }
    return '<div class="twin-popup">' + rows + '</div>';
  }

  function start(style) {
    var map = new maplibregl.Map({container: 'map', style: prepare(style),
                                  center: [0, 0], zoom: 1, maxPitch: 75,
                                  attributionControl: false});
    window.twin3d.map = map;
    map.addControl(new maplibregl.NavigationControl({visualizePitch: true}), 'top-right');
    map.addControl(new maplibregl.ScaleControl(), 'bottom-left');
    if (C.bounds) {
      var camera = map.cameraForBounds([[C.bounds[0], C.bounds[1]], [C.bounds[2], C.bounds[3]]],
                                       {padding: 20});
      map.jumpTo({center: camera.center, zoom: Math.max(camera.zoom, C.minZoom),
                  pitch: C.pitch, bearing: C.bearing});
    }
    map.on('error', function (e) {
      window.twin3d.errors.push(String(e && e.error && e.error.message || e));
    });
    map.on('load', function () {
      var sourceLayer = map.getSource('streets') && map.getSource('streets').type === 'vector'
        ? 'streets' : undefined;
      Object.keys(C.forecasts).forEach(function (h) {
        var values = C.forecasts[h];
        Object.keys(values).forEach(function (id) {
          var state = {}; state['f' + h] = values[id];
          map.setFeatureState({source: 'streets', sourceLayer: sourceLayer, id: Number(id)}, state);
        });
      });
      var layersOf = function (source) {
        return map.getStyle().layers.filter(function (l) { return l.source === source; })
          .map(function (l) { return l.id; });
      };
      var streetLayers = layersOf('streets').filter(function (id) {
        return map.getLayer(id).type === 'line';
      });
      document.querySelectorAll('input[name=houses]').forEach(function (input) {
        input.addEventListener('change', function () {
          map.setPaintProperty(C.housesLayer, 'fill-extrusion-color', HOUSES[input.value]);
          houseKeys(input.value);
        });
      });
      select.addEventListener('change', function () {
        streetLayers.forEach(function (id) {
          map.setPaintProperty(id, 'line-color', streetColour(select.value));
        });
      });
      streetLayers.forEach(function (id) {
        map.setPaintProperty(id, 'line-color', streetColour('now'));
      });
      var clickable = [[C.housesLayer], layersOf('alerts'), layersOf('manholes'), streetLayers];
      var sources = [C.housesSource, 'alerts', 'manholes', 'streets'];
      map.on('click', function (e) {
        for (var i = 0; i < clickable.length; i++) {
          var found = map.queryRenderedFeatures(e.point, {layers: clickable[i]});
          if (found.length) {
            var f = found[0];
            var state = f.id !== undefined ? map.getFeatureState(
              {source: f.source, sourceLayer: f.sourceLayer, id: f.id}) : null;
            new maplibregl.Popup({maxWidth: '280px'}).setLngLat(e.lngLat)
              .setHTML(popupHtml(sources[i], f.properties, state)).addTo(map);
            return;
          }
        }
      });
      clickable.forEach(function (ids) {
        ids.forEach(function (id) {
          map.on('mouseenter', id, function () { map.getCanvas().style.cursor = 'pointer'; });
          map.on('mouseleave', id, function () { map.getCanvas().style.cursor = ''; });
        });
      });
      map.once('idle', function () { window.twin3d.ready = true; });
    });
  }

  if (typeof C.style === 'string') {
    fetch(C.style, {credentials: 'same-origin'}).then(function (r) {
      if (!r.ok) throw new Error('the style answered ' + r.status);
      return r.json();
    }).then(start).catch(function (e) {
      window.twin3d.errors.push(String(e));
      document.querySelector('#panel .sub').textContent = String(e);
    });
  } else {
    start(C.style);
  }
})();
"""


def map_3d(*, style: str | dict, forecasts: dict[int, dict[int, float]],
           bounds: tuple[float, float, float, float] | None, subtitle: str = "",
           static_prefix: str = "/static") -> str:
    """The 3D page as HTML.

    Parameters
    ----------
    style : str or dict
        The URL of the twin's MapLibre style (served page), or the style itself with GeoJSON
        sources (a page that works from disk).
    forecasts : dict
        Horizon in days -> {street id: forecast PCI}; each horizon becomes a street colouring.
    bounds : tuple, optional
        West, south, east, north of the twin, to frame the first view.
    subtitle : str
        A line under the title (what is shown, as of when).
    static_prefix : str
        Where the service serves ``maps.assets.STATIC_DIR``.
    """
    text = page_text()
    config = {
        "style": style,
        "bounds": list(bounds) if bounds else None,
        "forecasts": {str(h): {str(k): round(v, 1) for k, v in values.items()}
                      for h, values in sorted(forecasts.items())},
        "keep": list(KEEP_SOURCES),
        "housesSource": HOUSES_SOURCE,
        "housesLayer": HOUSES_LAYER,
        "pitch": INITIAL_PITCH,
        "minZoom": INITIAL_MIN_ZOOM,
        "bearing": INITIAL_BEARING,
        "compoundColours": COMPOUND_COLOURS,
        "compoundLabels": {k: str(label) for k, label in COMPOUND_LABELS.items()},
        "otherColour": "#cccccc",
        "matters": [list(step) for step in MATTER_STEPS],
        "pciSteps": [x for low, _name, colour in reversed(PCI_BANDS) for x in (low, colour)],
        "pciBands": [[low, str(name), colour] for low, name, colour in PCI_BANDS],
        "noData": NO_DATA,
        "activeStatuses": list(ACTIVE_STATUSES),
        "text": text,
        "values": value_text(),
        "popups": {k: [title, list(fields)] for k, (title, fields) in POPUP_FIELDS.items()},
    }
    fills = {
        "__STATIC__": static_prefix.rstrip("/"),
        "__LANG__": current_locale().replace("_", "-"),
        "__TITLE__": html.escape(text["title"]),
        "__SUBTITLE__": html.escape(subtitle),
        "__HOUSES_BY__": html.escape(text["houses_by"]),
        "__BY_COMPOUND__": html.escape(text["by_compound"]),
        "__BY_MATTERS__": html.escape(text["by_matters"]),
        "__STREETS_BY__": html.escape(text["streets_by"]),
        "__HINT__": html.escape(text["hint"]),
    }
    page = _PAGE
    for key, value in fills.items():
        page = page.replace(key, value)
    # Config and code last: their text is never searched for placeholders.
    head, tail = page.split("__CONFIG__")
    tail_head, tail_tail = tail.split("__CODE__")
    return head + js_value(config) + tail_head + _CODE + tail_tail
