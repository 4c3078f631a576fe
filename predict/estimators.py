"""Estimators that follow the scikit-learn contract.

``__init__`` stores parameters only; ``fit`` returns ``self``; learned state ends in ``_``;
every prediction first checks the model is fitted; ``random_state`` is honoured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted

# Bands of days ahead with an interval calibration of their own (a month, a season, a year,
# two and three years ahead), and the fewest held-out rows a band needs for it.
HORIZON_BANDS = (45.0, 135.0, 270.0, 540.0, 900.0)
MIN_BAND_ROWS = 40
# Scaled scores divide by the quantile band's width, never by less than this (goodness, a
# share of the metric's range): a band that collapses to a point must not blow a score up.
MIN_SCALE = 0.02
INTERVAL_SCALINGS = ("width", "none")


class WearForecaster(RegressorMixin, BaseEstimator):
    """Forecast a bounded condition value as the change from its last value.

    The model learns ``target - X[last_column]`` with gradient-boosted quantile regression
    (the median for the forecast, the ``alpha/2`` and ``1 - alpha/2`` quantiles for the
    interval), then calibrates the interval conformally on held-out examples: the most
    recent outcomes of a share of the streets, when ``fit`` is given times and groups
    (conformalised quantile regression). Every output is
    ``clip(last + change, lower_bound, upper_bound)``: a forecast never leaves the range.

    Parameters
    ----------
    last_column : str
        Column of ``X`` with the last observed value (on the same scale as ``y``).
    lower_bound, upper_bound : float
        The range every forecast is clipped to.
    alpha : float
        One minus the interval's nominal coverage (0.2: an 80 % interval).
    calibration_fraction : float
        Share of the training rows held out to calibrate the interval: the latest outcomes
        when ``fit`` is given ``times``, else whole groups (or rows) drawn at random.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        Passed to each ``HistGradientBoostingRegressor``.
    random_state : int or None
        Seed of the calibration split and of the boosted trees.
    differences : tuple of (name, a, b)
        Columns made from others, ``name = a - b`` (e.g. how long before the forecast's target
        a programmed resurfacing falls: the horizon minus the days to the work). They are
        made here, for fitting and for every prediction, because ``predict_windows`` changes
        the window's columns after the frame is built.
    horizon_column : str
        Column with the days ahead; the interval is calibrated per band of it.
    interval_scaling : {"width", "none"}
        ``"width"``: a held-out outcome's distance outside the quantile band is measured in
        widths of that band (at least ``MIN_SCALE``), and each interval is widened by the
        same number of its own widths; a street whose band is wide (old, worn, noisy) gets
        more widening than a young one. ``"none"``: the same absolute widening for all.
    refit_bounds : bool
        After calibration, fit the bound quantiles again on every example (the most recent
        included), as the median is. Off by default: the refitted bounds are tighter than the
        ones calibrated, so the interval holds more than it says (0.82-0.88 instead of about 0.80
        on the yearly scenario, seeds 3 and 7; docs/benchmarks.md); the calibrated models
        forecast, as split conformal prediction has it.
    hold_out_groups : float
        With ``groups`` and ``times`` both given: the share of groups (streets) whose latest
        outcomes calibrate the interval, kept out of the models being calibrated altogether
        (0: every group's latest outcomes calibrate, held out in time only; too few examples
        left to learn from: the same). A calibration example forecasts from a cutoff years
        before its outcome; had the models learnt from the same street's outcomes between that
        cutoff and the held-out time, they would know more of the street than a forecast ever
        does, and the interval would come out too narrow at the longest horizons.
    """

    def __init__(self, last_column: str = "last_value", lower_bound: float = 0.0,
                 upper_bound: float = 1.0, alpha: float = 0.2, calibration_fraction: float = 0.2,
                 max_iter: int = 200, learning_rate: float = 0.05, max_leaf_nodes: int = 15,
                 min_samples_leaf: int = 40, l2_regularization: float = 1.0,
                 random_state: int | None = 0, differences: tuple = (),
                 horizon_column: str = "horizon_days", interval_scaling: str = "width",
                 refit_bounds: bool = False, hold_out_groups: float = 0.5):
        self.last_column = last_column
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        self.alpha = alpha
        self.calibration_fraction = calibration_fraction
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state
        self.differences = differences
        self.horizon_column = horizon_column
        self.interval_scaling = interval_scaling
        self.refit_bounds = refit_bounds
        self.hold_out_groups = hold_out_groups

    def __setstate__(self, state: dict) -> None:
        # A model stored before a parameter existed was fitted with the behaviour before it.
        for name, before in (("differences", ()), ("horizon_column", "horizon_days"),
                             ("interval_scaling", "none"), ("refit_bounds", False),
                             ("hold_out_groups", 0.0)):
            state.setdefault(name, before)
        super().__setstate__(state)

    # -- input handling ----------------------------------------------------------------------

    def _matrix(self, X: pd.DataFrame, *, learn: bool) -> np.ndarray:
        """Numeric matrix in the order of ``feature_names_in_``; categories become codes."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError("X must be a pandas DataFrame with named feature columns.")
        made = {name: pd.to_numeric(X[a], errors="coerce") - pd.to_numeric(X[b], errors="coerce")
                for name, a, b in self.differences if a in X and b in X}
        if made:
            X = X.assign(**made)
        if learn:
            self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
            self.n_features_in_ = len(self.feature_names_in_)
            self.categories_ = {
                c: sorted(X[c].dropna().astype(str).unique().tolist()) for c in X.columns
                if not pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])}
        X = X.reindex(columns=list(self.feature_names_in_))
        columns = []
        for c in self.feature_names_in_:
            if c in self.categories_:
                codes = {v: float(i) for i, v in enumerate(self.categories_[c])}
                columns.append(X[c].astype("string").map(codes).astype(float).to_numpy())
            else:
                columns.append(pd.to_numeric(X[c], errors="coerce").astype(float).to_numpy())
        return np.column_stack(columns) if columns else np.empty((len(X), 0))

    def _booster(self, quantile: float) -> HistGradientBoostingRegressor:
        mask = np.array([c in self.categories_ for c in self.feature_names_in_])[self.used_]
        return HistGradientBoostingRegressor(
            loss="quantile", quantile=quantile, max_iter=self.max_iter,
            learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            categorical_features=mask if mask.any() else None, early_stopping=False,
            random_state=self.random_state)

    # -- fit and predict ---------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y, groups=None, times=None):
        """Fit the median and the interval's quantiles, then calibrate the interval.

        Parameters
        ----------
        X : DataFrame
            Features, including ``last_column``.
        y : array-like
            Observed values at the horizon (same scale as ``last_column``).
        groups : array-like, optional
            A group per row (e.g. the street): without ``times``, calibration holds out whole
            groups, so that repeated examples of one street do not sit on both sides.
        times : array-like, optional
            When each row's outcome was observed (any increasing number). Given, calibration
            holds out *time*: the quantile models learn from the outcomes before the last
            ``calibration_fraction`` of them and are calibrated on those last ones, so the
            interval carries what changes from year to year (a city's paving budget) and not
            only the spread within one period. With ``groups`` too, ``hold_out_groups``
            says which groups' latest outcomes calibrate.

        The adjustment is computed per band of ``horizon_column`` (``HORIZON_BANDS`` days),
        so an interval one year ahead is not as wide as one three years ahead. A band never
        takes less than the shorter bands with ``MIN_BAND_ROWS`` held-out rows of their own;
        a band with fewer rows takes the widest of those, or the pooled one.

        Returns
        -------
        self
        """
        if self.last_column not in X.columns:
            raise ValueError(f"X has no column {self.last_column!r} with the last value.")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must lie between 0 and 1.")
        if not 0 <= self.hold_out_groups < 1:
            raise ValueError("hold_out_groups must lie between 0 (included) and 1.")
        if self.interval_scaling not in INTERVAL_SCALINGS:
            raise ValueError(f"interval_scaling must be one of {INTERVAL_SCALINGS}, not "
                             f"{self.interval_scaling!r}.")
        matrix = self._matrix(X, learn=True)
        y = np.asarray(y, dtype=float)
        change = y - X[self.last_column].to_numpy(dtype=float)
        rng = np.random.default_rng(self.random_state)
        learn = None  # the rows the calibrated models learn from; else all but `calibrate`
        if times is not None:
            times = np.asarray(times, dtype=float)
            calibrate = times > np.quantile(times, 1 - self.calibration_fraction)
            if groups is not None and self.hold_out_groups > 0:
                groups = np.asarray(groups)
                unique = np.unique(groups)
                n_held = max(1, int(round(len(unique) * self.hold_out_groups)))
                held = np.isin(groups, rng.choice(unique, size=n_held, replace=False))
                if (~calibrate & ~held).sum() >= 2 * self.min_samples_leaf and \
                        (calibrate & held).any():  # else too few: held out in time only
                    learn = ~calibrate & ~held
                    calibrate = calibrate & held
        elif groups is not None:
            groups = np.asarray(groups)
            unique = np.unique(groups)
            n_cal = max(1, int(round(len(unique) * self.calibration_fraction)))
            chosen = rng.choice(unique, size=n_cal, replace=False)
            calibrate = np.isin(groups, chosen)
        else:
            calibrate = rng.random(len(y)) < self.calibration_fraction
        if calibrate.all() or not calibrate.any():
            calibrate = rng.random(len(y)) < self.calibration_fraction
            learn = None
        train = ~calibrate if learn is None else learn
        # Features never observed in the rows the interval's models learn from (a metric that
        # only just started) are left out: those models cannot fit on an empty column, and
        # the median takes the same columns so that all three read one matrix.
        self.used_ = ~np.isnan(matrix[train]).all(axis=0)
        matrix = matrix[:, self.used_]
        low_q, high_q = self.alpha / 2, 1 - self.alpha / 2
        low = self._booster(low_q).fit(matrix[train], change[train])
        high = self._booster(high_q).fit(matrix[train], change[train])
        # Conformity: how far outside the quantile band each held-out observation falls
        # (in band widths when scaled).
        low_cal, high_cal = low.predict(matrix[calibrate]), high.predict(matrix[calibrate])
        scores = np.maximum(low_cal - change[calibrate], change[calibrate] - high_cal)
        scores = scores / self._scale(low_cal, high_cal)
        self.interval_adjustment_ = self._conformal(scores)
        horizon = (X[self.horizon_column].to_numpy(dtype=float)[calibrate]
                   if self.horizon_column in X else np.zeros(len(scores)))
        band = np.searchsorted(HORIZON_BANDS, horizon, side="right")
        # A longer horizon's widening is at least that of a shorter band with held-out rows
        # of its own: each band's conformal quantile rests on few rows, and a band whose rows
        # happened to fall close to their quantiles must not leave the longer forecasts
        # narrower than the shorter ones (on the sample, 180-day intervals held 0.76 of
        # outcomes with this rule removed by hand, 0.79 with it; docs/benchmarks.md). A band
        # with too few rows takes the widest shorter band's factor, else (none before it) the
        # pooled one.
        self.band_rows_ = [int((band == b).sum()) for b in range(len(HORIZON_BANDS) + 1)]
        own = np.fmax.accumulate([self._conformal(scores[band == b])
                                  if rows >= MIN_BAND_ROWS else np.nan
                                  for b, rows in enumerate(self.band_rows_)])
        self.band_adjustments_ = np.where(np.isnan(own), self.interval_adjustment_,
                                          own).tolist()
        if self.refit_bounds:
            low = self._booster(low_q).fit(matrix, change)
            high = self._booster(high_q).fit(matrix, change)
        self.low_model_, self.high_model_ = low, high
        # The forecast itself learns from every example, the most recent included.
        self.median_model_ = self._booster(0.5).fit(matrix, change)
        self.n_train_ = int(train.sum())
        self.n_calibration_ = int(calibrate.sum())
        return self

    def _scale(self, low: np.ndarray, high: np.ndarray) -> np.ndarray | float:
        """What a conformity score is measured in: band widths, or 1 (absolute)."""
        if self.interval_scaling == "none":
            return 1.0
        return np.maximum(high - low, MIN_SCALE)

    def _conformal(self, scores: np.ndarray) -> float:
        n = len(scores)
        level = min(1.0, np.ceil((n + 1) * (1 - self.alpha)) / n)
        return float(np.quantile(scores, level, method="higher"))

    def _adjustment(self, horizon: np.ndarray) -> np.ndarray:
        """The interval's conformal widening for each row's days ahead."""
        bands = getattr(self, "band_adjustments_", None)
        if bands is None:  # a model stored before per-horizon calibration
            return np.full(len(horizon), self.interval_adjustment_)
        return np.asarray(bands)[np.searchsorted(HORIZON_BANDS, horizon, side="right")]

    def predict_interval(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lower bound, median and upper bound of the forecast, all inside the range."""
        check_is_fitted(self, "median_model_")
        matrix = self._matrix(X, learn=False)[:, self.used_]
        last = X[self.last_column].to_numpy(dtype=float)
        median = last + self.median_model_.predict(matrix)
        adjust = self._adjustment(X[self.horizon_column].to_numpy(dtype=float)
                                  if self.horizon_column in X else np.zeros(len(X)))
        low, high = self.low_model_.predict(matrix), self.high_model_.predict(matrix)
        adjust = adjust * self._scale(low, high)
        lower = last + low - adjust
        upper = last + high + adjust
        lower, upper = np.minimum(lower, median), np.maximum(upper, median)
        clip = (self.lower_bound, self.upper_bound)
        return np.clip(lower, *clip), np.clip(median, *clip), np.clip(upper, *clip)

    def predict_windows(self, X: pd.DataFrame, windows: pd.DataFrame, interval
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forecasts of every row of ``X`` under each forecast window, in few passes.

        ``windows`` holds one row per window with the window's columns (``horizon_days`` and
        the calendar facts); ``interval`` says for which windows the bounds are wanted. The
        street features are converted once and the window columns set per window, so the
        median is one prediction over ``len(X) * len(windows)`` rows and each bound one over
        the rows of the windows in ``interval``. Returns ``lower, median, upper`` of shape
        ``(len(X), len(windows))``, NaN where no bound was asked.
        """
        check_is_fitted(self, "median_model_")
        names = list(self.feature_names_in_)
        base = self._matrix(X, learn=False)
        columns = [names.index(c) for c in windows.columns if c in names]
        values = windows[[c for c in windows.columns if c in names]].to_numpy(float)
        n, k = len(X), len(windows)
        # Street-major rows (a street's windows side by side): neighbouring rows then take
        # nearly the same paths through the trees, which predicts much faster.
        stacked = np.repeat(base, k, axis=0)
        stacked[:, columns] = np.tile(values, (n, 1))
        for name, a, b in self.differences:  # made of window columns too
            if name in names and a in names and b in names:
                stacked[:, names.index(name)] = (stacked[:, names.index(a)]
                                                 - stacked[:, names.index(b)])
        horizon = (stacked[:, names.index(self.horizon_column)]
                   if self.horizon_column in names else np.zeros(n * k))
        stacked = stacked[:, self.used_]
        last = np.repeat(X[self.last_column].to_numpy(dtype=float), k)
        clip = (self.lower_bound, self.upper_bound)
        median = last + self.median_model_.predict(stacked)
        lower = np.full(n * k, np.nan)
        upper = np.full(n * k, np.nan)
        rows = np.tile(np.asarray(interval, bool), n)
        if rows.any():
            low = self.low_model_.predict(stacked[rows])
            high = self.high_model_.predict(stacked[rows])
            adjust = self._adjustment(horizon[rows]) * self._scale(low, high)
            lower[rows] = last[rows] + low - adjust
            upper[rows] = last[rows] + high + adjust
            lower[rows] = np.minimum(lower[rows], median[rows])
            upper[rows] = np.maximum(upper[rows], median[rows])
        return tuple(np.clip(a, *clip).reshape(n, k) for a in (lower, median, upper))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The median forecast, inside the range."""
        check_is_fitted(self, "median_model_")
        last = X[self.last_column].to_numpy(dtype=float)
        change = self.median_model_.predict(self._matrix(X, learn=False)[:, self.used_])
        return np.clip(last + change, self.lower_bound, self.upper_bound)
