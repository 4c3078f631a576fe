"""Debris piles: each known pile's volume if it is not cleared, and its chance of being cleared.

A pile (one ``pile_ref``) grows until it is cleared. For every pile still present at the
as-of date (last seen at most ``present_days`` before it), the forecast at a target date is
two numbers that mean what they say:

- **the volume if not cleared**: ``level + growth * days``, the median of what the pile's
  next sighting would report on the target date, with an 80 % interval for that sighting;
- **the probability it has been cleared** by the target date.

Their product (``expected``) is the probability-weighted volume; it is reported too, but it
is not the forecast of anyone's next sighting (a pile is either there, growing, or gone).

- ``growth`` is the pile's own robust slope of volume over time (Theil-Sen: the median of
  the slopes between pairs of its sightings), shrunk towards the growth of piles of the same
  area (other piles seen within ``area_m``), else of the same reported material, else of all
  piles. The weight of its own slope is ``tau^2 / (tau^2 + se^2)``: ``se`` is the slope's
  sampling error (volume noise over the spread of its sighting times) and ``tau`` the spread
  of true growth between piles. A pile seen once has no slope of its own and gets the group's.
  Growth is never negative: piles only grow until they are cleared.
- ``level`` is the pile's volume at its last sighting, from all its sightings moved along
  that growth (their median), which is less noisy than the last estimate alone.
- The interval is log-normal around the median (observers' estimates are off by a factor,
  not by a fixed amount): its log-spread combines the estimate noise, the level's error and
  the growth's error times the days ahead. Its width is then calibrated on time held out
  inside the history: each pile's later sightings by the as-of date are forecast from its
  earlier ones, and the 10 % and 90 % quantiles of the standardised errors replace the
  normal ones (split conformal), so 80 % means 80 % on this data.
- The clearing probability comes from a Kaplan-Meier curve of pile lifetimes, measured from a
  pile's first sighting. Piles not seen for more than ``present_days`` by the as-of date
  count as cleared, one mean gap between sightings after their last sighting (sightings
  come at random while a pile stands, so that is the expected time from the last one to the
  clearing), or exactly at a sighting reporting 0 m3. The others are censored at their last
  sighting. Past the last ``TAIL_AT_RISK`` piles at risk the curve continues as an
  exponential tail with the hazard seen there, so it never claims certainty it has no data
  for. The chance a pile of age ``a`` at its last sighting is still there ``d`` days later is
  ``S(a + d) / S(a)``.
- A pile whose last sighting reports 0 m3 has been cleared: it is forecast as cleared
  (probability 1, volume 0) for as long as it would otherwise count as present.

Everything is learned from observations made by the as-of date only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from predict.road import as_utc

DAY = pd.Timedelta(days=1)
PRESENT_DAYS = 14.0
AREA_M = 200.0
MIN_GROUP = 3
MIN_PAIR_DAYS = 0.25  # sightings closer in time than this carry no slope
DEFAULT_CV = 0.25
ALPHA = 0.2  # 80 % interval
MIN_CALIBRATION = 30  # held-out sightings needed before the interval is calibrated on them
TAIL_AT_RISK = 10  # the lifetime curve turns into an exponential tail below this many at risk
TAU2_FACTORS = (1.0, 2.0, 4.0, 8.0)  # multiples of the moment estimate of tau^2 tried
MEDIAN_EFFICIENCY = 1.2533  # the median of n normal values has sd ~ 1.2533 sigma / sqrt(n)
PILE_COLUMNS = ["pile_ref", "last_id", "first_seen", "last_seen", "sightings", "material",
                "x", "y", "lon", "lat", "last_volume", "cleared", "own_growth", "own_se",
                "prior_growth", "prior_group", "growth", "growth_sd", "level", "level_log_var",
                "age_days"]
FORECAST_COLUMNS = ["pile_ref", "last_id", "horizon_days", "days_since_last", "p_present",
                    "p_cleared", "value", "lower", "upper", "expected", "overall_lower",
                    "overall_upper", "last_volume"]


def _median(values) -> float:
    """Median of a few numbers (piles have a handful of sightings; numpy's is slower here)."""
    s = sorted(values)
    n = len(s)
    return float(s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2)


def _theil_sen(t: np.ndarray, v: np.ndarray) -> float:
    """Median of pairwise slopes between sightings at least ``MIN_PAIR_DAYS`` apart."""
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    keep = np.abs(dt) >= MIN_PAIR_DAYS
    if not keep.any():
        return np.nan
    return _median(((v[j] - v[i])[keep] / dt[keep]).tolist())


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    cumulative = np.cumsum(weights)
    return float(values[np.searchsorted(cumulative, cumulative[-1] / 2)])


def kaplan_meier(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times of events and the survival just after each (a right-continuous step curve)."""
    durations = np.asarray(durations, float)
    events = np.asarray(events, bool)
    times = np.unique(durations[events])
    survival, s = [], 1.0
    for t in times:
        at_risk = np.sum(durations >= t)
        died = np.sum((durations == t) & events)
        s *= 1.0 - died / at_risk if at_risk else 1.0
        survival.append(s)
    return times, np.asarray(survival, float)


def survival_at(times: np.ndarray, survival: np.ndarray, t) -> np.ndarray:
    """``S(t)`` of a Kaplan-Meier curve (1 before the first event)."""
    k = np.searchsorted(times, np.asarray(t, float), side="right")
    return np.where(k == 0, 1.0, np.concatenate([[1.0], survival])[k])


def exponential_tail(durations: np.ndarray, events: np.ndarray, times: np.ndarray,
                     survival: np.ndarray) -> tuple[float, float]:
    """Where the lifetime curve gives way to its tail, and the tail's hazard per day.

    The tail starts at the last event with at least ``TAIL_AT_RISK`` piles at risk; its
    hazard is the events over the time at risk of the lifetimes that reach past it.

    The Kaplan-Meier curve drops to 0 at its longest event; a pile older than that would get
    "certainly cleared" from one or two piles. The tail keeps the evidence's own rate instead.
    """
    durations = np.asarray(durations, float)
    events = np.asarray(events, bool)
    if not len(times):
        return np.inf, 0.0
    at_risk = np.array([np.sum(durations >= t) for t in times])
    trusted = times[at_risk >= TAIL_AT_RISK]
    start = float(trusted[-1]) if len(trusted) else 0.0
    beyond = durations > start
    exposure = float(np.sum(durations[beyond] - start))
    died = int(np.sum(events & beyond))
    if died == 0 or exposure <= 0:
        exposure, died = float(np.sum(durations)), int(np.sum(events))
    return start, (died / exposure if exposure > 0 else 0.0)


def _materials(past: pd.DataFrame) -> pd.Series:
    """Each pile's reported material: its most frequent specific one, else "mixed".

    Observers report "mixed" when unsure; ties go to the first by name.
    """
    m = past[["pile_ref", "material"]].dropna()
    m = m.assign(specific=m["material"] != "mixed")
    counts = m.groupby(["pile_ref", "specific", "material"]).size().rename("n").reset_index()
    counts = counts.sort_values(["pile_ref", "specific", "n", "material"],
                                ascending=[True, False, False, True])
    return counts.groupby("pile_ref")["material"].first()


def pile_summary(obs: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per ``pile_ref`` seen by ``as_of``: sightings, own growth and its error.

    ``obs`` needs ``id, pile_ref, observed_at, volume_m3, material, x, y, lon, lat``. A
    sighting of 0 m3 means the pile is gone: when it is the last one, the pile is ``cleared``
    (at that time); when later sightings report volume again, the pile is taken to have been
    dumped afresh and only those later sightings describe it.
    """
    past = obs[(obs["observed_at"] <= as_of) & obs["pile_ref"].notna()
               & obs["volume_m3"].notna()].sort_values(["pile_ref", "observed_at", "id"])
    if past.empty:
        return pd.DataFrame()
    materials = _materials(past)
    refs = past["pile_ref"].to_numpy()
    starts = np.flatnonzero(np.r_[True, refs[1:] != refs[:-1]])
    ends = np.r_[starts[1:], len(refs)]
    t_all = ((past["observed_at"] - as_of) / DAY).to_numpy(float)
    v_all = past["volume_m3"].to_numpy(float)
    ids, when = past["id"].to_numpy(), past["observed_at"].to_numpy()
    xs, ys = past["x"].to_numpy(float), past["y"].to_numpy(float)
    lons, lats = past["lon"].to_numpy(float), past["lat"].to_numpy(float)
    rows = []
    for a, b in zip(starts, ends, strict=True):
        v_pile = v_all[a:b]
        cleared = bool(v_pile[-1] <= 0)
        zeros = np.flatnonzero(v_pile[:-1] <= 0) if cleared else np.flatnonzero(v_pile <= 0)
        first = a + (int(zeros[-1]) + 1 if len(zeros) else 0)
        t, v = t_all[first:b - cleared], v_all[first:b - cleared]
        rows.append({
            "pile_ref": refs[a], "last_id": int(ids[b - 1]),
            "first_seen": when[first if len(v) else b - 1], "last_seen": when[b - 1],
            "sightings": len(v), "material": materials.get(refs[a], "unknown"),
            "x": float(xs[a:b].mean()), "y": float(ys[a:b].mean()),
            "lon": float(lons[b - 1]), "lat": float(lats[b - 1]),
            "last_volume": float(v_pile[-1]), "cleared": cleared,
            "own_growth": _theil_sen(t, v) if len(t) > 1 else np.nan,
            "sxx": float(np.sum((t - t.mean()) ** 2)) if len(t) else 0.0,
            "mean_volume": float(v.mean()) if len(v) else 0.0, "t": t, "v": v})
    out = pd.DataFrame(rows)
    out["first_seen"] = pd.to_datetime(out["first_seen"], utc=True)
    out["last_seen"] = pd.to_datetime(out["last_seen"], utc=True)
    return out


class PileVolumeModel(BaseEstimator):
    """Growth priors, noise, interval calibration and survival learned by an as-of date.

    A scikit-learn estimator: ``__init__`` stores the parameters, :meth:`fit` learns from
    debris sightings (``pile_ref, observed_at, volume_m3, material, x, y, ...``, as
    :func:`load_sightings` reads them) observed by ``as_of``, and every learned value ends in
    ``_``. They are plain numbers and arrays so the model can be stored in the model registry.

    Parameters
    ----------
    as_of : str, Timestamp or None
        The date the model is learned as of; None: the last sighting's time.
    present_days : float
        A pile last seen at most this many days before a date is present then.
    area_m : float
        Other piles within this distance form a pile's area group.
    """

    def __init__(self, as_of=None, present_days: float = PRESENT_DAYS,
                 area_m: float = AREA_M) -> None:
        self.as_of = as_of
        self.present_days = present_days
        self.area_m = area_m

    def _as_of(self, X: pd.DataFrame) -> pd.Timestamp:
        if self.as_of is not None:
            return pd.Timestamp(self.as_of)
        return pd.Timestamp(X["observed_at"].max()) if len(X) else pd.Timestamp.now("UTC")

    def fit(self, X: pd.DataFrame, y=None) -> PileVolumeModel:
        """Learn from the sightings ``X`` observed by ``as_of`` (``y`` is not used)."""
        as_of = self._as_of(X)
        return self._fit_piles(pile_summary(X, as_of), as_of)

    def _fit_piles(self, piles: pd.DataFrame, as_of: pd.Timestamp) -> PileVolumeModel:
        """Learn from the per-pile summary of the sightings by ``as_of``."""
        self.as_of_ = str(as_of)
        self.piles_ = int(len(piles))
        self.cv_, self.global_growth_, self.tau2_ = DEFAULT_CV, 0.0, 1e-4
        self.material_growth_: dict = {}
        self.lifetime_pad_days_ = 0.0
        self.km_times_, self.km_survival_ = np.array([]), np.array([])
        self.lifetimes_observed_ = 0
        self.tail_from_days_, self.tail_hazard_per_day_ = np.inf, 0.0
        self.z_lower_ = float(norm.ppf(ALPHA / 2))
        self.z_upper_ = float(norm.ppf(1 - ALPHA / 2))
        self.calibration_sightings_ = 0
        if piles.empty:
            return self
        _learn(self, piles, as_of)
        return self

    def forecast(self, X: pd.DataFrame, horizon_days) -> pd.DataFrame:
        """Each pile present at ``as_of_`` in the sightings ``X``, ``horizon_days`` later.

        Returns ``FORECAST_COLUMNS`` (see :func:`forecast_piles`).
        """
        check_is_fitted(self, "km_survival_")
        as_of = pd.Timestamp(self.as_of_)
        present = present_piles(self, pile_summary(X, as_of), as_of)
        if present.empty:
            return pd.DataFrame(columns=FORECAST_COLUMNS)
        return forecast_piles(self, present, as_of, horizon_days)

    def predict(self, X: pd.DataFrame, horizon_days: float = 7.0) -> np.ndarray:
        """The probability-weighted volume (m3) of each present pile ``horizon_days`` ahead."""
        return self.forecast(X, horizon_days)["expected"].to_numpy(float)


def _pooled_growth(own: np.ndarray, se2: np.ndarray, tau2: float) -> float:
    """The typical growth of a group of piles: their slopes' median, weighted.

    The weights are ``1 / (se^2 + tau^2)``.

    Weights of ``1 / se^2`` alone would let the smallest piles decide (their noise, a share
    of their volume, is smallest), and small piles are the slow back-street dumps.
    """
    return max(0.0, _weighted_median(own, 1.0 / (se2 + tau2)))


def _random_effects(own: np.ndarray, se2: np.ndarray) -> tuple[float, float]:
    """Typical growth and the variance ``tau^2`` of true growth between piles.

    Paule-Mandel: the ``tau^2`` at which the slopes' weighted spread matches their count.
    """
    tau2 = float(np.var(own))
    for _ in range(100):
        w = 1.0 / (se2 + tau2)
        mean = float(np.sum(w * own) / np.sum(w))
        excess = float(np.sum(w * (own - mean) ** 2)) - (len(own) - 1)
        step = excess / float(np.sum(w ** 2 * (own - mean) ** 2))
        tau2 = max(1e-4, tau2 + step)
        if abs(step) < 1e-6:
            break
    growth = _pooled_growth(own, se2, tau2)
    return growth, max(tau2, (0.25 * growth) ** 2)


def _slopes_with_error(piles: pd.DataFrame, cv: float) -> tuple[np.ndarray, np.ndarray]:
    own = piles["own_growth"].to_numpy(float)
    se2 = (cv * piles["mean_volume"].to_numpy(float)) ** 2 / piles["sxx"].where(
        piles["sxx"] > 0).to_numpy(float)
    return own, se2


def _pile_state(t: np.ndarray, v: np.ndarray, prior: float, cv: float, tau2: float
                ) -> tuple[float, float, float, float]:
    """Growth (shrunk to ``prior``), its sd, the level at the last sighting and its log-variance."""
    own = _theil_sen(t, v) if len(t) > 1 else np.nan
    sxx = float(np.sum((t - t.mean()) ** 2))
    se2 = (cv * float(v.mean())) ** 2 / sxx if sxx > 0 else np.nan
    weight = tau2 / (tau2 + se2) if np.isfinite(own) and np.isfinite(se2) else 0.0
    growth = max(0.0, weight * (own if weight > 0 else 0.0) + (1 - weight) * prior)
    growth_var = weight * se2 if weight > 0 else tau2
    level = max(_median((v - growth * (t - t[-1])).tolist()), 1e-3)
    return growth, float(np.sqrt(growth_var)), level, (MEDIAN_EFFICIENCY * cv) ** 2 / len(v)


def _log_spread(cv: float, level_log_var, growth_sd, days, median) -> np.ndarray:
    """Log-sd of a next sighting: its own noise, the level's error and growth's error."""
    return np.sqrt(cv ** 2 + level_log_var + (np.asarray(growth_sd) * days / median) ** 2)


@dataclass
class _HeldOut:
    """Each pile's sightings but its first, with what its earlier sightings say about them."""

    pile: np.ndarray  # row of the pile in the summary
    own: np.ndarray  # slope of the earlier sightings (NaN with one)
    se2: np.ndarray
    t: list  # the earlier sightings' times and volumes
    v: list
    days: np.ndarray  # from the last earlier sighting to this one
    seen: np.ndarray  # this sighting's volume


def _held_out(piles: pd.DataFrame, cv: float) -> _HeldOut:
    pile, own, se2, ts, vs, days, seen = [], [], [], [], [], [], []
    for i, row in enumerate(piles.itertuples()):
        for k in range(1, len(row.t)):
            t, v = row.t[:k], row.v[:k]
            sxx = float(np.sum((t - t.mean()) ** 2))
            pile.append(i)
            own.append(_theil_sen(t, v) if k > 1 else np.nan)
            se2.append((cv * float(v.mean())) ** 2 / sxx if sxx > 0 else np.nan)
            ts.append(t)
            vs.append(v)
            days.append(row.t[k] - t[-1])
            seen.append(row.v[k])
    return _HeldOut(np.asarray(pile, int), np.asarray(own, float), np.asarray(se2, float),
                    ts, vs, np.asarray(days, float), np.asarray(seen, float))


def _held_out_errors(held: _HeldOut, priors: np.ndarray, cv: float, tau2: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Log-errors, and their expected spread, of forecasting later sightings from earlier.

    Each pile's later sightings are forecast from its earlier ones (as ``_pile_state``
    does), all made by the as-of date.
    """
    if not len(held.pile):
        return np.array([]), np.array([])
    mine = np.isfinite(held.own) & np.isfinite(held.se2)
    weight = np.where(mine, tau2 / (tau2 + np.where(mine, held.se2, 1.0)), 0.0)
    growth = np.maximum(0.0, weight * np.nan_to_num(held.own) + (1 - weight)
                        * priors[held.pile])
    growth_sd = np.sqrt(np.where(weight > 0, weight * np.nan_to_num(held.se2), tau2))
    level = np.array([max(_median((v - g * (t - t[-1])).tolist()), 1e-3)
                      for t, v, g in zip(held.t, held.v, growth, strict=True)])
    level_var = (MEDIAN_EFFICIENCY * cv) ** 2 / np.array([len(v) for v in held.v])
    median = level + growth * held.days
    return (np.log(held.seen / median),
            _log_spread(cv, level_var, growth_sd, held.days, median))


def _calibrate(held: _HeldOut, priors: np.ndarray, cv: float, tau2: float
               ) -> tuple[float, float, int]:
    """Conformal quantiles (``ALPHA/2``, ``1-ALPHA/2``) of standardised log-errors.

    The errors are those of forecasting each pile's later sightings from its earlier ones,
    all made by the as-of date.
    """
    errors, spreads = _held_out_errors(held, priors, cv, tau2)
    z = errors / spreads
    n = len(z)
    if n < MIN_CALIBRATION:
        return float(norm.ppf(ALPHA / 2)), float(norm.ppf(1 - ALPHA / 2)), n
    z = np.sort(np.asarray(z))
    # Finite-sample conformal ranks: the k-th smallest with k = ceil((n + 1) q).
    hi = min(n, int(np.ceil((n + 1) * (1 - ALPHA / 2)))) - 1
    lo = max(1, int(np.floor((n + 1) * (ALPHA / 2)))) - 1
    return float(min(z[lo], -1e-3)), float(max(z[hi], 1e-3)), n


def _neighbours(piles: pd.DataFrame, own: np.ndarray, se2: np.ndarray, area_m: float,
                of: pd.DataFrame) -> np.ndarray:
    """For each pile of ``of``, which other piles with a slope lie within ``area_m``."""
    has = np.isfinite(own) & np.isfinite(se2)
    px, py = piles["x"].to_numpy(float), piles["y"].to_numpy(float)
    rows = piles.index.get_indexer(of.index)
    near = (np.hypot(px[rows, None] - px[None, :], py[rows, None] - py[None, :]) <= area_m) & has
    near[np.arange(len(rows)), rows] = False
    return near


def _group_priors(piles: pd.DataFrame, own: np.ndarray, se2: np.ndarray, area_m: float,
                  material_growth: dict, global_growth: float, tau2: float,
                  of: pd.DataFrame | None = None, near: np.ndarray | None = None
                  ) -> tuple[np.ndarray, list[str]]:
    """Growth prior of each pile of ``of`` (rows of ``piles``; default: all of them).

    It is its area's (the other piles within ``area_m`` with a slope; ``near`` from
    :func:`_neighbours` when already known), else its material's, else everyone's.
    """
    of = piles if of is None else of
    if near is None:
        near = _neighbours(piles, own, se2, area_m, of)
    priors, groups = [], []
    for i, material in enumerate(of["material"].to_numpy()):
        if near[i].sum() >= MIN_GROUP:
            priors.append(_pooled_growth(own[near[i]], se2[near[i]], tau2))
            groups.append("area")
        elif material in material_growth:
            priors.append(material_growth[material])
            groups.append("material")
        else:
            priors.append(global_growth)
            groups.append("all")
    return np.asarray(priors, float), groups


def fit_pile_model(obs: pd.DataFrame, as_of, *, present_days: float = PRESENT_DAYS,
                   area_m: float = AREA_M) -> tuple[PileVolumeModel, pd.DataFrame]:
    """Learn growth priors, noise, interval calibration and lifetimes by ``as_of``.

    Returns the fitted model and the per-pile summary it was learned from.
    """
    as_of = pd.Timestamp(as_of)
    piles = pile_summary(obs, as_of)
    model = PileVolumeModel(as_of=str(as_of), present_days=present_days, area_m=area_m)
    return model._fit_piles(piles, as_of), piles


def _learn(model: PileVolumeModel, piles: pd.DataFrame, as_of: pd.Timestamp) -> None:
    """Set ``model``'s learned values from a non-empty per-pile summary."""
    present_days, area_m = model.present_days, model.area_m
    # Volume noise: log-ratios of consecutive sightings of a pile at most two days apart
    # (growth over so short a gap is small next to the noise); each holds two noises.
    ratios: list[float] = []
    gaps: list[float] = []
    for row in piles.itertuples():
        if len(row.t) < 2:
            continue
        dt = np.diff(row.t)
        gaps.extend(dt.tolist())
        ok = dt <= 2.0
        ratios.extend(np.log(row.v[1:][ok] / row.v[:-1][ok]).tolist())
    spread = np.asarray(ratios)
    cv = (float(1.4826 * np.median(np.abs(spread - np.median(spread))) / np.sqrt(2))
          if len(spread) >= 10 else DEFAULT_CV)
    cv = float(np.clip(cv, 0.05, 1.0))
    own, se2 = _slopes_with_error(piles, cv)
    has = np.isfinite(own) & np.isfinite(se2)
    if has.sum() >= MIN_GROUP:
        global_growth, tau2 = _random_effects(own[has], se2[has])
    else:
        global_growth, tau2 = 0.0, 1e-4
    material_growth = {}
    for material, idx in piles[has].groupby("material").groups.items():
        sel = piles.index.get_indexer(idx)
        if len(sel) >= MIN_GROUP:
            material_growth[str(material)] = _pooled_growth(own[sel], se2[sel], tau2)
    pad = float(np.mean(gaps)) if gaps else 0.0
    cleared_seen = piles["cleared"].to_numpy(bool)
    age_last = ((piles["last_seen"] - piles["first_seen"]) / DAY).to_numpy(float)
    cleared = cleared_seen | (((as_of - piles["last_seen"]) / DAY).to_numpy(float)
                              > present_days)
    # A pile still standing is known to last at least to its last sighting (censored there).
    # A cleared one went some time after its last sighting: sightings come at random while a
    # pile stands, so that time averages one mean gap between sightings. A sighting of 0 m3
    # dates the clearing itself.
    durations = np.where(cleared & ~cleared_seen, age_last + pad, age_last)
    times, survival = kaplan_meier(durations, cleared)
    tail_from, hazard = exponential_tail(durations, cleared, times, survival)
    # How far to trust a pile's own slope over its group's: the moment estimate of tau^2
    # leans on the precise (small, slow) piles, so it is checked on held-out sightings: each
    # pile's later sightings forecast from its earlier ones, at a few multiples of it.
    best, held = None, _held_out(piles, cv)
    near = _neighbours(piles, own, se2, area_m, piles)
    for factor in TAU2_FACTORS:
        candidate = tau2 * factor
        priors, _ = _group_priors(piles, own, se2, area_m, material_growth, global_growth,
                                  candidate, near=near)
        errors, _ = _held_out_errors(held, priors, cv, candidate)
        score = float(np.mean(np.abs(errors))) if len(errors) >= MIN_CALIBRATION else 0.0
        if best is None or score < best[0] - 1e-9:
            best = (score, candidate, priors)
    _, tau2, priors = best
    z_lower, z_upper, n_cal = _calibrate(held, priors, cv, tau2)
    model.cv_, model.global_growth_, model.tau2_ = cv, float(global_growth), float(tau2)
    model.material_growth_ = material_growth
    model.lifetime_pad_days_ = pad
    model.km_times_, model.km_survival_ = times, survival
    model.lifetimes_observed_ = int(cleared.sum())
    model.tail_from_days_, model.tail_hazard_per_day_ = float(tail_from), float(hazard)
    model.z_lower_, model.z_upper_, model.calibration_sightings_ = z_lower, z_upper, n_cal


def pile_survival(model: PileVolumeModel, t) -> np.ndarray:
    """``S(t)`` of pile lifetimes: Kaplan-Meier up to the tail, exponential beyond it."""
    t = np.asarray(t, float)
    if not len(model.km_times_):
        return np.ones_like(t)
    start = min(model.tail_from_days_, float(model.km_times_[-1]))
    at_start = survival_at(model.km_times_, model.km_survival_, start)
    tail = at_start * np.exp(-model.tail_hazard_per_day_ * np.maximum(t - start, 0.0))
    return np.where(t <= start, survival_at(model.km_times_, model.km_survival_, t), tail)


def present_piles(model: PileVolumeModel, piles: pd.DataFrame, as_of) -> pd.DataFrame:
    """The piles present at ``as_of``, with their shrunk growth and level.

    Present: last seen at most ``present_days`` before; those last seen at 0 m3 are kept,
    marked ``cleared``.
    """
    as_of = pd.Timestamp(as_of)
    if piles.empty:
        return pd.DataFrame(columns=PILE_COLUMNS)
    recent = (((as_of - piles["last_seen"]) / DAY) <= model.present_days).to_numpy()
    present = piles[recent].copy()
    if present.empty:
        return pd.DataFrame(columns=PILE_COLUMNS)
    own, se2 = _slopes_with_error(piles, model.cv_)
    priors, groups = _group_priors(piles, own, se2, model.area_m, model.material_growth_,
                                   model.global_growth_, model.tau2_, of=present)
    present["own_se"] = np.sqrt(se2[recent])
    present["prior_growth"] = priors
    present["prior_group"] = groups
    states = [(0.0, 0.0, 0.0, 0.0) if row.cleared or not len(row.t) else
              _pile_state(row.t, row.v, prior, model.cv_, model.tau2_)
              for row, prior in zip(present.itertuples(), priors, strict=True)]
    present["growth"], present["growth_sd"], present["level"], present["level_log_var"] = (
        np.asarray(states, float).T if states else ([], [], [], []))
    present["age_days"] = ((present["last_seen"] - present["first_seen"]) / DAY).to_numpy()
    return present[PILE_COLUMNS].reset_index(drop=True)


def forecast_piles(model: PileVolumeModel, present: pd.DataFrame, as_of,
                   days_ahead) -> pd.DataFrame:
    """Each present pile ``days_ahead`` after ``as_of``: volume if not cleared, and P(cleared).

    ``value`` is the volume if not cleared (the median of a sighting then) with an 80 %
    interval (``lower``, ``upper``); ``p_cleared`` the probability it has been cleared by
    then (``p_present`` = 1 - it).

    ``days_ahead`` is one number for all piles or one per pile. ``expected`` is
    ``p_present * value``, the probability-weighted volume; ``overall_lower``/``_upper`` the
    80 % interval of the volume whatever happens (0 m3 once cleared): with a likely clearing
    it is 0-0, which is why it is not the interval shown. Returns ``FORECAST_COLUMNS``.
    """
    as_of = pd.Timestamp(as_of)
    days_ahead = np.broadcast_to(np.asarray(days_ahead, float), (len(present),))
    since_last = ((as_of - present["last_seen"]) / DAY).to_numpy(float) + days_ahead
    age = present["age_days"].to_numpy(float)
    cleared = present["cleared"].to_numpy(bool)
    # The pile was there at its last sighting, at age ``age``.
    s_now = pile_survival(model, age)
    s_then = pile_survival(model, age + since_last)
    p = np.clip(np.where(s_now > 0, s_then / np.where(s_now > 0, s_now, 1.0), 0.0), 0.0, 1.0)
    p = np.where(cleared, 0.0, p)
    level = present["level"].to_numpy(float)
    growth = present["growth"].to_numpy(float)
    median = np.where(cleared, 0.0, level + growth * since_last)
    s = _log_spread(model.cv_, present["level_log_var"].to_numpy(float),
                    present["growth_sd"].to_numpy(float), since_last,
                    np.where(median > 0, median, 1.0))
    def overall(q: float) -> np.ndarray:
        # The volume on the target date whatever happens: 0 m3 with probability 1 - p, else
        # the calibrated log-normal. Its quantile q lies in the log-normal part at q' below.
        inner = np.clip((q - (1 - p)) / np.where(p > 0, p, 1.0), 1e-9, 1 - 1e-9)
        z = norm.ppf(inner)
        z = z * np.where(z < 0, model.z_lower_ / norm.ppf(ALPHA / 2),
                         model.z_upper_ / norm.ppf(1 - ALPHA / 2))
        return np.where(q <= 1 - p, 0.0, median * np.exp(z * s))

    return pd.DataFrame({
        "pile_ref": present["pile_ref"].to_numpy(), "last_id": present["last_id"].to_numpy(),
        "horizon_days": days_ahead, "days_since_last": since_last, "p_present": p,
        "p_cleared": 1.0 - p, "value": median, "lower": median * np.exp(model.z_lower_ * s),
        "upper": median * np.exp(model.z_upper_ * s), "expected": p * median,
        "overall_lower": overall(ALPHA / 2), "overall_upper": overall(1 - ALPHA / 2),
        "last_volume": present["last_volume"].to_numpy(float),
    }, columns=FORECAST_COLUMNS)


# -- reading, evaluating and scoring ------------------------------------------------------------

def load_sightings(conn, until) -> pd.DataFrame:
    """Debris sightings observed by ``until``, projected to metres (the data's UTM zone)."""
    from geo import predictions as sql
    from predict.debris import project_lonlat, utm_crs

    obs = sql.debris_observations(conn, as_utc(until).to_pydatetime())
    obs["observed_at"] = pd.to_datetime(obs["observed_at"], utc=True)
    obs["volume_m3"] = pd.to_numeric(obs["volume_m3"], errors="coerce")
    if obs.empty:
        obs["x"], obs["y"] = [], []
        return obs
    crs = utm_crs(float(obs["lon"].mean()), float(obs["lat"].mean()))
    obs["x"], obs["y"] = project_lonlat(obs["lon"], obs["lat"], crs)
    return obs


def resolve_debris_as_of(conn, as_of) -> pd.Timestamp:
    """The as-of time (default: the newest sighting); refuse one after the last sighting."""
    from geo import predictions as sql
    from geo.errors import InvalidInput
    from geo.i18n import _

    last = sql.last_observation(conn, "debris_piles")
    if last is None:
        raise InvalidInput(_("There are no debris observations to learn from."))
    last = as_utc(last)
    if as_of is None:
        return last
    as_of = as_utc(as_of)
    if as_of.normalize() > last.normalize():
        raise InvalidInput(_("As-of {as_of} is after the last debris observation ({last}); "
                             "choose a date on or before it.",
                             as_of=as_of.date(), last=last.date()))
    return as_of


def _probability(p) -> float:
    """A probability to 3 significant digits: far-off clearing makes presence tiny, not 0."""
    return float(f"{float(p):.3g}")


def _mae(a: np.ndarray, b: np.ndarray) -> float | None:
    return round(float(np.mean(np.abs(a - b))), 3) if len(a) else None


def truth_volumes(truth: pd.DataFrame, refs: np.ndarray, at: pd.Timestamp) -> np.ndarray:
    """True volume of piles at a time from the generator's truth (0 once cleared, NaN unknown)."""
    t = truth.set_index("pile_ref").reindex(refs)
    appeared = pd.to_datetime(t["appeared_at"], utc=True)
    cleared = pd.to_datetime(t["cleared_at"], utc=True)
    there = (appeared <= at) & (cleared.isna() | (cleared > at))
    volume = t["v0_m3"] + t["growth_m3_per_day"] * ((at - appeared) / DAY)
    return np.where(t["v0_m3"].isna(), np.nan, np.where(there, volume, 0.0)).astype(float)


def _read_truth(truth_csv) -> pd.DataFrame | None:
    from pathlib import Path

    if truth_csv is None or not Path(truth_csv).is_file():
        return None
    return pd.read_csv(truth_csv)


def _scored_rows(everything: pd.DataFrame, as_of: pd.Timestamp, horizons: list[int],
                 window_days: float, truth: pd.DataFrame | None) -> tuple[dict, list[dict]]:
    """The model's summary at ``as_of`` and, per horizon, the rows it can be scored on."""
    known = everything[everything["observed_at"] <= as_of]
    model, piles = fit_pile_model(known, as_of)
    present = present_piles(model, piles, as_of)
    summary = {"piles_seen": model.piles_, "piles_present": int(len(present)),
               "present_days": model.present_days, "volume_cv": round(model.cv_, 3),
               "growth_all_m3_per_day": round(model.global_growth_, 3),
               "growth_by_material": {k: round(v, 3) for k, v in model.material_growth_.items()},
               "lifetime_pad_days": round(model.lifetime_pad_days_, 2),
               "lifetimes_observed": model.lifetimes_observed_,
               "interval_z": [round(model.z_lower_, 3), round(model.z_upper_, 3)],
               "calibration_sightings": model.calibration_sightings_,
               "prior_groups": (present["prior_group"].value_counts().to_dict()
                                if len(present) else {})}
    rows = []
    standing = present[~present["cleared"].astype(bool)] if len(present) else present
    for h in horizons:
        w = min(float(window_days), h / 2)
        entry = {"horizon_days": h, "window_days": w, "forecast": None, "again": None,
                 "truth": None}
        if not present.empty:
            fc = forecast_piles(model, present, as_of, h)
            entry["forecast"] = fc
            centre = as_of + h * DAY
            # Every later sighting of a pile still standing at as-of, in the horizon's window,
            # against the forecast for its own time: held out in time by construction.
            later = everything[(everything["observed_at"] > as_of)
                               & ((everything["observed_at"] - centre).abs() <= w * DAY)
                               & everything["pile_ref"].isin(standing["pile_ref"])
                               & everything["volume_m3"].notna()]
            if len(later):
                sel = standing.set_index("pile_ref").loc[later["pile_ref"]].reset_index()
                own = forecast_piles(model, sel, as_of,
                                     ((later["observed_at"] - as_of) / DAY).to_numpy(float))
                entry["again"] = own.assign(observed=later["volume_m3"].to_numpy(float))
            if truth is not None:
                true = truth_volumes(truth, fc["pile_ref"].to_numpy(), centre)
                entry["truth"] = fc.assign(observed=true)[~np.isnan(true)]
        rows.append(entry)
    return summary, rows


def _covered(observed: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    return (observed >= frame["lower"].to_numpy() - 1e-9) & (
        observed <= frame["upper"].to_numpy() + 1e-9)


def _summarise(entries: list[dict]) -> dict:
    """Pooled scores of per-horizon entries (of one or several as-of dates).

    ``observed_again``: later sightings (volume > 0) of piles standing at as-of, scored by
    the volume if not cleared (``value``) against persistence, and by interval coverage.
    ``against_truth``: every forecast pile's true volume at the horizon (0 once cleared):
    the probability-weighted volume against persistence, the Brier score of the clearing
    probability, the coverage of the overall interval (clearing counted as 0 m3), and, on
    the piles truly still there, the volume if not cleared and its interval.
    """
    out: dict = {}
    forecasts = [e["forecast"] for e in entries if e["forecast"] is not None]
    out["piles_forecast"] = int(sum(len(f) for f in forecasts))
    if forecasts:
        out["mean_p_present"] = _probability(pd.concat(forecasts)["p_present"].mean())
    again = [e["again"] for e in entries if e["again"] is not None]
    a = pd.concat(again) if again else pd.DataFrame()
    if len(a):
        a = a[a["observed"] > 0]
    out["observed_again"] = {"window_days": entries[0]["window_days"] if entries else None,
                             "sightings": int(len(a)),
                             "piles": int(a["pile_ref"].nunique()) if len(a) else 0}
    if len(a):
        seen = a["observed"].to_numpy()
        model_mae = _mae(a["value"].to_numpy(), seen)
        persistence = _mae(a["last_volume"].to_numpy(), seen)
        out["observed_again"].update({
            "mae_if_present": model_mae, "mae_persistence": persistence,
            "mae_ratio": round(model_mae / persistence, 3) if persistence else None,
            "mae_expected": _mae(a["expected"].to_numpy(), seen),
            "coverage": round(float(np.mean(_covered(seen, a))), 3),
            "mean_p_cleared": _probability(a["p_cleared"].mean())})
    truths = [e["truth"] for e in entries if e["truth"] is not None]
    if truths:
        t = pd.concat(truths)
        true = t["observed"].to_numpy()
        there = true > 0
        out["against_truth"] = {
            "piles": int(len(t)), "still_present": int(there.sum()),
            "mean_p_present": _probability(t["p_present"].mean()) if len(t) else None,
            "brier_p_present": (round(float(np.mean((t["p_present"] - there) ** 2)), 3)
                                if len(t) else None),
            "mae_expected": _mae(t["expected"].to_numpy(), true),
            "mae_persistence": _mae(t["last_volume"].to_numpy(), true),
            "coverage": round(float(np.mean(
                (true >= t["overall_lower"].to_numpy() - 1e-9)
                & (true <= t["overall_upper"].to_numpy() + 1e-9))), 3) if len(t) else None,
            "mae_if_present": _mae(t["value"].to_numpy()[there], true[there]),
            "mae_persistence_if_present": _mae(t["last_volume"].to_numpy()[there],
                                               true[there]),
            "coverage_if_present": (round(float(np.mean(_covered(true, t)[there])), 3)
                                    if there.any() else None)}
    return out


def evaluate_pile_volume(conn, as_of, horizons, *, window_days: float = 15,
                         truth_csv=None) -> dict:
    """Score the per-pile forecasts made as of a date against what happened next.

    *Observed again*: every sighting, within ``min(window_days, horizon / 2)`` days of
    ``as_of + horizon``, of a pile standing at ``as_of`` is compared with the forecast for the
    sighting's own date (the volume if not cleared, and its interval) and with persistence
    (the last volume). *Against the truth* (when the generator's ``debris_piles.csv`` is
    given): every present pile's true volume at the horizon, 0 once cleared.
    """
    as_of = resolve_debris_as_of(conn, as_of)
    horizons = sorted({int(h) for h in horizons})
    everything = load_sightings(conn, as_of + (max(horizons) + window_days + 1) * DAY)
    summary, entries = _scored_rows(everything, as_of, horizons, window_days,
                                    _read_truth(truth_csv))
    summary["horizons"] = [{"horizon_days": e["horizon_days"], **_summarise([e])}
                           for e in entries]
    return summary


def evaluate_pile_volume_pooled(conn, as_ofs, horizons, *, window_days: float = 15,
                                truth_csv=None) -> dict:
    """The same scores pooled over several as-of dates (piles are few at any one date)."""
    as_ofs = [resolve_debris_as_of(conn, a) for a in as_ofs]
    horizons = sorted({int(h) for h in horizons})
    everything = load_sightings(conn, max(as_ofs) + (max(horizons) + window_days + 1) * DAY)
    return pooled_scores(everything, as_ofs, horizons, window_days=window_days,
                         truth=_read_truth(truth_csv))


def pooled_scores(everything: pd.DataFrame, as_ofs, horizons, *, window_days: float = 15,
                  truth: pd.DataFrame | None = None) -> dict:
    """Rolling-origin scores from sightings in memory.

    Each as-of date's model sees only the sightings by that date and is scored only on later
    ones.
    """
    horizons = sorted({int(h) for h in horizons})
    per_h: dict[int, list] = {h: [] for h in horizons}
    for as_of in as_ofs:
        _, entries = _scored_rows(everything, as_utc(as_of), horizons, window_days, truth)
        for e in entries:
            per_h[e["horizon_days"]].append(e)
    return {"as_of": [str(as_utc(a).date()) for a in as_ofs],
            "horizons": [{"horizon_days": h, **_summarise(per_h[h])} for h in horizons]}


def backtest_origins(first_sighting, until, *, step_days: int = 7, warm_up_days: int = 90
                     ) -> list[pd.Timestamp]:
    """Weekly as-of dates from ``warm_up_days`` after the first sighting up to ``until``."""
    start = as_utc(first_sighting).normalize() + warm_up_days * DAY
    end = as_utc(until)
    if start > end:
        return []
    return list(pd.date_range(start, end, freq=f"{step_days}D"))
