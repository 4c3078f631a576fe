"""Road wear on a generated "yearly integer survey" scenario (sample_data/survey_scenario.py).

The scenario has what real city surveys have and the sample lacks: 1-10 integer ratings, a
survey a year or rarer with missing years, inspector noise, resurfacing jumps with no work
record, a paving programme that slips, and a "last resurfaced" column that leaks the future.
Rolling-origin backtests: each origin's model sees only what was observed by then.
"""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from geo import predictions as sql
from geo.errors import InvalidInput
from ingest.metrics import MetricDeclaration, declare_metrics
from ingest.programme import load_programme, load_work_records
from ingest.wide_survey import load_wide_survey
from predict.backtest import backtest_road, scenario_context
from predict.evaluate import backtest
from predict.features import load_road_context, road_features
from sample_data.survey_scenario import generate_scenario, wide_table, write_scenario

HORIZONS = [365, 730, 1095]
WINDOW = 150  # surveys fall June-September: the next year's survey is near origin + 365
ORIGINS = [pd.Timestamp(f"{y}-10-01", tz="UTC") for y in (2019, 2020, 2021)]


def _assert_beats_baselines_and_covers(report):
    for horizon in HORIZONS:
        h = report["horizons"][horizon]
        assert h["rows"] > 300, (horizon, h["rows"])
        assert h["mae"]["model"] < h["mae"]["persistence"], (horizon, h["mae"])
        assert h["mae"]["model"] < h["mae"]["trend"], (horizon, h["mae"])
        assert 0.75 <= h["coverage"] <= 0.85, (horizon, h["coverage"])


def test_the_scenario_is_deterministic_and_has_the_traps_of_real_surveys():
    a, b = generate_scenario(n_blocks=150, seed=5), generate_scenario(n_blocks=150, seed=5)
    pd.testing.assert_frame_equal(a.surveys, b.surveys)
    pd.testing.assert_frame_equal(a.programme, b.programme)
    ratings = a.surveys["rating"]
    assert ratings.between(1, 10).all() and (ratings == ratings.round()).all()
    per_block = a.surveys.groupby("external_id").size()
    assert per_block.max() <= 13 and per_block.min() < 13  # missing years
    step = a.surveys.groupby("external_id")["rating"].diff()
    assert (step >= 3).sum() > 5  # resurfacing jumps...
    assert len(a.work) < (step >= 3).sum()  # ...not all of them recorded
    assert (pd.to_datetime(a.streets["resurfaced_on"]) > pd.Timestamp("2021-10-01")).any()


@pytest.mark.slow
def test_model_beats_persistence_and_trend_and_intervals_hold_80_percent_on_the_scenario():
    ctx = scenario_context(generate_scenario(n_blocks=600, seed=3))
    report, rows = backtest_road(ctx, ORIGINS, HORIZONS, window_days=WINDOW, threshold=5)
    _assert_beats_baselines_and_covers(report)
    # Integer outcomes, continuous forecasts: the forecast is a value, not a rounded rating.
    assert not np.allclose(rows["model"] * 9 + 1, np.round(rows["model"] * 9 + 1))
    # Crossings below 5: the model finds more of them than the linear trend does.
    for horizon in HORIZONS:
        crossings = report["horizons"][horizon]["crossings"]
        assert crossings["model"]["recall"] >= crossings["linear_trend"]["recall"]
        assert crossings["persistence"]["recall"] == 0.0


def test_a_scheduled_resurfacing_resets_the_forecast_in_its_year():
    scenario = generate_scenario(n_blocks=400, seed=3)
    ctx = scenario_context(scenario)
    from predict.road import fit_road_model, forecast

    as_of = pd.Timestamp("2021-10-01", tz="UTC")
    model = fit_road_model(ctx, as_of, max_iter=120)
    features = road_features(ctx, as_of)
    ahead = features[features["programme_offset_days"].between(100, 400)
                     & features["programme_treatment"].eq("mill_and_overlay")]
    assert len(ahead) >= 5
    out = forecast(model, ahead, as_of, [730]).set_index("asset_id")
    # Two years on, past the overlay: better than now, and better than the same streets
    # forecast with the programme taken away.
    without = ahead.assign(programme_offset_days=np.nan, programme_treatment=pd.NA)
    plain = forecast(model, without, as_of, [730]).set_index("asset_id")
    assert (out["value"] > out["last_value"]).mean() > 0.8
    assert (out["value"] - plain["value"]).mean() > 2.0
    # Crossing dates with an interval: the pessimistic bound crosses first, the median next,
    # the optimistic bound last (or not within the look-ahead).
    crossing = forecast(model, features, as_of, [365], threshold=5)
    earliest, median, latest = (crossing[c].to_numpy(float) for c in (
        "crossing_earliest_days", "days_to_threshold", "crossing_latest_days"))
    assert np.isfinite(earliest).sum() > np.isfinite(median).sum() > np.isfinite(latest).sum()
    assert np.isfinite(latest).sum() > 0
    both = np.isfinite(median)
    assert np.isfinite(earliest[both]).all() and (earliest[both] <= median[both]).all()
    later = np.isfinite(latest)
    assert (median[later] <= latest[later]).all()


def test_evidence_from_after_the_as_of_is_not_used():
    scenario = generate_scenario(n_blocks=200, seed=3)
    ctx = scenario_context(scenario)
    as_of = pd.Timestamp("2019-10-01", tz="UTC")
    before = road_features(ctx, as_of)
    # Work done after the as-of, programmes published after it changed, and a "last
    # resurfaced" after the as-of for every street not resurfaced by then.
    later = pd.DataFrame({"asset_id": before.index[::3],
                          "done_at": as_of + pd.Timedelta(days=10),
                          "action": "reconstruction"})
    ctx.work = pd.concat([ctx.work, later], ignore_index=True)
    late = ctx.programme["published_at"] > as_of
    assert late.any()
    ctx.programme.loc[late, "treatment"] = "reconstruction"
    ctx.programme.loc[late, "planned_at"] = as_of + pd.Timedelta(days=30)
    known = pd.to_datetime(ctx.streets["resurfaced_on"]) <= as_of.tz_localize(None)
    ctx.streets["resurfaced_on"] = ctx.streets["resurfaced_on"].where(
        known, pd.Timestamp("2020-05-01"))
    after = road_features(ctx, as_of)
    pd.testing.assert_frame_equal(before, after)


# -- through the twin's database ---------------------------------------------------------------


@pytest.fixture(scope="module")
def twin(sample_engine, tmp_path_factory):
    """The sample's streets with the scenario's surveys, work and programme loaded."""
    with sample_engine.connect() as conn:
        streets = sql.street_attributes(conn)
    blocks = streets[["external_id", "road_class", "surface", "width_m", "lon", "lat"]].assign(
        width_m=streets["width_m"].astype(float).fillna(7.0))
    scenario = generate_scenario(blocks, seed=3)
    paths = write_scenario(scenario, tmp_path_factory.mktemp("scenario"))
    declare_metrics(sample_engine, [
        MetricDeclaration.checked(name="city_rating", unit="rating", min_value=1, max_value=10,
                                  higher_is_better=True, description="rating", where="test"),
        MetricDeclaration.checked(name="cracking_pct", unit="%", min_value=0, max_value=100,
                                  higher_is_better=False, description="cracking", where="test"),
        MetricDeclaration.checked(name="patching_pct", unit="%", min_value=0, max_value=100,
                                  higher_is_better=False, description="patching", where="test")])
    report = load_wide_survey(sample_engine, paths["wide"], paths["mapping"])
    assert report.rows_rejected == 0
    assert report.rows_new == 3 * len(scenario.surveys)
    assert load_work_records(sample_engine, paths["work"]) == len(scenario.work)
    assert load_programme(sample_engine, paths["programme"]) == len(scenario.programme)
    return sample_engine, scenario, paths


def test_the_wide_table_loads_every_survey_once(twin):
    engine, scenario, paths = twin
    with engine.connect() as conn:
        count = conn.execute(sa.text(
            "SELECT count(*) FROM readings r JOIN metrics m ON m.id = r.metric_id "
            "WHERE m.name = 'city_rating'")).scalar_one()
        ctx = load_road_context(conn, "city_rating", pd.Timestamp("2026-01-01").to_pydatetime())
    assert count == len(scenario.surveys)
    assert len(ctx.work) == len(scenario.work) and len(ctx.programme) == len(scenario.programme)
    # Loading the same table again changes nothing.
    again = load_wide_survey(engine, paths["wide"], paths["mapping"])
    assert again.rows_new == 0 and again.rows_unchanged == 3 * len(scenario.surveys)


@pytest.mark.slow
def test_backtest_through_the_twin_writes_a_report_and_beats_the_baselines(twin, tmp_path):
    engine, _, _ = twin
    out = tmp_path / "backtest.html"
    report = backtest(engine, "city_rating", HORIZONS, as_of="2021-10-01", origins=3,
                      step_days=365, window_days=WINDOW, threshold=5, report=out)
    assert [o["origin"] for o in report["origins"]] == ["2019-10-01", "2020-10-01",
                                                          "2021-10-01"]
    for horizon in HORIZONS:
        h = report["horizons"][horizon]
        assert h["mae"]["model"] < h["mae"]["persistence"], (horizon, h["mae"])
        assert h["mae"]["model"] < h["mae"]["trend"], (horizon, h["mae"])
    for horizon in HORIZONS:
        assert 0.75 <= report["horizons"][horizon]["coverage"] <= 0.85, report["horizons"]
    for horizon in HORIZONS:
        crossings = report["horizons"][horizon]["crossings"]
        # The crossing's earliest date finds more crossings than the trend; the interval's
        # dates bracket the median's (earliest finds most, latest fewest); and when the latest
        # date says a street has crossed it is right more often than the trend. (The latest
        # date names a handful of streets at most, or none, so its precision is compared
        # with the trend's where it names any.)
        model, earliest, latest = (crossings[k] for k in ("model", "model_earliest",
                                                          "model_latest"))
        assert earliest["recall"] >= crossings["linear_trend"]["recall"]
        assert earliest["recall"] >= model["recall"] >= latest["recall"]
        if latest["predicted"]:
            assert latest["precision"] >= crossings["linear_trend"]["precision"]
    text = out.read_text()
    assert "data:image/png;base64," in text and "model / persistence" in text
    # (A .png report is written in test_backtest_sample.py.)


def test_bad_programme_and_survey_files_are_refused_in_one_sentence(twin, tmp_path):
    engine, scenario, paths = twin
    bad = tmp_path / "programme.csv"
    bad.write_text("external_id,year,treatment\nNOPE,2027,mill_and_overlay\n")
    with pytest.raises(InvalidInput, match=r"line 2: street 'NOPE' is not in the twin"):
        load_programme(engine, bad)
    street = scenario.streets["external_id"].iloc[0]
    bad.write_text(f"external_id,year,treatment\n{street},2027,paint\n")
    with pytest.raises(InvalidInput, match=r"line 2, treatment: 'paint' is not one of"):
        load_programme(engine, bad)
    table = wide_table(scenario).head(3).astype({"RATING_2015": "object"})
    table.loc[1, "RATING_2015"] = "good"
    wide = tmp_path / "wide.csv"
    table.to_csv(wide, index=False)
    # A cell that is not a number costs its reading, named by the table's own line and column;
    # the rest of the table loads.
    checked = load_wide_survey(engine, wide, paths["mapping"], dry_run=True)
    assert checked.rows_rejected == 1 and checked.rows_unchanged > 0  # loaded by the fixture
    rejects = pd.read_csv(checked.rejects_path, dtype=str)
    assert rejects[["table_line", "table_column", "value"]].values.tolist() == [
        ["3", "RATING_2015", "good"]]
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(paths["mapping"].read_text().replace('survey_day = "07-01"',
                                                            'survey_day = "02-30"'))
    with pytest.raises(InvalidInput, match="survey_day '02-30' must be a day of every year"):
        load_wide_survey(engine, wide, mapping)
    with pytest.raises(InvalidInput, match="--origins"):
        backtest(engine, "city_rating", HORIZONS, origins=40, step_days=365,
                 window_days=WINDOW)
