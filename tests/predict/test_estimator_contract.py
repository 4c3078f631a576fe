"""Every model of the twin follows scikit-learn's estimator contract and lives in the registry.

For each model (road wear, pile volume, new-pile hotspots, manhole rules, request triage):
``__init__`` only stores its parameters, ``get_params``/``set_params``/``clone`` round-trip,
``fit`` returns the model and sets only attributes ending in ``_``, an unfitted model refuses
to predict (``check_is_fitted``), and a model saved to the registry and loaded back predicts
exactly what it predicted before. Models that take a plain matrix also pass scikit-learn's own
``check_estimator``; the others take DataFrames of the twin's rows, so they get these checks.

Data: small synthetic frames where the model takes numbers, the committed sample's sightings
and sensor readings (a real PostGIS) where it takes the twin's rows.
"""

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_estimator,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
)
from sklearn.utils.validation import check_is_fitted

from geo import predictions as sql
from predict import registry, triage
from predict.debris import FEATURES, HotspotClassifier
from predict.estimators import WearForecaster
from predict.manholes import ManholeRules, Thresholds
from predict.pile_volume import PileVolumeModel, load_sightings
from predict.triage import (
    DEPARTMENT_KEYWORDS,
    TriageModel,
    TriageModels,
    load_examples,
    train_and_store,
)

PILE_AS_OF = pd.Timestamp("2026-05-01", tz="UTC")
READINGS_UNTIL = pd.Timestamp("2026-03-01", tz="UTC")


@dataclass
class Case:
    """A model with the data it is fitted on and a way to compare its predictions."""

    name: str
    model: Any
    X: Any
    y: Any
    changed: dict  # a parameter change that set_params must carry

    def predict(self, model) -> Any:
        return model.predict(self.X)


def _wear_case() -> Case:
    rng = np.random.default_rng(3)
    n = 400
    last = rng.uniform(0.3, 1.0, n)
    horizon = rng.choice([30.0, 90.0, 365.0], n)
    age = rng.uniform(0, 20, n)
    X = pd.DataFrame({"last_value": last, "horizon_days": horizon, "age_years": age,
                      "road_class": rng.choice(["primary", "residential"], n)})
    y = np.clip(last - horizon / 3650 * (1 + age / 10) + rng.normal(0, 0.02, n), 0, 1)
    return Case("road_wear", WearForecaster(max_iter=20, min_samples_leaf=10), X, y,
                {"alpha": 0.1})


def _hotspot_case() -> Case:
    rng = np.random.default_rng(5)
    n = 300
    X = pd.DataFrame(rng.poisson(2.0, (n, len(FEATURES))).astype(float), columns=FEATURES)
    X.loc[X.index % 7 == 0, "days_since_last"] = np.nan  # cells never reported
    y = (X["n_90"] + X["ring_90"] / 4 + rng.normal(0, 1, n) > 3).astype(int).to_numpy()
    return Case("hotspots", HotspotClassifier(max_iter=20, min_samples_leaf=5), X, y,
                {"learning_rate": 0.1})


def _triage_case() -> Case:
    examples = load_examples().iloc[::3]  # a third of the labelled examples: enough to check
    return Case("request_triage", TriageModel(keywords=DEPARTMENT_KEYWORDS),
                   list(examples["text"]), examples[["matter", "department"]].to_numpy(object),
                   {"C": 1.0})


@dataclass
class _Piles(Case):
    def predict(self, model) -> Any:
        return model.forecast(self.X, 7)


@dataclass
class _Rules(Case):
    def predict(self, model) -> Any:
        return model.predict(self.X, until=READINGS_UNTIL)


@pytest.fixture(scope="module")
def cases(sample_engine) -> dict[str, Case]:
    with sample_engine.connect() as conn:
        sightings = load_sightings(conn, PILE_AS_OF)
        readings = sql.manhole_readings(conn, (READINGS_UNTIL - pd.Timedelta(days=60))
                                        .to_pydatetime(), READINGS_UNTIL.to_pydatetime())
    readings["observed_at"] = pd.to_datetime(readings["observed_at"], utc=True)
    assert len(sightings) and len(readings)
    built = [
        _wear_case(),
        _Piles("debris_volume", PileVolumeModel(as_of=str(PILE_AS_OF)), sightings, None,
               {"present_days": 10.0}),
        _hotspot_case(),
        _Rules("manholes", ManholeRules(), readings, None,
               {"thresholds": replace(Thresholds(), tilt_deg=5.0)}),
        _triage_case(),
    ]
    return {c.name: c for c in built}


NAMES = ["road_wear", "debris_volume", "hotspots", "manholes", "request_triage"]


def _same(a, b) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", NAMES)
def test_init_only_stores_parameters_and_params_round_trip(cases, name):
    case = cases[name]
    model = case.model
    kind = type(model).__name__
    check_parameters_default_constructible(kind, model)
    check_no_attributes_set_in_init(kind, model)
    check_get_params_invariance(kind, model)
    params = model.get_params()
    assert type(model)(**params).get_params() == params
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    changed = clone(model).set_params(**case.changed)
    assert changed.get_params() == {**params, **case.changed}
    assert model.get_params() == params  # set_params on a clone leaves the original alone


@pytest.mark.parametrize("name", NAMES)
def test_an_unfitted_model_refuses_to_predict(cases, name):
    case = cases[name]
    model = clone(case.model)
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    with pytest.raises(NotFittedError):
        case.predict(model)


@pytest.fixture(scope="module")
def fitted(cases) -> dict[str, Any]:
    out = {}
    for name, case in cases.items():
        model = clone(case.model)
        before = set(vars(model))
        assert model.fit(case.X, case.y) is model, f"{name}: fit must return the model"
        learned = set(vars(model)) - before
        assert learned and all(a.endswith("_") and not a.startswith("_") for a in learned), (
            name, sorted(learned))
        out[name] = model
    return out


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_the_model_with_learned_state_ending_in_underscore(fitted, cases, name):
    model = fitted[name]
    check_is_fitted(model)
    assert model.get_params() == cases[name].model.get_params()  # fit changes no parameter
    # A clone of a fitted model is a new, unfitted model with the same parameters.
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(model))


@pytest.mark.parametrize("name", ["road_wear", "hotspots", "request_triage"])
def test_random_state_is_honoured(fitted, cases, name):
    case = cases[name]
    again = clone(case.model).fit(case.X, case.y)
    _same(case.predict(fitted[name]), case.predict(again))


@pytest.mark.parametrize("name", NAMES)
def test_a_model_saved_to_the_registry_predicts_the_same_when_loaded(engine, fitted, cases,
                                                                      name):
    model, case = fitted[name], cases[name]
    expected = case.predict(model)
    assert len(expected) > 0
    with engine.begin() as conn:
        version = registry.save(conn, target=f"contract_{name}", metric=None, estimator=model,
                                train_from=None, train_to=PILE_AS_OF, rows=len(case.X), metrics={},
                                features=[], params={})
    with engine.connect() as conn:
        loaded, row = registry.load(conn, target=f"contract_{name}")
    assert row["version"] == version and type(loaded) is type(model)
    assert loaded is not model and loaded.get_params() == model.get_params()
    _same(case.predict(loaded), expected)


def test_the_hotspot_classifier_passes_scikit_learns_own_checks():
    # It takes a plain matrix of cell features, so the whole of check_estimator applies.
    check_estimator(HotspotClassifier(max_iter=5, min_samples_leaf=2))


def test_the_manhole_rules_check_their_thresholds_and_readings(cases):
    readings = cases["manholes"].X
    with pytest.raises(ValueError, match="O2 band"):
        ManholeRules(replace(Thresholds(), o2_low_pct=25.0)).fit(readings)
    with pytest.raises(ValueError, match="lack the columns"):
        ManholeRules().fit(readings.drop(columns="metric"))
    # A lower tilt threshold can only flag more tilt.
    strict = ManholeRules(replace(Thresholds(), tilt_deg=1.0)).fit(readings)
    default = ManholeRules().fit(readings)
    tilt = "manhole_tilt"
    n_strict = (strict.predict(readings, until=READINGS_UNTIL)["kind"] == tilt).sum()
    n_default = (default.predict(readings, until=READINGS_UNTIL)["kind"] == tilt).sum()
    assert n_strict >= n_default


def test_a_triage_retrain_reaches_every_worker_and_survives_a_restart(engine):
    # No module holds a model of its own: each process asks the registry for the newest.
    assert not any(isinstance(v, TriageModel) for v in vars(triage).values())
    worker_a, worker_b = TriageModels(engine), TriageModels(engine)  # two processes' lifespans
    _, first = worker_a.current()  # trains and stores the first model: there is none yet
    assert worker_b.current()[1] == first
    texts = ["the zebra crossing paint has worn away", "路灯坏了"]
    with engine.begin() as conn:  # staff relabel a request: a retrain in some other process
        second = train_and_store(conn, [(texts[0], "big", "roads")] * 3)
    assert second != first
    model_a, version_a = worker_a.current()
    model_b, version_b = worker_b.current()
    assert version_a == version_b == second
    restarted, version = TriageModels(engine).current()  # a worker started afresh
    assert version == second
    _same(restarted.predict(texts), model_a.predict(texts))
    _same(model_b.predict(texts), model_a.predict(texts))


def _yearly_wear(n_streets=120, years=8, seed=5):
    """Examples of streets surveyed yearly: a street's rows share its own wear rate."""
    rng = np.random.default_rng(seed)
    rows = []
    for street in range(n_streets):
        rate = rng.uniform(0.01, 0.06)
        for year in range(years):
            for ahead in (1, 2, 3):
                if year + ahead < years:
                    last = rng.uniform(0.3, 1.0)
                    rows.append((street, year, year + ahead, last, 365.0 * ahead, rate,
                                 np.clip(last - rate * ahead + rng.normal(0, 0.03), 0, 1)))
    frame = pd.DataFrame(rows, columns=["street", "cutoff", "target_year", "last_value",
                                        "horizon_days", "rate", "y"])
    # Cracking was only surveyed in the last two years: empty in every earlier row.
    frame["cracking"] = np.where(frame["target_year"] >= years - 2,
                                 rng.uniform(0, 1, len(frame)), np.nan)
    return frame


def test_the_interval_is_calibrated_on_streets_the_calibrated_models_never_saw():
    frame = _yearly_wear()
    X = frame[["last_value", "horizon_days", "rate", "cracking"]]
    fit = {"groups": frame["street"].to_numpy(), "times": frame["target_year"].to_numpy()}
    held = WearForecaster(max_iter=30, min_samples_leaf=10, calibration_fraction=0.4).fit(
        X, frame["y"], **fit)
    time_only = WearForecaster(max_iter=30, min_samples_leaf=10, calibration_fraction=0.4,
                               hold_out_groups=0.0).fit(X, frame["y"], **fit)
    # Half the streets' latest outcomes calibrate; the other half's are used by neither side.
    latest = (frame["target_year"] > np.quantile(frame["target_year"], 0.6)).sum()
    assert time_only.n_calibration_ == latest
    assert 0.35 * latest < held.n_calibration_ < 0.65 * latest
    assert held.n_train_ < time_only.n_train_ < len(frame)
    # A column empty in every row the calibrated models learn from is left out (it made
    # scikit-learn's binning fail), and the forecasts are finite.
    assert list(held.feature_names_in_[~held.used_]) == ["cracking"]
    lower, median, upper = held.predict_interval(X)
    assert np.isfinite(lower).all() and (lower <= median).all() and (median <= upper).all()
    # The widening never shrinks with the horizon among bands with rows of their own.
    own = [a for a, rows in zip(held.band_adjustments_, held.band_rows_, strict=True)
           if rows >= 40]
    assert len(own) >= 2 and own == sorted(own)
    with pytest.raises(ValueError, match="hold_out_groups"):
        WearForecaster(hold_out_groups=1.0).fit(X, frame["y"], **fit)


def test_a_wear_model_stored_before_a_parameter_existed_still_works():
    case = _wear_case()
    model = case.model.fit(case.X, case.y)
    state = model.__getstate__()
    for name in ("hold_out_groups", "refit_bounds", "interval_scaling", "horizon_column"):
        del state[name]
    old = WearForecaster.__new__(WearForecaster)
    old.__setstate__(state)
    params = old.get_params()
    assert (params["hold_out_groups"], params["refit_bounds"]) == (0.0, False)
    assert params["interval_scaling"] == "none"
    clone(old)  # the whole contract holds on it
    assert np.isfinite(old.predict_interval(case.X)[1]).all()
