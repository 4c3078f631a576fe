"""Road wear: train, forecast and evaluate a street condition metric as of a date."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from geo import predictions as sql
from geo.errors import InvalidInput
from geo.i18n import Message, _, deferred, render
from geo.settings import PCI_THRESHOLD
from predict.estimators import WearForecaster
from predict.features import (
    DAY,
    YEARLY_GAP_DAYS,
    MetricScale,
    RoadContext,
    load_road_context,
    road_features,
    survey_gap_days,
    training_pairs,
    window_features,
)

DEFAULT_HORIZONS = (30, 90, 365)
# How long before the forecast's target date a programmed resurfacing falls (days; negative:
# after it): made by the estimator from the window's horizon and the street's programme.
PROGRAMME_LEAD = "programme_lead_days"
WINDOW_DIFFERENCES = ((PROGRAMME_LEAD, "horizon_days", "programme_offset_days"),)
YEARLY_CALIBRATION_FRACTION = 0.4
DEFAULT_THRESHOLD = {"pci": PCI_THRESHOLD}
# Look-ahead grid for "days until the threshold is crossed" (linear between grid points).
THRESHOLD_GRID_DAYS = (30, 60, 90, 180, 365, 730, 1095)
MIN_TRAINING_ROWS = 200
MIN_STREETS = 10
MAX_TRAINING_ROWS = 60_000
EVALUATION_WINDOW_DAYS = 15
# Crossing rules compared by `evaluate`: a crossing is predicted when the point
# ``median - share * (median - lower)`` at the horizon is on the bad side of the threshold
# (share 0: the median; 1: the interval's lower bound, the pessimistic end).
CROSSING_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
FORECAST_COLUMNS = ["asset_id", "horizon_days", "target_date", "last_value", "value", "lower",
                    "upper", "explanation", "days_to_threshold", "crossing_earliest_days",
                    "crossing_latest_days"]


def as_utc(value) -> pd.Timestamp:
    """A date or time as a UTC timestamp (a bare date is midnight UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def check_horizons(horizons) -> list[int]:
    """Refuse horizons of zero or fewer days."""
    horizons = [int(h) for h in horizons]
    if not horizons:
        raise InvalidInput(_("Give at least one horizon in days."))
    bad = [h for h in horizons if h <= 0]
    if bad:
        raise InvalidInput(_("A horizon must be a positive number of days, not {days}.",
                             days=bad[0]))
    return sorted(set(horizons))


def default_threshold(scale: MetricScale) -> float:
    """The alert threshold of a metric: PCI 55 (Poor), else the middle of its range."""
    return DEFAULT_THRESHOLD.get(scale.name, (scale.min_value + scale.max_value) / 2)


def resolve_as_of(conn: Connection, metric: str, as_of) -> tuple[MetricScale, pd.Timestamp]:
    """The metric's scale and the as-of time; refuse an as-of after the last observation."""
    scale = MetricScale.from_row(sql.metric_by_name(conn, metric), metric)
    first, last = sql.observation_span(conn, scale.id)
    if last is None:
        raise InvalidInput(_("Metric '{metric}' has no readings yet, so there is nothing to "
                             "learn from.", metric=metric))
    last = as_utc(last)
    if as_of is None:
        return scale, last
    as_of = as_utc(as_of)
    if as_of.normalize() > last.normalize():
        raise InvalidInput(_(
            "As-of {as_of} is after the last '{metric}' observation ({last}); choose a date "
            "on or before it.", as_of=as_of.date(), metric=metric, last=last.date()))
    if as_of < as_utc(first):
        raise InvalidInput(_("As-of {as_of} is before the first '{metric}' observation "
                             "({first}).", as_of=as_of.date(), metric=metric,
                             first=as_utc(first).date()))
    return scale, as_of


@dataclass
class RoadModel:
    """A fitted road-wear model and what it was trained on."""

    estimator: WearForecaster
    scale: MetricScale
    features: list[str]
    train_from: pd.Timestamp
    train_to: pd.Timestamp
    rows: int
    params: dict


def fit_road_model(ctx: RoadContext, as_of, *, random_state: int = 0,
                   max_rows: int = MAX_TRAINING_ROWS, **params) -> RoadModel:
    """Fit a wear model on examples made only of observations by ``as_of``.

    Raises
    ------
    InvalidInput
        When there is too little history to learn from.
    """
    as_of = as_utc(as_of)
    pairs = training_pairs(ctx, as_of)
    streets = ctx.history.loc[ctx.history["observed_at"] <= as_of, "asset_id"].value_counts()
    if len(pairs) < MIN_TRAINING_ROWS or (streets >= 2).sum() < MIN_STREETS:
        raise InvalidInput(_(
            "Too little '{metric}' history by {as_of} to train: {examples} examples from "
            "{streets} streets observed twice or more (at least {least_examples} examples "
            "from {least_streets} streets are needed).", metric=ctx.scale.name,
            as_of=as_of.date(), examples=len(pairs), streets=(streets >= 2).sum(),
            least_examples=MIN_TRAINING_ROWS, least_streets=MIN_STREETS))
    if len(pairs) > max_rows:
        pairs = pairs.sample(n=max_rows, random_state=random_state).sort_values("cutoff")
    features = [c for c in pairs.columns
                if c not in ("target", "cutoff", "target_time", "asset_id")]
    params.setdefault("differences", WINDOW_DIFFERENCES)
    if survey_gap_days(ctx, as_of) >= YEARLY_GAP_DAYS:
        # Yearly surveys: hold out the last 40 % of outcomes (several years) to calibrate, so
        # the interval sees more than one or two years' paving budgets.
        params.setdefault("calibration_fraction", YEARLY_CALIBRATION_FRACTION)
    estimator = WearForecaster(random_state=random_state, **params)
    # Calibrated on held-out time and streets: the intervals are checked on the latest
    # outcomes of streets the calibrated models have not learnt from.
    estimator.fit(pairs[features], pairs["target"].to_numpy(),
                  groups=pairs["asset_id"].to_numpy(), times=pairs["target_time"].to_numpy())
    first = ctx.history["observed_at"].min()
    return RoadModel(estimator, ctx.scale, features, as_utc(first), as_of, len(pairs),
                     estimator.get_params())


def forecast(model: RoadModel, features: pd.DataFrame, as_of, horizons,
             threshold: float | None = None) -> pd.DataFrame:
    """Forecasts per street and horizon, in the metric's units.

    Returns a frame with ``asset_id, horizon_days, target_date, last_value, value, lower,
    upper, explanation, days_to_threshold, crossing_earliest_days, crossing_latest_days``:
    the median forecast with its interval, the evidence it assumes (``programme_notes``), and
    the days from ``as_of`` until the median forecast crosses ``threshold`` (NaN when it does
    not within the look-ahead grid, 0 when already past it). The crossing's interval comes
    from the forecast interval's bounds on the same grid: *earliest* when the pessimistic
    bound crosses, *latest* when the optimistic one does (NaN: not within the grid, so
    later than its last day, or never).

    The median and the bounds are predicted once for the horizons and the look-ahead grid
    together (a horizon on the grid is predicted once).
    """
    as_of = as_utc(as_of)
    horizons = check_horizons(horizons)
    if features.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    scale = model.scale
    days = sorted(set(horizons) | (set(THRESHOLD_GRID_DAYS) if threshold is not None else set()))
    windows = window_features(pd.DatetimeIndex([as_of] * len(days)), np.asarray(days))
    lower, median, upper = model.estimator.predict_windows(
        features, windows, [d in horizons or threshold is not None for d in days])
    at = [days.index(h) for h in horizons]
    n, k = len(features), len(horizons)
    pick = (slice(None), at)
    out = pd.DataFrame({
        "asset_id": np.repeat(features.index.to_numpy(), k),
        "horizon_days": np.tile(np.asarray(horizons, dtype=int), n),
        "last_value": scale.from_goodness(np.repeat(features["last_value"].to_numpy(float), k)),
        "value": scale.from_goodness(median[pick].reshape(-1)),
        "lower": scale.from_goodness(lower[pick].reshape(-1)),
        "upper": scale.from_goodness(upper[pick].reshape(-1)),
    })
    if not scale.higher_is_better:  # goodness bounds map to swapped metric bounds
        out["lower"], out["upper"] = out["upper"].to_numpy(), out["lower"].to_numpy()
    out["target_date"] = (as_of.normalize() + pd.to_timedelta(out["horizon_days"], "D")).dt.date
    out["explanation"] = programme_notes(features, as_of, out)
    if threshold is not None:
        grid = [days.index(d) for d in THRESHOLD_GRID_DAYS]
        for column, path in (("days_to_threshold", median), ("crossing_earliest_days", lower),
                             ("crossing_latest_days", upper)):
            out[column] = np.repeat(_first_crossing(model, features, path[:, grid], threshold),
                                    k)
    else:
        out["days_to_threshold"] = np.nan
        out["crossing_earliest_days"] = np.nan
        out["crossing_latest_days"] = np.nan
    return out


def programme_notes(features: pd.DataFrame, as_of: pd.Timestamp, out: pd.DataFrame
                    ) -> list[str | None]:
    """What evidence a forecast row assumes: the programme's treatment before its target date.

    "forecast assumes the 2027 mill and overlay in the programme" when the street's next
    programme entry (``programme_offset_days`` after ``as_of``) falls by the target date.
    """
    if "programme_offset_days" not in features:
        return [None] * len(out)
    offset = features["programme_offset_days"].reindex(out["asset_id"]).to_numpy(float)
    treatment = features["programme_treatment"].reindex(out["asset_id"]).to_numpy()
    notes: list[str | None] = []
    for days, what, horizon in zip(offset, treatment, out["horizon_days"], strict=True):
        if np.isnan(days) or days > horizon:
            notes.append(None)
            continue
        notes.append(render(programme_note((as_of + pd.Timedelta(days=float(days))).year,
                                           str(what))))
    return notes


def programme_note(year: int, treatment: str) -> Message:
    """The words that say a forecast assumes a programmed treatment (render them to show)."""
    return deferred("forecast assumes the {year} {treatment} in the programme", year=year,
                    treatment=treatment.replace("_", " "))


def _first_crossing(model: RoadModel, features: pd.DataFrame, goodness: np.ndarray,
                    threshold: float) -> np.ndarray:
    """Days until a median path on ``THRESHOLD_GRID_DAYS`` first reaches ``threshold``."""
    grid = np.asarray(THRESHOLD_GRID_DAYS, dtype=float)
    limit = float(model.scale.to_goodness([threshold])[0])
    now = features["last_value"].to_numpy(dtype=float)
    path = np.column_stack([now, goodness])
    days = np.concatenate([[0.0], grid])
    below = path < limit
    first = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    result = np.full(len(features), np.nan)
    result[first == 0] = 0.0
    idx = np.flatnonzero(first > 0)
    k = first[idx]
    g0, g1 = path[idx, k - 1], path[idx, k]
    share = np.where(g0 != g1, (g0 - limit) / np.where(g0 != g1, g0 - g1, 1.0), 1.0)
    result[idx] = days[k - 1] + share * (days[k] - days[k - 1])
    return np.round(result)


def days_to_threshold(model: RoadModel, features: pd.DataFrame, as_of,
                      threshold: float) -> pd.Series:
    """Days until each street's median forecast first reaches the bad side of ``threshold``."""
    as_of = as_utc(as_of)
    windows = window_features(pd.DatetimeIndex([as_of] * len(THRESHOLD_GRID_DAYS)),
                              np.asarray(THRESHOLD_GRID_DAYS))
    _, median, _ = model.estimator.predict_windows(features, windows,
                                                   [False] * len(THRESHOLD_GRID_DAYS))
    return pd.Series(_first_crossing(model, features, median, threshold), index=features.index)


# -- evaluation ---------------------------------------------------------------------------------


def predict_targets(model: RoadModel, features: pd.DataFrame, as_of: pd.Timestamp,
                    targets: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray,
                                                    np.ndarray]:
    """Forecasts (goodness) for ``targets`` (``asset_id``, ``horizon_days`` after ``as_of``).

    Returns the model's input rows (each street's features as of ``as_of`` with the target's
    window) and the lower, median and upper forecasts, in the targets' order.
    """
    frame = features.loc[targets["asset_id"].to_numpy()].reset_index()
    window = window_features(pd.DatetimeIndex([as_of] * len(targets)),
                             targets["horizon_days"].to_numpy())
    window["horizon_days"] = targets["horizon_days"].to_numpy()
    frame = pd.concat([frame, window], axis=1)
    lower, median, upper = model.estimator.predict_interval(frame[model.features])
    return frame, lower, median, upper


def linear_trend(ctx: RoadContext, as_of: pd.Timestamp, targets: pd.DataFrame,
                 features: pd.DataFrame) -> np.ndarray:
    """Per-street straight line through the observations since the last resurfacing jump.

    The least-squares line of each street's goodness against time, all streets at once (one
    pass over the history, not one per target); a street with fewer than two such
    observations, or all of them at one time, keeps its last value.
    """
    from predict.features import JUMP_GOODNESS

    h = ctx.history[ctx.history["observed_at"] <= as_of].sort_values(["asset_id", "observed_at"])
    jump = h.groupby("asset_id")["goodness"].diff() > JUMP_GOODNESS
    life = jump.groupby(h["asset_id"]).cumsum()
    h = h[life == life.groupby(h["asset_id"]).transform("max")]
    street = h["asset_id"]
    t = (h["observed_at"] - as_of) / DAY
    y = h["goodness"].astype(float)
    # Centred on each street's means, so the sums stay small whatever the dates.
    dt = t - t.groupby(street).transform("mean")
    dy = y - y.groupby(street).transform("mean")
    sums = pd.DataFrame({"t": t, "y": y, "tt": dt * dt, "ty": dt * dy}).groupby(street).agg(
        n=("t", "size"), t=("t", "mean"), y=("y", "mean"), tt=("tt", "sum"), ty=("ty", "sum"))
    line = sums[(sums["n"] >= 2) & (sums["tt"] > 0)].reindex(targets["asset_id"].to_numpy())
    # Through the street's mean point with its slope, read at the target's day.
    at_horizon = (line["y"] + line["ty"] / line["tt"]
                  * (targets["horizon_days"].to_numpy(float) - line["t"])).to_numpy(float)
    last = features["last_value"].reindex(targets["asset_id"].to_numpy()).to_numpy(float)
    return np.clip(np.where(np.isnan(at_horizon), last, at_horizon), 0.0, 1.0)


def _errors(predicted: np.ndarray, observed: np.ndarray) -> dict:
    diff = predicted - observed
    return {"mae": round(float(np.mean(np.abs(diff))), 3),
            "rmse": round(float(np.sqrt(np.mean(diff ** 2))), 3)}


def _precision_recall(predicted: np.ndarray, actual: np.ndarray) -> dict:
    tp = int(np.sum(predicted & actual))
    return {"predicted": int(predicted.sum()), "actual": int(actual.sum()), "true_positive": tp,
            "precision": round(tp / predicted.sum(), 3) if predicted.sum() else None,
            "recall": round(tp / actual.sum(), 3) if actual.sum() else None}


def evaluate_road(conn: Connection, metric: str, as_of, horizons, *, threshold: float | None = None,
                  window_days: int = EVALUATION_WINDOW_DAYS, random_state: int = 0,
                  **params) -> dict:
    """Train on what was known at ``as_of``, forecast, and score against later observations.

    For each horizon, the observations made within ``window_days`` of ``as_of + horizon``
    (the one nearest to it per street) are compared with the model's forecast for the
    observation's own date, with persistence (the last value) and with a per-street linear
    trend (since the last resurfacing jump). Threshold crossings count streets at or above the
    threshold at ``as_of``: "crossed" means the observation is below it (for a lower-is-better
    metric: above it).
    """
    horizons = check_horizons(horizons)
    chosen = as_of is None
    scale, as_of = resolve_as_of(conn, metric, as_of)
    if chosen:
        # The newest as-of that leaves the longest horizon (and its window) observable: the
        # last observation itself would leave nothing to score.
        as_of = (as_of - (max(horizons) + window_days) * DAY).normalize()
        first, _last = sql.observation_span(conn, scale.id)
        if as_of <= as_utc(first):
            raise InvalidInput(_(
                "The '{metric}' history ({first} to {last}) is shorter than the {horizon}-day "
                "horizon and its {window}-day window; choose a shorter --horizon.",
                metric=metric, first=as_utc(first).date(),
                last=(as_of + (max(horizons) + window_days) * DAY).date(),
                horizon=max(horizons), window=window_days))
    threshold = default_threshold(scale) if threshold is None else float(threshold)
    ctx = load_road_context(conn, metric, as_of.to_pydatetime())
    model = fit_road_model(ctx, as_of, random_state=random_state, **params)
    features = road_features(ctx, as_of)
    limit = float(scale.to_goodness([threshold])[0])
    report: dict[str, Any]  # the horizons are appended below
    report = {"target": "road-wear", "metric": metric, "as_of": str(as_of.date()),
              "as_of_chosen": (f"as-of {as_of.date()} chosen: the latest date that leaves "
                               f"{max(horizons)} days and the {window_days}-day window of later "
                               "observations to score against; --as-of sets another")
              if chosen else None,
              "model_trained_on": {"from": str(model.train_from.date()),
                                   "to": str(model.train_to.date()), "examples": model.rows},
              "streets_with_history": int(len(features)),
              "window_days": window_days, "threshold": threshold,
              "interval": f"{int(round((1 - model.estimator.alpha) * 100))} %",
              "scoring": ("per street, the observation nearest to as-of + horizon within "
                          f"+/-{window_days} days; forecasts are made for that observation's "
                          "own date"), "horizons": []}
    for horizon in horizons:
        centre = as_of + horizon * DAY
        observed = sql.readings_between(conn, scale.id, "streets",
                                        (centre - window_days * DAY).to_pydatetime(),
                                        (centre + window_days * DAY).to_pydatetime())
        observed["observed_at"] = pd.to_datetime(observed["observed_at"], utc=True)
        observed = observed[observed["asset_id"].isin(features.index)]
        entry = {"horizon_days": horizon,
                 "window": [str((centre - window_days * DAY).date()),
                            str((centre + window_days * DAY).date())],
                 "segments_scored": 0}
        if observed.empty:
            report["horizons"].append(entry)
            continue
        observed = observed.assign(distance=(observed["observed_at"] - centre).abs())
        observed = observed.sort_values(["asset_id", "distance"]).groupby("asset_id").head(1)
        observed["horizon_days"] = ((observed["observed_at"] - as_of) / DAY).to_numpy()
        targets = observed.reset_index(drop=True)
        frame, lower, median, upper = predict_targets(model, features, as_of, targets)
        truth = scale.to_goodness(targets["value"].to_numpy())
        last = frame["last_value"].to_numpy(dtype=float)
        trend = linear_trend(ctx, as_of, targets, features)
        width = scale.max_value - scale.min_value
        entry["segments_scored"] = int(len(targets))
        entry["model"] = {k: round(v * width, 3)
                          for k, v in _errors(median, truth).items()}
        entry["persistence"] = {k: round(v * width, 3) for k, v in _errors(last, truth).items()}
        entry["linear_trend"] = {k: round(v * width, 3) for k, v in _errors(trend, truth).items()}
        entry["model_mae_vs_persistence"] = (round(entry["model"]["mae"]
                                                   / entry["persistence"]["mae"], 3)
                                             if entry["persistence"]["mae"] else None)
        entry["interval_coverage"] = round(float(np.mean((truth >= lower - 1e-9)
                                                         & (truth <= upper + 1e-9))), 3)
        entry["interval_mean_width"] = round(float(np.mean(upper - lower)) * width, 3)
        above = last >= limit
        actual = above & (truth < limit)
        entry["threshold_crossing"] = {
            "streets_above_threshold": int(above.sum()),
            "model": _precision_recall(above & (median < limit), actual),
            # The crossing's interval: crossed by its earliest date (the pessimistic bound
            # below the threshold at the horizon), by its latest (the optimistic one too).
            "model_earliest": _precision_recall(above & (lower < limit), actual),
            "model_latest": _precision_recall(above & (upper < limit), actual),
            "linear_trend": _precision_recall(above & (trend < limit), actual),
            "persistence": _precision_recall(np.zeros(len(above), bool), actual),
            "model_by_share": {
                f"{share:g}": _precision_recall(above & (median - share * (median - lower)
                                                         < limit), actual)
                for share in CROSSING_SHARES},
        }
        report["horizons"].append(entry)
    return report
