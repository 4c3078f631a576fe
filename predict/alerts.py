"""Turn forecasts and sensor rules into alerts for crews, and resolve the ones that are over.

One active alert per asset and kind (raising again updates it); an alert whose problem is
gone (a street resurfaced, a sensor that reports normally again) is resolved automatically
with a note, and every change lands in the alert's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy.engine import Engine

from geo import alerts as alert_store
from geo import predictions as sql
from predict import manholes
from predict.features import JUMP_GOODNESS, MetricScale
from predict.road import as_utc, default_threshold

ROAD_WEAR = "road_wear"
ALERT_HORIZON_DAYS = 90
DEFAULT_THRESHOLDS = manholes.Thresholds()


@dataclass
class RefreshReport:
    """What a refresh did, per alert kind."""

    as_of: str
    opened: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def count(self, table: dict, kind: str, n: int = 1) -> None:
        """Add to a per-kind counter."""
        table[kind] = table.get(kind, 0) + n


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"


def road_wear_alerts(engine: Engine, report: RefreshReport, *, metric: str,
                     horizon_days: int, threshold: float | None) -> None:
    """Alert on streets whose stored forecast crosses the threshold within the horizon."""
    with engine.connect() as conn:
        scale = MetricScale.from_row(sql.metric_by_name(conn, metric), metric)
        forecasts = sql.latest_street_predictions(conn, scale.id, horizon_days)
        streets = sql.street_attributes(conn).set_index("asset_id")
        latest = sql.readings_until(conn, [scale.id], "streets",
                                    pd.Timestamp.now(tz="UTC").to_pydatetime())
    if forecasts.empty:
        report.notes.append(f"No stored {horizon_days}-day '{metric}' forecasts: run "
                            f"`twin predict score --metric {metric} --horizon {horizon_days}` "
                            f"first; road-wear alerts were left as they were.")
        return
    threshold = default_threshold(scale) if threshold is None else threshold
    limit = float(scale.to_goodness([threshold])[0])
    latest["observed_at"] = pd.to_datetime(latest["observed_at"], utc=True)
    last = latest.sort_values("observed_at").groupby("asset_id").tail(1).set_index("asset_id")
    still_active = []
    for row in forecasts.itertuples():
        street = streets.loc[row.asset_id]
        as_of = as_utc(row.as_of)
        resurfaced = street["resurfaced_on"]
        if resurfaced is not None and pd.notna(resurfaced) and as_utc(resurfaced) > as_of:
            continue  # resurfaced after the forecast: the forecast no longer holds
        now_value = float(last.at[row.asset_id, "value"]) if row.asset_id in last.index else None
        if now_value is not None and as_utc(last.at[row.asset_id, "observed_at"]) > as_of:
            # A newer observation than the forecast knew: a big improvement is resurfacing.
            forecast_good = float(scale.to_goodness([row.value])[0])
            if float(scale.to_goodness([now_value])[0]) - forecast_good > JUMP_GOODNESS:
                continue
        forecast_good = float(scale.to_goodness([row.value])[0])
        crossing = row.days_to_threshold
        # Alert when the forecast at the horizon is on the bad side of the threshold, or the
        # median path crosses it within the horizon (a street already below it whose forecast
        # is good again, e.g. resurfaced after its last survey, gets none).
        if not (forecast_good < limit or (pd.notna(crossing) and 0 < crossing <= horizon_days)):
            continue
        now_good = None if now_value is None else float(scale.to_goodness([now_value])[0])
        severity = "high" if (now_good is not None and now_good < limit) else "medium"
        if forecast_good < limit - 0.15:
            severity = "high"
        reason = (f"{metric.upper() if len(metric) <= 4 else metric} "
                  f"{_fmt(now_value) if now_value is not None else 'unknown'} now, forecast "
                  f"{_fmt(row.value)} by {row.target_date}, "
                  f"80 %: {_fmt(min(row.lower, row.upper))}-{_fmt(max(row.lower, row.upper))}")
        if pd.notna(crossing):
            reason += (f"; below {threshold:g} already" if crossing == 0
                       else f"; crosses {threshold:g} in about {int(crossing)} days")
        details = {"metric": metric, "now": now_value, "forecast": round(float(row.value), 2),
                   "lower": round(float(row.lower), 2), "upper": round(float(row.upper), 2),
                   "target_date": str(row.target_date), "threshold": threshold,
                   "days_to_threshold": None if pd.isna(crossing) else int(crossing),
                   "model_version": row.model_version, "as_of": str(as_of)}
        with engine.begin() as conn:
            _, new = alert_store.raise_alert(
                conn, kind=ROAD_WEAR, severity=severity, asset_layer="streets",
                asset_id=int(row.asset_id), geom_ewkt=street["geom_ewkt"], reason=reason,
                details=details)
        report.count(report.opened if new else report.kept, ROAD_WEAR)
        still_active.append(("streets", int(row.asset_id)))
    with engine.begin() as conn:
        n = alert_store.resolve_missing(
            conn, kind=ROAD_WEAR, still_active=still_active,
            note="resolved by twin: the street was resurfaced or its forecast no longer "
                 "crosses the threshold")
    report.count(report.resolved, ROAD_WEAR, n)


_REASONS = {
    "manhole_tilt": lambda e: f"cover tilted {e.value:.1f} deg from its baseline since "
                              f"{e.start:%Y-%m-%d %H:%M} UTC (alarm above 10 deg)",
    "manhole_cover_open": lambda e: f"cover open since {e.start:%Y-%m-%d %H:%M} UTC",
    "manhole_flooding": lambda e: f"water at {e.value:.0f} % of the well's depth since "
                                  f"{e.start:%Y-%m-%d %H:%M} UTC (alarm 80 %, overflow 100 %)",
    "manhole_gas": lambda e: f"gas outside the safe limits since {e.start:%Y-%m-%d %H:%M} UTC "
                             f"(O2 19.5-23.5 %, LEL 10 %, CO 35 ppm, H2S 10 ppm)",
    "sensor_silent": lambda e: f"no report for {e.value:.1f} days (alarm after 2 days)",
    "sensor_stuck": lambda e: f"the same value {e.value:g} on every heartbeat since "
                              f"{e.start:%Y-%m-%d %H:%M} UTC",
    "sensor_drift": lambda e: f"dry-weather water level {e.value:.0f} points above its usual "
                              f"level and rising since {e.start:%Y-%m-%d} ",
    "sensor_low_battery": lambda e: f"battery at {e.value:.0f} %",
}


def manhole_alerts(engine: Engine, report: RefreshReport, *, until=None,
                   thresholds: manholes.Thresholds = DEFAULT_THRESHOLDS) -> None:
    """Alert on the manhole rules and sensor faults active now; resolve the ones gone."""
    with engine.connect() as conn:
        last = sql.last_manhole_reading(conn)
        if last is None:
            report.notes.append("No manhole sensor readings: manhole alerts left as they were.")
            return
        until = as_utc(last) if until is None else as_utc(until)
        readings = sql.manhole_readings(conn, (until - pd.Timedelta(days=120)).to_pydatetime(),
                                        until.to_pydatetime())
        sensors = sql.sensor_manholes(conn).set_index("asset_id")
    readings["observed_at"] = pd.to_datetime(readings["observed_at"], utc=True)
    episodes = manholes.rule_episodes(readings, until, thresholds)
    active = episodes[episodes["active"].astype(bool)]
    # Sensors that have reported nothing at all for the whole look-back are silent too.
    for kind in manholes.KINDS:
        still = []
        for e in active[active["kind"] == kind].itertuples():
            if e.asset_id not in sensors.index:
                continue
            sensor = sensors.loc[e.asset_id]
            reason = f"{sensor['external_id']} ({sensor['sensor_id']}): " + _REASONS[kind](e)
            with engine.begin() as conn:
                _, new = alert_store.raise_alert(
                    conn, kind=kind, severity=str(e.severity), asset_layer="manholes",
                    asset_id=int(e.asset_id), geom_ewkt=sensor["geom_ewkt"], reason=reason,
                    details={"since": str(e.start), "value": round(float(e.value), 2),
                             "sensor_id": sensor["sensor_id"], "as_of": str(until)})
            report.count(report.opened if new else report.kept, kind)
            still.append(("manholes", int(e.asset_id)))
        with engine.begin() as conn:
            n = alert_store.resolve_missing(
                conn, kind=kind, still_active=still,
                note="resolved by twin: the sensor reports normal values again")
        report.count(report.resolved, kind, n)


def refresh(engine: Engine, *, metric: str = "pci", horizon_days: int = ALERT_HORIZON_DAYS,
            threshold: float | None = None, until=None) -> RefreshReport:
    """Raise, update and resolve road-wear and manhole alerts."""
    report = RefreshReport(as_of=str(as_utc(until)) if until is not None else "latest data")
    road_wear_alerts(engine, report, metric=metric, horizon_days=horizon_days,
                     threshold=threshold)
    manhole_alerts(engine, report, until=until)
    return report
