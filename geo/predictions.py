"""SQL of predictions: history as of a date, the model registry and scored forecasts.

Every statement reads only rows observed at or before the ``until`` it is given, so what a
forecast made "as of" a date sees is exactly what the twin knew then. Identifiers come from
the constants below; values are bound parameters or COPY data.
"""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo import DEG_PER_M_BOUND
from geo.store import copy_frame

PREDICTION_COLUMNS = (
    "run_id", "model_version", "target", "asset_layer", "asset_id", "subject", "metric_id",
    "as_of", "target_date", "horizon_days", "value", "lower", "upper", "days_to_threshold",
    "crossing_earliest_days", "crossing_latest_days", "p_cleared", "geom",
)


def _frame(result, columns: list[str] | None = None) -> pd.DataFrame:
    # Plain tuples: pandas probes every Row object for attributes, which cost more than the
    # query on tens of thousands of sensor readings.
    rows = [tuple(row) for row in result.all()]
    return pd.DataFrame(rows, columns=columns or list(result.keys()))


# -- history as of a date -------------------------------------------------------------------


def metric_by_name(conn: Connection, name: str) -> dict | None:
    """A declared metric's id, unit, range and direction, or None when it is not declared."""
    row = conn.execute(sa.text(
        "SELECT id, name, unit, min_value, max_value, higher_is_better FROM metrics "
        "WHERE name = :name"), {"name": name}).mappings().first()
    return dict(row) if row else None


def layer_metrics(conn: Connection, layer: str) -> pd.DataFrame:
    """The metrics with readings on assets of ``layer``, with their declarations."""
    return _frame(conn.execute(sa.text(
        "SELECT m.id, m.name, m.unit, m.min_value, m.max_value, m.higher_is_better "
        "FROM metrics m WHERE EXISTS (SELECT 1 FROM readings r JOIN assets a "
        "ON a.id = r.asset_id AND a.layer = :layer WHERE r.metric_id = m.id LIMIT 1) "
        "ORDER BY m.name"), {"layer": layer}))


def observation_span(conn: Connection, metric_id: int) -> tuple[datetime | None,
                                                                 datetime | None]:
    """First and last time a metric was observed."""
    row = conn.execute(sa.text(
        "SELECT min(observed_at), max(observed_at) FROM readings WHERE metric_id = :m"),
        {"m": metric_id}).one()
    return row[0], row[1]


def last_observation(conn: Connection, table: str) -> datetime | None:
    """The newest ``observed_at`` of an observation table (``road_damage``, ``debris_piles``)."""
    if table not in ("road_damage", "debris_piles", "readings"):
        raise ValueError(f"not an observation table: {table}")
    return conn.execute(sa.text(f"SELECT max(observed_at) FROM {table}")).scalar()


def first_observation(conn: Connection, table: str) -> datetime | None:
    """The oldest ``observed_at`` of an observation table."""
    if table not in ("road_damage", "debris_piles", "readings"):
        raise ValueError(f"not an observation table: {table}")
    return conn.execute(sa.text(f"SELECT min(observed_at) FROM {table}")).scalar()


def street_attributes(conn: Connection) -> pd.DataFrame:
    """Every street's attributes, length in metres, centre (lon/lat) and geometry as EWKT."""
    return _frame(conn.execute(sa.text(
        "SELECT id AS asset_id, external_id, road_class, surface, width_m, lanes, "
        "resurfaced_on, properties, ST_Length(geom::geography) AS length_m, "
        "ST_X(ST_Centroid(geom)) AS lon, ST_Y(ST_Centroid(geom)) AS lat, "
        "ST_AsEWKT(geom) AS geom_ewkt FROM streets ORDER BY id")))


# "Of these assets only, or of all when None": the parts of a split scoring run
# (predict/batch.py) read their own streets and neighbours, not the whole town.
_OF_IDS = "(CAST(:ids AS bigint[]) IS NULL OR {column} = ANY(CAST(:ids AS bigint[])))"


def readings_until(conn: Connection, metric_ids: list[int], layer: str, until: datetime,
                   since: datetime | None = None, asset_ids: list[int] | None = None
                   ) -> pd.DataFrame:
    """Readings of some metrics on one layer's assets (or some of them) in ``[since, until]``."""
    return _frame(conn.execute(sa.text(
        "SELECT r.metric_id, r.asset_id, r.observed_at, r.value FROM readings r "
        "JOIN assets a ON a.id = r.asset_id AND a.layer = :layer "
        "WHERE r.metric_id = ANY(:metrics) AND r.observed_at <= :until "
        "AND r.observed_at >= coalesce(CAST(:since AS timestamptz), '-infinity') "
        f"AND {_OF_IDS.format(column='r.asset_id')} "
        "ORDER BY r.asset_id, r.metric_id, r.observed_at"),
        {"layer": layer, "metrics": list(metric_ids), "until": until, "since": since,
         "ids": asset_ids}),
        ["metric_id", "asset_id", "observed_at", "value"])


def readings_between(conn: Connection, metric_id: int, layer: str, start: datetime,
                     end: datetime) -> pd.DataFrame:
    """Readings of one metric on a layer observed in ``[start, end]`` (to score forecasts)."""
    return _frame(conn.execute(sa.text(
        "SELECT r.asset_id, r.observed_at, r.value FROM readings r "
        "JOIN assets a ON a.id = r.asset_id AND a.layer = :layer "
        "WHERE r.metric_id = :metric AND r.observed_at BETWEEN :start AND :end "
        "ORDER BY r.asset_id, r.observed_at"),
        {"layer": layer, "metric": metric_id, "start": start, "end": end}),
        ["asset_id", "observed_at", "value"])


def damage_on_streets(conn: Connection, until: datetime, asset_ids: list[int] | None = None
                      ) -> pd.DataFrame:
    """Road damage linked to a street (or to some streets) and observed by ``until``."""
    # Ordered, so a street's sums add in the same order whichever streets are read.
    return _frame(conn.execute(sa.text(
        "SELECT street_id AS asset_id, observed_at, damage_class, severity, size_m2, confidence "
        "FROM road_damage WHERE street_id IS NOT NULL AND observed_at <= :until "
        f"AND {_OF_IDS.format(column='street_id')} ORDER BY street_id, observed_at, id"),
        {"until": until, "ids": asset_ids}),
        ["asset_id", "observed_at", "damage_class", "severity", "size_m2", "confidence"])


def _within(a: str, b: str) -> str:
    """SQL: geometry columns ``a`` and ``b`` lie within ``:m`` metres (``:deg`` prefilters)."""
    return (f"ST_DWithin({a}, {b}, :deg) "
            f"AND ST_DWithin({a}::geography, {b}::geography, :m)")


def _within_params(distance_m: float) -> dict:
    """The parameters of :func:`_within` for a distance in metres."""
    return {"deg": distance_m * DEG_PER_M_BOUND, "m": distance_m}


def debris_near_streets(conn: Connection, until: datetime, distance_m: float,
                        asset_ids: list[int] | None = None) -> pd.DataFrame:
    """(street, debris observation time, volume) for debris seen within a distance by ``until``."""
    return _frame(conn.execute(sa.text(
        "SELECT s.id AS asset_id, d.observed_at, d.volume_m3 FROM debris_piles d "
        f"JOIN streets s ON {_within('s.geom', 'd.geom')} "
        f"WHERE d.observed_at <= :until AND {_OF_IDS.format(column='s.id')} "
        "ORDER BY s.id, d.observed_at, d.id"),
        {"until": until, "ids": asset_ids, **_within_params(distance_m)}),
        ["asset_id", "observed_at", "volume_m3"])


def manholes_near_streets(conn: Connection, distance_m: float,
                          asset_ids: list[int] | None = None) -> pd.DataFrame:
    """How many manholes lie within a distance of each street (streets with none are absent)."""
    return _frame(conn.execute(sa.text(
        "SELECT s.id AS asset_id, count(*) AS manholes FROM streets s JOIN manholes h "
        f"ON {_within('s.geom', 'h.geom')} "
        f"WHERE {_OF_IDS.format(column='s.id')} GROUP BY s.id"),
        {"ids": asset_ids, **_within_params(distance_m)}), ["asset_id", "manholes"])


def street_neighbours(conn: Connection, distance_m: float, asset_ids: list[int] | None = None
                      ) -> pd.DataFrame:
    """Pairs of distinct streets within a distance of each other (of some streets: theirs)."""
    return _frame(conn.execute(sa.text(
        "SELECT a.id AS asset_id, b.id AS neighbour_id FROM streets a JOIN streets b "
        f"ON a.id <> b.id AND {_within('a.geom', 'b.geom')} "
        f"WHERE {_OF_IDS.format(column='a.id')} ORDER BY a.id, b.id"),
        {"ids": asset_ids, **_within_params(distance_m)}), ["asset_id", "neighbour_id"])


def street_resurfacing_work(conn: Connection, until: datetime,
                            asset_ids: list[int] | None = None) -> pd.DataFrame:
    """Recorded resurfacing of streets (asset_id, done_at, action) done by ``until``."""
    from geo.work import RESURFACING

    return _frame(conn.execute(sa.text(
        "SELECT asset_id, done_at, action FROM work_records WHERE asset_layer = 'streets' "
        "AND action = ANY(:actions) AND done_at <= :until "
        f"AND {_OF_IDS.format(column='asset_id')} ORDER BY asset_id, done_at"),
        {"actions": list(RESURFACING), "until": until, "ids": asset_ids}),
        ["asset_id", "done_at", "action"])


def street_programme(conn: Connection, until: datetime) -> pd.DataFrame:
    """Paving programme entries published by ``until``.

    An entry without a publication date counts as published on 1 January of the year before
    its own (an annual programme adopted with the budget); ``predict.features.programme_dates``
    applies the same rule to the frame.
    """
    return _frame(conn.execute(sa.text(
        "SELECT street_id AS asset_id, year, treatment, planned_on, published_on "
        "FROM paving_programme WHERE coalesce(published_on, make_date(year - 1, 1, 1)) "
        "<= CAST(:until AS timestamptz)::date ORDER BY street_id, year"), {"until": until}),
        ["asset_id", "year", "treatment", "planned_on", "published_on"])


def debris_observations(conn: Connection, until: datetime) -> pd.DataFrame:
    """Debris observations made by ``until``, with their point (lon/lat)."""
    return _frame(conn.execute(sa.text(
        "SELECT id, pile_ref, observed_at, volume_m3, material, source, confidence, "
        "ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat "
        "FROM debris_piles WHERE observed_at <= :until ORDER BY observed_at, id"),
        {"until": until}),
        ["id", "pile_ref", "observed_at", "volume_m3", "material", "source", "confidence",
         "lon", "lat"])


def sensor_manholes(conn: Connection) -> pd.DataFrame:
    """Manholes carrying a sensor, with their geometry as EWKT."""
    return _frame(conn.execute(sa.text(
        "SELECT id AS asset_id, external_id, kind, depth_m, sensor_id, "
        "ST_AsEWKT(geom) AS geom_ewkt FROM manholes WHERE sensor_id IS NOT NULL ORDER BY id")))


def manhole_readings(conn: Connection, since: datetime | None, until: datetime,
                     asset_ids: list[int] | None = None) -> pd.DataFrame:
    """Sensor readings on manholes in ``[since, until]`` (of some manholes), with metric names."""
    return _frame(conn.execute(sa.text(
        "SELECT r.asset_id, m.name AS metric, r.observed_at, r.value FROM readings r "
        "JOIN metrics m ON m.id = r.metric_id "
        "JOIN manholes h ON h.id = r.asset_id "
        "WHERE r.observed_at <= :until "
        "AND r.observed_at >= coalesce(CAST(:since AS timestamptz), '-infinity') "
        "AND (CAST(:ids AS bigint[]) IS NULL OR r.asset_id = ANY(CAST(:ids AS bigint[]))) "
        "ORDER BY r.asset_id, r.observed_at"),
        {"since": since, "until": until, "ids": asset_ids}),
        ["asset_id", "metric", "observed_at", "value"])


def manhole_ids(conn: Connection, asset_ids: list[int]) -> list[int]:
    """Which of some asset ids are manholes."""
    return list(conn.execute(sa.text("SELECT id FROM manholes WHERE id = ANY(:ids) ORDER BY id"),
                             {"ids": list(asset_ids)}).scalars())


def street_surveys(conn: Connection, metric_id: int, asset_ids: list[int] | None = None
                   ) -> pd.DataFrame:
    """Each street's latest survey of a metric since its resurfacing, and the one before it.

    Surveys before ``resurfaced_on`` belong to the old surface and are left out, so a street
    resurfaced since has no previous survey (or none at all, until it is surveyed again).
    """
    return _frame(conn.execute(sa.text(
        "SELECT s.id AS asset_id, s.external_id, s.name, s.resurfaced_on, "
        "ST_AsEWKT(s.geom) AS geom_ewkt, r.observed_at, r.value, r.prev_at, r.prev_value "
        "FROM streets s JOIN LATERAL (SELECT x.observed_at, x.value, "
        "  lead(x.observed_at) OVER w AS prev_at, lead(x.value) OVER w AS prev_value "
        "  FROM readings x WHERE x.metric_id = :metric AND x.asset_id = s.id "
        "  AND x.observed_at >= coalesce(CAST(s.resurfaced_on AS timestamptz), '-infinity') "
        "  WINDOW w AS (ORDER BY x.observed_at DESC) ORDER BY x.observed_at DESC LIMIT 1) r "
        "ON TRUE WHERE CAST(:ids AS bigint[]) IS NULL OR s.id = ANY(CAST(:ids AS bigint[])) "
        "ORDER BY s.id"), {"metric": metric_id, "ids": asset_ids}),
        ["asset_id", "external_id", "name", "resurfaced_on", "geom_ewkt", "observed_at", "value",
         "prev_at", "prev_value"])


def recent_street_readings(conn: Connection, metric_id: int, *, per_street: int,
                           until: datetime) -> pd.DataFrame:
    """Each street's ``per_street`` latest readings of a metric by ``until``, oldest first."""
    return _frame(conn.execute(sa.text(
        "SELECT asset_id, observed_at, value FROM (SELECT r.asset_id, r.observed_at, r.value, "
        "row_number() OVER (PARTITION BY r.asset_id ORDER BY r.observed_at DESC) AS k "
        "FROM readings r JOIN streets s ON s.id = r.asset_id "
        "WHERE r.metric_id = :metric AND r.observed_at <= :until) x "
        "WHERE k <= :n ORDER BY asset_id, observed_at"),
        {"metric": metric_id, "until": until, "n": per_street}),
        ["asset_id", "observed_at", "value"])


def street_ids(conn: Connection, asset_ids: list[int]) -> list[int]:
    """Which of some asset ids are streets."""
    return list(conn.execute(sa.text("SELECT id FROM streets WHERE id = ANY(:ids) ORDER BY id"),
                             {"ids": list(asset_ids)}).scalars())


def last_manhole_reading(conn: Connection) -> datetime | None:
    """The newest reading of any manhole sensor."""
    return conn.execute(sa.text(
        "SELECT max(r.observed_at) FROM readings r JOIN manholes h ON h.id = r.asset_id")
    ).scalar()


# -- the model registry ---------------------------------------------------------------------


def insert_model(conn: Connection, *, version: str, target: str, metric: str | None,
                 train_from: datetime | None, train_to: datetime, rows: int, metrics: dict,
                 features: list[str], params: dict, library_versions: dict, skops: bytes,
                 sha256: str) -> None:
    """Keep a trained model in the registry."""
    conn.execute(sa.text(
        "INSERT INTO models (version, target, metric, train_from, train_to, rows, metrics, "
        "features, params, library_versions, skops, sha256) VALUES (:version, :target, :metric, "
        ":train_from, :train_to, :rows, CAST(:metrics AS jsonb), CAST(:features AS jsonb), "
        "CAST(:params AS jsonb), CAST(:libs AS jsonb), :skops, :sha256)"),
        {"version": version, "target": target, "metric": metric, "train_from": train_from,
         "train_to": train_to, "rows": rows, "metrics": json.dumps(metrics),
         "features": json.dumps(features), "params": json.dumps(params),
         "libs": json.dumps(library_versions), "skops": skops, "sha256": sha256})


_MODEL_COLUMNS = ("version, target, metric, trained_at, train_from, train_to, rows, metrics, "
                  "features, params, library_versions, skops, sha256")


def get_model(conn: Connection, version: str) -> dict | None:
    """One stored model by version, or None."""
    row = conn.execute(sa.text(f"SELECT {_MODEL_COLUMNS} FROM models WHERE version = :v"),
                       {"v": version}).mappings().first()
    return dict(row) if row else None


def latest_model(conn: Connection, target: str, metric: str | None) -> dict | None:
    """The newest model for a target (and metric), or None."""
    row = conn.execute(sa.text(
        f"SELECT {_MODEL_COLUMNS} FROM models WHERE target = :target "
        "AND metric IS NOT DISTINCT FROM :metric ORDER BY trained_at DESC, version DESC LIMIT 1"),
        {"target": target, "metric": metric}).mappings().first()
    return dict(row) if row else None


def list_models(conn: Connection) -> list[dict]:
    """Every stored model's description (without its bytes), newest first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT version, target, metric, trained_at, train_from, train_to, rows, metrics "
        "FROM models ORDER BY trained_at DESC")).mappings()]


# -- predictions ----------------------------------------------------------------------------


def insert_predictions(conn: Connection, frame: pd.DataFrame) -> int:
    """Write scored forecasts (columns of ``PREDICTION_COLUMNS``; ``geom`` as EWKT or empty).

    Columns a target does not have (``p_cleared`` outside debris, the crossing's interval
    outside road wear) may be left out: NULL.
    """
    if frame.empty:
        return 0
    return copy_forecasts(conn, "predictions", frame.reindex(columns=list(PREDICTION_COLUMNS)))


# How each forecast column travels through COPY: geom as EWKT text, made a geometry on insert.
_STAGED_TYPES = {
    "run_id": "text", "part": "integer", "model_version": "text", "target": "text",
    "asset_layer": "text", "asset_id": "bigint", "subject": "text", "metric_id": "smallint",
    "as_of": "timestamptz", "target_date": "date", "horizon_days": "integer",
    "value": "double precision", "lower": "double precision", "upper": "double precision",
    "days_to_threshold": "integer", "crossing_earliest_days": "integer",
    "crossing_latest_days": "integer", "p_cleared": "double precision", "geom": "text",
}


def copy_forecasts(conn: Connection, table: str, frame: pd.DataFrame) -> int:
    """Insert forecasts into ``table`` (``predictions``, ``staged_predictions``) by COPY.

    The frame's columns are the table's to fill, ``geom`` last (EWKT, or empty for none); they
    go through a temporary table, as COPY cannot make a geometry of its text. Returns the rows
    written.
    """
    columns = list(frame.columns)
    conn.execute(sa.text(
        "CREATE TEMP TABLE stage_forecasts ("
        f"{', '.join(f'{c} {_STAGED_TYPES[c]}' for c in columns)}) ON COMMIT DROP"))
    copy_frame(conn, "stage_forecasts", frame)
    written = conn.execute(sa.text(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns[:-1])}, "
        "CASE WHEN geom IS NULL OR geom = '' THEN NULL ELSE ST_GeomFromEWKT(geom) END "
        "FROM stage_forecasts")).rowcount
    conn.execute(sa.text("DROP TABLE stage_forecasts"))
    return written


def latest_street_predictions(conn: Connection, metric_id: int, horizon_days: int
                              ) -> pd.DataFrame:
    """The newest forecast per street for a metric and horizon."""
    return _frame(conn.execute(sa.text(
        "SELECT DISTINCT ON (p.asset_id) p.asset_id, p.model_version, p.as_of, p.target_date, "
        "p.horizon_days, p.value, p.lower, p.upper, p.days_to_threshold, "
        "p.crossing_earliest_days, p.crossing_latest_days "
        "FROM predictions p WHERE p.asset_layer = 'streets' AND p.metric_id = :metric "
        "AND p.horizon_days = :h ORDER BY p.asset_id, p.as_of DESC, p.created_at DESC, p.id DESC"),
        {"metric": metric_id, "h": horizon_days}),
        ["asset_id", "model_version", "as_of", "target_date", "horizon_days", "value", "lower",
         "upper", "days_to_threshold", "crossing_earliest_days", "crossing_latest_days"])


def predictions_of_run(conn: Connection, run_id: str) -> pd.DataFrame:
    """All forecasts of one scoring run, with the asset's external id."""
    return _frame(conn.execute(sa.text(
        "SELECT coalesce(a.external_id, p.subject) AS external_id, m.name AS metric, "
        "p.target_date, p.horizon_days, p.value, p.lower, p.upper, p.days_to_threshold, "
        "p.crossing_earliest_days, p.crossing_latest_days, p.p_cleared FROM predictions p "
        "LEFT JOIN assets a ON a.id = p.asset_id AND a.layer = p.asset_layer "
        "LEFT JOIN metrics m ON m.id = p.metric_id WHERE p.run_id = :run "
        "ORDER BY 1, p.horizon_days"), {"run": run_id}))


# -- evidence for debris and new-damage alerts ---------------------------------------------------


def recent_debris_piles(conn: Connection, *, recent_days: int, until: datetime | None = None
                        ) -> pd.DataFrame:
    """Piles seen in the last ``recent_days`` before the newest sighting (or ``until``).

    A pile is its sightings with one ``pile_ref`` (or a sighting without one); its asset id is
    its first sighting's id, so every later sighting is the same asset to alerts and work
    records. Each row has the pile's latest sighting (volume, whether it was cleared), when it
    was first and last seen, and the nearest street within 15 m.
    """
    return _frame(conn.execute(sa.text(
        "WITH seen AS (SELECT *, coalesce(pile_ref, 'id:' || id) AS pile FROM debris_piles "
        "  WHERE observed_at <= coalesce(CAST(:until AS timestamptz), 'infinity')), "
        "newest AS (SELECT max(observed_at) AS t FROM seen), "
        "piles AS (SELECT pile, min(id) AS asset_id, min(observed_at) AS first_seen, "
        "  max(observed_at) AS last_seen, count(*) AS sightings FROM seen GROUP BY pile) "
        "SELECT p.asset_id, p.pile, p.first_seen, p.last_seen, p.sightings, l.volume_m3, "
        "  l.cleared_at IS NOT NULL OR l.volume_m3 = 0 AS cleared, "
        "  ST_AsEWKT(ST_PointOnSurface(l.geom)) AS geom_ewkt, s.name AS street_name, "
        "  s.external_id AS street_external_id "
        "FROM piles p CROSS JOIN newest n "
        "JOIN LATERAL (SELECT * FROM seen d WHERE d.pile = p.pile "
        "  ORDER BY d.observed_at DESC, d.id DESC LIMIT 1) l ON TRUE "
        "LEFT JOIN LATERAL (SELECT name, external_id FROM streets st "
        "  WHERE ST_DWithin(st.geom::geography, l.geom::geography, 15) "
        "  ORDER BY st.geom <-> l.geom LIMIT 1) s ON TRUE "
        "WHERE p.last_seen > n.t - make_interval(days => :days) ORDER BY p.asset_id"),
        {"days": recent_days, "until": until}))


def recent_serious_damage(conn: Connection, *, recent_days: int, until: datetime | None = None
                          ) -> pd.DataFrame:
    """Serious damage (high severity, or any pothole) seen lately, on the street each lies on.

    Lately: in the last ``recent_days`` before the newest damage observation (or ``until``).
    """
    return _frame(conn.execute(sa.text(
        "WITH seen AS (SELECT * FROM road_damage "
        "  WHERE observed_at <= coalesce(CAST(:until AS timestamptz), 'infinity')), "
        "newest AS (SELECT max(observed_at) AS t FROM seen) "
        "SELECT d.street_id AS asset_id, d.id AS damage_id, d.damage_class, d.severity, "
        "  d.observed_at, s.name AS street_name, s.external_id AS street_external_id, "
        "  ST_AsEWKT(s.geom) AS geom_ewkt "
        "FROM seen d CROSS JOIN newest n JOIN streets s ON s.id = d.street_id "
        "WHERE d.observed_at > n.t - make_interval(days => :days) "
        "  AND (d.severity = 'high' OR d.damage_class = 'D40') "
        "ORDER BY d.street_id, d.observed_at"),
        {"days": recent_days, "until": until}))


def latest_version(conn: Connection, target: str) -> str | None:
    """The version of the newest model for a target (any metric), or None."""
    return conn.execute(sa.text(
        "SELECT version FROM models WHERE target = :target "
        "ORDER BY trained_at DESC, version DESC LIMIT 1"), {"target": target}).scalar()
