"""Debris piles: each known pile's expected volume at a horizon, with an 80 % interval.

A pile (one ``pile_ref``) grows until it is cleared. For every pile still present at the
as-of date (last seen at most ``present_days`` before it), the forecast is

    expected volume = P(not cleared by the target date) * (level + growth * days)

where ``days`` run from the pile's last sighting to the target date and

- ``growth`` is the pile's own robust slope of volume over time (Theil-Sen: the median of
  the slopes between pairs of its sightings), shrunk towards the growth of piles of the same
  area (other piles seen within ``area_m``), else of the same reported material, else of all
  piles. The weight of its own slope is ``tau^2 / (tau^2 + se^2)``: ``se`` is the slope's
  sampling error (volume noise over the spread of its sighting times) and ``tau`` the spread
  of true growth between piles. A pile seen once has no slope of its own and gets the group's.
  Growth is never negative: piles only grow until they are cleared.
- ``level`` is the pile's volume at its last sighting, from all its sightings moved along
  that growth (their median), which is less noisy than the last estimate alone.
- ``P(not cleared)`` comes from a Kaplan-Meier curve of pile lifetimes, measured from a
  pile's first sighting to its last plus one typical gap between sightings (the time it
  would have taken to be seen again). Piles not seen for more than ``present_days`` by the
  as-of date count as cleared; the others are censored. The chance a pile of age ``a`` at
  its last sighting is still there ``d`` days later is ``S(a + d) / S(a)``.

The interval is the 10 % and 90 % quantiles of the mixture "cleared (0 m3) with probability
1 - P, else normal around ``level + growth * days``" whose spread combines the volume noise
seen between sightings and the uncertainty of the growth.

Everything is learned from observations made by the as-of date only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

DAY = pd.Timedelta(days=1)
PRESENT_DAYS = 14.0
AREA_M = 200.0
MIN_GROUP = 3
MIN_PAIR_DAYS = 0.25  # sightings closer in time than this carry no slope
DEFAULT_CV = 0.25
ALPHA = 0.2  # 80 % interval
PILE_COLUMNS = ["pile_ref", "last_id", "first_seen", "last_seen", "sightings", "material",
                "x", "y", "lon", "lat", "last_volume", "own_growth", "own_se", "prior_growth",
                "prior_group", "growth", "growth_sd", "level", "age_days"]


def _theil_sen(t: np.ndarray, v: np.ndarray) -> float:
    """Median of pairwise slopes between sightings at least ``MIN_PAIR_DAYS`` apart."""
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    keep = np.abs(dt) >= MIN_PAIR_DAYS
    if not keep.any():
        return np.nan
    return float(np.median((v[j] - v[i])[keep] / dt[keep]))


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


def pile_summary(obs: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per ``pile_ref`` seen by ``as_of``: sightings, own growth and its error.

    ``obs`` needs ``id, pile_ref, observed_at, volume_m3, material, x, y, lon, lat``.
    """
    past = obs[(obs["observed_at"] <= as_of) & obs["pile_ref"].notna()
               & obs["volume_m3"].notna()].sort_values(["pile_ref", "observed_at", "id"])
    rows = []
    for ref, g in past.groupby("pile_ref", sort=True):
        t = ((g["observed_at"] - as_of) / DAY).to_numpy(float)
        v = g["volume_m3"].to_numpy(float)
        materials = g["material"].dropna()
        # Observers report "mixed" when unsure: prefer a specific material when there is one.
        specific = materials[materials != "mixed"]
        material = (specific.mode().iloc[0] if len(specific) else
                    materials.mode().iloc[0] if len(materials) else "unknown")
        rows.append({
            "pile_ref": ref, "last_id": int(g["id"].iloc[-1]),
            "first_seen": g["observed_at"].iloc[0], "last_seen": g["observed_at"].iloc[-1],
            "sightings": len(g), "material": material, "x": g["x"].mean(), "y": g["y"].mean(),
            "lon": float(g["lon"].iloc[-1]), "lat": float(g["lat"].iloc[-1]),
            "last_volume": float(v[-1]), "own_growth": _theil_sen(t, v),
            "sxx": float(np.sum((t - t.mean()) ** 2)), "mean_volume": float(v.mean()),
            "t": t, "v": v})
    return pd.DataFrame(rows)


@dataclass
class PileVolumeModel:
    """Growth priors, noise and survival learned from the piles seen by an as-of date.

    Fitted with :func:`fit_pile_model`; plain numbers and arrays so it can be stored in the
    model registry.
    """

    as_of: str
    present_days: float
    area_m: float
    cv: float
    global_growth: float
    tau2: float
    material_growth: dict
    lifetime_pad_days: float
    km_times: np.ndarray
    km_survival: np.ndarray
    piles: int
    lifetimes_observed: int


def _slopes_with_error(piles: pd.DataFrame, cv: float) -> tuple[np.ndarray, np.ndarray]:
    own = piles["own_growth"].to_numpy(float)
    se2 = (cv * piles["mean_volume"].to_numpy(float)) ** 2 / piles["sxx"].where(
        piles["sxx"] > 0).to_numpy(float)
    return own, se2


def fit_pile_model(obs: pd.DataFrame, as_of, *, present_days: float = PRESENT_DAYS,
                   area_m: float = AREA_M) -> tuple[PileVolumeModel, pd.DataFrame]:
    """Learn growth priors, volume noise and the lifetime curve from sightings by ``as_of``.

    Returns the model and the per-pile summary it was learned from.
    """
    as_of = pd.Timestamp(as_of)
    piles = pile_summary(obs, as_of)
    if piles.empty:
        model = PileVolumeModel(str(as_of), present_days, area_m, DEFAULT_CV, 0.0, 1e-4, {},
                                0.0, np.array([]), np.array([]), 0, 0)
        return model, piles
    # Volume noise: log-ratios of consecutive sightings of a pile at most two days apart
    # (growth over so short a gap is small next to the noise); each holds two noises.
    ratios: list[float] = []
    gaps: list[float] = []
    for row in piles.itertuples():
        if len(row.t) < 2:
            continue
        dt = np.diff(row.t)
        gaps.extend(dt.tolist())
        ok = (dt <= 2.0) & (row.v[1:] > 0) & (row.v[:-1] > 0)
        ratios.extend(np.log(row.v[1:][ok] / row.v[:-1][ok]).tolist())
    spread = np.asarray(ratios)
    cv = (float(1.4826 * np.median(np.abs(spread - np.median(spread))) / np.sqrt(2))
          if len(spread) >= 10 else DEFAULT_CV)
    cv = float(np.clip(cv, 0.05, 1.0))
    own, se2 = _slopes_with_error(piles, cv)
    has = np.isfinite(own) & np.isfinite(se2)
    if has.sum() >= MIN_GROUP:
        weights = 1.0 / se2[has]
        global_growth = max(0.0, _weighted_median(own[has], weights))
        spread = np.average((own[has] - global_growth) ** 2, weights=weights)
        tau2 = max(spread - np.average(se2[has], weights=weights), (0.25 * global_growth) ** 2,
                   1e-4)
    else:
        global_growth, tau2 = 0.0, 1e-4
    material_growth = {}
    for material, idx in piles[has].groupby("material").groups.items():
        sel = piles.index.get_indexer(idx)
        if len(sel) >= MIN_GROUP:
            material_growth[str(material)] = max(0.0, _weighted_median(own[sel], 1 / se2[sel]))
    pad = float(np.median(gaps)) if gaps else 0.0
    age_last = ((piles["last_seen"] - piles["first_seen"]) / DAY).to_numpy(float)
    cleared = ((as_of - piles["last_seen"]) / DAY).to_numpy(float) > present_days
    times, survival = kaplan_meier(age_last + pad, cleared)
    model = PileVolumeModel(str(as_of), present_days, area_m, cv, float(global_growth),
                            float(tau2), material_growth, pad, times, survival, len(piles),
                            int(cleared.sum()))
    return model, piles


def _priors(model: PileVolumeModel, piles: pd.DataFrame, present: pd.DataFrame
            ) -> tuple[np.ndarray, list[str]]:
    """Growth prior of each present pile: its area's, else its material's, else everyone's."""
    own, se2 = _slopes_with_error(piles, model.cv)
    has = np.isfinite(own) & np.isfinite(se2)
    px, py = piles["x"].to_numpy(float), piles["y"].to_numpy(float)
    refs = piles["pile_ref"].to_numpy()
    priors, groups = [], []
    for row in present.itertuples():
        near = has & (np.hypot(px - row.x, py - row.y) <= model.area_m) & (refs != row.pile_ref)
        if near.sum() >= MIN_GROUP:
            priors.append(max(0.0, _weighted_median(own[near], 1 / se2[near])))
            groups.append("area")
        elif row.material in model.material_growth:
            priors.append(model.material_growth[row.material])
            groups.append("material")
        else:
            priors.append(model.global_growth)
            groups.append("all")
    return np.asarray(priors, float), groups


def present_piles(model: PileVolumeModel, piles: pd.DataFrame, as_of) -> pd.DataFrame:
    """The piles still present at ``as_of``, with their shrunk growth and level."""
    as_of = pd.Timestamp(as_of)
    if piles.empty:
        return pd.DataFrame(columns=PILE_COLUMNS)
    recent = ((as_of - piles["last_seen"]) / DAY) <= model.present_days
    present = piles[recent].copy()
    if present.empty:
        return pd.DataFrame(columns=PILE_COLUMNS)
    prior, groups = _priors(model, piles, present)
    own, se2 = _slopes_with_error(present, model.cv)
    weight = np.where(np.isfinite(own) & np.isfinite(se2), model.tau2 / (model.tau2 + se2), 0.0)
    growth = np.maximum(0.0, weight * np.nan_to_num(own) + (1 - weight) * prior)
    posterior_var = np.where(weight > 0, weight * np.nan_to_num(se2, nan=0.0), model.tau2)
    present["own_se"] = np.sqrt(se2)
    present["prior_growth"] = prior
    present["prior_group"] = groups
    present["growth"] = growth
    present["growth_sd"] = np.sqrt(posterior_var)
    present["level"] = [
        max(0.0, float(np.median(v - g * t + g * t[-1]))) for v, t, g in
        zip(present["v"], present["t"], growth, strict=True)]
    present["age_days"] = ((present["last_seen"] - present["first_seen"]) / DAY).to_numpy()
    return present[PILE_COLUMNS].reset_index(drop=True)


def forecast_piles(model: PileVolumeModel, present: pd.DataFrame, as_of,
                   days_ahead) -> pd.DataFrame:
    """Expected volume of each present pile ``days_ahead`` after ``as_of``, with its interval.

    ``days_ahead`` is one number for all piles or one per pile. Returns ``pile_ref, last_id,
    horizon_days, days_since_last, p_present, if_present, value, lower, upper, last_volume``.
    """
    as_of = pd.Timestamp(as_of)
    days_ahead = np.broadcast_to(np.asarray(days_ahead, float), (len(present),))
    since_last = ((as_of - present["last_seen"]) / DAY).to_numpy(float) + days_ahead
    age = present["age_days"].to_numpy(float)
    if len(model.km_times):
        s_now = survival_at(model.km_times, model.km_survival, age + model.lifetime_pad_days)
        s_then = survival_at(model.km_times, model.km_survival,
                             age + model.lifetime_pad_days + since_last)
        p = np.where(s_now > 0, s_then / np.where(s_now > 0, s_now, 1.0), 0.0)
    else:
        p = np.ones(len(present))
    # A pile seen after the pad already outlived it: the curve starts at its last sighting.
    p = np.clip(p, 0.0, 1.0)
    level = present["level"].to_numpy(float)
    growth = present["growth"].to_numpy(float)
    mean = level + growth * since_last
    sd = np.sqrt((model.cv * mean) ** 2 + (since_last * present["growth_sd"].to_numpy(float))
                 ** 2)
    sd = np.maximum(sd, 1e-6)

    def quantile(q: float) -> np.ndarray:
        # Mixture: 0 with probability 1 - p, else normal(mean, sd) floored at 0.
        inner = (q - (1 - p)) / np.where(p > 0, p, 1.0)
        value = np.maximum(0.0, mean + sd * norm.ppf(np.clip(inner, 1e-9, 1 - 1e-9)))
        return np.where(inner <= 0, 0.0, value)

    return pd.DataFrame({
        "pile_ref": present["pile_ref"].to_numpy(), "last_id": present["last_id"].to_numpy(),
        "horizon_days": days_ahead, "days_since_last": since_last, "p_present": p,
        "if_present": mean, "value": p * mean, "lower": quantile(ALPHA / 2),
        "upper": quantile(1 - ALPHA / 2), "last_volume": present["last_volume"].to_numpy(float),
    })


# -- reading, evaluating and scoring ------------------------------------------------------------


def as_utc(value) -> pd.Timestamp:
    """A date or time as a UTC timestamp (a bare date is midnight UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def load_sightings(conn, until) -> pd.DataFrame:
    """Debris sightings observed by ``until``, projected to metres (the data's UTM zone)."""
    from geo import predictions as sql
    from predict.debris import _project, utm_crs

    obs = sql.debris_observations(conn, as_utc(until).to_pydatetime())
    obs["observed_at"] = pd.to_datetime(obs["observed_at"], utc=True)
    obs["volume_m3"] = pd.to_numeric(obs["volume_m3"], errors="coerce")
    if obs.empty:
        obs["x"], obs["y"] = [], []
        return obs
    crs = utm_crs(float(obs["lon"].mean()), float(obs["lat"].mean()))
    obs["x"], obs["y"] = _project(obs["lon"], obs["lat"], crs)
    return obs


def resolve_debris_as_of(conn, as_of) -> pd.Timestamp:
    """The as-of time (default: the newest sighting); refuse one after the last sighting."""
    from geo import predictions as sql
    from geo.errors import InvalidInput

    last = sql.last_observation(conn, "debris_piles")
    if last is None:
        raise InvalidInput("There are no debris observations to learn from.")
    last = as_utc(last)
    if as_of is None:
        return last
    as_of = as_utc(as_of)
    if as_of.normalize() > last.normalize():
        raise InvalidInput(f"As-of {as_of.date()} is after the last debris observation "
                           f"({last.date()}); choose a date on or before it.")
    return as_of


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
    summary = {"piles_seen": model.piles, "piles_present": int(len(present)),
               "present_days": model.present_days, "volume_cv": round(model.cv, 3),
               "growth_all_m3_per_day": round(model.global_growth, 3),
               "growth_by_material": {k: round(v, 3) for k, v in model.material_growth.items()},
               "lifetime_pad_days": round(model.lifetime_pad_days, 2),
               "lifetimes_observed": model.lifetimes_observed,
               "prior_groups": (present["prior_group"].value_counts().to_dict()
                                if len(present) else {})}
    rows = []
    for h in horizons:
        w = min(float(window_days), h / 2)
        entry = {"horizon_days": h, "window_days": w, "forecast": None, "again": None,
                 "truth": None}
        if not present.empty:
            fc = forecast_piles(model, present, as_of, h)
            entry["forecast"] = fc
            centre = as_of + h * DAY
            later = everything[(everything["observed_at"] > as_of)
                               & ((everything["observed_at"] - centre).abs() <= w * DAY)
                               & everything["pile_ref"].isin(present["pile_ref"])
                               & everything["volume_m3"].notna()]
            later = later.assign(distance=(later["observed_at"] - centre).abs())
            later = later.sort_values(["pile_ref", "distance"]).groupby("pile_ref").head(1)
            if len(later):
                sel = present.set_index("pile_ref").loc[later["pile_ref"]].reset_index()
                own = forecast_piles(model, sel, as_of,
                                     ((later["observed_at"] - as_of) / DAY).to_numpy(float))
                entry["again"] = own.assign(observed=later["volume_m3"].to_numpy(float))
            if truth is not None:
                true = truth_volumes(truth, fc["pile_ref"].to_numpy(), centre)
                entry["truth"] = fc.assign(observed=true)[~np.isnan(true)]
        rows.append(entry)
    return summary, rows


def _summarise(entries: list[dict]) -> dict:
    """Pooled scores of per-horizon entries (of one or several as-of dates)."""
    out: dict = {}
    forecasts = [e["forecast"] for e in entries if e["forecast"] is not None]
    out["piles_forecast"] = int(sum(len(f) for f in forecasts))
    if forecasts:
        out["mean_p_present"] = round(float(pd.concat(forecasts)["p_present"].mean()), 3)
    again = [e["again"] for e in entries if e["again"] is not None]
    a = pd.concat(again) if again else pd.DataFrame()
    out["observed_again"] = {"window_days": entries[0]["window_days"], "piles": int(len(a))}
    if len(a):
        seen = a["observed"].to_numpy()
        out["observed_again"].update({
            "mae_expected": _mae(a["value"].to_numpy(), seen),
            "mae_if_present": _mae(a["if_present"].to_numpy(), seen),
            "mae_persistence": _mae(a["last_volume"].to_numpy(), seen),
            "coverage": round(float(np.mean((seen >= a["lower"] - 1e-9)
                                            & (seen <= a["upper"] + 1e-9))), 3)})
    truths = [e["truth"] for e in entries if e["truth"] is not None]
    if truths:
        t = pd.concat(truths)
        true = t["observed"].to_numpy()
        there = true > 0
        out["against_truth"] = {
            "piles": int(len(t)), "still_present": int(there.sum()),
            "mean_p_present": round(float(t["p_present"].mean()), 3) if len(t) else None,
            "brier_p_present": (round(float(np.mean((t["p_present"] - there) ** 2)), 3)
                                if len(t) else None),
            "mae_expected": _mae(t["value"].to_numpy(), true),
            "mae_persistence": _mae(t["last_volume"].to_numpy(), true),
            "mae_if_present": _mae(t["if_present"].to_numpy(), true),
            "coverage": (round(float(np.mean((true >= t["lower"] - 1e-9)
                                             & (true <= t["upper"] + 1e-9))), 3)
                         if len(t) else None)}
    return out


def evaluate_pile_volume(conn, as_of, horizons, *, window_days: float = 15,
                         truth_csv=None) -> dict:
    """Score the per-pile forecasts made as of a date against what happened next.

    *Observed again*: for each pile present at ``as_of`` and seen again within
    ``min(window_days, horizon / 2)`` days of ``as_of + horizon``, its sighting nearest to that
    date is compared with the forecast for the sighting's own date, with the "if still there"
    part of it, and with persistence (the last volume). Those piles were by definition not
    cleared, so this favours forecasts that ignore clearing. *Against the truth* (when the
    generator's ``debris_piles.csv`` is given): every present pile's true volume at the
    horizon, 0 once cleared.
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
    truth = _read_truth(truth_csv)
    per_h: dict[int, list] = {h: [] for h in horizons}
    for as_of in as_ofs:
        _, entries = _scored_rows(everything, as_of, horizons, window_days, truth)
        for e in entries:
            per_h[e["horizon_days"]].append(e)
    return {"as_of": [str(a.date()) for a in as_ofs],
            "horizons": [{"horizon_days": h, **_summarise(per_h[h])} for h in horizons]}
