"""Manhole sensors: threshold rules and data-quality detectors, as episodes in time.

Rules (docs/domain.md): tilt more than 10 degrees from the installed baseline; cover open; water
level at 80 % of the well's depth (alarm) or 100 % (overflow); gas with O2 outside
19.5-23.5 %, LEL at 10 %, CO at 35 ppm or H2S at 10 ppm; a sensor silent for more than two
days; a low battery. Detectors: a sensor that *sticks* (the same value, exactly, on several
heartbeats in a row) or *drifts* (its dry-weather water level creeps up day after day).

Each detector turns a sensor's readings into episodes ``(asset_id, kind, start, end,
active, value)``; the alerts are the active episodes, and evaluation matches episodes with
the injected faults of the sample's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Thresholds:
    """The alarm thresholds (configurable; the defaults are docs/domain.md's)."""

    tilt_deg: float = 10.0
    water_alarm_pct: float = 80.0
    water_overflow_pct: float = 100.0
    o2_low_pct: float = 19.5
    o2_high_pct: float = 23.5
    lel_pct: float = 10.0
    co_ppm: float = 35.0
    h2s_ppm: float = 10.0
    silent_days: float = 2.0
    battery_low_pct: float = 15.0
    stuck_repeats: int = 4  # identical heartbeat values in a row ...
    stuck_chance: float = 0.01  # ... that chance would give this few times in the series
    drift_rise_pct: float = 8.0  # dry-weather level above its own usual level
    drift_days: int = 7  # ... rising over this many heartbeats


DEFAULTS = Thresholds()

class ManholeRules(BaseEstimator):
    """The sensor rules and detectors as a scikit-learn estimator over readings.

    ``__init__`` stores the thresholds; ``fit`` checks them against the readings' shape and
    keeps them (``thresholds_``) with the metrics seen (``metrics_``): the rules are fixed
    thresholds, and the baselines (a cover's installed tilt, a well's usual floor) are taken
    from the readings each prediction sees, as :func:`rule_episodes` always has.
    ``predict`` gives the episodes (``EPISODE_COLUMNS``). Clonable and storable in the model
    registry like the learned models.

    Parameters
    ----------
    thresholds : Thresholds or None
        The alarm thresholds; None: docs/domain.md's (``DEFAULTS``).
    """

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds

    def fit(self, X: pd.DataFrame, y=None) -> ManholeRules:
        """Check the thresholds and the readings ``X``; ``y`` is not used. Returns self.

        ``X`` holds ``asset_id, metric, observed_at, value`` per reading.
        """
        missing = [c for c in ("asset_id", "metric", "observed_at", "value") if c not in X]
        if missing:
            raise ValueError(f"The readings lack the columns {missing}.")
        t = DEFAULTS if self.thresholds is None else self.thresholds
        if not t.o2_low_pct < t.o2_high_pct:
            raise ValueError(f"The O2 band {t.o2_low_pct:g}-{t.o2_high_pct:g} % is empty.")
        if t.stuck_repeats < 2 or t.drift_days < 1:
            raise ValueError("A stuck run needs at least two repeats and a drift one day.")
        self.thresholds_ = t
        self.metrics_ = sorted(X["metric"].dropna().unique().tolist())
        return self

    def predict(self, X: pd.DataFrame, until=None) -> pd.DataFrame:
        """Episodes of every rule over the readings ``X`` observed by ``until``.

        ``until`` defaults to the last reading's time.
        """
        check_is_fitted(self, "thresholds_")
        if until is None:
            until = X["observed_at"].max() if len(X) else pd.Timestamp.now("UTC")
        return rule_episodes(X, until, self.thresholds_)

KIND_OF_FAULT = {
    "tilted_cover": "manhole_tilt",
    "cover_open": "manhole_cover_open",
    "flooding": "manhole_flooding",
    "gas_alarm": "manhole_gas",
    "silent_sensor": "sensor_silent",
    "stuck_sensor": "sensor_stuck",
    "sensor_drift": "sensor_drift",
}
KINDS = (*KIND_OF_FAULT.values(), "sensor_low_battery")
EPISODE_COLUMNS = ["asset_id", "kind", "severity", "start", "end", "active", "value", "detail"]


def _runs(frame: pd.DataFrame, flag: pd.Series, kind: str, severity, detail: str,
          value_column: str = "value") -> pd.DataFrame:
    """Episodes of consecutive flagged readings per asset (frame sorted by asset, time).

    An episode starts at its first flagged reading and ends at the next unflagged one (or
    at its last reading while it is still on: then ``active`` is True).
    """
    if frame.empty or not flag.any():
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    f = frame.assign(flag=flag.to_numpy())
    new_asset = f["asset_id"].ne(f["asset_id"].shift())
    run = (f["flag"].ne(f["flag"].shift()) | new_asset).cumsum()
    f = f.assign(run=run, next_time=f.groupby("asset_id")["observed_at"].shift(-1))
    flagged = f[f["flag"]]
    g = flagged.groupby("run")
    out = pd.DataFrame({
        "asset_id": g["asset_id"].first(), "start": g["observed_at"].first(),
        "last": g["observed_at"].last(), "next": g["next_time"].last(),
        "value": g[value_column].max()})
    out["active"] = out["next"].isna()
    out["end"] = out["next"].fillna(out["last"])
    out["kind"] = kind
    out["severity"] = severity(out) if callable(severity) else severity
    out["detail"] = detail
    return out[EPISODE_COLUMNS].reset_index(drop=True)


def _series(readings: pd.DataFrame, metric: str) -> pd.DataFrame:
    part = readings[readings["metric"] == metric]
    return part.sort_values(["asset_id", "observed_at"]).reset_index(drop=True)


def _heartbeats(readings: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A metric's values at heartbeat times (a heartbeat carries the battery level)."""
    beats = readings.loc[readings["metric"] == "battery_pct", ["asset_id", "observed_at"]]
    part = readings[readings["metric"] == metric].merge(beats, on=["asset_id", "observed_at"])
    return part.sort_values(["asset_id", "observed_at"]).reset_index(drop=True)


def rule_episodes(readings: pd.DataFrame, until, t: Thresholds = DEFAULTS) -> pd.DataFrame:
    """Episodes of every threshold rule over the readings given (observed by ``until``)."""
    until = pd.Timestamp(until)
    parts = []
    tilt = _series(readings, "tilt_deg")
    if not tilt.empty:
        beats = _heartbeats(readings, "tilt_deg")
        baseline = beats.groupby("asset_id")["value"].median().reindex(tilt["asset_id"])
        tilt = tilt.assign(from_baseline=(tilt["value"] - baseline.to_numpy()).abs())
        parts.append(_runs(tilt, tilt["from_baseline"] > t.tilt_deg, "manhole_tilt", "high",
                           f"tilt more than {t.tilt_deg:g} deg from its baseline",
                           "from_baseline"))
    cover = _series(readings, "cover_open")
    parts.append(_runs(cover, cover["value"] >= 0.5, "manhole_cover_open", "critical",
                       "cover open"))
    water = _series(readings, "water_level_pct")
    parts.append(_runs(
        water, water["value"] >= t.water_alarm_pct, "manhole_flooding",
        lambda e: np.where(e["value"] >= t.water_overflow_pct, "critical", "high"),
        f"water level at or above {t.water_alarm_pct:g} % of depth"))
    gas = readings[readings["metric"].isin(["o2_pct", "lel_pct", "co_ppm", "h2s_ppm"])]
    if not gas.empty:
        wide = gas.pivot_table(index=["asset_id", "observed_at"], columns="metric",
                               values="value", aggfunc="last").reset_index()
        wide = wide.sort_values(["asset_id", "observed_at"]).reset_index(drop=True)
        for column in ("o2_pct", "lel_pct", "co_ppm", "h2s_ppm"):
            if column not in wide:
                wide[column] = np.nan
        bad = (((wide["o2_pct"] < t.o2_low_pct) | (wide["o2_pct"] > t.o2_high_pct))
               | (wide["lel_pct"] >= t.lel_pct) | (wide["co_ppm"] >= t.co_ppm)
               | (wide["h2s_ppm"] >= t.h2s_ppm))
        wide["value"] = wide["h2s_ppm"]
        parts.append(_runs(wide, bad,
                           "manhole_gas", "critical", "gas outside the safe limits"))
    battery = _series(readings, "battery_pct")
    parts.append(_runs(battery, battery["value"] < t.battery_low_pct, "sensor_low_battery",
                       "low", f"battery below {t.battery_low_pct:g} %"))
    parts.append(silence_episodes(readings, until, t))
    parts.append(stuck_episodes(readings, t))
    parts.append(drift_episodes(readings, t))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def silence_episodes(readings: pd.DataFrame, until, t: Thresholds = DEFAULTS
                     ) -> pd.DataFrame:
    """Gaps of more than ``silent_days`` between a sensor's reports (or up to ``until``)."""
    times = readings[["asset_id", "observed_at"]].drop_duplicates().sort_values(
        ["asset_id", "observed_at"])
    if times.empty:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    nxt = times.groupby("asset_id")["observed_at"].shift(-1)
    gap = nxt - times["observed_at"]
    limit = t.silent_days * DAY
    closed = times[gap > limit].assign(end=nxt[gap > limit], active=False)
    last = times.groupby("asset_id")["observed_at"].max()
    ongoing = last[pd.Timestamp(until) - last > limit]
    open_ = pd.DataFrame({"asset_id": ongoing.index, "observed_at": ongoing.to_numpy(),
                          "end": pd.Timestamp(until), "active": True})
    out = pd.concat([closed, open_], ignore_index=True)
    if out.empty:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    out["end"] = pd.to_datetime(out["end"], utc=True)
    out["observed_at"] = pd.to_datetime(out["observed_at"], utc=True)
    out["start"] = out["observed_at"] + limit
    out["value"] = (out["end"] - out["observed_at"]) / DAY
    out["kind"], out["severity"] = "sensor_silent", "medium"
    out["detail"] = f"no report for more than {t.silent_days:g} days"
    return out[EPISODE_COLUMNS]


def stuck_episodes(readings: pd.DataFrame, t: Thresholds = DEFAULTS) -> pd.DataFrame:
    """Runs of identical heartbeat values that chance cannot explain.

    A run of at least ``stuck_repeats`` equal values is flagged when a run that long would
    be expected by chance less than ``stuck_chance`` times in the series: ``n * p^(L-1)``,
    with ``p`` the share of the series' heartbeats that repeat their predecessor. A
    coarse series (a tilt of 0.8 degrees written with one decimal) repeats by nature and is
    not flagged; values at the ends of the range, where clipping makes repeats normal, are
    skipped.
    """
    parts = []
    for metric, low, high in (("water_level_pct", 0.0, 100.0), ("tilt_deg", 0.0, 90.0)):
        beats = _heartbeats(readings, metric)
        if beats.empty:
            continue
        same = beats["value"].eq(beats.groupby("asset_id")["value"].shift()) & beats[
            "value"].between(low, high, inclusive="neither")
        run = (~same).cumsum()
        length = beats.groupby(run)["value"].transform("size")
        long_run = length >= t.stuck_repeats
        asset = beats["asset_id"]
        n = asset.map(asset.value_counts())
        p = same.groupby(asset).transform("mean").clip(lower=1.0 / n)
        flag = long_run & (n * p ** (length - 1) < t.stuck_chance)
        parts.append(_runs(beats, flag, "sensor_stuck", "medium",
                           f"{metric} repeats the same value on {t.stuck_repeats} or more "
                           f"heartbeats"))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=EPISODE_COLUMNS)


def drift_episodes(readings: pd.DataFrame, t: Thresholds = DEFAULTS) -> pd.DataFrame:
    """A water level whose dry-weather floor climbs steadily above its usual floor.

    Rain lifts a well's level for a day or three; a drifting sensor lifts its floor for
    weeks. The floor is the minimum over the last ``drift_days`` heartbeats; the sensor's
    usual floor is the median of its floors over the preceding 60 days. A drift is a floor
    ``drift_rise_pct`` above the usual one that is also higher than ``drift_days`` ago.
    """
    beats = _heartbeats(readings, "water_level_pct")
    if beats.empty:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    parts = []
    # A stuck stretch is one value, not a rise: repeats are dropped before looking for drift.
    beats = beats[beats["value"].ne(beats.groupby("asset_id")["value"].shift())]
    for _, series in beats.groupby("asset_id", sort=True):
        s = series.set_index("observed_at")["value"]
        floor = s.rolling(t.drift_days, min_periods=t.drift_days).min()
        usual = floor.shift(1).rolling("60D", min_periods=14).median()
        rising = floor - floor.shift(t.drift_days) > t.drift_rise_pct / 4
        flag = ((floor - usual) > t.drift_rise_pct) & rising
        # Keep the flag on while the floor stays high, once a drift started.
        high = (floor - usual) > t.drift_rise_pct
        flag = flag | (high & flag.astype(int).rolling(30, min_periods=1).max().astype(bool))
        frame = series.reset_index(drop=True).assign(rise=(floor - usual).to_numpy())
        parts.append(_runs(frame, pd.Series(flag.to_numpy()), "sensor_drift", "medium",
                           "water level floor creeping up", "rise"))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=EPISODE_COLUMNS)


def match_faults(episodes: pd.DataFrame, faults: pd.DataFrame, *, tolerance_days: float = 1.0
                 ) -> dict:
    """Precision and recall of episodes against injected faults.

    An episode matches a fault when it is on the fault's manhole, of the fault's kind
    (``KIND_OF_FAULT``), and overlaps the fault's window widened by ``tolerance_days`` on
    each side. Precision is the share of episodes (of the faults' kinds) that match a fault;
    recall the share of faults matched by an episode. ``faults`` needs ``asset_id, fault,
    start, end``.
    """
    kinds = set(KIND_OF_FAULT.values())
    ep = episodes[episodes["kind"].isin(kinds)].reset_index(drop=True)
    fl = faults.assign(kind=faults["fault"].map(KIND_OF_FAULT)).reset_index(drop=True)
    tol = tolerance_days * DAY
    pairs = ep.reset_index().merge(fl.reset_index(), on=["asset_id", "kind"],
                                   suffixes=("_e", "_f"))
    hit = pairs[(pairs["start_e"] <= pairs["end_f"] + tol)
                & (pairs["end_e"] >= pairs["start_f"] - tol)]
    matched_episodes = set(hit["index_e"])
    matched_faults = set(hit["index_f"])
    by_kind = {}
    for kind in sorted(kinds):
        e_k = ep.index[ep["kind"] == kind]
        f_k = fl.index[fl["kind"] == kind]
        by_kind[kind] = {
            "alerts": int(len(e_k)), "faults": int(len(f_k)),
            "precision": round(len(matched_episodes & set(e_k)) / len(e_k), 3)
            if len(e_k) else None,
            "recall": round(len(matched_faults & set(f_k)) / len(f_k), 3) if len(f_k) else None}
    return {
        "alerts": int(len(ep)), "faults": int(len(fl)),
        "precision": round(len(matched_episodes) / len(ep), 3) if len(ep) else None,
        "recall": round(len(matched_faults) / len(fl), 3) if len(fl) else None,
        "by_kind": by_kind,
        "matching": ("an alert matches a fault on the same manhole, of the same kind, whose "
                     f"window it overlaps (widened by {tolerance_days:g} day each side)"),
    }
