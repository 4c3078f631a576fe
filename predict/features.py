"""Road-wear features: a street's history, attributes and surroundings as of a cutoff.

Everything is computed from rows observed at or before the cutoff, so a feature frame built
as of a date is what the twin knew on that date (the leakage test changes the data after the
cutoff and asserts the frame does not move).

Condition metrics are compared on a *goodness* scale: 0 is the worst value the metric's
declaration allows and 1 the best, whichever way the metric points. A PCI (0-100, higher is
better), an IRI (lower is better) and a city's 1-10 rating are then one kind of number, and
a forecast mapped back through the declared range can never leave it.

A street's ``resurfaced_on`` is the one attribute with a date, and the twin keeps only its
current value: "days since resurfacing" taken from it for a cutoff in the past would be
missing exactly for the streets resurfaced after the cutoff, which tells the future. So the
age of the surface comes from the observations (a jump up in goodness marks resurfacing), and
``resurfaced_on`` is used only for the event "resurfaced after the last observation and by the
cutoff" (``resurfaced_since_last``). A later resurfacing hides an earlier one from that test,
but streets are not resurfaced twice within months, so the current value answers it as the
value at the cutoff would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from geo import predictions as sql
from geo.errors import InvalidInput

DAY = pd.Timedelta(days=1)
# An increase of more than this share of a metric's range between two observations is taken
# as resurfacing (survey noise of a PCI is about 3 points; resurfacing jumps tens).
JUMP_GOODNESS = 0.15
DAMAGE_WINDOW_DAYS = 365
DEBRIS_WINDOW_DAYS = 180
DEBRIS_DISTANCE_M = 100.0
MANHOLE_DISTANCE_M = 15.0
NEIGHBOUR_DISTANCE_M = 30.0
OTHER_METRIC_SLOPE_DAYS = 180
MAX_PROPERTY_KEYS = 20
CATEGORICAL = ("road_class", "surface")


@dataclass(frozen=True)
class MetricScale:
    """A condition metric's declared range and direction."""

    name: str
    id: int
    min_value: float
    max_value: float
    higher_is_better: bool

    @classmethod
    def from_row(cls, row: dict | None, name: str) -> MetricScale:
        """Build from a ``metrics`` row, refusing a metric that cannot be forecast."""
        if row is None:
            raise InvalidInput(
                f"Metric '{name}' is not declared; declare its range and direction first with "
                f"`twin metrics set {name} --unit U --min A --max B --higher-is-better`.")
        if row["higher_is_better"] is None:
            raise InvalidInput(
                f"Metric '{name}' has no declared direction, so its wear cannot be forecast; "
                f"declare it with --higher-is-better or --lower-is-better.")
        return cls(row["name"], int(row["id"]), float(row["min_value"]),
                   float(row["max_value"]), bool(row["higher_is_better"]))

    def to_goodness(self, values):
        """Map metric values to 0 (worst allowed) .. 1 (best allowed)."""
        share = (np.asarray(values, dtype=float) - self.min_value) / (
            self.max_value - self.min_value)
        return np.clip(share if self.higher_is_better else 1.0 - share, 0.0, 1.0)

    def from_goodness(self, goodness):
        """Map goodness back to metric values, always inside the declared range."""
        g = np.clip(np.asarray(goodness, dtype=float), 0.0, 1.0)
        share = g if self.higher_is_better else 1.0 - g
        return self.min_value + share * (self.max_value - self.min_value)

    def as_dict(self) -> dict:
        """Plain data, for the model registry."""
        return {"name": self.name, "min_value": self.min_value, "max_value": self.max_value,
                "higher_is_better": self.higher_is_better}


@dataclass
class RoadContext:
    """Everything road-wear features are made of, read once up to ``until``."""

    scale: MetricScale
    until: datetime
    streets: pd.DataFrame  # asset_id index: attributes, length_m, lon, lat, geom_ewkt
    history: pd.DataFrame  # asset_id, observed_at, goodness (the target metric)
    others: dict[str, pd.DataFrame] = field(default_factory=dict)  # other metrics, same shape
    damage: pd.DataFrame = field(default_factory=pd.DataFrame)
    debris: pd.DataFrame = field(default_factory=pd.DataFrame)
    manholes: pd.Series = field(default_factory=pd.Series)
    neighbours: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Recorded resurfacing (asset_id, done_at, action) and the paving programme (asset_id,
    # year, treatment, planned_on, published_on): evidence of work done and to come.
    work: pd.DataFrame = field(default_factory=pd.DataFrame)
    programme: pd.DataFrame = field(default_factory=pd.DataFrame)


def _utc(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values), utc=True)


def load_road_context(conn: Connection, metric: str, until: datetime,
                      asset_ids: list[int] | None = None) -> RoadContext:
    """Read a metric's history and the streets' surroundings observed by ``until``.

    With ``asset_ids``, the history and surroundings read are those of these streets and
    their neighbours only: all that these streets' features are made of (a part of a split
    scoring run, predict/batch.py). The street attributes are still every street's, since
    which properties become features is decided over all of them.
    """
    scale = MetricScale.from_row(sql.metric_by_name(conn, metric), metric)
    neighbours = sql.street_neighbours(conn, NEIGHBOUR_DISTANCE_M, asset_ids)
    ids = (None if asset_ids is None else
           sorted({int(i) for i in asset_ids} | {int(i) for i in neighbours["neighbour_id"]}))
    streets = sql.street_attributes(conn).set_index("asset_id")
    props = pd.json_normalize(streets["properties"].tolist()).set_index(streets.index)
    streets = streets.drop(columns=["properties"])
    for key in sorted(props.columns)[:MAX_PROPERTY_KEYS]:
        column = props[key]
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().sum() >= max(1, column.notna().sum() * 0.9):
            streets[f"prop_{key}"] = numeric.astype(float)
        elif column.notna().any() and column.astype(str).nunique() <= 30:
            streets[f"propcat_{key}"] = column.astype("string")
    metrics = sql.layer_metrics(conn, "streets")
    metric_ids = [scale.id] + [int(i) for i in metrics["id"] if int(i) != scale.id]
    readings = sql.readings_until(conn, metric_ids, "streets", until, asset_ids=ids)
    readings["observed_at"] = _utc(readings["observed_at"])
    history = readings[readings["metric_id"] == scale.id]
    others = {}
    for row in metrics.itertuples():
        if int(row.id) == scale.id or row.higher_is_better is None:
            continue
        other = MetricScale(row.name, int(row.id), float(row.min_value), float(row.max_value),
                            bool(row.higher_is_better))
        part = readings[readings["metric_id"] == other.id]
        others[row.name] = pd.DataFrame({
            "asset_id": part["asset_id"].to_numpy(), "observed_at": part["observed_at"],
            "goodness": other.to_goodness(part["value"])}).reset_index(drop=True)
    damage = sql.damage_on_streets(conn, until, ids)
    damage["observed_at"] = _utc(damage["observed_at"])
    debris = sql.debris_near_streets(conn, until, DEBRIS_DISTANCE_M, ids)
    debris["observed_at"] = _utc(debris["observed_at"])
    manholes = sql.manholes_near_streets(conn, MANHOLE_DISTANCE_M, ids).set_index("asset_id")
    work = sql.street_resurfacing_work(conn, until, ids)
    work["done_at"] = _utc(work["done_at"])
    programme = sql.street_programme(conn, until)
    return RoadContext(
        scale=scale, until=until, streets=streets, work=work, programme=programme_dates(programme),
        history=pd.DataFrame({"asset_id": history["asset_id"].to_numpy(),
                              "observed_at": history["observed_at"].to_numpy(),
                              "goodness": scale.to_goodness(history["value"])}),
        others=others, damage=damage, debris=debris, manholes=manholes["manholes"],
        neighbours=neighbours)


def programme_dates(programme: pd.DataFrame) -> pd.DataFrame:
    """Programme entries with UTC ``planned_at`` and ``published_at``.

    A programme names a year; without a planned date the work counts as done on 1 July of
    that year (the middle of the works season). Without a publication date an entry counts
    as known from 1 January of the year before its year (an annual programme adopted with
    the budget).
    """
    if programme.empty:
        return pd.DataFrame(columns=["asset_id", "year", "treatment", "planned_at",
                                     "published_at"])
    year = programme["year"].astype(int)
    mid = pd.to_datetime(year.astype(str) + "-07-01", utc=True)
    planned = (pd.to_datetime(programme["planned_on"], utc=True)
               if "planned_on" in programme
               else pd.Series(pd.NaT, index=programme.index, dtype="datetime64[ns, UTC]"))
    published = (pd.to_datetime(programme["published_on"], utc=True)
                 if "published_on" in programme
                 else pd.Series(pd.NaT, index=programme.index, dtype="datetime64[ns, UTC]"))
    before = pd.to_datetime((year - 1).astype(str) + "-01-01", utc=True)
    return pd.DataFrame({"asset_id": programme["asset_id"].to_numpy(),
                         "year": year.to_numpy(),
                         "treatment": programme["treatment"].astype(str).to_numpy(),
                         "planned_at": planned.fillna(mid).to_numpy(),
                         "published_at": published.fillna(before).to_numpy()})


def _years(delta: pd.Series) -> pd.Series:
    return delta / pd.Timedelta(days=365.25)


def _ols_slope(frame: pd.DataFrame, t_col: str, y_col: str) -> pd.Series:
    """Per asset least-squares slope of y on t (t in years); NaN with fewer than two points."""
    g = frame.assign(_t=frame[t_col], _y=frame[y_col], _tt=frame[t_col] ** 2,
                     _ty=frame[t_col] * frame[y_col]).groupby("asset_id")
    n, st, sy, stt, sty = (g.size(), g["_t"].sum(), g["_y"].sum(), g["_tt"].sum(),
                           g["_ty"].sum())
    denominator = n * stt - st ** 2
    slope = (n * sty - st * sy) / denominator.where(denominator > 1e-9)
    return slope.where(n >= 2)


def history_features(history: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Last value, age, slopes and resurfacing jumps of each asset's series by ``cutoff``."""
    h = history[history["observed_at"] <= cutoff].sort_values(["asset_id", "observed_at"])
    if h.empty:
        return pd.DataFrame()
    h = h.assign(t=_years(h["observed_at"] - cutoff))  # years before the cutoff (<= 0)
    grouped = h.groupby("asset_id", sort=True)
    step = grouped["goodness"].diff()
    h = h.assign(jump=step > JUMP_GOODNESS)
    # A "life" is the stretch since the last detected resurfacing.
    h = h.assign(life=h.groupby("asset_id")["jump"].cumsum())
    last_life = h.groupby("asset_id")["life"].transform("max")
    life = h[h["life"] == last_life]
    out = pd.DataFrame(index=grouped.size().index)
    last = grouped.tail(1).set_index("asset_id")
    out["last_value"] = last["goodness"]
    out["days_since_last"] = -last["t"] * 365.25
    out["n_obs"] = grouped.size()
    jumps = h[h["jump"]].groupby("asset_id")["t"].max()
    out["days_since_jump"] = -jumps.reindex(out.index) * 365.25
    out["n_jumps"] = h.groupby("asset_id")["jump"].sum()
    life_grouped = life.groupby("asset_id")
    prev = life_grouped.nth(-2).set_index("asset_id")
    out["prev_value"] = prev["goodness"].reindex(out.index)
    out["slope_last_two"] = ((out["last_value"] - out["prev_value"])
                             / (-prev["t"].reindex(out.index) + last["t"]).where(
                                 lambda d: d > 1 / 365.25))
    out["slope_life"] = _ols_slope(life, "t", "goodness").reindex(out.index)
    out["life_mean"] = life_grouped["goodness"].mean()
    out["life_n"] = life_grouped.size()
    recent = life[life["t"] >= -1.0]
    out["slope_recent_year"] = _ols_slope(recent, "t", "goodness").reindex(out.index)
    # The life's straight line evaluated at the cutoff: a less noisy "now" than the last value.
    intercept = (life_grouped["goodness"].mean()
                 - out["slope_life"].fillna(0) * life_grouped["t"].mean())
    out["trend_now"] = intercept.where(out["life_n"] >= 2)
    out["min_value"] = grouped["goodness"].min()
    return out


def _other_metric_features(name: str, frame: pd.DataFrame, cutoff: pd.Timestamp
                           ) -> pd.DataFrame:
    h = frame[frame["observed_at"] <= cutoff]
    if h.empty:
        return pd.DataFrame()
    h = h.sort_values(["asset_id", "observed_at"]).assign(
        t=lambda f: _years(f["observed_at"] - cutoff))
    last = h.groupby("asset_id").tail(1).set_index("asset_id")
    recent = h[h["t"] >= -OTHER_METRIC_SLOPE_DAYS / 365.25]
    out = pd.DataFrame({
        f"{name}_last": last["goodness"],
        f"{name}_days_since": -last["t"] * 365.25,
        f"{name}_recent_mean": recent.groupby("asset_id")["goodness"].mean(),
        f"{name}_slope": _ols_slope(recent, "t", "goodness"),
    })
    return out


def road_features(ctx: RoadContext, cutoff) -> pd.DataFrame:
    """Feature frame (index ``asset_id``) of every street observed at least once by ``cutoff``.

    Only rows with ``observed_at <= cutoff`` are used.
    """
    cutoff = pd.Timestamp(cutoff)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
    out = history_features(ctx.history, cutoff)
    if out.empty:
        return out
    streets = ctx.streets.reindex(out.index)
    for column in ("width_m", "lanes", "length_m"):
        out[column] = streets[column].astype(float)
    for column in CATEGORICAL:
        out[column] = streets[column].astype("string")
    for column in streets.columns:
        if column.startswith("prop_"):
            out[column] = streets[column]
        elif column.startswith("propcat_"):
            out[column] = streets[column].astype("string")
    resurfaced = pd.to_datetime(streets["resurfaced_on"]).dt.tz_localize("UTC")
    last_seen = cutoff - out["days_since_last"] * DAY
    after_last = (resurfaced > last_seen) & (resurfaced <= cutoff)
    out["resurfaced_since_last"] = after_last.astype(float)
    out["days_since_resurfaced_since_last"] = ((cutoff - resurfaced) / DAY).where(after_last)
    _work_features(ctx, cutoff, out)
    if "prop_built_year" in out:
        out["built_age_years"] = cutoff.year - out["prop_built_year"]
    for name, frame in sorted(ctx.others.items()):
        out = out.join(_other_metric_features(name, frame, cutoff), how="left")
    per_100m = 100.0 / out["length_m"].clip(lower=10.0)
    if not ctx.damage.empty:
        d = ctx.damage[(ctx.damage["observed_at"] <= cutoff)
                       & (ctx.damage["observed_at"] > cutoff - DAMAGE_WINDOW_DAYS * DAY)]
        weighted = d.assign(w=d["confidence"].astype(float))
        for cls in ("D00", "D10", "D20", "D40"):
            counts = weighted[weighted["damage_class"] == cls].groupby("asset_id")["w"].sum()
            out[f"damage_{cls}_per_100m"] = counts.reindex(out.index).fillna(0) * per_100m
        high = weighted[weighted["severity"] == "high"].groupby("asset_id")["w"].sum()
        out["damage_high_per_100m"] = high.reindex(out.index).fillna(0) * per_100m
        d90 = weighted[weighted["observed_at"] > cutoff - 90 * DAY]
        out["damage_90d_per_100m"] = (d90.groupby("asset_id")["w"].sum().reindex(out.index)
                                      .fillna(0) * per_100m)
    if not ctx.debris.empty:
        b = ctx.debris[(ctx.debris["observed_at"] <= cutoff)
                       & (ctx.debris["observed_at"] > cutoff - DEBRIS_WINDOW_DAYS * DAY)]
        out["debris_nearby"] = b.groupby("asset_id").size().reindex(out.index).fillna(0)
    out["manholes_per_100m"] = ctx.manholes.reindex(out.index).fillna(0) * per_100m
    if not ctx.neighbours.empty:
        pairs = ctx.neighbours.join(out[["last_value", "slope_life"]], on="neighbour_id",
                                    how="inner")
        neighbour = pairs.groupby("asset_id")
        out["neighbour_last_mean"] = neighbour["last_value"].mean().reindex(out.index)
        out["neighbour_slope_mean"] = neighbour["slope_life"].mean().reindex(out.index)
    return out


# Programme entries planned up to this long before a cutoff still count: work slips.
PROGRAMME_LOOKBACK_DAYS = 365


def _work_features(ctx: RoadContext, cutoff: pd.Timestamp, out: pd.DataFrame) -> None:
    """Age since the last detected or recorded resurfacing, and the programme's next entry.

    Only work done by the cutoff and programme entries published by the cutoff are used.
    ``programme_offset_days`` is the planned date of the street's first programme entry
    planned after ``cutoff - PROGRAMME_LOOKBACK_DAYS`` (and not done already: no recorded work
    or detected jump since its year began), in days from the cutoff; the forecast window adds
    ``programme_lead_days`` (horizon minus offset: positive when planned before the target).
    """
    recorded = pd.Series(np.nan, index=out.index)
    if not ctx.work.empty:
        w = ctx.work[ctx.work["done_at"] <= cutoff]
        last = w.groupby("asset_id")["done_at"].max()
        recorded = ((cutoff - last) / DAY).reindex(out.index)
    out["days_since_recorded_work"] = recorded
    out["age_days"] = pd.concat([recorded, out["days_since_jump"]], axis=1).min(axis=1)
    offset = pd.Series(np.nan, index=out.index)
    treatment = pd.Series(pd.NA, index=out.index, dtype="string")
    if not ctx.programme.empty:
        p = ctx.programme[(ctx.programme["published_at"] <= cutoff)
                          & (ctx.programme["planned_at"]
                             > cutoff - PROGRAMME_LOOKBACK_DAYS * DAY)]
        p = p[p["asset_id"].isin(out.index)]
        if not p.empty:
            year_start = pd.to_datetime(p["year"].astype(str) + "-01-01", utc=True)
            since = (cutoff - year_start) / DAY
            done = out["age_days"].reindex(p["asset_id"]).to_numpy() <= since.to_numpy()
            p = p[~done].sort_values(["asset_id", "planned_at"]).groupby("asset_id").head(1)
            p = p.set_index("asset_id")
            offset = ((p["planned_at"] - cutoff) / DAY).reindex(out.index)
            treatment = p["treatment"].astype("string").reindex(out.index)
    out["programme_offset_days"] = offset.astype(float)
    out["programme_treatment"] = treatment


# -- calendar features of a forecast window ---------------------------------------------------

_EPOCH = np.datetime64("1970-01-01", "D")
_CAL_DAYS = pd.date_range("1970-01-01", "2200-12-31", freq="D")
_WET = np.concatenate([[0], np.cumsum(_CAL_DAYS.month.isin([7, 8, 9]))])
_WORK = np.concatenate([[0], np.cumsum(_CAL_DAYS.month.isin([3, 4, 5, 6, 10, 11]))])


def _day_index(times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    days = pd.DatetimeIndex(times).tz_convert("UTC").tz_localize(None).values.astype(
        "datetime64[D]")
    return np.clip((days - _EPOCH).astype(int), 0, len(_CAL_DAYS) - 1)


def window_features(start: pd.Series, horizon_days: np.ndarray) -> pd.DataFrame:
    """Calendar facts of each forecast window: wet-season and resurfacing-season days in it."""
    a = _day_index(start)
    b = np.clip(a + np.asarray(horizon_days, dtype=int), 0, len(_CAL_DAYS) - 1)
    return pd.DataFrame({"horizon_days": np.asarray(horizon_days, dtype=float),
                         "wet_season_days": (_WET[b] - _WET[a]).astype(float),
                         "works_season_days": (_WORK[b] - _WORK[a]).astype(float)})


def forecast_frame(features: pd.DataFrame, cutoff, horizons_days) -> pd.DataFrame:
    """Repeat each street's features for every horizon, with the window's calendar facts."""
    horizons = np.asarray(horizons_days, dtype=int).reshape(-1)
    n = len(features)
    repeated = features.loc[features.index.repeat(len(horizons))] if n else features
    h = np.tile(horizons, n)
    cutoff = pd.Timestamp(cutoff)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
    window = window_features(pd.DatetimeIndex([cutoff] * len(h)), h)
    window.index = repeated.index
    return pd.concat([repeated, window], axis=1)


YEARLY_GAP_DAYS = 180  # surveys this far apart or more are "yearly or rarer"


def survey_gap_days(ctx: RoadContext, as_of) -> float:
    """The median days between a street's consecutive observations by ``as_of``."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    h = ctx.history[ctx.history["observed_at"] <= as_of]
    gaps = h.sort_values(["asset_id", "observed_at"]).groupby("asset_id")["observed_at"].diff()
    return float(gaps.median() / DAY) if gaps.notna().any() else 30.0


def pair_spacing(ctx: RoadContext, as_of) -> tuple[int, int]:
    """Cutoff step and longest horizon of training examples that suit the survey cadence.

    Frequent surveys (the sample's, weeks to months apart): a cutoff every 30 days and
    horizons up to 400 days. Yearly surveys over many years: a cutoff every quarter of the
    typical gap between a street's surveys (at most 120 days: more cutoffs repeat the same
    features) and horizons up to half the history, at most 1,100 days (three years).
    """
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    h = ctx.history[ctx.history["observed_at"] <= as_of]
    if h.empty:
        return 30, 400
    gaps = h.sort_values(["asset_id", "observed_at"]).groupby("asset_id")["observed_at"].diff()
    gap = float(gaps.median() / DAY) if gaps.notna().any() else 30.0
    span = float((h["observed_at"].max() - h["observed_at"].min()) / DAY)
    step = int(np.clip(gap / 4, 30, 120))
    return step, int(np.clip(span / 2, 400, 1100))


def training_pairs(ctx: RoadContext, as_of, *, step_days: int | None = None,
                   max_horizon_days: int | None = None,
                   min_history_days: int = 60) -> pd.DataFrame:
    """Examples (features at a cutoff, an observation after it) made only of data by ``as_of``.

    Cutoffs run every ``step_days`` back from ``as_of``; each pairs the features as of the
    cutoff with every later observation of the same street up to ``as_of`` and at most
    ``max_horizon_days`` ahead (both by default from ``pair_spacing``). Columns: the features,
    ``horizon_days`` and the calendar facts, ``cutoff`` and ``target_time`` (days since 1970,
    for time-ordered calibration), ``asset_id`` and ``target`` (goodness observed).
    """
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    default_step, default_max = pair_spacing(ctx, as_of)
    step_days = step_days or default_step
    max_horizon_days = max_horizon_days or default_max
    history = ctx.history[ctx.history["observed_at"] <= as_of]
    if history.empty:
        return pd.DataFrame()
    first = history["observed_at"].min() + min_history_days * DAY
    cutoffs = []
    cutoff = as_of - step_days * DAY
    while cutoff >= first:
        cutoffs.append(cutoff)
        cutoff -= step_days * DAY
    parts = []
    for cutoff in reversed(cutoffs):
        feats = road_features(ctx, cutoff)
        if feats.empty:
            continue
        later = history[(history["observed_at"] > cutoff)
                        & (history["observed_at"] <= min(as_of,
                                                         cutoff + max_horizon_days * DAY))]
        later = later[later["asset_id"].isin(feats.index)]
        if later.empty:
            continue
        horizon = ((later["observed_at"] - cutoff) / DAY).to_numpy()
        rows = feats.loc[later["asset_id"].to_numpy()].reset_index()
        window = window_features(pd.DatetimeIndex([cutoff] * len(later)), horizon)
        window["horizon_days"] = horizon  # the exact (fractional) days ahead
        rows = pd.concat([rows, window], axis=1)
        rows["target"] = later["goodness"].to_numpy()
        epoch = pd.Timestamp("1970-01-01", tz="UTC")
        rows["cutoff"] = float((cutoff - epoch) / DAY)
        rows["target_time"] = ((later["observed_at"] - epoch) / DAY).to_numpy()
        parts.append(rows)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)
