"""Predictions against a real PostGIS holding the committed sample (a copy per module)."""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from geo import predictions as sql
from geo.errors import InvalidInput, NotFound
from ingest.metrics import MetricDeclaration, declare_metrics
from ingest.pipeline import ingest_file
from predict import alerts, pipeline, registry
from predict.evaluate import evaluate
from predict.features import load_road_context, road_features
from predict.road import check_horizons, fit_road_model, forecast
from sample_data import SAMPLE_DIR

AS_OF = pd.Timestamp("2026-05-01", tz="UTC")
FAST = {"max_iter": 60, "learning_rate": 0.15}  # small models: the tests check behaviour


@pytest.fixture(scope="module")
def sample(sample_engine):
    return sample_engine


@pytest.fixture(scope="module")
def context(sample):
    with sample.connect() as conn:
        return load_road_context(conn, "pci", AS_OF.to_pydatetime())


@pytest.fixture(scope="module")
def model(context):
    return fit_road_model(context, AS_OF, random_state=0, **FAST)


def _metric_id(conn, name):
    return conn.execute(sa.text("SELECT id FROM metrics WHERE name = :n"), {"n": name}).scalar()


# -- leakage ------------------------------------------------------------------------------------


def test_features_ignore_everything_observed_after_the_as_of(sample):
    end = pd.Timestamp("2026-11-01", tz="UTC").to_pydatetime()
    with sample.connect() as conn:
        before = road_features(load_road_context(conn, "pci", end), AS_OF)
        street = int(before.index[0])
        conn.rollback()
        trans = conn.begin()
        later = AS_OF + pd.Timedelta(hours=6)
        for metric, value in (("pci", 3.0), ("iri_m_per_km", 19.0)):
            conn.execute(sa.text(
                "INSERT INTO readings (metric_id, asset_id, observed_at, value, source) "
                "VALUES (:m, :a, :t, :v, 'test') ON CONFLICT DO NOTHING"),
                {"m": _metric_id(conn, metric), "a": street, "t": later.to_pydatetime(),
                 "v": value})
        conn.execute(sa.text(
            "INSERT INTO road_damage (source, external_id, observed_at, damage_class, geom, "
            "street_id) SELECT 'test', 'leak-1', :t, 'D40', ST_StartPoint(geom), id "
            "FROM streets WHERE id = :a"), {"t": later.to_pydatetime(), "a": street})
        after_ctx = load_road_context(conn, "pci", end)
        trans.rollback()
    after = road_features(after_ctx, AS_OF)
    pd.testing.assert_frame_equal(before, after)
    # ... and the same rows do count once they are in the past.
    moved = road_features(after_ctx, AS_OF + pd.Timedelta(days=1))
    assert moved.at[street, "last_value"] == pytest.approx(0.03)


def test_training_examples_use_no_observation_after_the_as_of(context):
    from predict.features import training_pairs

    pairs = training_pairs(context, AS_OF)
    cutoff = pd.to_datetime(pairs["cutoff"], unit="D", utc=True)
    assert (cutoff + pd.to_timedelta(pairs["horizon_days"], unit="D")
            <= AS_OF + pd.Timedelta(seconds=1)).all()


# -- estimator contract and determinism ---------------------------------------------------------


def test_fit_is_deterministic_with_a_fixed_random_state(context, model):
    again = fit_road_model(context, AS_OF, random_state=0, **FAST)
    features = road_features(context, AS_OF)
    a = forecast(model, features, AS_OF, [30, 90])
    b = forecast(again, features, AS_OF, [30, 90])
    pd.testing.assert_frame_equal(a, b)


def test_estimator_follows_the_sklearn_contract(model):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    fresh = clone(model.estimator)
    assert fresh.get_params() == model.estimator.get_params()
    assert not hasattr(fresh, "median_model_")
    with pytest.raises(NotFittedError):
        fresh.predict(pd.DataFrame({"last_value": [0.5]}))


def test_forecasts_stay_inside_the_declared_range(context, model):
    features = road_features(context, AS_OF)
    extreme = features.copy()
    extreme["last_value"] = np.where(np.arange(len(extreme)) % 2, 0.0, 1.0)
    out = forecast(model, extreme, AS_OF, [30, 365, 730], threshold=55)
    for column in ("value", "lower", "upper"):
        assert out[column].between(0, 100).all()
    assert (out["lower"] <= out["value"]).all() and (out["value"] <= out["upper"]).all()


def test_a_city_rating_from_1_to_10_is_forecast_within_1_to_10(sample, tmp_path):
    declare_metrics(sample, [MetricDeclaration.checked(
        name="city_rating", unit="rating", min_value=1, max_value=10, higher_is_better=True,
        description="city rating", where="test")])
    with sample.connect() as conn:
        streets = conn.execute(sa.text(
            "SELECT external_id FROM streets ORDER BY id LIMIT 80")).scalars().all()
    rng = np.random.default_rng(1)
    rows = []
    for i, street in enumerate(streets):
        value = rng.uniform(4, 10)
        for day in range(0, 700, int(rng.integers(60, 120))):
            if i % 7 == 0 and day > 400 and value < 5:
                value = 10.0
            rows.append(("streets", street, "city_rating",
                         (pd.Timestamp("2024-11-05T10:00+08:00") + pd.Timedelta(days=day))
                         .isoformat(), round(float(np.clip(value + rng.normal(0, 0.2), 1, 10)),
                                             1), "city"))
            value -= rng.uniform(0.2, 0.9)
            value = max(value, 1.0)
    path = tmp_path / "ratings.csv"
    pd.DataFrame(rows, columns=["asset_layer", "asset_external_id", "metric", "observed_at",
                                "value", "source"]).to_csv(path, index=False)
    ingest_file(sample, "readings", path, source="city")
    trained = pipeline.train(sample, "city_rating", **FAST)
    out = tmp_path / "forecast.csv"
    pipeline.score(sample, "city_rating", [30, 365, 1000], out=out)
    table = pd.read_csv(out)
    assert list(table.columns) == pipeline.CSV_COLUMNS
    assert len(table) == 80 * 3
    for column in ("value", "lower", "upper"):
        assert table[column].between(1, 10).all()
    assert trained.version.startswith("road_wear-city_rating-")


# -- registry -----------------------------------------------------------------------------------


def test_a_model_survives_the_skops_round_trip(context, model):
    features = road_features(context, AS_OF)
    data = registry.dumps(model.estimator)
    assert not data.startswith(b"\x80")  # not a pickle
    back = registry.loads(data, versions=registry.library_versions())
    frame = forecast(model, features, AS_OF, [90])
    model.estimator = back
    pd.testing.assert_frame_equal(frame, forecast(model, features, AS_OF, [90]))


def test_a_model_from_another_scikit_learn_is_refused_clearly(sample, model):
    data = registry.dumps(model.estimator)
    with pytest.raises(registry.ModelIncompatible, match="scikit-learn 0.24.2 .* train it again"):
        registry.loads(data, versions={"scikit-learn": "0.24.2"}, version="old")
    result = pipeline.train(sample, "pci", "2026-05-01", **FAST)
    with sample.begin() as conn:
        conn.execute(sa.text(
            "UPDATE models SET library_versions = jsonb_set(library_versions, "
            "'{scikit-learn}', '\"0.24.2\"') WHERE version = :v"), {"v": result.version})
        with pytest.raises(registry.ModelIncompatible, match="0.24.2"):
            registry.load(conn, target="road_wear", version=result.version)
        conn.execute(sa.text("DELETE FROM models WHERE version = :v"), {"v": result.version})


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("horizons", [[0], [-30], [30, 0]])
def test_a_horizon_must_be_positive(horizons):
    with pytest.raises(InvalidInput, match="positive number of days"):
        check_horizons(horizons)


def test_bad_inputs_are_refused_in_one_sentence(sample, tmp_path):
    with pytest.raises(InvalidInput, match="not declared"):
        pipeline.train(sample, "no_such_metric")
    with pytest.raises(InvalidInput, match="after the last 'pci' observation"):
        pipeline.train(sample, "pci", "2027-06-01")
    with pytest.raises(InvalidInput, match="no declared direction"):
        pipeline.train(sample, "o2_pct")
    with pytest.raises(InvalidInput, match="positive number of days"):
        evaluate(sample, "road-wear", "2026-05-01", [0])
    with pytest.raises(InvalidInput, match="not one of"):
        evaluate(sample, "potholes", "2026-05-01", [30])
    declare_metrics(sample, [MetricDeclaration.checked(
        name="tiny_rating", unit="rating", min_value=0, max_value=5, higher_is_better=True,
        description=None, where="test")])
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"asset_layer": "streets", "asset_external_id": ["ST-00001", "ST-00002"],
                  "metric": "tiny_rating", "observed_at": "2026-01-01T10:00+08:00",
                  "value": [3, 4], "source": "t"}).to_csv(path, index=False)
    ingest_file(sample, "readings", path, source="t")
    with pytest.raises(InvalidInput, match="Too little 'tiny_rating' history"):
        pipeline.train(sample, "tiny_rating")
    with pytest.raises(NotFound, match="train one"):
        pipeline.score(sample, "tiny_rating", [30])


# -- evaluate -----------------------------------------------------------------------------------


def test_road_wear_evaluation_reports_models_baselines_and_coverage(sample):
    report = evaluate(sample, "road-wear", "2026-05-01", [90])
    assert report["window_days"] == 15 and report["as_of"] == "2026-05-01"
    (h,) = report["horizons"]
    assert h["horizon_days"] == 90 and h["segments_scored"] > 20
    for key in ("model", "persistence", "linear_trend"):
        assert set(h[key]) == {"mae", "rmse"}
    assert 0 <= h["interval_coverage"] <= 1
    assert set(h["threshold_crossing"]["model"]) >= {"precision", "recall"}
    assert h["model"]["mae"] < h["persistence"]["mae"]


def test_road_wear_evaluation_without_as_of_leaves_the_horizon_observable(sample):
    # With no --as-of, the newest date whose horizon can still be scored, said in the report.
    report = evaluate(sample, "road-wear", None, [90])
    with sample.connect() as conn:
        last = conn.execute(sa.text("SELECT max(observed_at) FROM readings r JOIN metrics m "
                                    "ON m.id = r.metric_id WHERE m.name = 'pci'")).scalar_one()
    assert report["as_of"] == str((pd.Timestamp(last) - pd.Timedelta(days=105)).date())
    assert report["horizons"][0]["segments_scored"] > 20
    assert f"as-of {report['as_of']} chosen" in report["as_of_chosen"]


def test_manhole_rules_find_the_injected_faults(sample):
    report = evaluate(sample, "manholes", "2026-10-31", [270])
    (h,) = report["horizons"]
    assert h["faults"] == 28
    assert h["precision"] >= 0.9 and h["recall"] >= 0.9


# -- alerts -------------------------------------------------------------------------------------


def _active(conn, kind):
    return conn.execute(sa.text(
        "SELECT asset_id, id FROM alerts WHERE kind = :k AND status IN "
        "('open', 'acknowledged', 'in_progress') ORDER BY asset_id"), {"k": kind}).all()


@pytest.mark.slow
def test_alert_lifecycle_dedup_and_auto_resolve(sample):
    pipeline.train(sample, "pci", **FAST)
    pipeline.score(sample, "pci", [90])
    first = alerts.refresh(sample)
    assert first.opened.get("road_wear", 0) > 0
    with sample.connect() as conn:
        active = _active(conn, "road_wear")
        events = conn.execute(sa.text("SELECT count(*) FROM alert_events")).scalar()
    second = alerts.refresh(sample)
    assert second.opened.get("road_wear", 0) == 0
    assert second.kept["road_wear"] == len(active)
    with sample.connect() as conn:
        assert _active(conn, "road_wear") == active  # same alerts, no duplicates
        assert conn.execute(sa.text("SELECT count(*) FROM alert_events")).scalar() == events

    # A street resurfaced after its forecast: its alert resolves itself, with history.
    street, alert_id = active[0]
    with sample.begin() as conn:
        conn.execute(sa.text("UPDATE streets SET resurfaced_on = '2026-12-01' WHERE id = :s"),
                     {"s": street})
    third = alerts.refresh(sample)
    assert third.resolved["road_wear"] == 1
    with sample.connect() as conn:
        history = conn.execute(sa.text(
            "SELECT to_status, note FROM alert_events WHERE alert_id = :a ORDER BY id"),
            {"a": alert_id}).all()
    assert [h.to_status for h in history] == ["open", "resolved"]
    assert "resurfaced" in history[-1].note

    # A tilted cover raises an alert; the sensor's next normal heartbeat resolves it.
    with sample.connect() as conn:
        manhole = conn.execute(sa.text(
            "SELECT id FROM manholes WHERE sensor_id IS NOT NULL ORDER BY id LIMIT 1")).scalar()
        last = conn.execute(sa.text(
            "SELECT max(observed_at) FROM readings WHERE asset_id = :m"), {"m": manhole}
        ).scalar()
        ids = {n: _metric_id(conn, n) for n in ("tilt_deg", "battery_pct")}
    tilted = pd.Timestamp(last) + pd.Timedelta(hours=1)
    fixed = tilted + pd.Timedelta(hours=5)
    with sample.begin() as conn:
        for at, tilt in ((tilted, 30.0), (fixed, 0.8)):
            for metric, value in (("tilt_deg", tilt), ("battery_pct", 60.0)):
                conn.execute(sa.text(
                    "INSERT INTO readings (metric_id, asset_id, observed_at, value, source) "
                    "VALUES (:m, :a, :t, :v, 'test')"),
                    {"m": ids[metric], "a": manhole, "t": at.to_pydatetime(), "v": value})
    raised = alerts.refresh(sample, until=tilted)
    assert raised.opened.get("manhole_tilt") == 1
    with sample.connect() as conn:
        (tilt_alert,) = _active(conn, "manhole_tilt")
        reason = conn.execute(sa.text("SELECT reason FROM alerts WHERE id = :a"),
                              {"a": tilt_alert.id}).scalar()
    assert tilt_alert.asset_id == manhole and "deg from its baseline" in reason
    recovered = alerts.refresh(sample, until=fixed)
    assert recovered.resolved.get("manhole_tilt") == 1
    with sample.connect() as conn:
        assert _active(conn, "manhole_tilt") == []


def test_scores_land_in_predictions_with_the_latest_per_street(sample):
    result = pipeline.score(sample, "pci", [30, 90])
    with sample.connect() as conn:
        rows = sql.predictions_of_run(conn, result.run_id)
        latest = sql.latest_street_predictions(conn, _metric_id(conn, "pci"), 30)
    assert len(rows) == result.rows == 2 * result.streets
    assert (latest["model_version"] == result.model_version).all()
    assert rows["value"].between(0, 100).all()


# -- debris: each pile's expected volume ----------------------------------------------------------

PILE_AS_OF = pd.Timestamp("2026-05-01", tz="UTC")
PILE_TRUTH = SAMPLE_DIR / "truth" / "debris_piles.csv"


def _pile_forecast(sightings, as_of, horizons=(1, 3, 7)):
    from predict import pile_volume

    model, piles = pile_volume.fit_pile_model(sightings, as_of)
    present = pile_volume.present_piles(model, piles, as_of)
    return pd.concat([pile_volume.forecast_piles(model, present, as_of, h) for h in horizons],
                     ignore_index=True)


def test_pile_forecasts_ignore_sightings_after_the_as_of(sample):
    from predict import pile_volume

    with sample.connect() as conn:
        everything = pile_volume.load_sightings(conn, "2026-11-01")
        by_as_of = pile_volume.load_sightings(conn, PILE_AS_OF)
    assert (by_as_of["observed_at"] <= PILE_AS_OF).all()
    before = _pile_forecast(everything, PILE_AS_OF)
    assert len(before) > 0
    pd.testing.assert_frame_equal(before, _pile_forecast(by_as_of, PILE_AS_OF))
    # A huge later sighting of a present pile, and a new pile, change nothing as of the date...
    ref = before["pile_ref"].iloc[0]
    later = everything[everything["pile_ref"] == ref].tail(1).assign(
        id=10**9, observed_at=PILE_AS_OF + pd.Timedelta(hours=12), volume_m3=500.0)
    fresh = later.assign(id=10**9 + 1, pile_ref="PILE-NEW", volume_m3=50.0)
    changed = pd.concat([everything, later, fresh], ignore_index=True)
    pd.testing.assert_frame_equal(before, _pile_forecast(changed, PILE_AS_OF))
    # ... but do count once they are in the past.
    after = _pile_forecast(changed, PILE_AS_OF + pd.Timedelta(days=1))
    assert after.loc[after["pile_ref"] == ref, "last_volume"].eq(500.0).all()


def test_pile_forecasts_are_sane_on_the_sample(sample):
    from predict.pile_volume import evaluate_pile_volume_pooled

    dates = [d.date() for d in pd.date_range("2025-03-01", "2026-10-01", freq="7D")]
    with sample.connect() as conn:
        report = evaluate_pile_volume_pooled(conn, dates, [1, 3, 30], truth_csv=PILE_TRUTH)
    by_h = {h["horizon_days"]: h for h in report["horizons"]}
    assert by_h[1]["piles_forecast"] > 50
    p = [by_h[h]["mean_p_present"] for h in (1, 3, 30)]
    assert 0 < p[2] <= p[1] <= p[0] < 1  # clearing only ever becomes more likely
    for h in (1, 3, 30):
        truth = by_h[h]["against_truth"]
        assert truth["mae_expected"] < 0.5 * truth["mae_persistence"]
        assert truth["coverage"] >= 0.75
    # Piles seen again are, by definition, not cleared: there the "if still there" volume
    # (last level + growth) must beat persistence.
    again = by_h[3]["observed_again"]
    assert again["piles"] >= 20 and again["mae_if_present"] < again["mae_persistence"]


def test_debris_scores_land_in_predictions_against_the_latest_sighting(sample, tmp_path):
    from predict.pile_volume import PileVolumeModel

    out = tmp_path / "piles.csv"
    result = pipeline.score_debris(sample, [1, 7], PILE_AS_OF, out=out)
    assert result.rows == 2 * result.streets > 0
    with sample.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT p.subject, p.asset_id, p.value, p.lower, p.upper, p.metric_id, "
            "d.pile_ref, d.observed_at, (SELECT max(observed_at) FROM debris_piles e "
            "WHERE e.pile_ref = d.pile_ref AND e.observed_at <= :t) AS latest "
            "FROM predictions p JOIN debris_piles d ON d.id = p.asset_id "
            "WHERE p.run_id = :r"), {"r": result.run_id, "t": PILE_AS_OF}).mappings().all()
        shown = sql.predictions_of_run(conn, result.run_id)
        estimator, _ = registry.load(conn, target="debris_volume",
                                     version=result.model_version)
    assert len(rows) == result.rows
    for row in rows:
        assert row["subject"] == row["pile_ref"] and row["observed_at"] == row["latest"]
        assert 0 <= row["lower"] <= row["upper"] and row["value"] >= 0
        assert row["metric_id"] is None
    assert set(shown["external_id"]) == {r["subject"] for r in rows}
    assert isinstance(estimator, PileVolumeModel)
    table = pd.read_csv(out)
    assert list(table.columns) == pipeline.DEBRIS_CSV_COLUMNS and len(table) == result.rows
