"""A generated "yearly integer survey" scenario: a city's street-block ratings, as real ones come.

Real survey tables are not the sample's frequent PCI surveys. This scenario makes the traps of
a real city's data, deterministically from a seed:

- **ratings 1-10, integers**, from a yearly survey season (June to September), with
  **missing years** (a block is surveyed in a year with probability ``SURVEY_P``, and a share
  of blocks only every other year);
- **inspector noise**: each survey adds a normal error (sd ``NOISE_SD``) and the inspector's
  own bias of that year (sd ``INSPECTOR_SD``, one inspector per district and year) before
  rounding, so the same road reads a point apart from one year to the next;
- **deterioration** that accelerates with age, ``c = c0 - a * age ** SHAPE_P``, ``a`` set by
  class, surface, width, district and the block itself;
- a **paving programme**: each year a budget (a share of blocks that swings between
  ``BUDGET_SHARES``, so the city-wide mean change over three years swings by about half a
  point either way) treats the worst projected blocks. The programme of year Y is published
  on 1 January of Y - ``PROGRAMME_LEAD_YEARS``; ``SLIP_P`` of the entries slip a year and
  ``DROP_P`` are never done;
- **work records** for the programme's treatments that were done (``WORK_RECORDED_P`` of them:
  records go missing), and **resurfacing with no work record and no programme** (utility
  restorations, ``UNPLANNED_P`` a year among poor blocks): a jump up in the ratings only;
- the other metrics a survey records, **cracking** and **patching** (percent of area), which
  carry more resolution than the integer rating;
- a **"last resurfaced" column** taken when the table was exported (``export``), which lies
  after any as-of date before the export for blocks resurfaced since: a leak to guard against.

``generate_scenario`` returns the frames; ``write_scenario`` writes them as a city would hand
them over: one **wide** CSV (one column per year and metric), a work-records CSV and a
programme CSV, plus ``mapping.toml`` for ``ingest.wide_survey``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

FIRST_YEAR, LAST_YEAR = 2013, 2025
SURVEY_P = 0.8            # surveyed in a given year (yearly blocks)
BIENNIAL_SHARE = 0.25     # blocks surveyed only every other year
NOISE_SD = 0.45           # per survey, before rounding
INSPECTOR_SD = 0.25       # per inspector (district) and year
SHAPE_P = 1.5             # deterioration accelerates with age
BASE_RATE = 0.08          # rating points lost by age ** SHAPE_P on an average block
CLASS_RATE = {"primary": 1.35, "secondary": 1.15, "tertiary": 1.0, "residential": 0.85,
              "service": 0.75}
SURFACE_RATE = {"asphalt": 1.0, "concrete": 0.6, "chipseal": 1.4}
TREATMENT_NEW = {"mill_and_overlay": (9.2, 1.0), "surface_treatment": (8.0, 1.3),
                 "reconstruction": (9.7, 0.8)}  # rating just after, rate factor after
BUDGET_SHARES = (0.005, 0.02, 0.045, 0.075)
PROGRAMME_LEAD_YEARS = 3
SLIP_P, DROP_P = 0.12, 0.05
WORK_RECORDED_P = 0.85
UNPLANNED_P = 0.02
DISTRICTS = 16
DEFAULT_EXPORT = date(2026, 3, 1)


@dataclass
class SurveyScenario:
    """The scenario's frames (``external_id`` names the block everywhere)."""

    streets: pd.DataFrame     # external_id, road_class, surface, width_m, lon, lat, district,
    #                           resurfaced_on (as exported)
    surveys: pd.DataFrame     # external_id, observed_at, rating, cracking_pct, patching_pct
    work: pd.DataFrame        # external_id, action, done_at (recorded resurfacing only)
    programme: pd.DataFrame   # external_id, year, treatment, published_on
    truth: pd.DataFrame       # external_id, year, condition (latent, 1 July), resurfaced


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def synthetic_blocks(n: int, seed: int = 11) -> pd.DataFrame:
    """``n`` street blocks on a grid near the sample town, with class, surface and width."""
    rng = _rng(seed, "blocks")
    side = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    x = (i % side) * 120.0 + rng.normal(0, 15, n)
    y = (i // side) * 100.0 + rng.normal(0, 15, n)
    classes = rng.choice(list(CLASS_RATE), n, p=[0.08, 0.15, 0.2, 0.5, 0.07])
    surface = rng.choice(list(SURFACE_RATE), n, p=[0.75, 0.15, 0.10])
    width = np.round(np.where(np.isin(classes, ["primary", "secondary"]), 12.0, 7.0)
                     + rng.normal(0, 1.5, n), 1)
    return pd.DataFrame({
        "external_id": [f"BLK-{k:05d}" for k in i], "road_class": classes, "surface": surface,
        "width_m": width, "lon": 108.50 + x / 94_000.0, "lat": 32.50 + y / 111_000.0})


def generate_scenario(blocks: pd.DataFrame | None = None, *, seed: int = 3,
                      n_blocks: int = 1200, first_year: int = FIRST_YEAR,
                      last_year: int = LAST_YEAR, export: date = DEFAULT_EXPORT
                      ) -> SurveyScenario:
    """Simulate the blocks' conditions, surveys, programme and works year by year.

    ``blocks`` (external_id, road_class, surface, width_m, lon, lat) are the streets to use,
    e.g. the twin's own; by default ``n_blocks`` synthetic ones. Deterministic in ``seed``.
    """
    blocks = synthetic_blocks(n_blocks, seed) if blocks is None else blocks.reset_index(
        drop=True)
    n = len(blocks)
    rng = _rng(seed, "condition")
    # Districts: a 4 x 4 cut of the blocks' extent, each with its own wear factor.
    qx = pd.qcut(blocks["lon"].rank(method="first"), 4, labels=False).to_numpy()
    qy = pd.qcut(blocks["lat"].rank(method="first"), 4, labels=False).to_numpy()
    district = (qx * 4 + qy).astype(int)
    district_rate = np.exp(_rng(seed, "district").normal(0, 0.15, DISTRICTS))
    rate = (BASE_RATE * blocks["road_class"].map(CLASS_RATE).fillna(1.0).to_numpy()
            * blocks["surface"].map(SURFACE_RATE).fillna(1.0).to_numpy()
            * (7.0 / np.clip(blocks["width_m"].to_numpy(float), 4, 20)) ** 0.25
            * district_rate[district] * np.exp(rng.normal(0, 0.2, n)))
    c0 = np.clip(9.3 + rng.normal(0, 0.3, n), 8, 10)
    # Age at the start: the life so far of a city's stock (a few are near new).
    age = rng.uniform(0, ((c0 - 2.5) / rate) ** (1 / SHAPE_P))
    factor = np.ones(n)
    years = list(range(first_year, export.year + PROGRAMME_LEAD_YEARS + 1))
    budget_rng = _rng(seed, "budget")
    budget = {y: float(budget_rng.choice(BUDGET_SHARES)) for y in years}
    prog_rng, slip_rng, work_rng = (_rng(seed, s) for s in ("programme", "slip", "work"))
    survey_rng, noise_rng = _rng(seed, "survey"), _rng(seed, "noise")
    biennial = survey_rng.random(n) < BIENNIAL_SHARE
    parity = survey_rng.integers(0, 2, n)

    def condition(at_age, which=slice(None)):
        """The latent condition of the blocks ``which`` (all by default) at ages ``at_age``."""
        return c0[which] - rate[which] * factor[which] * np.maximum(at_age, 0) ** SHAPE_P

    programme_rows, work_rows, survey_rows, truth_rows = [], [], [], []
    planned: dict[int, list[tuple[int, str]]] = {}
    last_resurfaced = np.full(n, None, dtype=object)
    slipped: dict[int, list[tuple[int, str]]] = {}
    # The programmes of the first years were published before the history starts.
    for year in range(first_year, export.year + PROGRAMME_LEAD_YEARS + 1):
        publish = year - PROGRAMME_LEAD_YEARS
        # Published on 1 January of `publish`: the worst blocks projected to `year`, not
        # already planned, up to the year's budget.
        projected = condition(age + (year - publish) + 0.5)
        taken = {b for entries in planned.values() for b, _ in entries}
        order = [b for b in np.argsort(projected + prog_rng.normal(0, 0.4, n))
                 if b not in taken and projected[b] < 6.0]
        chosen = order[:int(round(budget[year] * n))]
        treatments = prog_rng.choice(list(TREATMENT_NEW), len(chosen), p=[0.6, 0.3, 0.1])
        planned[year] = [(int(b), str(t)) for b, t in zip(chosen, treatments, strict=True)]
        for b, t in planned[year]:
            programme_rows.append((b, year, t, date(publish, 1, 1)))
        if year > last_year:
            continue
        # -- the year itself, for the years of the history ---------------------------------
        if year >= first_year:
            # Programme works of the year (and last year's slipped ones) in April-October.
            due = planned.get(year, []) + slipped.pop(year, [])
            # block -> (treatment, share of the year when done, planned: may get a record)
            done: dict[int, tuple[str, float, bool]] = {}
            for b, t in due:
                draw = slip_rng.random()
                if draw < DROP_P:
                    continue
                if draw < DROP_P + SLIP_P and year < last_year:
                    slipped.setdefault(year + 1, []).append((b, t))
                    continue
                done[b] = (t, float(slip_rng.uniform(0.25, 0.8)), True)
            poor = np.flatnonzero(condition(age + 0.5) < 4.5)
            for b in poor[slip_rng.random(len(poor)) < UNPLANNED_P * 4]:
                if int(b) not in done:  # a utility restoration: no programme, no record
                    done[int(b)] = ("mill_and_overlay", float(slip_rng.uniform(0.25, 0.8)),
                                    False)
            surveyed = (survey_rng.random(n) < SURVEY_P) & (~biennial | (year % 2 == parity))
            survey_day = survey_rng.uniform(151, 273, n) / 365.0  # June-September
            bias = noise_rng.normal(0, INSPECTOR_SD, DISTRICTS)[district]
            noise = noise_rng.normal(0, NOISE_SD, n)
            crack_noise, patch_noise = noise_rng.normal(0, 4, n), noise_rng.normal(0, 3, n)
            treated_at = np.full(n, np.inf)
            for b, entry in done.items():
                treated_at[b] = entry[1]
            for b in range(n):
                t_done = treated_at[b]
                if surveyed[b]:
                    s = survey_day[b]
                    if t_done < s:  # treated before its survey this year
                        treatment = done[b][0]
                        new_c0, new_factor = TREATMENT_NEW[treatment]
                        c_now = new_c0 - rate[b] * new_factor * (s - t_done) ** SHAPE_P
                    else:
                        c_now = float(condition(age[b] + s, b))
                    c_now = max(c_now, 1.0)
                    rating = int(np.clip(np.round(c_now + bias[b] + noise[b]), 1, 10))
                    wear = (10 - c_now) / 9
                    observed = pd.Timestamp(year, 1, 1) + pd.Timedelta(days=s * 365)
                    survey_rows.append((
                        b, observed.normalize() + pd.Timedelta(hours=10), rating,
                        float(np.clip(round(100 * wear ** 1.3 + crack_noise[b], 1), 0, 100)),
                        float(np.clip(round(40 * wear ** 2 + patch_noise[b]
                                            + 8 * min(age[b], 20) / 20, 1), 0, 100))))
            mid_year = condition(age + 0.5)
            truth_rows += [(b, year, float(mid_year[b]), b in done) for b in range(n)]
            for b, entry in done.items():
                treatment, share, planned_work = entry
                done_at = pd.Timestamp(year, 1, 1) + pd.Timedelta(days=share * 365)
                new_c0, new_factor = TREATMENT_NEW[treatment]
                c0[b], factor[b] = new_c0, new_factor
                age[b] = -share  # age 0 at the treatment; +1 below brings it to 1 - share
                last_resurfaced[b] = done_at.date()
                if planned_work and work_rng.random() < WORK_RECORDED_P:
                    work_rows.append((b, treatment, done_at + pd.Timedelta(hours=9)))
        age += 1.0
    ids = blocks["external_id"].to_numpy()
    streets = blocks.assign(district=district, resurfaced_on=[
        d if d is None or d <= export else None for d in last_resurfaced])
    surveys = pd.DataFrame(survey_rows, columns=["block", "observed_at", "rating",
                                                 "cracking_pct", "patching_pct"])
    surveys.insert(0, "external_id", ids[surveys.pop("block").to_numpy()])
    surveys["observed_at"] = pd.to_datetime(surveys["observed_at"]).dt.tz_localize("UTC")
    work = pd.DataFrame(work_rows, columns=["block", "action", "done_at"])
    work.insert(0, "external_id", ids[work.pop("block").to_numpy()])
    work["done_at"] = pd.to_datetime(work["done_at"]).dt.tz_localize("UTC")
    programme = pd.DataFrame(programme_rows, columns=["block", "year", "treatment",
                                                      "published_on"])
    programme.insert(0, "external_id", ids[programme.pop("block").to_numpy()])
    programme = programme[pd.to_datetime(programme["published_on"]) <= pd.Timestamp(export)]
    truth = pd.DataFrame(truth_rows, columns=["block", "year", "condition", "resurfaced"])
    truth.insert(0, "external_id", ids[truth.pop("block").to_numpy()])
    return SurveyScenario(streets, surveys.sort_values(["external_id", "observed_at"])
                          .reset_index(drop=True), work.reset_index(drop=True),
                          programme.reset_index(drop=True), truth)


WIDE_MAPPING = '''# How ingest.wide_survey reads survey_wide.csv (a row per block).
id_column = "BLOCK_ID"             # the twin's streets.external_id
year_pattern = "{metric}_{year}"   # columns like RATING_2019; {metric} is the key below
date_pattern = "SURVEYED_{year}"   # the survey's date per year (else survey_day below)
survey_day = "07-01"               # month-day used where a year has no date column
source = "city-survey"

[metrics]                          # column stem = twin metric (declare each first)
RATING = "city_rating"
CRACK = "cracking_pct"
PATCH = "patching_pct"
'''


def wide_table(scenario: SurveyScenario) -> pd.DataFrame:
    """The surveys as a city's wide table: BLOCK_ID, CLASS, ..., RATING_2013, CRACK_2013 ..."""
    s = scenario.surveys.assign(year=scenario.surveys["observed_at"].dt.year)
    columns = {}
    for stem, col in (("RATING", "rating"), ("CRACK", "cracking_pct"),
                      ("PATCH", "patching_pct")):
        pivot = s.pivot(index="external_id", columns="year", values=col)
        for year in pivot.columns:
            columns[f"{stem}_{year}"] = pivot[year]
    dates = s.pivot(index="external_id", columns="year", values="observed_at")
    for year in dates.columns:
        columns[f"SURVEYED_{year}"] = dates[year].dt.strftime("%Y-%m-%d")
    wide = pd.DataFrame(columns).reindex(scenario.streets["external_id"])
    st = scenario.streets.set_index("external_id")
    meta = pd.DataFrame({"CLASS": st["road_class"], "SURFACE": st["surface"],
                         "WIDTH_M": st["width_m"], "LAST_RESURFACED": st["resurfaced_on"]})
    out = pd.concat([meta, wide], axis=1)
    out.index.name = "BLOCK_ID"
    for column in out.columns:
        if column.startswith("RATING_"):
            out[column] = out[column].astype("Int64")
    return out.reset_index()


def write_scenario(scenario: SurveyScenario, out: Path) -> dict[str, Path]:
    """Write survey_wide.csv, work_records.csv, programme.csv and mapping.toml into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"wide": out / "survey_wide.csv", "work": out / "work_records.csv",
             "programme": out / "programme.csv", "mapping": out / "mapping.toml"}
    wide_table(scenario).to_csv(paths["wide"], index=False, lineterminator="\n")
    work = scenario.work.assign(done_at=scenario.work["done_at"].dt.strftime("%Y-%m-%dT%H:%MZ"))
    work.to_csv(paths["work"], index=False, lineterminator="\n")
    scenario.programme.to_csv(paths["programme"], index=False, lineterminator="\n")
    paths["mapping"].write_text(WIDE_MAPPING)
    return paths
