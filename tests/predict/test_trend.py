"""The linear-trend baseline the backtests score the model against."""

import numpy as np
import pandas as pd

from predict.backtest import scenario_context
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
