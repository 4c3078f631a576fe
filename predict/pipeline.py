"""Train, store and score road-wear models: what ``twin predict train`` and ``score`` do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from geo import predictions as sql
from geo.errors import InvalidInput
from predict import registry
from predict.features import MetricScale, load_road_context, road_features
from predict.road import (
    DEFAULT_HORIZONS,
    RoadModel,
    as_utc,
    check_horizons,
    default_threshold,
    fit_road_model,
    forecast,
    resolve_as_of,
)

ROAD_WEAR = "road_wear"
CSV_COLUMNS = ["external_id", "metric", "target_date", "value", "lower", "upper",
               "days_to_threshold", "crossing_earliest_days", "crossing_latest_days",
               "explanation"]


@dataclass
class TrainResult:
    """What ``train`` stored."""

    version: str
    metric: str
    train_from: str
    train_to: str
    rows: int
    in_sample: dict


def train(engine: Engine, metric: str = "pci", as_of=None, *, random_state: int = 0,
          **params) -> TrainResult:
    """Train a road-wear model on the observations by ``as_of`` (default: the newest) and store it.

    ``params`` go to the estimator (e.g. ``max_iter``).

    Raises
    ------
    InvalidInput
        For an undeclared metric, an as-of after the last observation, or too little history.
    """
    with engine.connect() as conn:
        scale, as_of = resolve_as_of(conn, metric, as_of)
        ctx = load_road_context(conn, metric, as_of.to_pydatetime())
    model = fit_road_model(ctx, as_of, random_state=random_state, **params)
    features = road_features(ctx, as_of)
    # A description of fit on the streets' own recent history (not an honest test: see
    # `twin predict evaluate` for that).
    summary = {"streets": int(len(features)), "examples": model.rows,
               "calibration_examples": model.estimator.n_calibration_,
               # In widths of each forecast's quantile band (interval_scaling "width"), or
               # in the metric's units ("none").
               "interval_adjustment": round(model.estimator.interval_adjustment_ * (
                   1.0 if model.estimator.interval_scaling == "width"
                   else scale.max_value - scale.min_value), 3),
               "scale": scale.as_dict()}
    with engine.begin() as conn:
        version = registry.save(
            conn, target=ROAD_WEAR, metric=metric, estimator=model.estimator,
            train_from=model.train_from.to_pydatetime(), train_to=as_of.to_pydatetime(),
            rows=model.rows, metrics=summary, features=model.features,
            params={k: v for k, v in model.params.items()
                    if isinstance(v, int | float | str | bool | type(None))})
    return TrainResult(version, metric, str(model.train_from.date()), str(as_of.date()),
                       model.rows, summary)


def load_road_model(engine: Engine, metric: str, version: str | None = None
                    ) -> tuple[RoadModel, dict]:
    """The newest stored road-wear model for a metric (or a given version)."""
    with engine.connect() as conn:
        estimator, row = registry.load(conn, target=ROAD_WEAR, metric=metric, version=version)
        scale = MetricScale.from_row(sql.metric_by_name(conn, metric), metric)
    stored = row["metrics"].get("scale", {})
    if stored and (stored["min_value"], stored["max_value"], stored["higher_is_better"]) != (
            scale.min_value, scale.max_value, scale.higher_is_better):
        raise InvalidInput(
            f"Metric '{metric}' was declared {scale.min_value:g}-{scale.max_value:g} "
            f"but model {row['version']} learned it as {stored['min_value']:g}-"
            f"{stored['max_value']:g}; train it again with `twin predict train`.")
    model = RoadModel(estimator, scale, list(row["features"]), as_utc(row["train_from"]),
                      as_utc(row["train_to"]), row["rows"], row["params"])
    return model, row


@dataclass
class ScoreResult:
    """What ``score`` wrote."""

    run_id: str
    model_version: str
    as_of: str
    streets: int
    rows: int
    csv: str | None


def street_rows(frame: pd.DataFrame, *, run_id: str, model_version: str, metric_id: int,
                as_of: pd.Timestamp) -> pd.DataFrame:
    """Rows of ``predictions`` (``PREDICTION_COLUMNS``) from the street forecasts of ``forecast``.

    One function for the one-process run and the parts of a split run (predict/batch.py), so
    both write the same values rounded the same way.
    """
    return pd.DataFrame({
        "run_id": run_id, "model_version": model_version, "target": ROAD_WEAR,
        "asset_layer": "streets", "asset_id": frame["asset_id"].astype(int), "subject": None,
        "metric_id": metric_id, "as_of": as_of.isoformat(), "target_date": frame["target_date"],
        "horizon_days": frame["horizon_days"], "value": frame["value"].round(3),
        "lower": frame["lower"].round(3), "upper": frame["upper"].round(3),
        "days_to_threshold": frame["days_to_threshold"].astype("Int64"),
        "crossing_earliest_days": frame["crossing_earliest_days"].astype("Int64"),
        "crossing_latest_days": frame["crossing_latest_days"].astype("Int64"), "geom": None})


def score(engine: Engine, metric: str = "pci", horizons=DEFAULT_HORIZONS, as_of=None, *,
          out: Path | None = None, threshold: float | None = None,
          version: str | None = None) -> ScoreResult:
    """Forecast every street with the stored model and write ``predictions`` (and a CSV)."""
    horizons = check_horizons(horizons)
    with engine.connect() as conn:
        scale, as_of = resolve_as_of(conn, metric, as_of)
    model, row = load_road_model(engine, metric, version)
    with engine.connect() as conn:
        ctx = load_road_context(conn, metric, as_of.to_pydatetime())
    features = road_features(ctx, as_of)
    threshold = default_threshold(scale) if threshold is None else threshold
    frame = forecast(model, features, as_of, horizons, threshold)
    run_id = uuid.uuid4().hex
    streets = ctx.streets
    to_write = street_rows(frame, run_id=run_id, model_version=row["version"],
                           metric_id=scale.id, as_of=as_of)
    with engine.begin() as conn:
        written = sql.insert_predictions(conn, to_write)
    csv = None
    if out is not None:
        table = pd.DataFrame({
            "external_id": streets.loc[frame["asset_id"], "external_id"].to_numpy(),
            "metric": metric, "target_date": frame["target_date"],
            "value": frame["value"].round(2), "lower": frame["lower"].round(2),
            "upper": frame["upper"].round(2),
            "days_to_threshold": frame["days_to_threshold"].astype("Int64"),
            "crossing_earliest_days": frame["crossing_earliest_days"].astype("Int64"),
            "crossing_latest_days": frame["crossing_latest_days"].astype("Int64"),
            "explanation": frame["explanation"]})
        table.sort_values(["external_id", "target_date"]).to_csv(
            out, index=False, columns=CSV_COLUMNS, lineterminator="\n")
        csv = str(out)
    return ScoreResult(run_id, row["version"], str(as_of.date()), int(len(features)), written,
                       csv)


def street_forecasts(engine: Engine, metric: str, horizon_days: int) -> pd.DataFrame:
    """The newest stored forecast per street at a horizon, with the street's last value."""
    with engine.connect() as conn:
        scale = MetricScale.from_row(sql.metric_by_name(conn, metric), metric)
        frame = sql.latest_street_predictions(conn, scale.id, horizon_days)
    frame["value"] = np.clip(frame["value"].astype(float), scale.min_value, scale.max_value)
    return frame


DEBRIS_VOLUME = "debris_volume"
DEBRIS_CSV_COLUMNS = ["pile_ref", "observation_id", "target_date", "horizon_days",
                      "volume_if_not_cleared", "lower", "upper", "p_cleared", "expected_volume",
                      "last_volume"]


def score_debris(engine: Engine, horizons=(7, 30), as_of=None, *,
                 out: Path | None = None) -> ScoreResult:
    """Forecast every debris pile present at ``as_of`` into ``predictions`` (and a CSV).

    The growth priors, volume noise, interval calibration and lifetime curve are learned from
    the sightings by ``as_of`` and stored in the model registry (target ``debris_volume``), so
    each row's ``model_version`` says what made it. Each pile and horizon gets one row,
    with ``asset_layer`` ``debris_piles``, ``asset_id`` the id of the pile's latest sighting,
    ``subject`` its ``pile_ref``, no metric (no volume metric is declared) and ``geom`` the
    latest sighting's point. ``value`` is the pile's volume in m3 *if it is not cleared* by
    the target date (the median of a sighting then), ``lower``/``upper`` its 80 % interval,
    and ``p_cleared`` the probability that it has been cleared by the target date.

    The CSV adds ``expected_volume`` = (1 - p_cleared) x volume if not cleared.
    """
    from predict import pile_volume

    horizons = check_horizons(horizons)
    with engine.connect() as conn:
        as_of = pile_volume.resolve_debris_as_of(conn, as_of)
        sightings = pile_volume.load_sightings(conn, as_of)
    model, piles = pile_volume.fit_pile_model(sightings, as_of)
    present = pile_volume.present_piles(model, piles, as_of)
    summary = {"piles_seen": model.piles_, "piles_present": int(len(present)),
               "volume_cv": model.cv_, "growth_all_m3_per_day": model.global_growth_,
               "growth_by_material": model.material_growth_,
               "lifetime_pad_days": model.lifetime_pad_days_,
               "lifetimes_observed": model.lifetimes_observed_,
               "interval_z": [model.z_lower_, model.z_upper_],
               "calibration_sightings": model.calibration_sightings_}
    first = sightings["observed_at"].min() if len(sightings) else as_of
    with engine.begin() as conn:
        version = registry.save(
            conn, target=DEBRIS_VOLUME, metric=None, estimator=model,
            train_from=as_utc(first).to_pydatetime(), train_to=as_of.to_pydatetime(),
            rows=int(len(sightings)), metrics=summary, features=[],
            params={"present_days": model.present_days, "area_m": model.area_m})
    parts = [pile_volume.forecast_piles(model, present, as_of, h) for h in horizons]
    frame = (pd.concat(parts, ignore_index=True) if parts and len(present)
             else pd.DataFrame(columns=pile_volume.FORECAST_COLUMNS))
    where = present.set_index("pile_ref")[["lon", "lat"]] if len(present) else None
    target_date = (as_of.normalize() + pd.to_timedelta(frame["horizon_days"].astype(float), "D")
                   ).dt.date
    run_id = uuid.uuid4().hex
    written = 0
    if len(frame):
        assert where is not None  # forecasts exist only for present piles
        lon = where.loc[frame["pile_ref"], "lon"].to_numpy()
        lat = where.loc[frame["pile_ref"], "lat"].to_numpy()
        volume = pd.DataFrame({
            "run_id": run_id, "model_version": version, "target": DEBRIS_VOLUME,
            "asset_layer": "debris_piles", "asset_id": frame["last_id"].astype("int64"),
            "subject": frame["pile_ref"].astype(str),
            "metric_id": pd.array([None] * len(frame), dtype="Int64"),
            "as_of": as_of.isoformat(), "target_date": target_date,
            "horizon_days": frame["horizon_days"].astype(int), "value": frame["value"].round(3),
            "lower": frame["lower"].round(3), "upper": frame["upper"].round(3),
            "days_to_threshold": pd.array([None] * len(frame), dtype="Int64"),
            "geom": [f"SRID=4326;POINT({x:.7f} {y:.7f})" for x, y in zip(lon, lat, strict=True)]})
        to_write = volume.assign(p_cleared=frame["p_cleared"].astype(float).round(4))
        with engine.begin() as conn:
            written = sql.insert_predictions(conn, to_write)
    csv = None
    if out is not None:
        table = pd.DataFrame({
            "pile_ref": frame["pile_ref"], "observation_id": frame["last_id"],
            "target_date": target_date, "horizon_days": frame["horizon_days"].astype(int),
            "volume_if_not_cleared": frame["value"].astype(float).round(2),
            "lower": frame["lower"].astype(float).round(2),
            "upper": frame["upper"].astype(float).round(2),
            "p_cleared": frame["p_cleared"].astype(float).round(3),
            "expected_volume": frame["expected"].astype(float).round(2),
            "last_volume": frame["last_volume"].astype(float).round(2)})
        table.sort_values(["pile_ref", "horizon_days"]).to_csv(
            out, index=False, columns=DEBRIS_CSV_COLUMNS, lineterminator="\n")
        csv = str(out)
    return ScoreResult(run_id, version, str(as_of.date()), int(len(present)), written, csv)
