"""``twin predict evaluate``: honest scores of each target against what happened next."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from geo import predictions as sql
from geo.errors import InvalidInput
from predict import manholes
from predict.debris import evaluate_debris
from predict.pile_volume import evaluate_pile_volume
from predict.road import as_utc, check_horizons, evaluate_road

TARGETS = ("road-wear", "debris", "manholes")


def evaluate_manholes(engine: Engine, as_of, horizon_days: int, faults_csv: Path) -> dict:
    """Precision and recall of the manhole rules over ``(as_of - horizon, as_of]``.

    The detectors see only readings observed by ``as_of`` (and from 60 days before the
    period, for baselines); the faults are the injected ones overlapping the period.
    """
    if not Path(faults_csv).is_file():
        raise InvalidInput(f"Fault list {faults_csv} does not exist; give --truth DIR holding "
                           f"manhole_faults.csv.")
    as_of = as_utc(as_of)
    start = as_of - pd.Timedelta(days=horizon_days)
    with engine.connect() as conn:
        last = sql.last_manhole_reading(conn)
        if last is None:
            raise InvalidInput("There are no manhole sensor readings to evaluate.")
        if as_of.normalize() > as_utc(last).normalize():
            raise InvalidInput(f"As-of {as_of.date()} is after the last sensor reading "
                               f"({as_utc(last).date()}); choose a date on or before it.")
        readings = sql.manhole_readings(conn, (start - pd.Timedelta(days=60)).to_pydatetime(),
                                        as_of.to_pydatetime())
        sensors = sql.sensor_manholes(conn)
    readings["observed_at"] = pd.to_datetime(readings["observed_at"], utc=True)
    episodes = manholes.rule_episodes(readings, as_of)
    episodes = episodes[(pd.to_datetime(episodes["end"], utc=True) >= start)]
    faults = pd.read_csv(faults_csv)
    faults["start"] = pd.to_datetime(faults["start"], utc=True)
    faults["end"] = pd.to_datetime(faults["end"], utc=True)
    faults["asset_id"] = faults["manhole_external_id"].map(
        sensors.set_index("external_id")["asset_id"])
    faults = faults[(faults["start"] <= as_of) & (faults["end"] >= start)
                    & faults["asset_id"].notna()]
    report = manholes.match_faults(episodes, faults)
    return {"target": "manholes", "as_of": str(as_of.date()), "horizon_days": horizon_days,
            "period": [str(start), str(as_of)],
            "low_battery_alerts": int((episodes["kind"] == "sensor_low_battery").sum()),
            **report}


def evaluate(engine: Engine, target: str, as_of, horizons, *, metric: str = "pci",
             truth_dir: Path | None = None, window_days: int = 15) -> dict:
    """Evaluate one target; see ``twin predict evaluate --help``."""
    if target not in TARGETS:
        raise InvalidInput(f"Target '{target}' is not one of {', '.join(TARGETS)}.")
    horizons = check_horizons(horizons)
    if target == "road-wear":
        with engine.connect() as conn:
            return evaluate_road(conn, metric, as_of, horizons, window_days=window_days)
    if as_of is None:
        raise InvalidInput(f"Evaluating {target} needs --as-of.")
    if truth_dir is None:
        from sample_data import SAMPLE_DIR

        truth_dir = Path(SAMPLE_DIR) / "truth"
    if target == "debris":
        with engine.connect() as conn:
            return {"target": "debris", "horizons": [
                evaluate_debris(conn, as_of, h) for h in horizons],
                "pile_volume": evaluate_pile_volume(
                    conn, as_of, horizons, window_days=window_days,
                    truth_csv=Path(truth_dir) / "debris_piles.csv")}
    return {"target": "manholes", "horizons": [
        evaluate_manholes(engine, as_of, h, Path(truth_dir) / "manhole_faults.csv")
        for h in horizons]}
