"""Rolling-origin backtests of road wear: several as-of dates, each scored only on what came after.

For each origin the model is trained on examples made of observations by that date, and every
street's observation nearest to ``origin + horizon`` (within ``window_days``) is forecast for
its own date. The forecast is compared with persistence (the last value: "the next survey
equals the last one") and a per-street linear trend since the last resurfacing jump. The rows
are pooled per horizon: MAE against both, the share of outcomes inside the 80 % interval, and
threshold crossings (a street at or above the threshold at the origin whose outcome is below
it) found by each method. Persistence never forecasts a crossing, so its recall is 0.

Everything here works on a ``RoadContext`` holding the whole history: the features, the
training examples and the work and programme evidence are cut at each origin (see
``predict.features``), so one read of the database serves every origin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from predict.features import (
    DAY,
    MetricScale,
    RoadContext,
    programme_dates,
    road_features,
)
from predict.road import (
    RoadModel,
    as_utc,
    check_horizons,
    fit_road_model,
    linear_trend,
    predict_targets,
)

ROW_COLUMNS = ["origin", "horizon_days", "asset_id", "days_ahead", "truth", "model", "lower",
               "upper", "persistence", "trend"]


def score_origin(ctx: RoadContext, model: RoadModel, features: pd.DataFrame, as_of,
                 horizons: Sequence[int], window_days: float) -> pd.DataFrame:
    """Forecasts of the observations after ``as_of``, one per street and horizon (goodness).

    Per horizon, each street's observation nearest to ``as_of + horizon`` within
    ``window_days`` is forecast for its own date. Columns: ``ROW_COLUMNS``.
    """
    as_of = as_utc(as_of)
    parts = []
    later = ctx.history[(ctx.history["observed_at"] > as_of)
                        & ctx.history["asset_id"].isin(features.index)]
    for horizon in horizons:
        centre = as_of + horizon * DAY
        near = later[(later["observed_at"] - centre).abs() <= window_days * DAY]
        if near.empty:
            continue
        near = near.assign(distance=(near["observed_at"] - centre).abs())
        near = near.sort_values(["asset_id", "distance"]).groupby("asset_id").head(1)
        targets = pd.DataFrame({"asset_id": near["asset_id"].to_numpy(),
                                "horizon_days": ((near["observed_at"] - as_of) / DAY).to_numpy()})
        frame, lower, median, upper = predict_targets(model, features, as_of, targets)
        parts.append(pd.DataFrame({
            "origin": as_of, "horizon_days": horizon, "asset_id": targets["asset_id"],
            "days_ahead": targets["horizon_days"], "truth": near["goodness"].to_numpy(),
            "model": median, "lower": lower, "upper": upper,
            "persistence": frame["last_value"].to_numpy(float),
            "trend": linear_trend(ctx, as_of, targets, features)}))
    if not parts:
        return pd.DataFrame(columns=ROW_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def _pr(predicted: np.ndarray, actual: np.ndarray) -> dict:
    tp = int(np.sum(predicted & actual))
    return {"predicted": int(predicted.sum()), "actual": int(actual.sum()), "true_positive": tp,
            "precision": round(tp / predicted.sum(), 3) if predicted.sum() else None,
            "recall": round(tp / actual.sum(), 3) if actual.sum() else None}


def summarise(rows: pd.DataFrame, scale: MetricScale, threshold: float) -> dict:
    """Pooled scores of backtest rows per horizon, in the metric's units."""
    width = scale.max_value - scale.min_value
    limit = float(scale.to_goodness([threshold])[0])
    out = {}
    for horizon, part in rows.groupby("horizon_days"):
        truth = part["truth"].to_numpy(float)
        mae = {k: round(float(np.mean(np.abs(part[k].to_numpy(float) - truth))) * width, 4)
               for k in ("model", "persistence", "trend")}
        above = part["persistence"].to_numpy(float) >= limit
        actual = above & (truth < limit)
        lower, upper = part["lower"].to_numpy(float), part["upper"].to_numpy(float)
        per_origin = part.groupby("origin").apply(
            lambda p: float(np.mean(np.abs(p["model"] - p["truth"]))
                            / max(np.mean(np.abs(p["persistence"] - p["truth"])), 1e-12)),
            include_groups=False)
        out[int(horizon)] = {
            "rows": int(len(part)), "origins": int(part["origin"].nunique()),
            "mae": mae,
            "model_vs_persistence": round(mae["model"] / mae["persistence"], 3)
            if mae["persistence"] else None,
            "model_vs_trend": round(mae["model"] / mae["trend"], 3) if mae["trend"] else None,
            "model_vs_persistence_by_origin": {str(k.date()): round(v, 3)
                                               for k, v in per_origin.items()},
            "coverage": round(float(np.mean((truth >= lower - 1e-9) & (truth <= upper + 1e-9))),
                              3),
            "interval_mean_width": round(float(np.mean(upper - lower)) * width, 3),
            "crossings": {
                "streets_above_threshold": int(above.sum()),
                "model": _pr(above & (part["model"].to_numpy(float) < limit), actual),
                # The crossing's interval: by its earliest date (the pessimistic bound below
                # the threshold at the horizon) and by its latest (the optimistic one too).
                "model_earliest": _pr(above & (lower < limit), actual),
                "model_latest": _pr(above & (upper < limit), actual),
                "linear_trend": _pr(above & (part["trend"].to_numpy(float) < limit), actual),
                "persistence": _pr(np.zeros(len(part), bool), actual)},
        }
    return out


def rolling_origins(ctx: RoadContext, horizons: Sequence[int], *, count: int, step_days: int,
                    last: pd.Timestamp | None = None, window_days: float = 15
                    ) -> list[pd.Timestamp]:
    """``count`` origins ``step_days`` apart, the newest leaving the longest horizon scorable.

    A step of whole years (365, 730 ...) steps by calendar years, so yearly origins keep
    their day of the year across leap years.
    """
    end = ctx.history["observed_at"].max()
    newest = (end - (max(horizons) + window_days) * DAY).normalize()
    if last is not None:
        newest = min(newest, as_utc(last))
    step = (pd.DateOffset(years=step_days // 365) if step_days % 365 == 0
            else pd.DateOffset(days=step_days))
    return [newest - i * step for i in reversed(range(count))]


def backtest_road(ctx: RoadContext, origins: Sequence, horizons: Sequence[int], *,
                  window_days: float = 15, threshold: float | None = None,
                  random_state: int = 0, **params) -> tuple[dict, pd.DataFrame]:
    """Train at each origin, forecast, score; the report and the scored rows (goodness)."""
    from predict.road import default_threshold

    horizons = check_horizons(horizons)
    threshold = default_threshold(ctx.scale) if threshold is None else float(threshold)
    parts = []
    trained = []
    for origin in origins:
        origin = as_utc(origin)
        model = fit_road_model(ctx, origin, random_state=random_state, **params)
        features = road_features(ctx, origin)
        rows = score_origin(ctx, model, features, origin, horizons, window_days)
        parts.append(rows)
        trained.append({"origin": str(origin.date()), "examples": model.rows,
                        "streets": int(len(features)), "scored": int(len(rows))})
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ROW_COLUMNS)
    report = {"target": "road-wear", "metric": ctx.scale.name, "threshold": threshold,
              "window_days": window_days, "interval": "80 %", "origins": trained,
              "scoring": ("per origin and street, the observation nearest to origin + horizon "
                          f"within +/-{window_days:g} days, forecast for its own date; the "
                          "model trained only on what was observed by the origin"),
              "horizons": summarise(rows, ctx.scale, threshold)}
    return report, rows


def scenario_context(scenario, metric: str = "city_rating") -> RoadContext:
    """A ``RoadContext`` of a generated survey scenario, without a database.

    The same features and model run on it as on the twin's tables; tests of the model's
    accuracy on a large scenario use it, and ``tests/predict/test_survey_scenario.py`` checks
    that the scenario loaded through the twin's ingest gives the same figures.
    """
    streets = scenario.streets.reset_index(drop=True)
    ids = pd.Series(np.arange(1, len(streets) + 1), index=streets["external_id"])
    frame = pd.DataFrame({
        "external_id": streets["external_id"].to_numpy(),
        "road_class": streets["road_class"].astype("string").to_numpy(),
        "surface": streets["surface"].astype("string").to_numpy(),
        "width_m": streets["width_m"].astype(float).to_numpy(), "lanes": np.nan,
        "resurfaced_on": pd.to_datetime(streets["resurfaced_on"]).to_numpy(),
        "length_m": 100.0, "lon": streets["lon"].to_numpy(), "lat": streets["lat"].to_numpy()},
        index=pd.Index(ids.to_numpy(), name="asset_id"))
    scale = MetricScale(metric, 1, 1.0, 10.0, True)
    s = scenario.surveys
    asset = ids.loc[s["external_id"]].to_numpy()
    history = pd.DataFrame({"asset_id": asset, "observed_at": s["observed_at"].to_numpy(),
                            "goodness": scale.to_goodness(s["rating"])})
    others = {}
    for name in ("cracking_pct", "patching_pct"):
        other = MetricScale(name, 2, 0.0, 100.0, False)
        others[name] = pd.DataFrame({"asset_id": asset, "observed_at": s["observed_at"],
                                     "goodness": other.to_goodness(s[name])}
                                    ).reset_index(drop=True)
    # Neighbours: blocks whose centres lie within 150 m (a block's length and a bit).
    x = streets["lon"].to_numpy() * 94_000.0
    y = streets["lat"].to_numpy() * 111_000.0
    d2 = (x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2
    a, b = np.nonzero((d2 < 150.0 ** 2) & ~np.eye(len(x), dtype=bool))
    work = pd.DataFrame({"asset_id": ids.loc[scenario.work["external_id"]].to_numpy(),
                         "done_at": scenario.work["done_at"].to_numpy(),
                         "action": scenario.work["action"].to_numpy()})
    programme = scenario.programme.assign(
        asset_id=ids.loc[scenario.programme["external_id"]].to_numpy())
    return RoadContext(
        scale=scale, until=s["observed_at"].max().to_pydatetime(), streets=frame,
        history=history, others=others, manholes=pd.Series(dtype=float),
        neighbours=pd.DataFrame({"asset_id": ids.to_numpy()[a],
                                 "neighbour_id": ids.to_numpy()[b]}),
        work=work, programme=programme_dates(programme))
