"""The layers the twin publishes (tiles, OGC API collections, exports), defined once.

Each layer is a SELECT with an ``id``, a ``geom`` in SRID 4326 and its properties, taking one
bound parameter ``:as_of`` (the state of the twin at that time: the latest readings and the
observations made by then). Tiles, features and exports wrap these queries; a new layer (say,
forecasts) is a new entry here and appears in every interface without changing the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from geo.settings import PCI_THRESHOLD
from geo.vocabulary import STOREY_HEIGHT_M

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Property:
    """A published property: name and a JSON-schema-like type."""

    name: str
    type: str  # string, number, integer, boolean, date, datetime
    description: str = ""


@dataclass(frozen=True)
class Layer:
    """One published layer."""

    id: str
    title: str
    description: str
    geometry_type: str  # Point, LineString, Polygon or Geometry (mixed)
    select: str  # SELECT id, geom, <properties> ... using :as_of
    properties: tuple[Property, ...]
    time_property: str | None = None  # what `datetime` filters, for observations and alerts
    table: str | None = None  # the table whose changes change this layer
    depends_on: tuple[str, ...] = ()  # other tables whose changes change it too

    @property
    def property_names(self) -> tuple[str, ...]:
        """Names of the layer's properties, in order."""
        return tuple(p.name for p in self.properties)


def _latest(metric: str, alias: str) -> str:
    # The newest reading of a metric per asset as of :as_of; the readings key
    # (metric, asset, time) makes this one index probe per partition.
    return (
        f"LEFT JOIN LATERAL (SELECT r.value, r.observed_at FROM readings r "
        f"WHERE r.metric_id = (SELECT id FROM metrics WHERE name = '{metric}') "
        f"AND r.asset_id = t.id AND r.observed_at <= :as_of "
        f"ORDER BY r.observed_at DESC LIMIT 1) {alias} ON TRUE"
    )


_ASSET = (Property("external_id", "string", "Identifier in the source system"),
          Property("source", "string", "Source system"))
# Where a feature lies: its district_id is kept current by triggers (migration 0009), so the
# names come by primary key; `district` is the finest district (a grid where grids exist).
_IN_DISTRICT = " LEFT JOIN districts dx ON dx.id = t.district_id"
_DISTRICT_COLUMNS = ", dx.name AS district, dx.community, dx.sub_district"
_DISTRICT = (
    Property("district", "string", "The finest district it lies in (a grid where there are "
             "grids), by name"),
    Property("community", "string", "The community (社区) it lies in"),
    Property("sub_district", "string", "The sub-district or town (街道/镇) it lies in"),
)
_ACTIVE_ALERTS = (
    "LEFT JOIN LATERAL (SELECT count(*) AS n, max(CASE a.severity WHEN 'critical' THEN 4 "
    "WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 END) AS worst FROM alerts a "
    "WHERE a.asset_id = t.id AND a.asset_layer = 'manholes' "
    "AND a.status IN ('open', 'acknowledged', 'in_progress')) al ON TRUE"
)
_WORST = ("CASE al.worst WHEN 4 THEN 'critical' WHEN 3 THEN 'high' WHEN 2 THEN 'medium' "
          "WHEN 1 THEN 'low' END")

# The planning backlog: streets whose latest survey on their current surface (since
# resurfaced_on) is below the PCI threshold. Planned work, not alerts: /work/backlog lists them.
BACKLOG_SELECT = (
    "SELECT t.id, t.geom, t.external_id, t.source, t.name, t.road_class, t.surface, "
    "t.resurfaced_on, pci.value AS pci, pci.observed_at AS pci_observed_at, "
    "ST_Length(t.geom::geography) AS length_m, "
    "EXISTS (SELECT 1 FROM alerts a WHERE a.asset_layer = 'streets' AND a.asset_id = t.id "
    "AND a.status IN ('open', 'acknowledged', 'in_progress')) AS alerted"
    f"{_DISTRICT_COLUMNS} FROM streets t{_IN_DISTRICT} "
    "JOIN LATERAL (SELECT r.value, r.observed_at FROM readings r "
    "WHERE r.metric_id = (SELECT id FROM metrics WHERE name = 'pci') AND r.asset_id = t.id "
    "AND r.observed_at <= :as_of ORDER BY r.observed_at DESC LIMIT 1) pci ON TRUE "
    f"WHERE pci.value < {PCI_THRESHOLD:g} AND (t.resurfaced_on IS NULL "
    "OR pci.observed_at >= CAST(t.resurfaced_on AS timestamptz))"
)

# Forecasts: the newest prediction per asset, metric and horizon made as of :as_of, on the
# asset's geometry. The threshold is the one scoring uses by default (predict.road's
# default_threshold: PCI 55, else the middle of the metric's range). The district is the
# asset's.
_ASSET_PLACES = " UNION ALL ".join(
    f"SELECT x.geom, x.external_id, x.source, {name} AS name, x.district_id FROM {table} x "
    f"WHERE p.asset_layer = '{table}' AND x.id = p.asset_id"
    for table, name in (("streets", "x.name"), ("manholes", "NULL::text"),
                        ("parking", "x.name"), ("compounds", "x.name")))
FORECASTS_SELECT = (
    "SELECT p.id, coalesce(a.geom, p.geom) AS geom, a.external_id, a.source, a.name, "
    "dx.name AS district, dx.community, dx.sub_district, p.asset_layer, p.asset_id, "
    "m.name AS metric, p.horizon_days, p.target_date, p.value, p.lower, p.upper, "
    f"CASE m.name WHEN 'pci' THEN {PCI_THRESHOLD:g} ELSE (m.min_value + m.max_value) / 2 END "
    "AS threshold, p.days_to_threshold, p.crossing_earliest_days, p.crossing_latest_days, "
    "p.model_version, p.as_of "
    "FROM (SELECT DISTINCT ON (asset_layer, asset_id, metric_id, horizon_days) * "
    "FROM predictions WHERE asset_id IS NOT NULL AND metric_id IS NOT NULL "
    "AND as_of <= :as_of ORDER BY asset_layer, asset_id, metric_id, horizon_days, "
    "as_of DESC, created_at DESC, id DESC) p JOIN metrics m ON m.id = p.metric_id "
    f"JOIN LATERAL ({_ASSET_PLACES}) a ON TRUE "
    "LEFT JOIN districts dx ON dx.id = a.district_id"
)

# A request or an alert belongs to a building when it lies within about 10 m of its footprint
# (degrees; a resident reports from the door, a phone's fix is a few metres off).
BUILDING_NEAR_DEG = 0.0001
_ACTIVE = "('open', 'acknowledged', 'in_progress')"
BUILDINGS_SELECT = (
    "SELECT t.id, t.geom, t.external_id, t.source, t.name, t.use, t.floors, t.height_m, "
    f"coalesce(t.height_m, t.floors * {STOREY_HEIGHT_M:g}, {STOREY_HEIGHT_M:g}) AS drawn_height_m, "
    "t.year_built, t.households, t.structure, t.condition, t.compound_id, "
    "c.external_id AS compound_external_id, c.name AS compound_name, "
    "c.management_type AS compound_type, rq.n AS open_requests, al.n AS open_alerts, "
    f"rq.n + al.n AS open_matters{_DISTRICT_COLUMNS} FROM buildings t{_IN_DISTRICT} "
    "LEFT JOIN compounds c ON c.id = t.compound_id "
    "CROSS JOIN LATERAL (SELECT count(*) AS n FROM service_requests r WHERE r.status = 'open' "
    "AND r.requested_at <= :as_of "
    f"AND ST_DWithin(r.geom, t.geom, {BUILDING_NEAR_DEG})) rq "
    "CROSS JOIN LATERAL (SELECT count(*) AS n FROM alerts a "
    f"WHERE a.status IN {_ACTIVE} AND a.opened_at <= :as_of "
    "AND ((a.asset_layer = 'buildings' AND a.asset_id = t.id) "
    f"OR ST_DWithin(a.geom, t.geom, {BUILDING_NEAR_DEG}))) al"
)

def _observations(id: str, title: str, description: str, geometry_type: str,
                  observed: tuple[Property, ...]) -> Layer:
    """A layer of observations, one table's rows each observed at ``observed_at``.

    It holds those made by the time asked, with the ``observed`` columns and the district.
    """
    columns = "".join(f", t.{p.name}" for p in observed)
    return Layer(
        id, title, description, geometry_type,
        f"SELECT t.id, t.geom, t.external_id, t.source, t.observed_at{columns}"
        f"{_DISTRICT_COLUMNS} FROM {id} t{_IN_DISTRICT} WHERE t.observed_at <= :as_of",
        (*_ASSET, Property("observed_at", "datetime"), *observed, *_DISTRICT),
        time_property="observed_at", table=id, depends_on=("districts",),
    )


LAYERS: dict[str, Layer] = {
    layer.id: layer
    for layer in (
        Layer(
            "streets", "Streets",
            "Street segments with their latest pavement condition (PCI) as of the time asked.",
            "LineString",
            "SELECT t.id, t.geom, t.external_id, t.source, t.name, t.road_class, t.surface, "
            "t.width_m, t.lanes, t.resurfaced_on, pci.value AS pci, "
            f"pci.observed_at AS pci_observed_at{_DISTRICT_COLUMNS} FROM streets t{_IN_DISTRICT} "
            + _latest("pci", "pci"),
            (*_ASSET, Property("name", "string"), Property("road_class", "string"),
             Property("surface", "string"), Property("width_m", "number"),
             Property("lanes", "integer"), Property("resurfaced_on", "date"),
             Property("pci", "number", "Latest pavement condition index, 0-100"),
             Property("pci_observed_at", "datetime", "When that PCI was observed"), *_DISTRICT),
            table="streets", depends_on=("readings", "districts"),
        ),
        Layer(
            "manholes", "Manholes",
            "Manholes with their cover state and the active alerts on them.",
            "Point",
            "SELECT t.id, t.geom, t.external_id, t.source, t.kind, t.depth_m, t.cover_state, "
            "t.sensor_id, coalesce(al.n, 0) AS active_alerts, "
            f"coalesce({_WORST}, 'none') AS status{_DISTRICT_COLUMNS} "
            f"FROM manholes t{_IN_DISTRICT} " + _ACTIVE_ALERTS,
            (*_ASSET, Property("kind", "string"), Property("depth_m", "number"),
             Property("cover_state", "string"), Property("sensor_id", "string"),
             Property("active_alerts", "integer"),
             Property("status", "string", "Worst active alert: none, low ... critical"),
             *_DISTRICT),
            table="manholes", depends_on=("alerts", "districts"),
        ),
        Layer(
            "parking", "Parking", "Parking lots and on-street bays, with the latest occupancy.",
            "Geometry",
            "SELECT t.id, t.geom, t.external_id, t.source, t.name, t.kind, t.capacity, "
            "occ.value AS occupancy_pct, occ.observed_at AS occupancy_observed_at"
            f"{_DISTRICT_COLUMNS} FROM parking t{_IN_DISTRICT} " + _latest("occupancy_pct", "occ"),
            (*_ASSET, Property("name", "string"), Property("kind", "string"),
             Property("capacity", "integer"), Property("occupancy_pct", "number"),
             Property("occupancy_observed_at", "datetime"), *_DISTRICT),
            table="parking", depends_on=("readings", "districts"),
        ),
        Layer(
            "compounds", "Residential compounds",
            "Residential compounds and their management type.",
            "Polygon",
            "SELECT t.id, t.geom, t.external_id, t.source, t.name, t.management_type, "
            f"t.households, t.built_year{_DISTRICT_COLUMNS} FROM compounds t{_IN_DISTRICT}",
            (*_ASSET, Property("name", "string"), Property("management_type", "string"),
             Property("households", "integer"), Property("built_year", "integer"),
             *_DISTRICT),
            table="compounds", depends_on=("districts",),
        ),
        Layer(
            "buildings", "Buildings",
            "Houses and other buildings: footprint, storeys, height, use, year built, "
            "households, structure and safety grade, the compound each stands in, and the "
            "residents' requests and alerts open at it (within about 10 m).",
            "Polygon", BUILDINGS_SELECT,
            (*_ASSET, Property("name", "string"),
             Property("use", "string", "residential, commercial, mixed, public, industrial, "
                      "ancillary or other"),
             Property("floors", "integer", "Storeys above ground"),
             Property("height_m", "number", "Height in metres, where known"),
             Property("drawn_height_m", "number",
                      f"Height drawn in 3D: height_m, else floors x {STOREY_HEIGHT_M:g} m, "
                      "else one storey"),
             Property("year_built", "integer"), Property("households", "integer"),
             Property("structure", "string", "Load-bearing structure"),
             Property("condition", "string", "Safety grade A (sound) to D (dangerous)"),
             Property("compound_id", "integer", "The compound it stands in"),
             Property("compound_external_id", "string"), Property("compound_name", "string"),
             Property("compound_type", "string", "Management type of its compound"),
             Property("open_requests", "integer", "Residents' requests open at it"),
             Property("open_alerts", "integer", "Active alerts on or at it"),
             Property("open_matters", "integer", "open_requests + open_alerts"), *_DISTRICT),
            table="buildings",
            depends_on=("compounds", "alerts", "service_requests", "districts"),
        ),
        _observations(
            "road_damage", "Road damage",
            "Damage observations (D00 longitudinal, D10 transverse, D20 alligator cracks, "
            "D40 potholes) made by the time asked.",
            "Point",
            (Property("damage_class", "string"), Property("severity", "string"),
             Property("size_m2", "number"), Property("confidence", "number"),
             Property("street_id", "integer")),
        ),
        _observations(
            "debris_piles", "Debris piles",
            "Observations of construction spoil and dumped waste made by the time asked.",
            "Geometry",
            (Property("pile_ref", "string"), Property("volume_m3", "number"),
             Property("material", "string"), Property("confidence", "number")),
        ),
        Layer(
            "alerts", "Alerts",
            "Alerts for crews: what, where, why, and their status.",
            "Geometry",
            "SELECT t.id, t.geom, t.kind, t.severity, t.status, t.reason, t.asset_layer, "
            "t.asset_id, x.external_id AS asset_external_id, t.opened_at, t.updated_at, "
            "t.closed_at, t.details ->> 'evidence' AS evidence, t.evidence_at, t.assignee, "
            f"t.due_on, t.details::text AS details{_DISTRICT_COLUMNS} FROM alerts t "
            f"LEFT JOIN assets x ON x.id = t.asset_id AND x.layer = t.asset_layer{_IN_DISTRICT} "
            "WHERE t.opened_at <= :as_of",
            (Property("kind", "string"), Property("severity", "string"),
             Property("status", "string"), Property("reason", "string"),
             Property("asset_layer", "string"), Property("asset_id", "integer"),
             Property("asset_external_id", "string", "The asset's id in its source system"),
             Property("opened_at", "datetime"), Property("updated_at", "datetime"),
             Property("closed_at", "datetime", "When it was resolved or dismissed"),
             Property("evidence", "string", "What the alert was raised on"),
             Property("evidence_at", "datetime", "When that evidence was observed"),
             Property("assignee", "string", "The crew or team to do the work"),
             Property("due_on", "date", "When the work is due"),
             Property("details", "string", "The rule's figures, as JSON text (the same in "
                      "every format)"),
             *_DISTRICT),
            time_property="opened_at", table="alerts", depends_on=("districts",),
        ),
        Layer(
            "backlog", "Planning backlog",
            f"Streets below PCI {PCI_THRESHOLD:g} at their latest survey since their last "
            "resurfacing, as of the time asked: resurfacing to plan, not alerts.",
            "LineString", BACKLOG_SELECT,
            (*_ASSET, Property("name", "string"), Property("road_class", "string"),
             Property("surface", "string"), Property("resurfaced_on", "date"),
             Property("pci", "number", "Latest pavement condition index, 0-100"),
             Property("pci_observed_at", "datetime", "When that PCI was observed"),
             Property("length_m", "number", "Length in metres"),
             Property("alerted", "boolean", "Whether an alert on it is open"), *_DISTRICT),
            table="streets", depends_on=("readings", "alerts", "districts"),
        ),
        Layer(
            "districts", "Districts and grids",
            "Administrative areas: sub-districts (街道/镇), communities (社区) and the grids "
            "(网格) inside them, each with its parent.",
            "Polygon",
            "SELECT t.id, t.geom, t.external_id, t.source, t.name, t.name_en, t.level, "
            "p.external_id AS parent_code, p.name AS parent, t.community, t.sub_district, "
            "ST_Area(t.geom::geography) / 1e6 AS area_km2 "
            "FROM districts t LEFT JOIN districts p ON p.id = t.parent_id",
            (Property("external_id", "string", "The district's code in the source system"),
             Property("source", "string", "Source system"),
             Property("name", "string", "Name (Chinese as a rule)"),
             Property("name_en", "string", "Name in English"),
             Property("level", "string", "sub_district, community or grid"),
             Property("parent_code", "string", "Code of the district it lies in"),
             Property("parent", "string", "Name of the district it lies in"),
             Property("community", "string", "The community it is or lies in"),
             Property("sub_district", "string", "The sub-district it is or lies in"),
             Property("area_km2", "number", "Area in square kilometres")),
            table="districts",
        ),
        Layer(
            "forecasts", "Forecasts",
            "The newest forecast of each asset's condition per metric and horizon made as of "
            "the time asked: median value, interval, threshold and days until it is crossed.",
            "Geometry", FORECASTS_SELECT,
            (*_ASSET, Property("name", "string"), *_DISTRICT,
             Property("asset_layer", "string"), Property("asset_id", "integer"),
             Property("metric", "string"), Property("horizon_days", "integer"),
             Property("target_date", "date", "The day forecast"),
             Property("value", "number", "Median forecast"),
             Property("lower", "number", "Lower end of the forecast interval"),
             Property("upper", "number", "Upper end of the forecast interval"),
             Property("threshold", "number", "The metric's repair threshold"),
             Property("days_to_threshold", "integer",
                      "Days from as_of until the median crosses the threshold (none: not "
                      "within the look-ahead)"),
             Property("crossing_earliest_days", "integer",
                      "Days until the interval's pessimistic bound crosses the threshold: the "
                      "crossing's earliest date"),
             Property("crossing_latest_days", "integer",
                      "Days until the interval's optimistic bound crosses the threshold: the "
                      "crossing's latest date (none: later than the look-ahead, or never)"),
             Property("model_version", "string"),
             Property("as_of", "datetime", "What the forecast knew: data up to this time")),
            # No table of its own: its extent is its assets' (not the predictions' own geom).
            depends_on=("predictions", "streets", "manholes", "parking", "compounds",
                        "districts"),
        ),
    )
}


# Older or shorter spellings of layer names, read as the layer's one id everywhere (CLI, HTTP
# paths, mapping files): earlier versions named the observation layers this way on the command line.
ALIASES: dict[str, str] = {
    "road-damage": "road_damage",
    "damage": "road_damage",
    "debris": "debris_piles",
    "debris-piles": "debris_piles",
}


def canonical_name(name: str) -> str:
    """The layer id that ``name`` stands for (itself when it is no alias).

    Examples
    --------
    >>> canonical_name("debris"), canonical_name("road-damage"), canonical_name("streets")
    ('debris_piles', 'road_damage', 'streets')
    """
    return ALIASES.get(name, name)


def table_versions(conn: Connection) -> dict[str, int]:
    """The current version of every watched table (bumped by triggers on each change)."""
    import sqlalchemy as sa  # here: reading the registry alone needs no database driver

    return dict(conn.execute(sa.text("SELECT layer, version FROM layer_versions")).all())

