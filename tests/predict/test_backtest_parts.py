"""A backtest's parts: its origins, and the linear-trend baseline it scores the model against."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from predict.backtest import rolling_origins, scenario_context
from predict.features import DAY, JUMP_GOODNESS, road_features
from predict.road import linear_trend
from sample_data.survey_scenario import generate_scenario


def test_the_trend_is_each_streets_least_squares_line_since_its_last_resurfacing():
    ctx = scenario_context(generate_scenario(n_blocks=80, seed=11))
    h = ctx.history
    as_of = h["observed_at"].min() + (h["observed_at"].max() - h["observed_at"].min()) * 0.7
    features = road_features(ctx, as_of)
    later = h[(h["observed_at"] > as_of) & h["asset_id"].isin(features.index)]
    targets = pd.DataFrame({"asset_id": later["asset_id"].to_numpy(),
                            "horizon_days": ((later["observed_at"] - as_of) / DAY).to_numpy()})
    got = linear_trend(ctx, as_of, targets, features)

    expected, resurfaced = [], 0
    for street, days in targets.itertuples(index=False):
        seen = h[(h["asset_id"] == street) & (h["observed_at"] <= as_of)].sort_values(
            "observed_at")
        jumps = np.flatnonzero(np.diff(seen["goodness"].to_numpy()) > JUMP_GOODNESS)
        if len(jumps):
            seen, resurfaced = seen.iloc[jumps[-1] + 1:], resurfaced + 1
        if len(seen) < 2:
            expected.append(features.at[street, "last_value"])
            continue
        t = ((seen["observed_at"] - as_of) / DAY).to_numpy()
        slope, intercept = np.polyfit(t, seen["goodness"].to_numpy(), 1)
        expected.append(intercept + slope * days)
    assert len(targets) > 200 and resurfaced > 20  # many streets, some resurfaced on the way
    np.testing.assert_allclose(got, np.clip(expected, 0.0, 1.0), rtol=0, atol=1e-9)


def _history_until(end: str) -> SimpleNamespace:
    """As much of a context as rolling_origins reads: observations up to ``end``."""
    return SimpleNamespace(history=pd.DataFrame({"observed_at": pd.to_datetime(
        ["2019-05-01 00:00", end], format="ISO8601", utc=True)}))


def test_one_origin_leaves_the_longest_horizon_and_its_window_scorable():
    ctx = _history_until("2024-06-20 13:30")
    # 365 days and the 15-day window before the last observation, at midnight.
    assert rolling_origins(ctx, [90, 365], count=1, step_days=365) == [
        pd.Timestamp("2023-06-06", tz="UTC")]
    assert rolling_origins(ctx, [90], count=1, step_days=365, last="2021-01-01") == [
        pd.Timestamp("2021-01-01", tz="UTC")]  # an earlier last origin asked for wins


def test_yearly_origins_keep_their_day_across_leap_years_and_others_step_in_days():
    ctx = _history_until("2025-03-16 00:00")
    yearly = rolling_origins(ctx, [365], count=3, step_days=365, window_days=0)
    assert yearly == [pd.Timestamp(d, tz="UTC") for d in ("2022-03-16", "2023-03-16",
                                                         "2024-03-16")]
    quarterly = rolling_origins(ctx, [30], count=3, step_days=90, window_days=0)
    assert list(np.diff(quarterly)) == [pd.Timedelta(days=90)] * 2
    assert quarterly[-1] == pd.Timestamp("2025-02-14", tz="UTC")
