"""The map pages' data and HTML: gathered through ``geo`` (no SQL here), drawn by ``maps``.

``GET /map``, ``/map/planner`` and ``/map/3d`` (``service/routers/maps.py``) and ``twin map``
(``service/cli/maps.py``) both call :func:`render_crew`, :func:`render_planner` and
:func:`render_3d`; ``twin map`` with ``inline=True`` for a page that works from disk (GeoJSON
instead of tiles, scripts inlined). Large layers come from the twin's vector tiles; what is
small or summarised (active alerts, forecasts per street, damage density, debris hotspot
cells) is put in the page.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from geo import alerts as alert_store
from geo import exports, predictions, tiles, worklist
from geo.i18n import _, _l, format_date, format_datetime, html_lang, ngettext
from geo.layers import LAYERS
from maps.analysis import damage_density, debris_hotspots
from maps.assets import inline_assets
from maps.crew import CREW_LAYERS, crew_map
from maps.planner import PLANNER_LAYERS, STREET_FIELDS, planner_map
from maps.three_d import HOUSES_SOURCE, KEEP_SOURCES, map_3d

MAX_ALERTS = 5000  # active alerts put in one crew page
DEFAULT_HORIZONS = (30, 90, 365)
DAMAGE_DAYS = 365  # the damage density shows the last year of observations
HISTORY_POINTS = 12  # surveys per street in the planner popup's chart
PCI = "pci"
STYLE_PROPERTIES = {"streets": ("pci",), "manholes": ("status",),
                    "road_damage": ("damage_class",), "debris_piles": (),
                    "compounds": ("management_type",)}


def _properties(layer_id: str, fields: list[tuple[str, str]]) -> tuple[str, ...]:
    wanted = [*STYLE_PROPERTIES.get(layer_id, ()), *(name for name, _ in fields)]
    known = LAYERS[layer_id].property_names
    return tuple(dict.fromkeys(n for n in wanted if n in known))


def _tile_url(layer_id: str, properties: tuple[str, ...]) -> str:
    return f"/tiles/{layer_id}/{{z}}/{{x}}/{{y}}.mvt?properties={','.join(properties)}"


def layer_geojson(conn: Connection, layer_id: str, properties: tuple[str, ...],
                  as_of: datetime) -> dict:
    """A layer's features as a FeatureCollection (``id`` among the properties)."""
    query = exports.ExportQuery(LAYERS[layer_id], as_of=as_of, properties=properties)
    _columns, chunks = exports.read_features(conn, query, geometry="geojson")
    features = []
    for chunk in chunks:
        for row in chunk:
            values = dict(zip(properties, row[2:], strict=True))
            features.append({"type": "Feature", "geometry": json.loads(row[1]),
                             "properties": {"id": row[0], **{
                                 k: (v.isoformat() if isinstance(v, date | datetime) else v)
                                 for k, v in values.items()}}})
    return {"type": "FeatureCollection", "features": features}


def _sources(conn: Connection, layers: dict, as_of: datetime, inline: bool) -> dict:
    out = {}
    for layer_id, (_name, _style, fields) in layers.items():
        if layer_id not in LAYERS:
            continue
        names = _properties(layer_id, fields)
        out[layer_id] = (layer_geojson(conn, layer_id, names, as_of) if inline
                         else _tile_url(layer_id, names))
    return out


def twin_bounds(conn: Connection) -> tuple[float, float, float, float] | None:
    """The extent of the twin's streets, else of any layer (west, south, east, north)."""
    for layer_id in ("streets", *LAYERS):
        found = tiles.layer_bounds(conn, LAYERS[layer_id])
        if found is not None:
            return found
    return None


def crew_inputs(conn: Connection, *, inline: bool = False, now: datetime | None = None
                ) -> dict:
    """What ``maps.crew.crew_map`` needs: active alerts with their streets, sources, bounds."""
    now = now or datetime.now(UTC)
    active = alert_store.list_alerts(
        conn, alert_store.AlertFilter(statuses=alert_store.ACTIVE), limit=MAX_ALERTS)
    # The street of each alert (its own, or the nearest) as the worklist names it.
    streets = {i["id"]: {"street_name": i["street_name"],
                         "street_external_id": i["street_external_id"]}
               for i in worklist.open_alerts(conn)}
    active = [{**a, **streets.get(a["id"], {})} for a in active]
    return {"alerts": active, "sources": _sources(conn, CREW_LAYERS, now, inline),
            "bounds": twin_bounds(conn),
            "subtitle": ngettext("{n} active alert, shown {when}",
                                 "{n} active alerts, shown {when}", len(active),
                                 when=format_datetime(now) + " UTC")}


def _epoch_day(when: datetime) -> int:
    """Days since 1970-01-01 (UTC) of a time: the popup chart's x axis."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)).days


def planner_inputs(conn: Connection, horizons: tuple[int, ...] = DEFAULT_HORIZONS, *,
                   inline: bool = False, now: datetime | None = None) -> dict:
    """What ``maps.planner.planner_map`` needs: sources, forecasts, damage, hotspots."""
    now = now or datetime.now(UTC)
    layers = {"streets": (_l("Streets"), "", STREET_FIELDS), **PLANNER_LAYERS}
    forecasts: dict[int, dict[int, tuple[float, float, float]]] = {}
    history: dict[int, list[tuple[int, float]]] = {}
    made: list = []
    metric = predictions.metric_by_name(conn, PCI)
    if metric is not None:
        seen = predictions.recent_street_readings(conn, metric["id"],
                                                  per_street=HISTORY_POINTS, until=now)
        for r in seen.itertuples():
            history.setdefault(int(r.asset_id), []).append(
                (_epoch_day(r.observed_at), float(r.value)))
        for horizon in horizons:
            frame = predictions.latest_street_predictions(conn, metric["id"], horizon)
            if len(frame):
                forecasts[horizon] = {
                    int(r.asset_id): (float(r.value),
                                      float(r.lower if r.lower is not None else r.value),
                                      float(r.upper if r.upper is not None else r.value))
                    for r in frame.itertuples()}
                made.append(frame["as_of"].max())
    damage_query = exports.ExportQuery(LAYERS["road_damage"], as_of=now,
                                       since=now - timedelta(days=DAMAGE_DAYS),
                                       properties=("severity",))
    _columns, chunks = exports.read_features(conn, damage_query, geometry="geojson")
    points = []
    for chunk in chunks:
        for row in chunk:
            lon, lat = json.loads(row[1])["coordinates"][:2]
            points.append((lon, lat, row[2]))
    debris = predictions.debris_observations(conn, now)
    return {
        "sources": _sources(conn, layers, now, inline),
        "forecasts": forecasts,
        "forecast_as_of": format_date(max(made)) if made else "",
        "forecast_day": _epoch_day(max(made)) if made else None,
        "history": history,
        "damage": damage_density(points),
        "hotspots": debris_hotspots(zip(debris["lon"], debris["lat"],
                                        debris["observed_at"], strict=True)),
        "bounds": twin_bounds(conn),
    }


STYLE_URL = "/styles/twin.json"


def _inline_style(conn: Connection, bounds, now: datetime) -> dict:
    """The twin's MapLibre style with the 3D view's layers inline as GeoJSON (no server)."""
    from maps.maplibre import twin_style

    wanted = (*KEEP_SOURCES, HOUSES_SOURCE)
    style = twin_style("", bounds)
    style["sources"] = {
        layer_id: {"type": "geojson", "promoteId": "id",
                   "data": layer_geojson(conn, layer_id, LAYERS[layer_id].property_names, now)}
        for layer_id in wanted if layer_id in LAYERS}
    style["layers"] = [{k: v for k, v in layer.items() if k != "source-layer"}
                       for layer in style["layers"]
                       if layer["type"] == "background" or layer.get("source") in style["sources"]]
    return style


def three_d_inputs(conn: Connection, horizons: tuple[int, ...] = DEFAULT_HORIZONS, *,
                   inline: bool = False, now: datetime | None = None) -> dict:
    """What ``maps.three_d.map_3d`` needs: the style (its URL, or inline), forecasts, bounds."""
    now = now or datetime.now(UTC)
    forecasts: dict[int, dict[int, float]] = {}
    metric = predictions.metric_by_name(conn, PCI)
    if metric is not None:
        for horizon in horizons:
            frame = predictions.latest_street_predictions(conn, metric["id"], horizon)
            if len(frame):
                forecasts[horizon] = {int(r.asset_id): float(r.value)
                                      for r in frame.itertuples()}
    bounds = twin_bounds(conn)
    return {"style": _inline_style(conn, bounds, now) if inline else STYLE_URL,
            "forecasts": forecasts, "bounds": bounds,
            "subtitle": _("Shown {time} UTC", time=now.strftime("%Y-%m-%d %H:%M"))}


def render_3d(engine: Engine, *, inline: bool = False) -> str:
    """The 3D page as HTML (self-contained when ``inline``)."""
    with engine.connect() as conn:
        inputs = three_d_inputs(conn, inline=inline)
    page = map_3d(**inputs)
    return inline_assets(page) if inline else page


def render_crew(engine: Engine, *, inline: bool = False) -> str:
    """The crew map page as HTML (self-contained when ``inline``)."""
    with engine.connect() as conn:
        inputs = crew_inputs(conn, inline=inline)
    html = with_lang(crew_map(**inputs).get_root().render())
    return inline_assets(html) if inline else html


def render_planner(engine: Engine, horizons: tuple[int, ...] = DEFAULT_HORIZONS, *,
                   inline: bool = False) -> str:
    """The planner map page as HTML (self-contained when ``inline``)."""
    with engine.connect() as conn:
        inputs = planner_inputs(conn, horizons, inline=inline)
    html = with_lang(planner_map(**inputs).get_root().render())
    return inline_assets(html) if inline else html


def with_lang(page: str) -> str:
    """The page with its language on ``<html>`` (browsers pick CJK fonts and hyphenation by it)."""
    return page.replace("<html>", f'<html lang="{html_lang()}">', 1)
