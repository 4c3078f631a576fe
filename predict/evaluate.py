"""``twin predict evaluate``: honest scores of each target against what happened next."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from geo import predictions as sql
from geo.errors import InvalidInput
from geo.i18n import _
from predict import manholes
from predict.debris import evaluate_debris
from predict.pile_volume import (
    backtest_origins,
    evaluate_pile_volume,
    evaluate_pile_volume_pooled,
    resolve_debris_as_of,
)
from predict.road import as_utc, check_horizons, evaluate_road

TARGETS = ("road-wear", "debris", "manholes")
PILE_BACKTEST_STEP_DAYS = 1  # an origin a day: piles live days, so weekly origins miss most


def evaluate_manholes(engine: Engine, as_of, horizon_days: int, faults_csv: Path) -> dict:
    """Precision and recall of the manhole rules over ``(as_of - horizon, as_of]``.

    The detectors see only readings observed by ``as_of`` (and from 60 days before the
    period, for baselines); the faults are the injected ones overlapping the period.
    """
    if not Path(faults_csv).is_file():
        raise InvalidInput(_("Fault list {path} does not exist; give --truth DIR holding "
                             "manhole_faults.csv.", path=faults_csv))
    as_of = as_utc(as_of)
    start = as_of - pd.Timedelta(days=horizon_days)
    with engine.connect() as conn:
        last = sql.last_manhole_reading(conn)
        if last is None:
            raise InvalidInput(_("There are no manhole sensor readings to evaluate."))
        if as_of.normalize() > as_utc(last).normalize():
            raise InvalidInput(_("As-of {as_of} is after the last sensor reading ({last}); "
                                 "choose a date on or before it.",
                                 as_of=as_of.date(), last=as_utc(last).date()))
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


def _hotspots_or_why_not(conn, as_of, horizon_days: int) -> dict:
    """The new-pile hotspot scores at one horizon, or why there are none.

    A horizon of a few days suits pile volumes but may hold too few new piles to train the
    hotspot model; that says so for the horizon instead of failing the whole evaluation.
    """
    try:
        return evaluate_debris(conn, as_of, horizon_days)
    except InvalidInput as error:
        return {"target": "debris", "horizon_days": horizon_days, "not_evaluated": str(error)}


def backtest_pile_volume(conn, until, horizons, *, window_days: float = 15,
                         step_days: int = PILE_BACKTEST_STEP_DAYS, truth_csv=None) -> dict:
    """Rolling-origin backtest of the per-pile volume forecasts, origins up to ``until``.

    Piles are few at any one date (they are cleared within days), so one as-of date scores a
    handful of sightings. Here an origin every ``step_days`` days, from 90 days after the
    first sighting to ``until``, each fits on the sightings by that origin only and is scored
    on later sightings (which may lie after ``until``); the scores are pooled per horizon:
    MAE of the volume if not cleared against persistence (the last volume seen), and the
    share of later sightings inside the 80 % interval.
    """
    until = resolve_debris_as_of(conn, until)
    first = sql.first_observation(conn, "debris_piles")
    origins = backtest_origins(first, until, step_days=step_days)
    if not origins:
        raise InvalidInput(_("Too little debris history by {until} for a backtest (it starts "
                             "90 days after the first sighting, {first}).",
                             until=until.date(), first=first.date()))
    report = evaluate_pile_volume_pooled(conn, origins, horizons, window_days=window_days,
                                         truth_csv=truth_csv)
    del report["as_of"]
    return {"origins": {"first": str(origins[0].date()), "last": str(origins[-1].date()),
                        "count": len(origins), "step_days": step_days},
            "interval": "80 %", **report}


def backtest(engine: Engine, metric: str, horizons, *, as_of=None, origins: int = 3,
             step_days: int = 365, window_days: float = 15, threshold: float | None = None,
             report: Path | None = None, **params) -> dict:
    """Rolling-origin backtest of road wear: ``origins`` as-of dates ``step_days`` apart.

    The newest origin is ``as_of`` (default: the newest date that leaves the longest horizon
    and its window scorable). The history is read once; each origin's model and features use
    only what was observed by it. ``report`` (.html or .png) gets the plots.
    """
    from predict.backtest import backtest_road, rolling_origins
    from predict.features import load_road_context
    from predict.road import resolve_as_of

    horizons = check_horizons(horizons)
    if origins < 1:
        raise InvalidInput(_("--origins must be at least 1, not {origins}.", origins=origins))
    with engine.connect() as conn:
        scale, last = resolve_as_of(conn, metric, None)
        if as_of is not None:
            resolve_as_of(conn, metric, as_of)  # refuses an as-of outside the history
        ctx = load_road_context(conn, metric, last.to_pydatetime())
    dates = rolling_origins(ctx, horizons, count=origins, step_days=step_days,
                            last=as_utc(as_of) if as_of is not None else None,
                            window_days=window_days)
    first = ctx.history["observed_at"].min()
    if dates[0] <= first:
        raise InvalidInput(_(
            "The '{metric}' history ({first} to {last}) is too short for {origins} origins "
            "{step_days} days apart before {newest}; give fewer --origins, a smaller --step "
            "or a shorter --horizon.", metric=metric, first=first.date(), last=last.date(),
            origins=origins, step_days=step_days, newest=dates[-1].date()))
    result, rows = backtest_road(ctx, dates, horizons, window_days=window_days,
                                 threshold=threshold, **params)
    if report is not None:
        from predict.report import write_report

        result["report"] = str(write_report(result, rows, ctx, report))
    return result


def evaluate(engine: Engine, target: str, as_of, horizons, *, metric: str = "pci",
             truth_dir: Path | None = None, window_days: int = 15) -> dict:
    """Evaluate one target; see ``twin predict evaluate --help``."""
    if target not in TARGETS:
        raise InvalidInput(_("Target '{target}' is not one of {targets}.", target=target,
                             targets=", ".join(TARGETS)))
    horizons = check_horizons(horizons)
    if target == "road-wear":
        with engine.connect() as conn:
            return evaluate_road(conn, metric, as_of, horizons, window_days=window_days)
    if as_of is None:
        raise InvalidInput(_("Evaluating {target} needs --as-of.", target=target))
    if truth_dir is None:
        from sample_data import SAMPLE_DIR

        truth_dir = Path(SAMPLE_DIR) / "truth"
    if target == "debris":
        with engine.connect() as conn:
            return {"target": "debris", "horizons": [
                _hotspots_or_why_not(conn, as_of, h) for h in horizons],
                "pile_volume": evaluate_pile_volume(
                    conn, as_of, horizons, window_days=window_days,
                    truth_csv=Path(truth_dir) / "debris_piles.csv"),
                "pile_volume_backtest": backtest_pile_volume(
                    conn, as_of, horizons, window_days=window_days,
                    truth_csv=Path(truth_dir) / "debris_piles.csv")}
    return {"target": "manholes", "horizons": [
        evaluate_manholes(engine, as_of, h, Path(truth_dir) / "manhole_faults.csv")
        for h in horizons]}
