"""Turn forecasts and sensor rules into alerts for crews, and resolve the ones that are over.

One active alert per asset and kind (raising again updates it); an alert whose problem is
gone (a street resurfaced, a sensor that reports normally again) is resolved automatically
with a note, and every change lands in the alert's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy.engine import Engine

from geo import alerts as alert_store
from geo import predictions as sql
from geo.i18n import N_, deferred
from geo.vocabulary import DAMAGE_NAMES
from predict import manholes
from predict.features import JUMP_GOODNESS, MetricScale, programme_dates
from predict.road import as_utc, default_threshold, programme_note

ROAD_WEAR = "road_wear"
DEBRIS = "debris_pile"
DAMAGE = "road_damage"
ALERT_HORIZON_DAYS = 90
# Debris and damage alerts look at what was seen in the last two weeks before the newest report.
RECENT_DAYS = 14
DEBRIS_VOLUME_M3 = 5.0  # a pile this large is a crew's job (medium), from 10 m3 high
DEBRIS_LARGE_M3 = 10.0

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


def _raise(engine: Engine, report: RefreshReport, still: list[tuple[str, int]] | None,
           **alert) -> None:
    """Raise or update one alert (``geo.alerts.raise_alert``'s keywords) in its own transaction.

    Counts it as opened or kept and notes its asset in ``still`` (the alerts a refresh keeps
    active); an alert a crew settled after this evidence stays settled and is not counted.
    """
    with engine.begin() as conn:
        alert_id, new = alert_store.raise_alert(conn, **alert)
    if alert_id is None:
        return
    report.count(report.opened if new else report.kept, alert["kind"])
    if still is not None:
        still.append((alert["asset_layer"], alert["asset_id"]))


def _resolve_missing(engine: Engine, report: RefreshReport, *, kind: str,
                     still: list[tuple[str, int]], among: list[tuple[str, int]] | None,
                     note: str) -> None:
    """Resolve the active alerts of ``kind`` not in ``still`` (within ``among``) and count them."""
    with engine.begin() as conn:
        n = alert_store.resolve_missing(conn, kind=kind, still_active=still, among=among,
                                        note=note)
    report.count(report.resolved, kind, n)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"


def _day(value) -> dict:
    """A date kept in a message: written the reader's way (geo.i18n.render)."""
    return {"date": f"{pd.Timestamp(value):%Y-%m-%d}"}


# "3 potholes": the count and the class's name, both in the reader's language.
_DAMAGE_COUNTS = {
    "D00": (N_("{n} longitudinal crack"), N_("{n} longitudinal cracks")),
    "D10": (N_("{n} transverse crack"), N_("{n} transverse cracks")),
    "D20": (N_("{n} alligator crack"), N_("{n} alligator cracks")),
    "D40": (N_("{n} pothole"), N_("{n} potholes")),
}


def _damage_count(code: str, n: int) -> dict:
    one, many = _DAMAGE_COUNTS.get(code, (N_("{n} {name}"), N_("{n} {name}")))
    name = deferred(DAMAGE_NAMES[code]) if code in DAMAGE_NAMES else code
    return deferred(one if n == 1 else many, n=n, name=name)


def _joined(parts: list[dict]) -> dict:
    """Messages joined into a list ("a, b, c"), the joining words in the reader's language."""
    if not parts:
        return deferred("nothing")
    joined = parts[0]
    for part in parts[1:]:
        joined = deferred("{first}, {second}", first=joined, second=part)
    return joined


def _text(value) -> str | None:
    """A text column's value, or None for SQL NULL (which pandas reads as NaN)."""
    return None if value is None or pd.isna(value) else str(value)


def _metric_label(metric: str) -> str:
    return metric.upper() if len(metric) <= 4 else metric


def survey_alerts(engine: Engine, report: RefreshReport, *, metric: str,
                  threshold: float | None, asset_ids: list[int] | None = None
                  ) -> tuple[list[tuple[str, int]], set[int]]:
    """Alert on streets whose latest survey crossed below the threshold.

    A crossing is a survey below the threshold whose previous survey on the same surface (since
    ``resurfaced_on``) was not, or that is the first survey of that surface, or the first
    since a crew settled (resolved or dismissed) the street's last alert: the crew's word
    stands until a survey made after it says otherwise. A street that was below at its
    previous survey too is planning backlog (``GET /work/backlog``), not a new alert, but an
    active alert on it stays active.

    Returns the (layer, id) of streets whose alert is active now, and the ids of the streets
    that are below the threshold.
    """
    with engine.connect() as conn:
        scale = MetricScale.from_row(sql.metric_by_name(conn, metric), metric)
        surveys = sql.street_surveys(conn, scale.id, asset_ids)
    threshold = default_threshold(scale) if threshold is None else threshold
    limit = float(scale.to_goodness([threshold])[0])
    with engine.connect() as conn:
        active = set(alert_store.active_asset_ids(conn, ROAD_WEAR))
        settled = alert_store.settled_at(conn, ROAD_WEAR)
    still, below = [], set()
    label = _metric_label(metric)
    for row in surveys.itertuples():
        now_good = float(scale.to_goodness([row.value])[0])
        if now_good >= limit:
            continue
        below.add(int(row.asset_id))
        has_prev = row.prev_value is not None and pd.notna(row.prev_value)
        seen = as_utc(row.observed_at)
        crew_said = settled.get(int(row.asset_id))
        fresh = (not has_prev or float(scale.to_goodness([row.prev_value])[0]) >= limit
                 or (crew_said is not None
                     and as_utc(row.prev_at) <= as_utc(crew_said) < seen))
        if not fresh:
            if int(row.asset_id) in active:
                still.append(("streets", int(row.asset_id)))
                report.count(report.kept, ROAD_WEAR)
            continue
        # Kept as messages (geo.i18n.deferred): each reader reads them in their language.
        if has_prev:
            before = deferred("previous survey {value} on {day}", value=_fmt(row.prev_value),
                              day=_day(as_utc(row.prev_at)))
        elif row.resurfaced_on is not None and pd.notna(row.resurfaced_on):
            before = deferred("first survey since resurfacing on {day}",
                              day=_day(row.resurfaced_on))
        else:
            before = deferred("its first survey")
        evidence = f"{label} {_fmt(row.value)} surveyed {seen:%Y-%m-%d}"
        reason = deferred("{metric} {value} at the survey of {day}: below {threshold} ({before})",
                          metric=label, value=_fmt(row.value), day=_day(seen),
                          threshold=f"{threshold:g}", before=before)
        _raise(engine, report, still, kind=ROAD_WEAR, severity="high", asset_layer="streets",
               asset_id=int(row.asset_id), geom_ewkt=row.geom_ewkt, reason=reason,
               details={"metric": metric, "now": float(row.value), "threshold": threshold,
                        "days_to_threshold": 0, "surveyed_at": str(seen),
                        "previous": None if not has_prev else float(row.prev_value)},
               evidence_at=seen.to_pydatetime(), evidence=evidence)
    return still, below


def road_wear_alerts(engine: Engine, report: RefreshReport, *, metric: str,
                     horizon_days: int, threshold: float | None,
                     asset_ids: list[int] | None = None) -> None:
    """Alert on streets that crossed the threshold at their last survey or are forecast to.

    A forecast alert is for a street above the threshold now whose stored forecast crosses
    it within the horizon; streets below it already are the survey rule's (``survey_alerts``).
    With ``asset_ids``, only those streets are evaluated (and only their alerts resolved).
    """
    still_active, below = survey_alerts(engine, report, metric=metric, threshold=threshold,
                                        asset_ids=asset_ids)
    with engine.connect() as conn:
        scale = MetricScale.from_row(sql.metric_by_name(conn, metric), metric)
        forecasts = sql.latest_street_predictions(conn, scale.id, horizon_days)
        streets = sql.street_attributes(conn).set_index("asset_id")
        surveys = sql.street_surveys(conn, scale.id).set_index("asset_id")
        programme = programme_dates(sql.street_programme(conn, datetime.now(UTC)))
    if forecasts.empty:
        report.notes.append(f"No stored {horizon_days}-day '{metric}' forecasts: run "
                            f"`twin predict score --metric {metric} --horizon {horizon_days}` "
                            f"first; forecast road-wear alerts were left as they were.")
        return
    if asset_ids is not None:  # after the check above: a district may have none of its own
        forecasts = forecasts[forecasts["asset_id"].isin(asset_ids)]
    threshold = default_threshold(scale) if threshold is None else threshold
    limit = float(scale.to_goodness([threshold])[0])
    raised = {asset for _, asset in still_active}
    label = _metric_label(metric)
    for row in forecasts.itertuples():
        if row.asset_id in raised or row.asset_id in below:
            continue
        street = streets.loc[row.asset_id]
        as_of = as_utc(row.as_of)
        resurfaced = street["resurfaced_on"]
        if resurfaced is not None and pd.notna(resurfaced) and as_utc(resurfaced) > as_of:
            continue  # resurfaced after the forecast: the forecast no longer holds
        surveyed = row.asset_id in surveys.index
        now_value = float(surveys.at[row.asset_id, "value"]) if surveyed else None
        forecast_good = float(scale.to_goodness([row.value])[0])
        if now_value is not None and as_utc(surveys.at[row.asset_id, "observed_at"]) > as_of:
            # A newer observation than the forecast knew: a big improvement is resurfacing.
            if float(scale.to_goodness([now_value])[0]) - forecast_good > JUMP_GOODNESS:
                continue
        crossing = row.days_to_threshold
        if not (forecast_good < limit or (pd.notna(crossing) and 0 < crossing <= horizon_days)):
            continue
        # Calibrated so the top tiers stay small: within a month is high, later is medium.
        soon = pd.notna(crossing) and crossing <= 30
        severity = "high" if soon else "medium"
        values = {"metric": label, "forecast": _fmt(row.value), "day": _day(row.target_date),
                  "low": _fmt(min(row.lower, row.upper)), "high": _fmt(max(row.lower, row.upper)),
                  "now": deferred("unknown") if now_value is None else _fmt(now_value)}
        if pd.notna(crossing):
            reason = deferred("{metric} {now} now, forecast {forecast} by {day}, 80 %: "
                              "{low}-{high}; crosses {threshold} in about {days} days",
                              threshold=f"{threshold:g}", days=int(crossing), **values)
        else:
            reason = deferred("{metric} {now} now, forecast {forecast} by {day}, 80 %: "
                              "{low}-{high}", **values)
        planned = programme[(programme["asset_id"] == row.asset_id)
                            & (programme["planned_at"] > as_of)
                            & (programme["planned_at"] <= as_utc(row.target_date))]
        for entry in planned.itertuples():
            reason = deferred("{reason}; {note}", reason=reason,
                              note=programme_note(int(entry.year), entry.treatment))
        details = {"metric": metric, "now": now_value, "forecast": round(float(row.value), 2),
                   "lower": round(float(row.lower), 2), "upper": round(float(row.upper), 2),
                   "target_date": str(row.target_date), "threshold": threshold,
                   "days_to_threshold": None if pd.isna(crossing) else int(crossing),
                   "model_version": row.model_version, "as_of": str(as_of)}
        _raise(engine, report, still_active, kind=ROAD_WEAR, severity=severity,
               asset_layer="streets", asset_id=int(row.asset_id), geom_ewkt=street["geom_ewkt"],
               reason=reason, details=details, evidence_at=as_of.to_pydatetime(),
               evidence=f"forecast from data up to {as_of:%Y-%m-%d} (model "
                        f"{row.model_version}): {label} {_fmt(row.value)} by "
                        f"{row.target_date}")
    _resolve_missing(
        engine, report, kind=ROAD_WEAR, still=still_active,
        among=None if asset_ids is None else [("streets", int(a)) for a in asset_ids],
        note="resolved by twin: the street was resurfaced or its forecast no longer "
             "crosses the threshold")


# Each rule's reason, kept as a message (geo.i18n.deferred) for its reader's language.
_REASONS = {
    "manhole_tilt": lambda e: deferred(
        "cover tilted {value} deg from its baseline since {since} UTC (alarm above 10 deg)",
        value=f"{e.value:.1f}", since=f"{e.start:%Y-%m-%d %H:%M}"),
    "manhole_cover_open": lambda e: deferred("cover open since {since} UTC",
                                             since=f"{e.start:%Y-%m-%d %H:%M}"),
    "manhole_flooding": lambda e: deferred(
        "water at {value} % of the well's depth since {since} UTC (alarm 80 %, overflow 100 %)",
        value=f"{e.value:.0f}", since=f"{e.start:%Y-%m-%d %H:%M}"),
    "manhole_gas": lambda e: deferred(
        "gas outside the safe limits since {since} UTC (O2 19.5-23.5 %, LEL 10 %, CO 35 ppm, "
        "H2S 10 ppm)", since=f"{e.start:%Y-%m-%d %H:%M}"),
    "sensor_silent": lambda e: deferred("no report for {value} days (alarm after 2 days)",
                                        value=f"{e.value:.1f}"),
    "sensor_stuck": lambda e: deferred("the same value {value} on every heartbeat since {since} "
                                       "UTC", value=f"{e.value:g}",
                                       since=f"{e.start:%Y-%m-%d %H:%M}"),
    "sensor_drift": lambda e: deferred(
        "dry-weather water level {value} points above its usual level and rising since {day}",
        value=f"{e.value:.0f}", day=_day(e.start)),
    "sensor_low_battery": lambda e: deferred("battery at {value} %", value=f"{e.value:.0f}"),
}


def manhole_alerts(engine: Engine, report: RefreshReport, *, until=None,
                   thresholds: manholes.Thresholds = DEFAULT_THRESHOLDS,
                   asset_ids: list[int] | None = None) -> None:
    """Alert on the manhole rules and sensor faults active now; resolve the ones gone.

    With ``asset_ids``, only those manholes are evaluated (and only their alerts resolved).
    The evidence of an alert is the start of its episode (the reading that crossed), so an
    alert a crew settled is raised again only by a crossing after that.
    """
    with engine.connect() as conn:
        last = sql.last_manhole_reading(conn)
        if last is None:
            report.notes.append("No manhole sensor readings: manhole alerts left as they were.")
            return
        until = as_utc(last) if until is None else as_utc(until)
        readings = sql.manhole_readings(conn, (until - pd.Timedelta(days=120)).to_pydatetime(),
                                        until.to_pydatetime(), asset_ids)
        sensors = sql.sensor_manholes(conn).set_index("asset_id")
    readings["observed_at"] = pd.to_datetime(readings["observed_at"], utc=True)
    episodes = manholes.rule_episodes(readings, until, thresholds)
    active = episodes[episodes["active"].astype(bool)]
    scope = None if asset_ids is None else [("manholes", int(a)) for a in asset_ids]
    # Sensors that have reported nothing at all for the whole look-back are silent too.
    for kind in manholes.KINDS:
        still: list[tuple[str, int]] = []
        for e in active[active["kind"] == kind].itertuples():
            if e.asset_id not in sensors.index:
                continue
            sensor = sensors.loc[e.asset_id]
            reason = deferred("{manhole} ({sensor}): {what}", manhole=sensor["external_id"],
                              sensor=sensor["sensor_id"], what=_REASONS[kind](e))
            start = as_utc(e.start)
            _raise(engine, report, still, kind=kind, severity=str(e.severity),
                   asset_layer="manholes", asset_id=int(e.asset_id),
                   geom_ewkt=sensor["geom_ewkt"], reason=reason,
                   details={"since": str(e.start), "value": round(float(e.value), 2),
                            "sensor_id": sensor["sensor_id"], "as_of": str(until)},
                   evidence_at=start.to_pydatetime(),
                   evidence=f"{kind.replace('_', ' ')} from {start:%Y-%m-%d %H:%M} UTC "
                            f"(value {float(e.value):g})")
        _resolve_missing(engine, report, kind=kind, still=still, among=scope,
                         note="resolved by twin: the sensor reports normal values again")


def evaluate_assets(engine: Engine, asset_ids: list[int], *, metric: str = "pci",
                    threshold: float | None = None) -> RefreshReport:
    """Evaluate the rules of the assets that have new readings (what the job queue runs).

    Manholes: every sensor rule, raising and resolving their alerts. Streets: the survey rule
    (a survey that crossed the threshold raises an alert); forecast alerts and resolving them
    wait for the scheduled refresh, which sees the whole picture.
    """
    report = RefreshReport(as_of="new readings")
    with engine.connect() as conn:
        manhole_ids = sql.manhole_ids(conn, asset_ids)
        street_ids = sql.street_ids(conn, asset_ids)
    if manhole_ids:
        manhole_alerts(engine, report, asset_ids=manhole_ids)
    if street_ids:
        with engine.connect() as conn:
            declared = sql.metric_by_name(conn, metric) is not None
        if declared:
            survey_alerts(engine, report, metric=metric, threshold=threshold,
                          asset_ids=street_ids)
    return report


def debris_alerts(engine: Engine, report: RefreshReport, *, until=None) -> None:
    """Alert on spoil piles that grew past a volume, and on new piles on a street.

    A pile seen in the last ``RECENT_DAYS`` (before the newest sighting) and not cleared is
    alerted when its latest sighting holds ``DEBRIS_VOLUME_M3`` or more (high from
    ``DEBRIS_LARGE_M3``), or, smaller, when it is new (first seen in that time) within 15 m of
    a street. Its alert is resolved when a sighting says it was cleared (0 m3, or a crew's
    "pile cleared" work record); a pile that is merely not reported again keeps its alert, as
    only a crew can say it is gone.
    """
    with engine.connect() as conn:
        piles = sql.recent_debris_piles(conn, recent_days=RECENT_DAYS, until=until)
    still: list[tuple[str, int]] = []
    cleared: list[tuple[str, int]] = []
    for pile in piles.itertuples():
        key = ("debris_piles", int(pile.asset_id))
        if pile.cleared:
            cleared.append(key)
            continue
        seen = as_utc(pile.last_seen)
        new_pile = as_utc(pile.first_seen) > seen - pd.Timedelta(days=RECENT_DAYS)
        street = _text(pile.street_name) or _text(pile.street_external_id)
        volume = None if pd.isna(pile.volume_m3) else float(pile.volume_m3)
        if volume is not None and volume >= DEBRIS_VOLUME_M3:
            severity = "high" if volume >= DEBRIS_LARGE_M3 else "medium"
            times = (deferred("once") if pile.sightings == 1
                     else deferred("{n} times", n=int(pile.sightings)))
            reason = deferred("pile of about {volume} m3 seen {day}, reported {times} (alert "
                              "from {limit} m3)", volume=_fmt(volume), day=_day(seen),
                              times=times, limit=f"{DEBRIS_VOLUME_M3:g}")
        elif new_pile and street is not None:
            severity = "low"
            first_seen = _day(as_utc(pile.first_seen))
            reason = (deferred("new pile on {street}, first seen {day}", street=street,
                               day=first_seen) if volume is None else
                      deferred("new pile on {street}, first seen {day}, about {volume} m3",
                               street=street, day=first_seen, volume=_fmt(volume)))
        else:
            continue
        _raise(engine, report, still, kind=DEBRIS, severity=severity,
               asset_layer="debris_piles", asset_id=int(pile.asset_id),
               geom_ewkt=pile.geom_ewkt, reason=reason,
               details={"volume_m3": volume, "pile": pile.pile, "street": street,
                        "first_seen": str(as_utc(pile.first_seen)), "last_seen": str(seen)},
               evidence_at=seen.to_pydatetime(),
               evidence=f"sighting of {seen:%Y-%m-%d}"
                        + (f": {_fmt(volume)} m3" if volume is not None else ""))
    _resolve_missing(engine, report, kind=DEBRIS, still=still, among=cleared,
                     note="resolved by twin: the pile was reported cleared")


def damage_alerts(engine: Engine, report: RefreshReport, *, until=None) -> None:
    """Alert on streets with new serious damage: a pothole, or any damage rated high.

    One alert per street, naming what was seen in the last ``RECENT_DAYS`` before the newest
    damage observation; a crew's repair settles it until damage is seen after the repair.
    """
    with engine.connect() as conn:
        damage = sql.recent_serious_damage(conn, recent_days=RECENT_DAYS, until=until)
    for street_id, seen in damage.groupby("asset_id", sort=True):
        newest = as_utc(seen["observed_at"].max())
        potholes = int((seen["damage_class"] == "D40").sum())
        counts = seen["damage_class"].value_counts()
        what = [_damage_count(str(code), int(n)) for code, n in counts.items()]
        first = seen.iloc[-1]
        street = _text(first.street_name) or _text(first.street_external_id)
        severity = "high" if potholes and (seen["severity"] == "high").any() else "medium"
        # No list of the still active: no refresh resolves damage, a crew's repair settles it.
        _raise(engine, report, None, kind=DAMAGE, severity=severity, asset_layer="streets",
               asset_id=int(street_id), geom_ewkt=first.geom_ewkt,
               reason=deferred(
                   "new damage on {street} since {day}: {what}", street=street,
                   day=_day(as_utc(seen["observed_at"].min())),
                   what=_joined(what)),
               details={"damage_ids": [int(i) for i in seen["damage_id"]],
                        "potholes": potholes, "newest": str(newest)},
               evidence_at=newest.to_pydatetime(),
               evidence=f"damage observed {newest:%Y-%m-%d}")


def refresh(engine: Engine, *, metric: str = "pci", horizon_days: int = ALERT_HORIZON_DAYS,
            threshold: float | None = None, until=None) -> RefreshReport:
    """Raise, update and resolve road-wear, manhole, debris and new-damage alerts."""
    report = RefreshReport(as_of=str(as_utc(until)) if until is not None else "latest data")
    road_wear_alerts(engine, report, metric=metric, horizon_days=horizon_days,
                     threshold=threshold)
    manhole_alerts(engine, report, until=until)
    debris_alerts(engine, report, until=until)
    damage_alerts(engine, report, until=until)
    return report


def refresh_district(engine: Engine, street_ids: list[int], manhole_ids: list[int], *,
                     metric: str = "pci", horizon_days: int = ALERT_HORIZON_DAYS,
                     threshold: float | None = None) -> RefreshReport:
    """The part of ``refresh`` that is per asset, for one district's streets and manholes.

    Road-wear and manhole alerts of these assets are raised and resolved as ``refresh`` does
    for all of them; debris and damage alerts are town-wide (``refresh_town``). The refreshes
    of all districts, and of the assets in none, together do what one ``refresh`` does.
    """
    report = RefreshReport(as_of="latest data")
    if street_ids:
        road_wear_alerts(engine, report, metric=metric, horizon_days=horizon_days,
                         threshold=threshold, asset_ids=street_ids)
    if manhole_ids:
        manhole_alerts(engine, report, asset_ids=manhole_ids)
    return report


def refresh_town(engine: Engine, *, until=None) -> RefreshReport:
    """The part of ``refresh`` that is not per asset: debris piles and new damage."""
    report = RefreshReport(as_of=str(as_utc(until)) if until is not None else "latest data")
    debris_alerts(engine, report, until=until)
    damage_alerts(engine, report, until=until)
    return report
