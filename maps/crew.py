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
from folium.plugins import LocateControl, MarkerCluster
from folium.template import Template

from geo.i18n import _, _l, format_datetime, format_decimal, ngettext
from geo.vocabulary import SEVERITY_LABELS, STATUS_LABELS
from geo.vocabulary import label as vocabulary_label
from geo.work import ACTIONS as WORK_ACTIONS
from maps.assets import use_local_assets
from maps.elements import (
    DEFAULT_CENTRE,
    NARROW_PX,
    BoundPopup,
    Legend,
    Page,
    Script,
    TwinMap,
    VectorLayer,
    add_panes,
    fit_view,
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

# Lazy strings (geo.i18n): each is written in the language of the page being built.
KIND_LABELS = {"road_wear": _l("Road wear"), "manhole_tilt": _l("Manhole cover tilted"),
               "manhole_cover_open": _l("Manhole cover open"),
               "manhole_flooding": _l("Water high in manhole"),
               "manhole_gas": _l("Gas in manhole"),
               "sensor_silent": _l("Manhole sensor silent"),
               "sensor_stuck": _l("Manhole sensor stuck"),
               "sensor_drift": _l("Manhole sensor drifting"),
               "sensor_low_battery": _l("Manhole sensor battery low"),
               "debris_pile": _l("Spoil pile"), "road_damage": _l("New road damage")}
# Layer id -> (name in the layer control, style, popup fields).
CREW_LAYERS = {
    "streets": (_l("Streets"), STREET_CONTEXT_STYLE,
                [("name", _l("Street")), ("external_id", _l("Id")), ("road_class", _l("Class")),
                 ("pci", _l("PCI now"))]),
    "manholes": (_l("Manholes"), MANHOLE_STYLE,
                 [("external_id", _l("Manhole")), ("kind", _l("Kind")),
                  ("cover_state", _l("Cover")), ("status", _l("Worst alert")),
                  ("active_alerts", _l("Active alerts"))]),
    "road_damage": (_l("Road damage"), DAMAGE_STYLE,
                    [("damage_class", _l("Class")), ("severity", _l("Severity")),
                     ("size_m2", _l("Size m2")), ("observed_at", _l("Seen"))]),
    "debris_piles": (_l("Debris piles"), DEBRIS_STYLE,
                     [("pile_ref", _l("Pile")), ("volume_m3", _l("Volume m3")),
                      ("material", _l("Material")), ("observed_at", _l("Seen"))]),
}

CREW_SHOWN = ("streets", "manholes", "debris_piles")  # road damage: one click away
WORK_PANEL_PX = 340  # the worklist beside the map on a desk
WORK_LIMIT = 200  # worklist items put in the panel (the rest: GET /work)
LINE_LAYERS = ("streets",)  # drawn in the lines pane, under the points
LAYER_WORDS = {"streets": _l("street"), "manholes": _l("manhole"),
               "debris_piles": _l("debris pile"), "road_damage": _l("road damage"),
               "parking": _l("parking"), "compounds": _l("compound")}

_ACT_JS = """
// Every word the crew reads that this script writes comes from TWIN_T (maps.crew.JS_TEXT, in
// the page's language); {name} placeholders are filled by twinFmt.
var TWIN_T = __TEXT__;
function twinFmt(text, values) {
    return String(text).replace(/\\{(\\w+)\\}/g, function (all, name) {
        return values[name] === undefined ? all : values[name]; });
}
var TWIN_TEXT = {
    askKey: TWIN_T.askKey,
    needKey: TWIN_T.needKey,
    sending: TWIN_T.sending,
    done: function (status) { return twinFmt(TWIN_T.done, {status: status}); },
    refused: function (code, why) { return twinFmt(TWIN_T.refused, {code: code, why: why}); },
    noAnswer: function (e) { return twinFmt(TWIN_T.noAnswer, {error: e}); },
    workTitle: TWIN_T.workTitle,
    workCount: function (n) { return twinFmt(TWIN_T.workCount, {n: n}); },
    workNeedsKey: TWIN_T.workNeedsKey,
    workLoading: TWIN_T.workLoading,
    workOffline: TWIN_T.workOffline,
    workEmpty: TWIN_T.workEmpty,
    workMore: function (n) { return twinFmt(TWIN_T.workMore, {n: n}); },
    tiers: TWIN_T.tiers,
    near: function (name) { return twinFmt(TWIN_T.near, {name: name}); },
    whyFirst: TWIN_T.whyFirst,
    assigned: function (who, due) {
        return (who ? twinFmt(TWIN_T.assignedTo, {who: who}) : TWIN_T.notAssigned)
            + (due ? twinFmt(TWIN_T.due, {due: due}) : ""); },
    statuses: TWIN_T.statuses,
    severities: TWIN_T.severities,
    resolveTitle: TWIN_T.resolveTitle,
    action: TWIN_T.action,
    noActions: TWIN_T.noActions,
    note: TWIN_T.note,
    notePlaceholder: TWIN_T.notePlaceholder,
    photo: TWIN_T.photo,
    save: TWIN_T.save,
    cancel: TWIN_T.cancel,
    dismissTitle: TWIN_T.dismissTitle,
    dismissPlaceholder: TWIN_T.dismissPlaceholder,
    dismissNeedsNote: TWIN_T.dismissNeedsNote,
    photoSending: TWIN_T.photoSending,
    photoSaved: TWIN_T.photoSaved,
    workDone: function (w) {
        return twinFmt(TWIN_T.workDone, {action: TWIN_TEXT.actions[w.action] || w.action,
            who: w.done_by, when: String(w.done_at).slice(0, 16).replace("T", " ")})
            + (w.note ? " (" + w.note + ")" : ""); },
    photoRefused: function (code, why) {
        return twinFmt(TWIN_T.photoRefused, {code: code, why: why}); },
    buttons: TWIN_T.buttons,
    kinds: __KINDS__,
    actions: __ACTION_LABELS__
};
var TWIN_WORK_ACTIONS = __ACTIONS__;  // per layer of the asset worked on (geo.work.ACTIONS)
var TWIN_WORK = {};  // alert id -> its worklist item (properties and geometry)
var TWIN_WORK_REFRESH_S = 60;  // the worklist is asked again this often

function twinStatusText(status) {
    return TWIN_TEXT.statuses[status] || String(status || "").replace(/_/g, " ");
}

function twinKey(answer) {
    var key = twinApiKey();
    if (!key) {
        key = (window.prompt(TWIN_TEXT.askKey) || "").trim();
        if (key) { twinSaveKey(key); }
    }
    if (!key && answer) { answer.textContent = TWIN_TEXT.needKey; }
    return key;
}

// POST a JSON body (or none) or a form; resolves to [response, parsed body].
function twinPost(path, key, body) {
    var headers = {"X-API-Key": key, "Accept-Language": TWIN_LANG}, payload;
    if (body instanceof FormData) { payload = body; }
    else if (body) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    return fetch(TWIN_API + path, {method: "POST", headers: headers, body: payload})
        .then(function (r) {
            return r.json().then(function (b) { return [r, b]; },
                                 function () { return [r, {}]; });
        });
}

function twinWhy(r, b) { return b.detail || b.title || r.statusText; }

// A popup's buttons: Start and Acknowledge are sent at once, Resolve opens the work record
// form, Dismiss asks for its note.
function twinAct(id, action, button) {
    var box = button.parentNode;
    var answer = box.querySelector(".answer");
    if (action === "resolve" || action === "dismiss") {
        twinForm(id, action, box);
        return;
    }
    var key = twinKey(answer);
    if (!key) { return; }
    twinSend(id, action, key, null, box);
}

function twinSend(id, action, key, body, box, then) {
    var answer = box.querySelector(".answer");
    answer.textContent = TWIN_TEXT.sending;
    return twinPost("/alerts/" + id + "/" + action, key, body)
        .then(function (rb) {
            var r = rb[0], b = rb[1];
            if (r.ok) {
                var status = twinStatusText((b.properties || {}).status || action);
                answer.textContent = TWIN_TEXT.done(status);
                var line = box.parentNode.querySelector(".status");
                if (line) { line.textContent = status; }
                var form = box.querySelector(".twin-form");
                if (form) { form.innerHTML = ""; }
                twinSettled(id, (b.properties || {}).status);
                if (then) { then(b); }
                twinLoadWork();
            } else {
                answer.textContent = TWIN_TEXT.refused(r.status, twinWhy(r, b));
            }
        })
        .catch(function (e) { answer.textContent = TWIN_TEXT.noAnswer(e); });
}

// A resolved or dismissed alert stays on the map, faded, until the page is loaded again.
function twinSettled(id, status) {
    if (status !== "resolved" && status !== "dismissed") { return; }
    if (twinMarkers[id]) { twinMarkers[id].setOpacity(0.4); }
    TWIN_ALERT_LINES.eachLayer(function (line) {
        if (line.feature && line.feature.properties.id === id) {
            line.setStyle({opacity: 0.35, dashArray: "4 10"});
        }
    });
}

function twinForm(id, action, box) {
    var form = box.querySelector(".twin-form");
    if (!form) {
        form = document.createElement("div");
        form.className = "twin-form";
        box.insertBefore(form, box.querySelector(".answer"));
    }
    var popup = box.closest(".twin-popup");
    var layer = popup ? popup.getAttribute("data-layer") : "";
    var choices = TWIN_WORK_ACTIONS[layer] || [];
    var html = "<form>";
    if (action === "resolve") {
        html += "<div class='twin-form-title'>" + TWIN_TEXT.resolveTitle + "</div>";
        if (choices.length) {
            html += "<label>" + TWIN_TEXT.action + "<select name='action'>"
                + choices.map(function (a) {
                    return "<option value='" + twinEscape(a) + "'>"
                        + twinEscape(TWIN_TEXT.actions[a] || a) + "</option>";
                }).join("") + "</select></label>";
        } else {
            html += "<div>" + TWIN_TEXT.noActions + "</div>";
        }
        html += "<label>" + TWIN_TEXT.note + "<textarea name='note' rows='2' placeholder='"
            + TWIN_TEXT.notePlaceholder + "'></textarea></label>";
        if (choices.length) {
            html += "<label>" + TWIN_TEXT.photo + "<input type='file' name='photo' "
                + "accept='image/*' capture='environment'></label>";
        }
    } else {
        html += "<div class='twin-form-title'>" + TWIN_TEXT.dismissTitle + "</div>"
            + "<label><textarea name='note' rows='2' aria-required='true' placeholder='"
            + TWIN_TEXT.dismissPlaceholder + "'></textarea></label>";
    }
    html += "<button type='submit' class='twin-save'>" + TWIN_TEXT.save + "</button>"
        + "<button type='button' class='twin-cancel'>" + TWIN_TEXT.cancel + "</button></form>";
    form.innerHTML = html;
    var answer = box.querySelector(".answer");
    answer.textContent = "";
    form.querySelector(".twin-cancel").addEventListener("click", function () {
        form.innerHTML = "";
    });
    form.querySelector("form").addEventListener("submit", function (event) {
        event.preventDefault();
        var f = event.target;
        var note = (f.note.value || "").trim();
        if (action === "dismiss" && !note) {
            answer.textContent = TWIN_TEXT.dismissNeedsNote;
            return;
        }
        var key = twinKey(answer);
        if (!key) { return; }
        var body = {note: note || null};
        var file = f.photo && f.photo.files && f.photo.files[0];
        if (action === "resolve" && f.action) {
            body.work = {action: f.action.value, note: note || null};
        }
        twinSend(id, action, key, body, box, function (alert) {
            var records = alert.work || [];
            if (!file || !records.length) { return; }
            twinPhoto(id, records[records.length - 1].id, file, key, box);
        });
    });
}

// A phone camera's photo (often 3-12 MB) is sent as a JPEG of at most TWIN_PHOTO_PX on its
// long side when larger than TWIN_PHOTO_SHRINK_BYTES: quick on a mobile connection, and far
// below the twin's size limit. Smaller files go as they are.
var TWIN_PHOTO_PX = 2048, TWIN_PHOTO_SHRINK_BYTES = 1500000;
function twinShrink(file) {
    if (file.size <= TWIN_PHOTO_SHRINK_BYTES || !window.createImageBitmap) {
        return Promise.resolve(file);
    }
    return createImageBitmap(file).then(function (bitmap) {
        var scale = Math.min(1, TWIN_PHOTO_PX / Math.max(bitmap.width, bitmap.height));
        var canvas = document.createElement("canvas");
        canvas.width = Math.round(bitmap.width * scale);
        canvas.height = Math.round(bitmap.height * scale);
        canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        return new Promise(function (done) {
            canvas.toBlob(function (blob) { done(blob || file); }, "image/jpeg", 0.85);
        });
    }, function () { return file; });
}

// The photo goes to the work record just saved; shown back from the twin once stored.
function twinPhoto(id, record, file, key, box) {
    var answer = box.querySelector(".answer");
    var done = answer.textContent;
    answer.textContent = done + " " + TWIN_TEXT.photoSending;
    return twinShrink(file).then(function (sent) {
        var data = new FormData();
        data.append("photo", sent, sent === file ? (file.name || "photo.jpg") : "photo.jpg");
        return twinPost("/alerts/" + id + "/photos?work_record=" + record, key, data);
    })
        .then(function (rb) {
            var r = rb[0], b = rb[1];
            if (!r.ok) {
                answer.textContent = done + " " + TWIN_TEXT.photoRefused(r.status, twinWhy(r, b));
                return;
            }
            answer.textContent = done + " " + TWIN_TEXT.photoSaved;
            return twinShowPhoto(b.href, key, box);
        })
        .catch(function (e) { answer.textContent = done + " " + TWIN_TEXT.noAnswer(e); });
}

// The thumbnail of a stored photo: fetched with the key (photos are never public).
function twinShowPhoto(href, key, where) {
    return fetch(TWIN_API + href, {headers: {"X-API-Key": key}})
        .then(function (p) { return p.ok ? p.blob() : null; })
        .then(function (blob) {
            if (!blob) { return; }
            var img = document.createElement("img");
            img.className = "twin-photo";
            img.src = URL.createObjectURL(blob);
            where.appendChild(img);
        });
}

// An opened popup shows the work recorded on its alert and its photos (for a key holder).
TWIN_MAP.on("popupopen", function (e) {
    var box = e.popup.getElement().querySelector(".twin-popup[data-alert]");
    var key = twinApiKey();
    if (!box || !key || box.querySelector(".twin-record")) { return; }
    var record = document.createElement("div");
    record.className = "twin-record";
    box.insertBefore(record, box.querySelector(".actions"));
    fetch(TWIN_API + "/alerts/" + box.getAttribute("data-alert"),
          {headers: {"X-API-Key": key, "Accept-Language": TWIN_LANG}})
        .then(function (r) { return r.ok ? r.json() : {}; })
        .then(function (alert) {
            (alert.work || []).forEach(function (w) {
                var line = document.createElement("div");
                line.textContent = TWIN_TEXT.workDone(w);
                record.appendChild(line);
            });
            (alert.photos || []).forEach(function (photo) {
                twinShowPhoto(photo.href, key, record);
            });
        })
        .catch(function () { });
});

function twinMiddle(geometry) {
    // A point on the geometry, as maps.crew.representative_point picks it.
    var c = geometry && geometry.coordinates;
    if (!c) { return null; }
    if (geometry.type === "Point") { return [c[1], c[0]]; }
    if (geometry.type === "LineString" || geometry.type === "MultiPoint") {
        var p = c[Math.floor(c.length / 2)]; return [p[1], p[0]];
    }
    if (geometry.type === "MultiLineString") {
        var q = c[0][Math.floor(c[0].length / 2)]; return [q[1], q[0]];
    }
    var ring = geometry.type === "Polygon" ? c[0] : c[0][0];
    var lat = 0, lon = 0;
    ring.forEach(function (pt) { lat += pt[1]; lon += pt[0]; });
    return [lat / ring.length, lon / ring.length];
}

// Fly to an alert's marker and open its popup (from the worklist or a street line); an alert
// newer than the page gets a popup made from its worklist item.
function twinOpenAlert(id) {
    var marker = twinMarkers[id];
    if (window.innerWidth < TWIN_NARROW_PX) { twinFoldWork(true); }
    if (!marker) {
        var item = TWIN_WORK[id];
        var at = item && twinMiddle(item.geometry);
        if (!at) { return false; }
        TWIN_MAP.once("moveend", function () {
            L.popup({maxWidth: 340}).setLatLng(at).setContent(twinItemPopup(item.properties))
                .openOn(TWIN_MAP);
        });
        TWIN_MAP.flyTo(at, Math.max(TWIN_MAP.getZoom(), 18), {duration: 0.6});
        return true;
    }
    var zoom = Math.max(TWIN_MAP.getZoom(), 18);
    TWIN_MAP.once("moveend", function () {
        TWIN_ALERTS.zoomToShowLayer(marker, function () { marker.openPopup(); });
    });
    TWIN_MAP.flyTo(marker.getLatLng(), zoom, {duration: 0.6});
    return true;
}

function twinPlace(p) {
    if (p.street_name) {
        return p.asset_layer === "streets" ? p.street_name : TWIN_TEXT.near(p.street_name);
    }
    return p.asset_external_id || "";
}

function twinItemPopup(p) {
    var e = twinEscape;
    return "<div class='twin-popup' data-alert='" + p.id + "' data-layer='"
        + e(p.asset_layer || "") + "'><strong>" + e(TWIN_TEXT.kinds[p.kind] || p.kind)
        + "</strong> (" + e(TWIN_TEXT.severities[p.severity] || p.severity)
        + ")<div class='twin-place'>" + e(twinPlace(p))
        + " <small class='twin-ext'>" + e(p.asset_external_id || "") + "</small></div>"
        + "<div>" + e(p.reason) + "</div><div><span class='status'>"
        + e(twinStatusText(p.status)) + "</span> (" + p.id + ")</div><div class='actions'>"
        + ["start", "acknowledge", "resolve", "dismiss"].map(function (a) {
            return "<button type='button' onclick=\\"twinAct(" + p.id + ", '" + a
                + "', this)\\">" + e(TWIN_TEXT.buttons[a]) + "</button>";
        }).join("") + "<div class='twin-form'></div><div class='answer'></div></div></div>";
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

// The worklist: GET /work in priority order, a side panel on a desk, a bottom sheet on a phone.
var twinWorkPanel = (function () {
    var panel = document.createElement("aside");
    panel.className = "twin-work";
    panel.innerHTML = "<button type='button' class='twin-work-head' aria-expanded='true'>"
        + "<span class='twin-work-title'>" + TWIN_TEXT.workTitle + "</span> "
        + "<span class='twin-work-count'></span></button>"
        + "<div class='twin-work-body'><div class='twin-work-state'></div>"
        + "<ol class='twin-work-list'></ol></div>";
    document.body.appendChild(panel);
    L.DomEvent.disableScrollPropagation(panel);
    panel.querySelector(".twin-work-head").addEventListener("click", function () {
        twinFoldWork(!panel.classList.contains("folded"));
    });
    return panel;
})();

function twinFoldWork(folded) {
    twinWorkPanel.classList.toggle("folded", folded);
    twinWorkPanel.querySelector(".twin-work-head")
        .setAttribute("aria-expanded", folded ? "false" : "true");
}

function twinLoadWork() {
    var state = twinWorkPanel.querySelector(".twin-work-state");
    var list = twinWorkPanel.querySelector(".twin-work-list");
    var count = twinWorkPanel.querySelector(".twin-work-count");
    if (!TWIN_API && window.location.protocol === "file:") {
        state.textContent = TWIN_TEXT.workOffline;
        return;
    }
    if (!twinApiKey()) { state.textContent = TWIN_TEXT.workNeedsKey; return; }
    state.textContent = TWIN_TEXT.workLoading;
    // In the page's language: the reasons and refusals the twin writes.
    var headers = twinKeyHeaders();
    headers["Accept-Language"] = TWIN_LANG;
    return fetch(TWIN_API + "/work?limit=" + TWIN_WORK_LIMIT, {headers: headers})
        .then(function (r) {
            return r.json().then(function (b) { return [r, b]; },
                                 function () { return [r, {}]; });
        })
        .then(function (rb) {
            var r = rb[0], b = rb[1];
            if (!r.ok) { state.textContent = TWIN_TEXT.refused(r.status, twinWhy(r, b)); return; }
            var features = b.features || [];
            TWIN_WORK = {};
            list.innerHTML = "";
            count.textContent = TWIN_TEXT.workCount(b.numberMatched || features.length);
            var tier = null;
            features.forEach(function (f) {
                var p = f.properties;
                TWIN_WORK[p.id] = f;
                if (p.tier !== tier) {
                    tier = p.tier;
                    var head = document.createElement("li");
                    head.className = "twin-work-tier";
                    head.textContent = TWIN_TEXT.tiers[tier] || tier;
                    list.appendChild(head);
                }
                var li = document.createElement("li");
                li.className = "twin-work-item twin-sev-" + p.severity;
                li.setAttribute("data-alert", p.id);
                li.setAttribute("tabindex", "0");
                li.innerHTML = "<div class='twin-work-top'><span class='twin-rank'>" + p.rank
                    + "</span> <span class='twin-place'>" + twinEscape(twinPlace(p))
                    + "</span> <small class='twin-ext'>" + twinEscape(p.asset_external_id || "")
                    + "</small></div><div class='twin-work-what'>"
                    + twinEscape(TWIN_TEXT.kinds[p.kind] || p.kind) + " &middot; "
                    + twinEscape(TWIN_TEXT.severities[p.severity] || p.severity) + " &middot; "
                    + twinEscape(twinStatusText(p.status))
                    + "</div>" + (p.assignee || p.due_on ? "<div class='twin-work-who'>"
                        + twinEscape(TWIN_TEXT.assigned(p.assignee, p.due_on)) + "</div>" : "")
                    + "<ul class='twin-why' title='" + TWIN_TEXT.whyFirst + "'>"
                    + (p.why_first || []).map(function (w) {
                        return "<li>" + twinEscape(w) + "</li>"; }).join("") + "</ul>";
                li.addEventListener("click", function () { twinOpenAlert(p.id); });
                li.addEventListener("keydown", function (e) {
                    if (e.key === "Enter") { twinOpenAlert(p.id); } });
                list.appendChild(li);
            });
            var more = (b.numberMatched || 0) - features.length;
            state.textContent = !features.length ? TWIN_TEXT.workEmpty
                : more > 0 ? TWIN_TEXT.workMore(more) : "";
        })
        .catch(function (e) { state.textContent = TWIN_TEXT.noAnswer(e); });
}

// A key saved in the title box opens the worklist at once.
var twinSaveKeyOnly = twinSaveKey;
twinSaveKey = function (value) {
    twinSaveKeyOnly(value);
    var state = document.querySelector(".twin-key-state");
    if (state) { state.textContent = twinApiKey() ? TWIN_KEY_TEXT.saved : TWIN_KEY_TEXT.notSet; }
    twinLoadWork();
};
twinFoldWork(window.innerWidth < TWIN_NARROW_PX);
twinLoadWork();
// New alerts and other crews' work show up without reloading the page.
window.setInterval(function () {
    if (document.visibilityState === "visible" && twinApiKey()) { twinLoadWork(); }
}, TWIN_WORK_REFRESH_S * 1000);
"""

_CREW_CSS = """
.twin-popup .twin-place { font-size: 14px; font-weight: bold; margin: 3px 0 1px; }
.twin-popup .twin-ext, .twin-work .twin-ext { font-size: 10px; font-weight: normal;
    color: #666; }
.twin-popup button { min-height: 32px; padding: 3px 9px; }
.twin-form form { margin-top: 6px; padding-top: 4px; border-top: 1px solid #ddd; }
.twin-form label { display: block; margin: 4px 0; }
.twin-form select, .twin-form textarea, .twin-form input { display: block; width: 100%;
    box-sizing: border-box; font-size: 14px; margin-top: 2px; }
.twin-form-title { font-weight: bold; }
.twin-photo { display: block; max-width: 100%; max-height: 140px; margin-top: 4px; }
.twin-work { position: fixed; z-index: 1000; background: #fff; font: 13px/1.35 sans-serif;
    box-shadow: 0 0 6px rgba(0,0,0,.35); display: flex; flex-direction: column;
    top: 0; right: 0; bottom: 0; width: __WORK__px; }
.folium-map { width: calc(100% - __WORK__px) !important; }
.twin-work-head { border: 0; background: #33475b; color: #fff; font: bold 14px sans-serif;
    padding: 10px 12px; text-align: left; min-height: 44px; cursor: pointer; }
.twin-work-head::after { content: " \\25BE"; }
.twin-work.folded .twin-work-head::after { content: " \\25B4"; }
.twin-work-body { overflow-y: auto; flex: 1; }
.twin-work.folded .twin-work-body { display: none; }
.twin-work-state { padding: 6px 12px; color: #555; }
.twin-work-state:empty { display: none; }
.twin-work-list { list-style: none; margin: 0; padding: 0; }
.twin-work-tier { background: #eef1f4; font-weight: bold; padding: 4px 12px; }
.twin-work-item { padding: 7px 12px 7px 9px; border-bottom: 1px solid #e5e5e5;
    border-left: 5px solid #ccc; cursor: pointer; }
.twin-work-item:hover, .twin-work-item:focus { background: #f6f8fa; }
.twin-work-item .twin-place { font-weight: bold; font-size: 14px; }
.twin-rank { display: inline-block; min-width: 1.6em; color: #555; }
.twin-work-what { color: #333; }
.twin-work-who { color: #1f5f99; }
.twin-why { margin: 2px 0 0; padding-left: 16px; color: #555; font-size: 11px; }
SEVERITY_BORDERS
@media (max-width: __NARROW__px) {
    .folium-map { width: 100% !important; }
    .twin-work { top: auto; left: 0; width: auto; max-height: 55vh;
        border-radius: 10px 10px 0 0; }
    .twin-work-head { border-radius: 10px 10px 0 0; }
    .leaflet-bottom { bottom: 44px; }
    .twin-title { font-size: 12px; max-width: calc(100vw - 90px); padding: 4px 7px; }
    .twin-title input { width: 7em; }
    .twin-popup { font-size: 13px; }
    .twin-popup button { min-height: 40px; font-size: 14px; margin: 4px 4px 0 0; }
    .leaflet-popup-content { margin: 10px 12px; }
    .twin-legend { max-height: 45vh; }
}
""".replace("__NARROW__", str(NARROW_PX - 1)).replace("__WORK__", str(WORK_PANEL_PX)).replace(
    "SEVERITY_BORDERS", "\n".join(
        f".twin-work-item.twin-sev-{name} {{ border-left-color: {colour}; }}"
        for name, colour in SEVERITY_COLOURS.items()))

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


# The words of the page's script (TWIN_T there); {name} are filled in by the script.
JS_TEXT = {
    "askKey": _l("API key of a crew member (kept in this browser):"),
    "needKey": _l("An API key is needed: enter it in the box at the top left."),
    "sending": _l("Sending..."),
    "done": _l("Done: the alert is now {status}."),
    "refused": _l("Refused ({code}): {why}"),
    "noAnswer": _l("No answer from the twin: {error}"),
    "workTitle": _l("Worklist"),
    "workCount": _l("{n} open"),
    "workNeedsKey": _l("Enter a crew key (top left) to see the worklist."),
    "workLoading": _l("Loading the worklist..."),
    "workOffline": _l("This page was opened from a file: the worklist needs the twin's service."),
    "workEmpty": _l("Nothing to do: no open alerts."),
    "workMore": _l("{n} more in GET /work"),
    "tiers": {"this_week": _l("This week"), "next_week": _l("Next week"), "later": _l("Later")},
    "near": _l("near {name}"),
    "whyFirst": _l("Why first"),
    "assignedTo": _l("Assigned to {who}"),
    "notAssigned": _l("Not assigned"),
    "due": _l(", due {due}"),
    "resolveTitle": _l("Work record"),
    "action": _l("What was done"),
    "noActions": _l("No work record is kept for this kind of place; a note is enough."),
    "note": _l("Note"),
    "notePlaceholder": _l("What was found or done"),
    "photo": _l("Photo (optional)"),
    "save": _l("Save"),
    "cancel": _l("Cancel"),
    "dismissTitle": _l("Dismiss: why?"),
    "dismissPlaceholder": _l("e.g. resurfaced last week, reading was a test"),
    "dismissNeedsNote": _l("A note is needed to dismiss an alert."),
    "photoSending": _l("Work saved; sending the photo..."),
    "photoSaved": _l("Photo stored with the work record."),
    "workDone": _l("Work: {action} by {who}, {when}"),
    "photoRefused": _l("Work saved, but the photo was refused ({code}): {why}"),
}
BUTTONS = {"start": _l("Start"), "acknowledge": _l("Acknowledge"), "resolve": _l("Resolve"),
           "dismiss": _l("Dismiss")}
# Work a crew records (geo.work.ACTIONS), by name.
WORK_ACTION_LABELS = {
    "crack_sealing": _l("Crack sealing"), "patching": _l("Patching"),
    "surface_treatment": _l("Surface treatment"), "mill_and_overlay": _l("Mill and overlay"),
    "reconstruction": _l("Reconstruction"), "cover_reseated": _l("Cover reseated"),
    "cover_replaced": _l("Cover replaced"), "frame_rebuilt": _l("Frame rebuilt"),
    "blockage_cleared": _l("Blockage cleared"), "pile_cleared": _l("Pile cleared"),
    "site_fenced": _l("Site fenced"),
}


def _act_js(work_actions: Mapping[str, Sequence[str]]) -> str:
    """The page's script with its words and the vocabularies it offers filled in."""
    labels = {a: WORK_ACTION_LABELS.get(a, a.replace("_", " ").capitalize())
              for acts in work_actions.values() for a in acts}
    text = {**JS_TEXT, "buttons": BUTTONS,
            "statuses": {k: _(v) for k, v in STATUS_LABELS.items()},
            "severities": {k: _(v) for k, v in SEVERITY_LABELS.items()}}
    return (_ACT_JS.replace("__TEXT__", js_value(text))
            .replace("__KINDS__", js_value(KIND_LABELS))
            .replace("__ACTION_LABELS__", js_value(labels))
            .replace("__ACTIONS__", js_value({k: list(v) for k, v in work_actions.items()})))


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
        text = format_datetime(value)
        return text + " UTC" if value.utcoffset() is not None else text
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
    >>> from geo.i18n import use_locale
    >>> with use_locale("zh"):
    ...     alert_place({"asset_layer": "manholes", "asset_external_id": "MH-7",
    ...                  "street_name": "Jiefang Road"})
    ('Jiefang Road附近', 'MH-7')
    >>> alert_place({"asset_layer": "manholes", "asset_external_id": "MH-7"})
    ('manhole MH-7', '')
    """
    layer = str(alert.get("asset_layer") or "")
    external = str(alert.get("asset_external_id") or alert.get("asset_id") or "")
    name = alert.get("street_name")
    if name:
        return (str(name) if layer == "streets" else _("near {name}", name=name)), external
    return _place_words(layer, external), ""


def _place_words(layer: str, external: str) -> str:
    """``manhole MH-7``: the kind of place and its id."""
    what = LAYER_WORDS.get(layer) or layer or _("place")
    return _("{what} {id}", what=what, id=external).strip()


def alert_popup(alert: Mapping, lat: float, lon: float) -> str:
    """The popup of one alert: what, where (the street's name), why, since when, status, actions.

    Start and Acknowledge are sent at once; Resolve opens the work record form and Dismiss
    asks for its note (``twinAct``).
    """
    e = html.escape
    alert_id = int(alert["id"])
    kind = KIND_LABELS.get(str(alert.get("kind")), str(alert.get("kind", "")).replace("_", " "))
    layer = str(alert.get("asset_layer") or "")
    where = _place_words(layer, str(alert.get("asset_external_id") or alert.get("asset_id") or ""))
    place, small = alert_place(alert)
    status = vocabulary_label(STATUS_LABELS, alert.get("status", ""))
    severity = vocabulary_label(SEVERITY_LABELS, alert.get("severity", ""))
    buttons = "".join(
        f"<button type=\"button\" onclick=\"twinAct({alert_id}, '{action}', this)\">"
        f"{e(label)}</button>" for action, label in BUTTONS.items())
    return (
        f'<div class="twin-popup" data-alert="{alert_id}" data-layer="{e(layer)}">'
        f"<strong>{e(kind)}</strong> "
        f'<span style="color:{SEVERITY_COLOURS.get(str(alert.get("severity")), "#333")}">'
        f'({e(severity)})</span>'
        f'<div class="twin-place">{e(place)}'
        + (f' <small class="twin-ext">{e(small)}</small>' if small else "") + "</div>"
        + "<div>" + e(_("Where: {where} at {lat} N, {lon} E", where=where,
                        lat=format_decimal(lat, "0.00000"), lon=format_decimal(lon, "0.00000")))
        + "</div>"
        + "<div>" + e(_("Why: {reason}", reason=alert.get("reason", ""))) + "</div>"
        + "<div>" + e(_("Since: {when}", when=_when(alert.get("opened_at")))) + "</div>"
        + "<div>" + e(_("Status:")) + f' <span class="status">{e(status)}</span> '
        + e(_("(alert {id})", id=alert_id)) + "</div>"
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
            "kind": str(KIND_LABELS.get(str(alert.get("kind")), alert.get("kind")))}})
    return {"type": "FeatureCollection", "features": features}


def crew_map(alerts: Sequence[Mapping], sources: Mapping[str, str | dict], *,
             bounds: tuple[float, float, float, float] | None = None, api_base: str = "",
             static_prefix: str = "/static", subtitle: str = "",
             work_actions: Mapping[str, Sequence[str]] = WORK_ACTIONS) -> folium.Map:
    """Build the crew map.

    Parameters
    ----------
    alerts : sequence of mapping
        Active alerts as ``geo.alerts.list_alerts`` gives them (id, kind, severity, status,
        reason, asset_layer, asset_external_id, opened_at, geometry as GeoJSON), with
        ``street_name`` and ``street_external_id`` when they have a street
        (``geo.worklist.open_alerts``).
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
    work_actions : mapping
        Layer -> the work a crew may record on its assets (``geo.work.ACTIONS``), offered
        when resolving.
    """
    points = []
    for alert in alerts:
        where = representative_point(alert.get("geometry"))
        if where is not None:
            points.append((alert, where))
    m = TwinMap(location=DEFAULT_CENTRE, zoom_start=15, tiles=None, control_scale=True,
                max_zoom=22)
    add_panes(m)
    Page(_("Crew map: open alerts"),
         subtitle or ngettext("{n} active alert", "{n} active alerts", len(points)),
         key_box=True).add_to(m)
    add_sources(m, CREW_LAYERS, sources, show=CREW_SHOWN,
                popups={"streets": street_popup_js()})

    lines = alert_lines(points)
    line_layer = folium.GeoJson(
        lines, name=_("Alerted streets"), pane="twin-lines",
        style_function=lambda f: alert_line_style(f["properties"]["severity"]),
        # folium checks the tooltip's fields against the features: none, no tooltip.
        tooltip=folium.GeoJsonTooltip(["place", "kind"], labels=False)
        if lines["features"] else None)
    line_layer.add_to(m)

    cluster = MarkerCluster(name=_("Alerts"), overlay=True, control=True,
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
            tooltip=html.escape(_(
                "{kind} ({severity}), {place}",
                kind=KIND_LABELS.get(str(alert.get("kind")), alert.get("kind")),
                severity=vocabulary_label(SEVERITY_LABELS, severity), place=place)),
        ).add_to(cluster)
        BoundPopup(alert_popup(alert, lat, lon)).add_to(marker)
        AlertMarker(int(alert["id"])).add_to(marker)

    LocateControl(position="topright", strings={"title": _("Show where I am")},
                  flyTo=True, keepCurrentZoomLevel=False).add_to(m)
    sev = {s: vocabulary_label(SEVERITY_LABELS, s) for s in MANHOLE_COLOURS}
    sev["none"] = _("none")
    Legend(_("Legend"), [
        (_("Alerts by severity"), [(SEVERITY_COLOURS[s], sev[s], "circle")
                                   for s in SEVERITY_ORDER]),
        (_("Alerted streets"), [(SEVERITY_COLOURS[s], sev[s], "line") for s in SEVERITY_ORDER]),
        (_("Manholes: worst active alert"),
         [(c, sev[s], "circle") for s, c in MANHOLE_COLOURS.items()]),
        (_("Road damage"), [(c, DAMAGE_LABELS[k], "circle") for k, c in DAMAGE_COLOURS.items()]),
        (_("Debris"), [(DEBRIS_COLOUR, _("Debris pile report"), "circle")]),
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
           f"var TWIN_NARROW_PX = {NARROW_PX};\nvar TWIN_WORK_LIMIT = {WORK_LIMIT};\n"
           f"{_act_js(work_actions)}\n"
           f"twinFitControls({control.get_name()});").add_to(m)
    fit_view(m, bounds, [p for _, p in points])
    return use_local_assets(m, static_prefix)
