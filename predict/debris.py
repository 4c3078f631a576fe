"""Debris piles: where new piles will appear, against a kernel density of past reports.

Space is cut into square cells of ``cell_m`` metres in the local UTM zone (a metric CRS
chosen from the data's own longitude). For a cutoff, each cell gets features made of the
reports observed by then; the target is whether a pile not seen before (a new ``pile_ref``)
is first reported in the cell within the horizon. The model is a gradient-boosted classifier
trained on earlier cutoffs whose horizon ended by the as-of; the baseline ranks cells by a
Gaussian kernel density of all past reports. Validation leaves whole spatial blocks out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyproj import CRS, Transformer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from geo import predictions as sql
from geo.errors import InvalidInput
from geo.i18n import _

DAY = pd.Timedelta(days=1)
CELL_M = 100.0
KDE_BANDWIDTH_M = 120.0
BLOCK_M = 500.0
STEP_DAYS = 30
FEATURES = ["n_30", "n_90", "n_365", "piles_ever", "days_since_last", "ring_90", "ring_piles",
            "kde", "volume_90"]


def utm_crs(lon: float, lat: float) -> CRS:
    """The UTM zone CRS holding a point."""
    zone = int((lon + 180) // 6) + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def project_lonlat(lon, lat, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes (EPSG:4326) as x and y in ``crs``."""
    to = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return to.transform(np.asarray(lon, float), np.asarray(lat, float))


class Grid:
    """Square cells over an extent in a metric CRS."""

    def __init__(self, x0: float, y0: float, nx: int, ny: int, cell_m: float):
        self.x0, self.y0, self.nx, self.ny, self.cell_m = x0, y0, nx, ny, cell_m

    @property
    def n(self) -> int:
        """Number of cells."""
        return self.nx * self.ny

    def cell_of(self, x, y) -> np.ndarray:
        """Cell index of points (-1 outside)."""
        i = np.floor((np.asarray(x) - self.x0) / self.cell_m).astype(int)
        j = np.floor((np.asarray(y) - self.y0) / self.cell_m).astype(int)
        inside = (i >= 0) & (i < self.nx) & (j >= 0) & (j < self.ny)
        return np.where(inside, j * self.nx + i, -1)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell centres."""
        j, i = np.divmod(np.arange(self.n), self.nx)
        return self.x0 + (i + 0.5) * self.cell_m, self.y0 + (j + 0.5) * self.cell_m

    def ring_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum over each cell's 3x3 neighbourhood (itself excluded)."""
        grid = values.reshape(self.ny, self.nx)
        padded = np.pad(grid, 1)
        total = sum(padded[1 + dj:1 + dj + self.ny, 1 + di:1 + di + self.nx]
                    for dj in (-1, 0, 1) for di in (-1, 0, 1))
        return (total - grid).reshape(-1)

    def blocks(self, block_m: float) -> np.ndarray:
        """Spatial block id of every cell."""
        j, i = np.divmod(np.arange(self.n), self.nx)
        k = max(1, int(round(block_m / self.cell_m)))
        return (j // k) * (self.nx // k + 1) + i // k


class HotspotClassifier(ClassifierMixin, BaseEstimator):
    """Whether a new pile appears in a cell within the horizon, from the cell's features.

    Gradient-boosted trees over a plain matrix of cell features (the columns of
    :data:`FEATURES`, as :func:`cell_features` makes them; missing values allowed: a cell
    never reported has no ``days_since_last``). A scikit-learn classifier: ``__init__``
    stores the parameters, ``fit`` returns the model with ``model_``, ``classes_`` and
    ``n_iter_``; it passes scikit-learn's ``check_estimator``.

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        Passed to ``HistGradientBoostingClassifier``.
    random_state : int or None
        Seed of the boosted trees.
    """

    def __init__(self, max_iter: int = 150, learning_rate: float = 0.05,
                 max_leaf_nodes: int = 8, min_samples_leaf: int = 30,
                 l2_regularization: float = 1.0, random_state: int | None = 0) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def fit(self, X, y) -> HotspotClassifier:
        """Learn from cell features ``X`` and whether a new pile came (``y``); returns self."""
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan")
        check_classification_targets(y)
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            random_state=self.random_state).fit(X, y)
        self.classes_ = self.model_.classes_
        self.n_iter_ = self.model_.n_iter_
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each class (the second: a new pile) for every cell."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        return self.model_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """The more likely class of every cell."""
        proba = self.predict_proba(X)  # checks the model is fitted first
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        """Missing feature values are allowed (boosted trees route them)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _kde(grid: Grid, x: np.ndarray, y: np.ndarray, bandwidth_m: float) -> np.ndarray:
    cx, cy = grid.centres()
    if len(x) == 0:
        return np.zeros(grid.n)
    d2 = (cx[:, None] - x[None, :]) ** 2 + (cy[:, None] - y[None, :]) ** 2
    return np.exp(-d2 / (2 * bandwidth_m ** 2)).sum(axis=1)


def cell_features(obs: pd.DataFrame, grid: Grid, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Per-cell features from the reports observed by ``cutoff``."""
    past = obs[obs["observed_at"] <= cutoff]
    out = pd.DataFrame(index=np.arange(grid.n))
    age = (cutoff - past["observed_at"]) / DAY
    for days in (30, 90, 365):
        sel = past[age <= days]
        out[f"n_{days}"] = np.bincount(sel["cell"][sel["cell"] >= 0], minlength=grid.n)[:grid.n]
    piles = past[past["cell"] >= 0].groupby("cell")["pile_ref"].nunique()
    out["piles_ever"] = piles.reindex(out.index).fillna(0).to_numpy()
    last = past[past["cell"] >= 0].groupby("cell")["observed_at"].max()
    out["days_since_last"] = ((cutoff - last) / DAY).reindex(out.index).to_numpy()
    out["ring_90"] = grid.ring_sum(out["n_90"].to_numpy(float))
    out["ring_piles"] = grid.ring_sum(out["piles_ever"].to_numpy(float))
    out["kde"] = _kde(grid, past["x"].to_numpy(), past["y"].to_numpy(), KDE_BANDWIDTH_M)
    recent = past[(age <= 90) & (past["cell"] >= 0)]
    out["volume_90"] = recent.groupby("cell")["volume_m3"].max().reindex(out.index).fillna(0)
    return out


def new_piles(obs: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Piles first reported in ``(start, end]``: their first report, with its cell."""
    first = obs.sort_values("observed_at").groupby("pile_ref").head(1)
    return first[(first["observed_at"] > start) & (first["observed_at"] <= end)]


def _hit_rates(scores: np.ndarray, piles: pd.DataFrame, shares=(0.1, 0.3)) -> dict:
    order = np.argsort(-scores, kind="stable")
    out = {}
    for share in shares:
        top = set(order[: int(np.ceil(len(scores) * share))].tolist())
        hits = piles["cell"].isin(top).sum()
        out[f"top_{int(share * 100)}pct"] = round(hits / len(piles), 3) if len(piles) else None
    return out


def evaluate_debris(conn, as_of, horizon_days: int, *, cell_m: float = CELL_M,
                    random_state: int = 0) -> dict:
    """Hit rate of new piles in the top 10 % and 30 % of cells, model against kernel density."""
    if horizon_days <= 0:
        raise InvalidInput(_("A horizon must be a positive number of days, not {days}.",
                             days=horizon_days))
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    last = sql.last_observation(conn, "debris_piles")
    if last is None:
        raise InvalidInput(_("There are no debris observations to learn from."))
    if as_of.normalize() > pd.Timestamp(last).tz_convert("UTC").normalize():
        raise InvalidInput(_("As-of {as_of} is after the last debris observation ({last}); "
                             "choose a date on or before it.",
                             as_of=as_of.date(), last=pd.Timestamp(last).date()))
    everything = sql.debris_observations(conn, (as_of + horizon_days * DAY).to_pydatetime())
    everything["observed_at"] = pd.to_datetime(everything["observed_at"], utc=True)
    streets = sql.street_attributes(conn)
    crs = utm_crs(float(streets["lon"].mean()), float(streets["lat"].mean()))
    sx, sy = project_lonlat(streets["lon"], streets["lat"], crs)
    margin = 2 * cell_m
    x0, y0 = sx.min() - margin, sy.min() - margin
    grid = Grid(x0, y0, int(np.ceil((sx.max() + margin - x0) / cell_m)),
                int(np.ceil((sy.max() + margin - y0) / cell_m)), cell_m)
    everything["x"], everything["y"] = project_lonlat(everything["lon"], everything["lat"], crs)
    everything["cell"] = grid.cell_of(everything["x"], everything["y"])
    known = everything[everything["observed_at"] <= as_of]
    # Training cutoffs: their horizon ends by as_of, so targets are known then.
    rows, cutoff = [], as_of - horizon_days * DAY
    first = known["observed_at"].min() + 90 * DAY if len(known) else as_of
    while cutoff >= first:
        feats = cell_features(known, grid, cutoff)
        target = np.zeros(grid.n, dtype=int)
        fresh = new_piles(known, cutoff, cutoff + horizon_days * DAY)
        target[fresh["cell"][fresh["cell"] >= 0].to_numpy()] = 1
        rows.append(feats.assign(target=target, cutoff=cutoff, block=grid.blocks(BLOCK_M)))
        cutoff -= STEP_DAYS * DAY
    if len(rows) < 2:
        raise InvalidInput(_("Too little debris history by {as_of} to train a {days}-day model "
                             "(fewer than two past windows).",
                             as_of=as_of.date(), days=horizon_days))
    train = pd.concat(rows, ignore_index=True)
    if train["target"].sum() < 5:
        raise InvalidInput(_("Too few new piles before {as_of} to train ({piles}).",
                             as_of=as_of.date(), piles=int(train["target"].sum())))

    def model() -> HotspotClassifier:
        return HotspotClassifier(random_state=random_state)

    # Spatial-block cross-validation on the training windows: whole areas left out.
    folds = GroupKFold(n_splits=min(5, train["block"].nunique()))
    cv: dict[str, list[float]] = {"model": [], "kde": []}
    for fit_idx, test_idx in folds.split(train, groups=train["block"]):
        fitted = model().fit(train.iloc[fit_idx][FEATURES], train.iloc[fit_idx]["target"])
        test = train.iloc[test_idx]
        p = fitted.predict_proba(test[FEATURES])[:, 1]
        positives = test["target"].sum()
        for name, score in (("model", p), ("kde", test["kde"].to_numpy())):
            # Share of held-out positive cells ranked in the top 30 % of the held-out cells.
            order = np.argsort(-score, kind="stable")[: int(np.ceil(len(test) * 0.3))]
            cv[name].append(float(test["target"].to_numpy()[order].sum() / positives)
                            if positives else np.nan)
    final = model().fit(train[FEATURES], train["target"])
    now = cell_features(known, grid, as_of)
    prob = final.predict_proba(now[FEATURES])[:, 1]
    future = new_piles(everything, as_of, as_of + horizon_days * DAY)
    future = future[future["cell"] >= 0]
    return {
        "target": "debris", "as_of": str(as_of.date()), "horizon_days": horizon_days,
        "cell_m": cell_m, "crs": crs.to_string(), "cells": grid.n,
        "training_windows": len(rows), "new_piles": int(len(future)),
        "hit_rate_model": _hit_rates(prob, future),
        "hit_rate_kde": _hit_rates(now["kde"].to_numpy(), future),
        "spatial_block_cv_top_30pct": {k: round(float(np.nanmean(v)), 3) for k, v in cv.items()},
        "definition": ("share of piles first reported in (as-of, as-of + horizon] whose cell "
                       "ranks in the top 10 % / 30 % of cells by score"),
    }
