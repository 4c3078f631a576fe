"""Deterministic generator of a synthetic hilly river-town neighbourhood and its history.

The place is modelled on a county town on the north bank of the Han River (Ziyang County,
Shaanxi, about 32.52 N, 108.54 E). Geometry is built in metres in EPSG:4545 (CGCS2000 /
3-degree Gauss-Kruger CM 108E). Every process, formula and parameter is documented in
``sample_data/README.md``; the constants below carry the same names as there.

The same ``seed`` and arguments always give byte-identical files: randomness comes only from
``numpy`` generators derived from the seed (one independent stream per process), nothing
depends on today's date, and the GeoPackage is written with a fixed ``OGR_CURRENT_DATE``.
"""

from __future__ import annotations

import calendar
import hashlib
import itertools
import json
import math
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pyogrio.raw
import shapely
import shapely.affinity
import shapely.ops
from pyproj import Transformer

from geo.errors import InvalidInput
from geo.i18n import _

GENERATOR_VERSION = "neighbourhood-twin-sample 1.0"
DEFAULT_END = date(2026, 11, 1)
CRS = "EPSG:4545"
CENTRE_LON, CENTRE_LAT = 108.54, 32.52
TZ = "+08:00"

# --- file names written under `out` -------------------------------------------------------
GPKG = "neighbourhood.gpkg"
READINGS = "readings.csv"
ROAD_DAMAGE = "road_damage.geojson"
DEBRIS = "debris_piles.geojson"
MANIFEST = "manifest.json"
T_PCI = "truth/pci_weekly.csv"
T_RESURF = "truth/resurfacing.csv"
T_FAULTS = "truth/manhole_faults.csv"
T_PILES = "truth/debris_piles.csv"
T_RAIN = "truth/rain_daily.csv"
T_SITES = "truth/building_sites.csv"
DATA_FILES = (GPKG, READINGS, ROAD_DAMAGE, DEBRIS, T_PCI, T_RESURF, T_FAULTS, T_PILES, T_RAIN,
              T_SITES)
SIDE_CAR_SUFFIXES = ("-journal", "-wal", "-shm")

# --- street network -----------------------------------------------------------------------
GRID_NU, GRID_NV = 24, 12            # nodes along the river / up the slope at scale 1
GRID_NU_EXP, GRID_NV_EXP = 0.6, 0.4  # nu ~ scale**0.6, nv ~ scale**0.4 (so nu*nv ~ scale)
DX_M, DY_M = 90.0, 72.0              # mean node spacing along the river / up the slope
ROW0_V_M = 12.0                      # riverside road distance from the bank
EDGE_DROP_FRACTION = 0.27            # share of grid edges dropped (never the spanning tree)
CONTOUR_CAP_M = 30.0                 # largest bend of a contour street around a hill
WIGGLE_M, WIGGLE_LEN_M = (12.0, 4.0), (140.0, 60.0)   # shared and per-row meanders
SECONDARY_ROW_EVERY, SECONDARY_COL_EVERY = 5, 8

# terrain: z = Z_RIVER + Z_RISE*(1-exp(-v/Z_SCALE)) + Z_TILT*v + sum of Gaussian hills
Z_RIVER, Z_RISE, Z_SCALE, Z_TILT = 300.0, 70.0, 350.0, 0.02
HILLS_PER_SCALE = 4
HILL_AMP_M, HILL_SIGMA_M = (15.0, 45.0), (120.0, 320.0)

CLASSES = ("primary", "secondary", "residential", "service")
WIDTH_M = {"primary": (14.0, 18.0), "secondary": (9.0, 12.0), "residential": (5.5, 8.0),
           "service": (3.0, 4.5)}
LANES = {"primary": 4, "secondary": 2, "residential": 2, "service": 1}
HV_BASE = {"primary": 450.0, "secondary": 180.0, "residential": 40.0, "service": 12.0}
SITE_HV, SITE_HV_DECAY_M, SITE_HV_RADIUS_M = 300.0, 150.0, 1000.0

# --- PCI process --------------------------------------------------------------------------
PCI_BASE_RATE = {"primary": 2.2, "secondary": 2.0, "residential": 1.8, "service": 1.5}  # /year
SURFACE_MULT = {"asphalt": 1.0, "concrete": 0.75, "paving_blocks": 0.9}
PCI_K = 3.0               # rate * (1 + PCI_K * ((100 - PCI)/100)**2)
PCI_AGE_COEF = 0.02       # rate * (1 + PCI_AGE_COEF * age_years)
PCI_GRADE_COEF = 0.02     # rate * (1 + PCI_GRADE_COEF * grade_pct)
PCI_TRAFFIC_COEF = 0.5    # rate * (1 + PCI_TRAFFIC_COEF * ln(1 + hv/100))
PCI_WET_SEASON = 0.6      # rate * (1 + PCI_WET_SEASON * [Jul-Sep] + PCI_WEEK_RAIN * rain_week_mm)
PCI_WEEK_RAIN = 0.01
PCI_NOISE_SD = 0.3        # lognormal multiplier per week
PCI_START_BETA = (1.8, 1.0)
PCI_AGE_C, PCI_AGE_P = 1.58, 1.5   # initial age: ((100 - PCI0) / C) ** (1 / P) years
RESURF_THRESHOLD = {"primary": 55.0, "secondary": 50.0, "residential": 40.0, "service": 30.0}
RESURF_WEEKLY_P = {"primary": 0.08, "secondary": 0.05, "residential": 0.03, "service": 0.02}
RESURF_BUDGET_SHARE = 0.07   # streets resurfaced per calendar year / all streets
RESURF_MONTHS = (3, 4, 5, 6, 10, 11)
RESURF_NEW_PCI = (92.0, 100.0)

# --- rain ---------------------------------------------------------------------------------
RAIN_P_WET = (0.12, 0.18, 0.28, 0.38, 0.42, 0.45, 0.52, 0.48, 0.52, 0.42, 0.28, 0.14)
RAIN_MEAN_MM = (1.5, 2.5, 3.5, 5.0, 6.5, 7.5, 9.5, 9.0, 9.0, 6.0, 3.5, 1.5)
RAIN_PERSIST = (0.15, -0.05)     # added to p_wet after a wet / a dry day
RAIN_GAMMA_SHAPE = 0.75
RAIN_HEAVY_P, RAIN_HEAVY_MM = 0.03, (40.0, 100.0)   # Jul-Sep only
WET_MONTHS = (7, 8, 9)

# --- surveys, IRI, damage -----------------------------------------------------------------
SURVEY_FIRST_DAYS, SURVEY_GAP_DAYS = 180.0, (90.0, 270.0)
SURVEY_SD, SURVEY_SKIP_YEAR_P = 3.0, 0.15
DISTRICT_COLS, DISTRICT_ROWS = 6, 4
IRI_A, IRI_B, IRI_SD = 1.2, 0.09, 0.25
DAMAGE_CLASSES = ("D00", "D10", "D20", "D40")
DAMAGE_DETECT = {"survey": 0.5, "vehicle": 0.15}
DAMAGE_RESIDENT_WEEKLY = {"D00": 0.001, "D10": 0.001, "D20": 0.005, "D40": 0.03}
CONFIDENCE = {"survey": 1.0, "vehicle": 0.8, "resident": 0.6, "patrol": 1.0}
SIZE_MEDIAN_M2 = {"D00": (0.2, 0.6, 1.5), "D10": (0.15, 0.4, 1.0), "D20": (1.5, 4.0, 10.0),
                  "D40": (0.08, 0.25, 0.8)}
SEVERITY_SHIFT = {"D00": 0.0, "D10": 0.0, "D20": 0.1, "D40": 0.25}
POS_SD_M = {"survey": 1.0, "vehicle": 3.0, "resident": 6.0, "patrol": 2.0}

# --- sites and debris ---------------------------------------------------------------------
SITES_PER_SCALE, DUMPS_PER_SCALE = 3, 5
SITE_DURATION_DAYS = (240, 600)
PATROL_ZONE_M, PATROL_GAP_DAYS, PATROL_SIGHT_P = 700.0, (7.0, 21.0), 0.9
PILE_GAP_MEAN_DAYS = {"site": 20.0, "dump": 45.0}
PILE_V0 = {"site": (1.0, 6.0), "dump": (0.3, 2.0)}
PILE_GROWTH = {"site": (0.2, 1.5), "dump": (0.05, 0.4)}
PILE_NATURAL_CLEAR_DAYS = (12.0, 40.0)
PILE_CLEAR_AFTER_REPORT_DAYS = (2.0, 7.0)
RESIDENT_FIRST_MEAN_DAYS, RESIDENT_REPEAT_MEAN_DAYS = 12.0, 7.0
MATERIALS = ("spoil", "construction_waste", "household_waste", "mixed")
MATERIAL_P = {"site": (0.5, 0.35, 0.0, 0.15), "dump": (0.0, 0.2, 0.5, 0.3)}

# --- manholes and sensors -----------------------------------------------------------------
KINDS = ("sewer", "storm", "water", "power", "telecom", "gas")
KIND_P = (0.32, 0.26, 0.14, 0.10, 0.11, 0.07)
KIND_DEPTH = {"sewer": (2.0, 4.0), "storm": (1.5, 3.5), "water": (1.0, 2.0),
              "power": (1.0, 2.0), "telecom": (1.0, 1.8), "gas": (1.0, 1.5)}
SENSOR_KIND_WEIGHT = {"sewer": 5.0, "storm": 5.0, "water": 0.4, "power": 0.4, "telecom": 0.4,
                      "gas": 0.4}
MANHOLE_SPACING_M, SECOND_COVER_P = 40.0, 0.35
SENSORS_PER_SCALE = 40
SENSOR_HISTORY_DAYS = 270   # smart covers report over the last SENSOR_HISTORY_DAYS days only
FAULTS_PER_SCALE = 4
FAULT_KINDS = ("tilted_cover", "cover_open", "stuck_sensor", "flooding", "silent_sensor",
               "sensor_drift", "gas_alarm")

# --- parking ------------------------------------------------------------------------------
LOTS_PER_SCALE, BAYS_PER_SCALE, PARKING_SENSORS_PER_SCALE = 12, 20, 10
PARKING_DAYS = 56
SETBACK_M = 12.0
LOT_MAX_M2, LOT_DEPTH_M = 4000.0, 45.0

METRICS = ("battery_pct", "co_ppm", "cover_open", "h2s_ppm", "iri_m_per_km", "lel_pct",
           "o2_pct", "occupancy_pct", "pci", "tilt_deg", "water_level_pct")
METRIC_DECIMALS = {"battery_pct": 1, "co_ppm": 1, "cover_open": 0, "h2s_ppm": 1,
                   "iri_m_per_km": 2, "lel_pct": 1, "o2_pct": 1, "occupancy_pct": 1, "pci": 0,
                   "tilt_deg": 1, "water_level_pct": 1}
METRIC_RANGE = {"battery_pct": (0, 100), "co_ppm": (0, 1000), "cover_open": (0, 1),
                "h2s_ppm": (0, 200), "iri_m_per_km": (0, 20), "lel_pct": (0, 100),
                "o2_pct": (0, 25), "occupancy_pct": (0, 100), "pci": (0, 100),
                "tilt_deg": (0, 90), "water_level_pct": (0, 100)}
LAYERS = ("manholes", "parking", "streets")
SOURCES = ("sensor", "survey", "vehicle")

WORDS = ("Xinglong", "Anle", "Heping", "Qingshan", "Jinxiu", "Wenhua", "Renmin", "Xinhua",
         "Yingbin", "Chaoyang", "Fuqiang", "Hongqi", "Jianshe", "Shuguang", "Tianxing",
         "Longquan", "Baihe", "Taoyuan", "Lianhua", "Songbai", "Yuquan", "Fengming", "Jinshi",
         "Huanhe", "Shengli", "Tuanjie", "Xiangyang", "Minzhu", "Gongnong", "Changan", "Yanhe",
         "Shiquan", "Xiaocheng", "Dongcheng", "Xicheng", "Nanmen", "Beimen", "Guanyin",
         "Wenchang", "Zhongxin", "Xinglin", "Yunxi", "Cuiping", "Mingzhu", "Jinqiao", "Pingan",
         "Huayuan", "Shuiyue")
PROPERTY_COMPANIES = ("Hanjiang Property Services Co.", "Ziyang Jiaye Property Management Co.",
                      "Ankang Yijia Property Services Co.", "Qinba Lvyuan Property Co.",
                      "Shaanxi Huanan Property Management Co.", "Ziyang Xinyu Property Co.")
STATE_PROPERTY_COMPANY = "Ziyang Anju Property Services Co. (state-owned)"


# ============================================================================================
# small helpers
# ============================================================================================

def _rng(seed: int, name: str) -> np.random.Generator:
    """Independent generator for one named process (stable if processes are added)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    width = max(width, len(str(n)))
    return np.array([f"{prefix}-{k:0{width}d}" for k in range(1, n + 1)], dtype=object)


def _months_before(end: date, months: int) -> date:
    total = end.year * 12 + (end.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(end.day, calendar.monthrange(year, month)[1]))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _word_name(words: list[str], k: int) -> str:
    base = words[k % len(words)]
    return base if k < len(words) else f"{base} {_ordinal(k // len(words) + 1)}"


def _largest_part(geoms: np.ndarray) -> np.ndarray:
    """Largest polygon of each (multi)polygon; empty stays empty."""
    out = np.array(geoms, dtype=object)
    multi = np.flatnonzero(shapely.get_type_id(out) == 6)
    for i in multi:
        parts = shapely.get_parts(out[i])
        out[i] = parts[int(np.argmax(shapely.area(parts)))]
    return out


_TO_WGS84 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def _valid_everywhere(geoms: np.ndarray) -> np.ndarray:
    """Valid, non-empty in EPSG:4545 and still valid once reprojected to lon/lat."""
    geoms = np.asarray(geoms, dtype=object)
    ok = shapely.is_valid(geoms) & ~shapely.is_empty(geoms)
    if ok.any():
        wgs = shapely.transform(geoms[ok], lambda c: np.column_stack(
            _TO_WGS84.transform(c[:, 0], c[:, 1])))
        ok[ok] = shapely.is_valid(wgs)
    return ok


def _bay(sub, half: float, side: float):
    """A 2.5 m parking strip beside the carriageway along ``sub`` (None if none fits)."""
    for tolerance in (0.25, 1.0, 3.0, None):
        base = shapely.simplify(sub, tolerance) if tolerance is not None else shapely.linestrings(
            shapely.get_coordinates(sub)[[0, -1]])
        inner = shapely.offset_curve(base, side * (half + 0.3), join_style="mitre",
                                     mitre_limit=2.0)
        outer = shapely.offset_curve(base, side * (half + 2.8), join_style="mitre",
                                     mitre_limit=2.0)
        if shapely.get_type_id(inner) != 1 or shapely.get_type_id(outer) != 1:
            continue
        ring = np.concatenate([shapely.get_coordinates(inner),
                               shapely.get_coordinates(outer)[::-1]])
        poly = shapely.polygons(ring)
        if _valid_everywhere(np.array([poly], dtype=object))[0] and poly.area > 10:
            return poly
    return None


def _iso_minutes(origin: date, minutes: np.ndarray) -> np.ndarray:
    """ISO 8601 strings with the +08:00 offset for integer minutes after ``origin`` 00:00."""
    stamps = np.datetime64(origin, "m") + np.asarray(minutes, dtype="int64").astype(
        "timedelta64[m]")
    return np.char.add(np.datetime_as_string(stamps, unit="m"), ":00" + TZ).astype(object)


def _iso_dates(origin: date, days: np.ndarray) -> np.ndarray:
    stamps = np.datetime64(origin, "D") + np.asarray(days, dtype="int64").astype("timedelta64[D]")
    return np.datetime_as_string(stamps, unit="D").astype(object)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Steps:
    """A transient rich progress bar over named steps (or nothing without a console)."""

    def __init__(self, console, total: int) -> None:
        self._progress = None
        if console is not None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total}"),
                                      TimeElapsedColumn(), console=console, transient=True)
            self._task = self._progress.add_task("Generating", total=total)

    def __enter__(self) -> _Steps:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description)

    def done(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)


# ============================================================================================
# the place
# ============================================================================================

@dataclass
class Frame:
    """Local frame: u along the river (east), v up the slope from the bank (north)."""

    e0: float
    n_bank: float
    meander_phase: float
    hills: np.ndarray  # (n, 4): u, v, amplitude, sigma

    def meander(self, u):
        """Northward shift of the bank (m) at along-river coordinate u."""
        return 45.0 * np.sin(2 * np.pi * np.asarray(u) / 2600.0 + self.meander_phase)

    def to_xy(self, u, v):
        """Local (u, v) to EPSG:4545 easting/northing."""
        u = np.asarray(u, dtype=float)
        return self.e0 + u, self.n_bank + np.asarray(v, dtype=float) + self.meander(u)

    def to_uv(self, x, y):
        """EPSG:4545 easting/northing to local (u, v)."""
        u = np.asarray(x, dtype=float) - self.e0
        return u, np.asarray(y, dtype=float) - self.n_bank - self.meander(u)

    def hill_height(self, u, v):
        """Sum of the Gaussian hills at (u, v), evaluated in chunks to bound memory."""
        u = np.ravel(np.asarray(u, dtype=float))
        v = np.ravel(np.asarray(v, dtype=float))
        out = np.zeros(u.size)
        hu, hv, ha, hs = self.hills.T
        chunk = max(1, 4_000_000 // max(1, len(hu)))
        for a in range(0, u.size, chunk):
            d2 = (u[a:a + chunk, None] - hu) ** 2 + (v[a:a + chunk, None] - hv) ** 2
            out[a:a + chunk] = (ha * np.exp(-d2 / (2 * hs ** 2))).sum(axis=1)
        return out

    def elevation(self, u, v):
        """Terrain height (m) at (u, v)."""
        v = np.asarray(v, dtype=float)
        base = Z_RIVER + Z_RISE * (1 - np.exp(-np.maximum(v, 0) / Z_SCALE)) + Z_TILT * v
        return base + self.hill_height(u, v).reshape(np.shape(base))


@dataclass
class Streets:
    """Street segments (one grid edge each) and their attributes, index-aligned."""

    geom: np.ndarray
    ids: np.ndarray
    name: np.ndarray
    road_class: np.ndarray
    surface: np.ndarray
    width: np.ndarray
    lanes: np.ndarray
    built_year: np.ndarray
    grade: np.ndarray
    hv_base: np.ndarray
    length: np.ndarray
    district: np.ndarray
    v_norm: np.ndarray
    u_mid: np.ndarray


def build_streets(seed: int, scale: float) -> tuple[Frame, Streets]:
    """Warped, jittered grid following contours; ~27 % of edges dropped, network connected."""
    rng = _rng(seed, "streets")
    nu = max(4, round(GRID_NU * scale ** GRID_NU_EXP))
    nv = max(3, round(GRID_NV * scale ** GRID_NV_EXP))
    xs = np.concatenate([[0.0], np.cumsum(DX_M * rng.uniform(0.75, 1.25, nu - 1))])
    xs -= xs[-1] / 2
    ys = ROW0_V_M + np.concatenate([[0.0], np.cumsum(DY_M * rng.uniform(0.75, 1.3, nv - 1))])
    height_v = ys[-1]

    n_hills = max(3, round(HILLS_PER_SCALE * scale))
    hills = np.column_stack([
        rng.uniform(xs[0] - 200, xs[-1] + 200, n_hills),
        rng.uniform(0.25 * height_v, height_v + 250, n_hills),
        rng.uniform(*HILL_AMP_M, n_hills),
        rng.uniform(*HILL_SIGMA_M, n_hills),
    ])
    transformer = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    e0, n0 = transformer.transform(CENTRE_LON, CENTRE_LAT)
    frame = Frame(e0=e0, n_bank=n0 - height_v / 2, meander_phase=rng.uniform(0, 2 * np.pi),
                  hills=hills)

    row_phase = rng.uniform(0, 2 * np.pi, nv)
    col_phase = rng.uniform(0, 2 * np.pi, nu)
    wiggle_phase = rng.uniform(0, 2 * np.pi)

    def row_v(j: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Contour line of row j: base height pushed down-slope where a hill rises."""
        v0 = ys[j]
        slope = Z_RISE / Z_SCALE * np.exp(-v0 / Z_SCALE) + Z_TILT
        raw = -frame.hill_height(u, v0) / slope
        cap = np.where(j == 0, 4.0, CONTOUR_CAP_M)
        wiggle = np.where(j == 0, 0.25, 1.0) * (
            WIGGLE_M[0] * np.sin(u / WIGGLE_LEN_M[0] + wiggle_phase + 0.35 * j)
            + WIGGLE_M[1] * np.sin(u / WIGGLE_LEN_M[1] + row_phase[j]))
        return v0 + cap * np.tanh(raw / cap) + wiggle

    jj, ii = np.divmod(np.arange(nu * nv), nu)
    node_u = xs[ii] + 12.0 * np.sin(ys[jj] / 230.0 + col_phase[ii]) + np.clip(
        rng.normal(0, 5.0, ii.size), -10, 10)
    node_jit = np.where(jj == 0, 0.0, np.clip(rng.normal(0, 5.0, ii.size), -10, 10))
    node_v = row_v(jj, node_u) + node_jit

    # edges: horizontal (i,j)-(i+1,j) then vertical (i,j)-(i,j+1)
    hi, hj = np.meshgrid(np.arange(nu - 1), np.arange(nv), indexing="xy")
    vi, vj = np.meshgrid(np.arange(nu), np.arange(nv - 1), indexing="xy")
    hi, hj, vi, vj = hi.ravel(), hj.ravel(), vi.ravel(), vj.ravel()
    e_a = np.concatenate([hj * nu + hi, vj * nu + vi])
    e_b = np.concatenate([hj * nu + hi + 1, (vj + 1) * nu + vi])
    e_i = np.concatenate([hi, vi])
    e_j = np.concatenate([hj, vj])
    horizontal = np.concatenate([np.ones(hi.size, bool), np.zeros(vi.size, bool)])
    n_edges = e_a.size

    primary = horizontal & (e_j == 0)
    secondary = (horizontal & (e_j % SECONDARY_ROW_EVERY == 3)) | (
        ~horizontal & (e_i % SECONDARY_COL_EVERY == 3))
    forced = primary | secondary

    # spanning tree (Kruskal on random weights, forced roads first) keeps the network connected
    order = np.lexsort((rng.random(n_edges), ~forced))
    parent = np.arange(nu * nv)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    in_tree = np.zeros(n_edges, bool)
    for e in order.tolist():
        ra, rb = find(int(e_a[e])), find(int(e_b[e]))
        if ra != rb:
            parent[ra] = rb
            in_tree[e] = True
    candidates = np.flatnonzero(~in_tree & ~forced)
    n_drop = min(candidates.size, round(EDGE_DROP_FRACTION * n_edges))
    keep = np.ones(n_edges, bool)
    keep[rng.choice(candidates, n_drop, replace=False)] = False

    e_a, e_b, e_i, e_j = e_a[keep], e_b[keep], e_i[keep], e_j[keep]
    horizontal, primary, secondary = horizontal[keep], primary[keep], secondary[keep]
    n = e_a.size
    degree = np.bincount(np.concatenate([e_a, e_b]), minlength=nu * nv)
    dead_end = (degree[e_a] == 1) | (degree[e_b] == 1)
    steep_lane = ~horizontal & (rng.random(n) < 0.08)
    road_class = np.full(n, "residential", dtype=object)
    road_class[(dead_end | steep_lane) & ~primary & ~secondary] = "service"
    road_class[secondary] = "secondary"
    road_class[primary] = "primary"

    # geometry: 2-4 jittered intermediate vertices per edge
    inner = rng.integers(2, 5, n)
    counts = inner + 2
    edge_of = np.repeat(np.arange(n), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.arange(counts.sum()) - starts[edge_of]
    t = k / (counts[edge_of] - 1)
    interior = (k > 0) & (k < counts[edge_of] - 1)
    ua, ub = node_u[e_a][edge_of], node_u[e_b][edge_of]
    va, vb = node_v[e_a][edge_of], node_v[e_b][edge_of]
    u = ua + (ub - ua) * t
    hor = horizontal[edge_of]
    jit_a, jit_b = node_jit[e_a][edge_of], node_jit[e_b][edge_of]
    v = np.empty_like(u)
    rows = e_j[edge_of]
    v[hor] = row_v(rows[hor], u[hor]) + jit_a[hor] + (jit_b[hor] - jit_a[hor]) * t[hor]
    v[~hor] = va[~hor] + (vb[~hor] - va[~hor]) * t[~hor]
    # small jitter of interior vertices: along the normal for up-slope connectors
    du, dv = ub - ua, vb - va
    norm = np.hypot(du, dv)
    off = np.where(interior, np.clip(rng.normal(0, np.where(hor, 2.0, 5.0)), -9, 9), 0.0)
    u = u + np.where(hor, 0.0, -dv / norm * off)
    v = v + np.where(hor, off, du / norm * off)
    x, y = frame.to_xy(u, v)
    geom = shapely.linestrings(np.column_stack([x, y]), indices=edge_of)
    z = frame.elevation(u, v)
    z_a, z_b = z[starts], z[starts + counts - 1]
    length = shapely.length(geom)

    # attributes
    words = list(WORDS)
    rng.shuffle(words)
    row_names = np.array(["Binjiang Road"] + [
        f"{_word_name(words, j)} {'Road' if j % SECONDARY_ROW_EVERY == 3 else 'Street'}"
        for j in range(1, nv)], dtype=object)
    col_words = words[len(words) // 2:] + words[:len(words) // 2]
    col_names = np.array([
        f"{_word_name(col_words, i)} {'Road' if i % SECONDARY_COL_EVERY == 3 else 'Lane'}"
        for i in range(nu)], dtype=object)
    name = np.where(horizontal, row_names[e_j], col_names[e_i])

    u_mid = (node_u[e_a] + node_u[e_b]) / 2
    v_mid = (node_v[e_a] + node_v[e_b]) / 2
    v_norm = np.clip(v_mid / height_v, 0, 1)
    r = rng.random(n)
    surface = np.full(n, "asphalt", dtype=object)
    res, svc = road_class == "residential", road_class == "service"
    surface[res & (r < 0.25)] = "concrete"
    surface[res & (r >= 0.25) & (r < 0.30)] = "paving_blocks"
    surface[svc & (r < 0.5)] = "concrete"
    surface[svc & (r >= 0.5) & (r < 0.9)] = "paving_blocks"
    lo = np.array([WIDTH_M[c][0] for c in road_class])
    hi_w = np.array([WIDTH_M[c][1] for c in road_class])
    width = np.round(lo + (hi_w - lo) * rng.random(n), 1)
    lanes = np.array([LANES[c] for c in road_class], dtype=np.int32)
    lanes[res & (width < 6.0)] = 1
    built = np.clip(np.rint(1976 + 40 * v_norm + rng.normal(0, 6, n)), 1970, 2022).astype(int)
    grade = np.round(np.abs(z_b - z_a) / np.maximum(length, 1) * 100, 1)
    hv = np.array([HV_BASE[c] for c in road_class]) * rng.lognormal(0, 0.3, n)
    district = ((e_j // DISTRICT_ROWS) * (nu // DISTRICT_COLS + 1) + e_i // DISTRICT_COLS)
    streets = Streets(geom=geom, ids=_ids("ST", n, 5), name=name, road_class=road_class,
                      surface=surface, width=width, lanes=lanes, built_year=built, grade=grade,
                      hv_base=hv, length=length, district=district, v_norm=v_norm, u_mid=u_mid)
    return frame, streets


@dataclass
class Manholes:
    """Manholes, index-aligned; ``street`` is the index of the street they lie on."""

    geom: np.ndarray
    ids: np.ndarray
    kind: np.ndarray
    depth: np.ndarray
    street: np.ndarray
    sensor_id: np.ndarray


def build_manholes(seed: int, scale: float, st: Streets) -> Manholes:
    """Stations every ~30-50 m along each street, one or two covers per station."""
    rng = _rng(seed, "manholes")
    n_st = np.maximum(1, np.rint(st.length / MANHOLE_SPACING_M)).astype(int)
    street = np.repeat(np.arange(st.length.size), n_st)
    k = np.arange(street.size) - np.repeat(np.cumsum(n_st) - n_st, n_st)
    dist = (k + 0.5 + rng.uniform(-0.25, 0.25, street.size)) * st.length[street] / n_st[street]
    second = rng.random(street.size) < SECOND_COVER_P
    street = np.concatenate([street, street[second]])
    dist = np.concatenate([dist, dist[second]])
    first_side = rng.choice([-1.0, 1.0], second.size)
    side = np.concatenate([first_side, -first_side[second]])
    kind_idx = rng.choice(len(KINDS), street.size, p=KIND_P)
    n_first = second.size
    dup = kind_idx[n_first:] == kind_idx[:n_first][second]
    kind_idx[n_first:][dup] = (kind_idx[n_first:][dup] + 1) % len(KINDS)
    order = np.lexsort((side, dist, street))
    street, dist, side, kind_idx = street[order], dist[order], side[order], kind_idx[order]

    lines = st.geom[street]
    p = shapely.line_interpolate_point(lines, dist)
    q = shapely.line_interpolate_point(lines, np.minimum(dist + 0.5, st.length[street]))
    p0 = shapely.line_interpolate_point(lines, np.maximum(dist - 0.5, 0))
    tx, ty = shapely.get_x(q) - shapely.get_x(p0), shapely.get_y(q) - shapely.get_y(p0)
    tn = np.maximum(np.hypot(tx, ty), 1e-9)
    offset = side * rng.uniform(0.3, 0.8, street.size) * st.width[street] / 2
    x = shapely.get_x(p) - ty / tn * offset
    y = shapely.get_y(p) + tx / tn * offset
    kind = np.array(KINDS, dtype=object)[kind_idx]
    lo = np.array([KIND_DEPTH[c][0] for c in kind])
    hi = np.array([KIND_DEPTH[c][1] for c in kind])
    depth = np.round(lo + (hi - lo) * rng.random(kind.size), 2)

    n_sensors = min(kind.size, max(1, round(SENSORS_PER_SCALE * scale)))
    w = np.array([SENSOR_KIND_WEIGHT[c] for c in kind])
    chosen = np.sort(rng.choice(kind.size, n_sensors, replace=False, p=w / w.sum()))
    sensor_id = np.full(kind.size, None, dtype=object)
    sensor_id[chosen] = _ids("SC", n_sensors, 5)
    return Manholes(geom=shapely.points(x, y), ids=_ids("MH", kind.size, 5), kind=kind,
                    depth=depth, street=street, sensor_id=sensor_id)


@dataclass
class Blocks:
    """What fills the blocks between streets."""

    compounds: pd.DataFrame   # + geometry column "geom"
    parking: pd.DataFrame
    sites: pd.DataFrame       # x, y, start_day, end_day (days after history start)


def build_blocks(seed: int, scale: float, frame: Frame, st: Streets, start: date,
                 days: int) -> Blocks:
    """Faces of the street network, shrunk by a setback: compounds, car parks, building sites."""
    rng = _rng(seed, "blocks")
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.union_all(st.geom))))
    shrunk = _largest_part(shapely.buffer(faces, -SETBACK_M, join_style="mitre",
                                          mitre_limit=2.0))
    shrunk = shapely.simplify(shrunk, 0.5)
    # dead-end streets reach into faces: keep the setback from them too
    tree = shapely.STRtree(st.geom)
    blk, inner = tree.query(shrunk, predicate="dwithin", distance=SETBACK_M - 0.5)
    if blk.size:
        cut = shapely.buffer(st.geom[inner], st.width[inner] / 2 + SETBACK_M - 2.0,
                             join_style="mitre", mitre_limit=2.0)
        for b in np.unique(blk).tolist():
            shrunk[b] = shapely.difference(shrunk[b], shapely.union_all(cut[blk == b]))
        shrunk = _largest_part(shrunk)
    area = shapely.area(shrunk)
    ok = np.flatnonzero(_valid_everywhere(shrunk) & (area >= 800))
    shrunk, area = shrunk[ok], area[ok]
    cx, cy = shapely.get_x(shapely.centroid(shrunk)), shapely.get_y(shapely.centroid(shrunk))
    cu, cv = frame.to_uv(cx, cy)
    height = max(1.0, np.max(frame.to_uv(*shapely.get_coordinates(st.geom).T)[1]))
    v_norm = np.clip(cv / height, 0, 1)
    u_half = max(1.0, np.abs(st.u_mid).max())
    edge = np.clip(np.abs(cu) / u_half, 0, 1)
    free = np.ones(ok.size, bool)

    def pick(n: int, weight: np.ndarray) -> np.ndarray:
        w = np.where(free, weight, 0.0)
        n = min(n, int((w > 0).sum()))
        chosen = np.sort(rng.choice(w.size, n, replace=False, p=w / w.sum())) if n else \
            np.array([], int)
        free[chosen] = False
        return chosen

    # building sites: uphill and at the edges (new resettlement housing)
    n_sites = max(1, round(SITES_PER_SCALE * scale))
    site_blocks = pick(n_sites, 0.2 + v_norm + edge)
    site_pt = shapely.point_on_surface(shrunk[site_blocks])
    first = -180
    site_start = rng.integers(first, max(first + 1, days - 90), site_blocks.size)
    site_end = site_start + rng.integers(*SITE_DURATION_DAYS, site_blocks.size)
    sites = pd.DataFrame({
        "site_id": _ids("BS", site_blocks.size, 3),
        "x": shapely.get_x(site_pt), "y": shapely.get_y(site_pt),
        "start_day": site_start, "end_day": site_end,
    })

    # car parks: small blocks near the river
    n_lots = max(1, round(LOTS_PER_SCALE * scale))
    lot_blocks = pick(n_lots, (1.2 - v_norm) / np.sqrt(area))
    # compounds: about half of the remaining blocks
    n_comp = int(round(0.6 * free.sum()))
    comp_blocks = pick(n_comp, np.ones(free.size))

    nearest_street = tree.nearest(shrunk)

    # compounds
    cv_ = v_norm[comp_blocks]
    ce = edge[comp_blocks]
    weights = np.column_stack([
        1.5 * np.ones(cv_.size),                       # commodity
        2.5 * (cv_ ** 2 + 0.8 * ce ** 4),              # resettlement
        4.0 * np.exp(-cv_ / 0.3),                      # old
        0.8 + 0.6 * np.exp(-cv_ / 0.4),                # unmanaged
    ])
    cum = np.cumsum(weights / weights.sum(1, keepdims=True), axis=1)
    mtype_idx = (rng.random((cv_.size, 1)) > cum).sum(1)
    mtypes = np.array(["commodity", "resettlement", "old", "unmanaged"], dtype=object)[mtype_idx]
    years = {"commodity": (2000, 2022), "resettlement": (2011, 2025), "old": (1978, 2000),
             "unmanaged": (1985, 2011)}
    density = {"commodity": 0.045, "resettlement": 0.07, "old": 0.03, "unmanaged": 0.025}
    built = np.array([rng.integers(*years[m]) for m in mtypes], dtype=np.int32)
    carea = area[comp_blocks]
    households = np.array([max(8, round(a * density[m] * rng.uniform(0.8, 1.2)))
                           for a, m in zip(carea, mtypes, strict=True)], dtype=np.int32)
    company = np.full(cv_.size, None, dtype=object)
    for i, m in enumerate(mtypes):
        r = rng.random()
        if m == "commodity":
            company[i] = PROPERTY_COMPANIES[rng.integers(len(PROPERTY_COMPANIES))]
        elif m == "resettlement":
            company[i] = STATE_PROPERTY_COMPANY if r < 0.8 else PROPERTY_COMPANIES[
                rng.integers(len(PROPERTY_COMPANIES))]
        elif m == "old" and r < 0.3:
            company[i] = PROPERTY_COMPANIES[rng.integers(len(PROPERTY_COMPANIES))]
    words = list(WORDS)
    rng.shuffle(words)
    suffix = {"commodity": ("Garden", "Jiayuan", "Mansion", "Court"),
              "resettlement": ("Resettlement Community", "Anju Community"),
              "old": ("Old Compound", "Courtyard", "Lane Houses"),
              "unmanaged": ("Residential Quarter", "Dormitory Compound")}
    names = []
    for i, m in enumerate(mtypes):
        options = suffix[m]
        names.append(f"{_word_name(words, i)} {options[rng.integers(len(options))]}")
    compounds = pd.DataFrame({
        "external_id": _ids("CP", cv_.size, 4), "name": names, "management_type": mtypes,
        "households": households, "built_year": built, "property_company": company,
        "geom": shrunk[comp_blocks]})

    # parking: lots (shrunk blocks) and on-street bays along streets
    # a car park is the part of its block within LOT_DEPTH_M of the nearest street
    lot_geom = shrunk[lot_blocks]
    big = area[lot_blocks] > LOT_MAX_M2
    if big.any():
        strip = shapely.buffer(st.geom[nearest_street[lot_blocks][big]], LOT_DEPTH_M,
                               cap_style="flat")
        cut = _largest_part(shapely.intersection(lot_geom[big], strip))
        fine = _valid_everywhere(cut)
        lot_geom[np.flatnonzero(big)[fine]] = cut[fine]
    lot_names = [f"{st.name[s]} Car Park" for s in nearest_street[lot_blocks]]
    lot_cap = np.maximum(10, np.rint(shapely.area(lot_geom) / 27)).astype(np.int32)
    n_bays = max(1, round(BAYS_PER_SCALE * scale))
    eligible = np.flatnonzero(np.isin(st.road_class, ["residential", "secondary"])
                              & (st.length >= 50))
    bw = (1.2 - st.v_norm[eligible])
    bay_streets = np.sort(rng.choice(eligible, min(n_bays, eligible.size), replace=False,
                                     p=bw / bw.sum()))
    bay_geom, bay_cap, bay_names = [], [], []
    for s in bay_streets.tolist():
        length = st.length[s]
        a = rng.uniform(0.1, 0.45) * length
        b = min(a + rng.uniform(20, 60), 0.9 * length)
        half = st.width[s] / 2
        side = 1.0 if rng.random() < 0.5 else -1.0
        poly = _bay(shapely.ops.substring(st.geom[s], a, b), half, side)
        if poly is None:
            continue
        bay_geom.append(poly)
        bay_cap.append(max(2, int((b - a) // 6)))
        bay_names.append(f"{st.name[s]} Parking Bays")
    geom = np.concatenate([lot_geom, np.array(bay_geom, dtype=object)])
    kind = np.array(["lot"] * lot_geom.size + ["on_street"] * len(bay_geom), dtype=object)
    n_park = geom.size
    n_ps = min(n_park, max(1, round(PARKING_SENSORS_PER_SCALE * scale)))
    pw = np.where(kind == "lot", 2.0, 1.0)
    has_sensor = np.zeros(n_park, bool)
    has_sensor[rng.choice(n_park, n_ps, replace=False, p=pw / pw.sum())] = True
    parking = pd.DataFrame({
        "external_id": _ids("PK", n_park, 4), "name": lot_names + bay_names, "kind": kind,
        "capacity": np.concatenate([lot_cap, np.array(bay_cap, dtype=np.int32)]),
        "has_sensor": has_sensor, "geom": geom})
    return Blocks(compounds=compounds, parking=parking, sites=sites)


# -- houses ----------------------------------------------------------------------------------

# House forms: footprint (length, depth) in metres and storeys (inclusive range). Walk-ups are
# the 5-7 storey blocks of old and resettlement compounds, towers the 11-18 storey blocks of
# newer commodity compounds, village houses the 2-4 storey self-built houses of unmanaged
# quarters, bungalows the 1-2 storey lane houses of old compounds (domain notes).
HOUSE_FORMS = {"walkup": ((36.0, 12.0), (5, 7)), "midrise": ((42.0, 13.0), (6, 9)),
               "tower": ((26.0, 18.0), (11, 18)), "village": ((12.0, 10.0), (2, 4)),
               "bungalow": ((16.0, 8.0), (1, 2))}
# Which forms a compound of each management type is built in, with their weights.
HOUSE_FORMS_BY_TYPE = {"commodity": (("tower", 0.45), ("midrise", 0.55)),
                       "resettlement": (("walkup", 0.7), ("tower", 0.3)),
                       "old": (("walkup", 0.7), ("bungalow", 0.3)),
                       "unmanaged": (("village", 0.75), ("walkup", 0.25))}
HOUSE_GAP_M = {"walkup": 8.0, "midrise": 10.0, "tower": 14.0, "village": 3.0, "bungalow": 3.0}
HOUSE_EDGE_M = 3.0         # kept clear inside the compound's boundary
HOUSE_ROW_SUN = 0.7        # rows apart by this share of the height (sunlight spacing), at least
HOUSES_MAX_PER_COMPOUND = 60
STOREY_M = 3.0             # about 3 m per storey, plus a parapet
HOUSE_STRUCTURE = {"walkup": ("brick_concrete", "reinforced_concrete"),
                   "midrise": ("reinforced_concrete",), "tower": ("reinforced_concrete",),
                   "village": ("brick_concrete", "brick_wood", "earth"),
                   "bungalow": ("brick_wood", "brick_concrete")}
HOUSE_HEIGHT_KNOWN = {"commodity": 1.0, "resettlement": 1.0, "old": 0.8, "unmanaged": 0.4}


def _house_rows(poly, form: str, floors: int, shrink: float) -> list:
    """Rectangles of one form on a grid aligned with the compound, wholly inside it."""
    (length, depth), _ = HOUSE_FORMS[form]
    length, depth = length * shrink, depth * shrink
    box = shapely.minimum_rotated_rectangle(poly)
    ring = shapely.get_coordinates(box)[:4]
    edges = np.diff(np.vstack([ring, ring[:1]]), axis=0)
    longest = edges[int(np.argmax(np.hypot(edges[:, 0], edges[:, 1])))]
    angle = math.degrees(math.atan2(longest[1], longest[0]))
    centre = shapely.centroid(poly)
    flat = shapely.affinity.rotate(poly, -angle, origin=centre)
    inner = shapely.buffer(flat, -HOUSE_EDGE_M, join_style="mitre")
    if shapely.is_empty(inner):
        return []
    west, south, east, north = shapely.bounds(inner)
    gap = HOUSE_GAP_M[form] * shrink
    row_gap = max(gap, HOUSE_ROW_SUN * floors * STOREY_M * shrink)
    xs = np.arange(west, east - length + 1e-6, length + gap)
    ys = np.arange(south, north - depth + 1e-6, depth + row_gap)
    if xs.size == 0 or ys.size == 0:
        return []
    gx, gy = np.meshgrid(xs, ys)
    cells = shapely.box(gx.ravel(), gy.ravel(), gx.ravel() + length, gy.ravel() + depth)
    inside = cells[shapely.contains(inner, cells)]
    return [shapely.affinity.rotate(c, angle, origin=centre) for c in inside]


def build_houses(seed: int, compounds: pd.DataFrame, end: date) -> pd.DataFrame:
    """Houses inside every compound: footprints that do not overlap, storeys by compound type.

    Each compound is built in one form (a tower estate, walk-up blocks, village houses...)
    chosen by its management type; the houses stand on a grid aligned with the compound,
    rows apart by their height. A compound too small for its form gets smaller houses, at
    least one. Households are shared among the residential houses by floor area. Ids are
    ``B-<compound id>-<n>``, stable for a compound as long as its shape is.
    """
    rng = _rng(seed, "houses")
    rows = []
    for c in compounds.itertuples(index=False):
        names, weights = zip(*HOUSE_FORMS_BY_TYPE[c.management_type], strict=True)
        form = names[int(rng.choice(len(names), p=np.array(weights) / sum(weights)))]
        lo, hi = HOUSE_FORMS[form][1]
        floors = int(rng.integers(lo, hi + 1))
        houses = []
        for shrink in (1.0, 0.75, 0.55, 0.4):
            houses = _house_rows(c.geom, form, floors, shrink)
            if houses:
                break
        if not houses:  # a sliver: one small house at its heart
            spot = shapely.point_on_surface(c.geom)
            houses = [shapely.intersection(shapely.buffer(spot, 5.0, cap_style="square"),
                                           shapely.buffer(c.geom, -0.5))]
            houses = [_largest_part(np.array(houses, dtype=object))[0]]
        houses = houses[:HOUSES_MAX_PER_COMPOUND]
        n = len(houses)
        storeys = np.clip(floors + rng.integers(-1, 2, n), lo, hi)
        use = np.full(n, "residential", dtype=object)
        if form in ("midrise", "tower", "walkup") and n >= 3 and rng.random() < 0.35:
            use[0] = "mixed"  # shops below the flats on the street side
        if n >= 6 and rng.random() < 0.3:
            use[-1] = "public"  # a kindergarten or the community's office
            storeys[-1] = min(storeys[-1], 3)
        floor_area = shapely.area(np.array(houses, dtype=object)) * storeys
        share = np.where(use == "public", 0.0, floor_area)
        households = np.floor(c.households * share / max(share.sum(), 1.0)).astype(np.int32)
        height = np.round(storeys * STOREY_M + rng.uniform(0.3, 1.5, n), 1)
        height = np.where(rng.random(n) < HOUSE_HEIGHT_KNOWN[c.management_type], height, np.nan)
        built = np.minimum(c.built_year + rng.integers(0, 3, n), end.year).astype(np.int32)
        structures = HOUSE_STRUCTURE[form]
        structure = np.array([structures[int(k)] for k in rng.integers(0, len(structures), n)],
                             dtype=object)
        age = end.year - built
        worse = np.clip(age / 60 + (form in ("village", "bungalow")) * 0.1, 0, 0.9)
        draw = rng.random(n)
        condition = np.where(draw > worse, "A", np.where(draw > worse / 3, "B",
                                                        np.where(draw > worse / 12, "C", "D")))
        for k in range(n):
            rows.append({
                "external_id": f"B-{c.external_id}-{k + 1:02d}",
                "name": f"{c.name}, Building {k + 1}", "use": use[k],
                "floors": int(storeys[k]), "height_m": float(height[k]),
                "year_built": int(built[k]), "households": int(households[k]),
                "structure": structure[k], "condition": str(condition[k]),
                "compound_external_id": c.external_id, "geom": houses[k]})
    return pd.DataFrame(rows, columns=["external_id", "name", "use", "floors", "height_m",
                                       "year_built", "households", "structure", "condition",
                                       "compound_external_id", "geom"])


# ============================================================================================
# history
# ============================================================================================

def simulate_rain(seed: int, start: date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Daily rain (mm) from a two-state Markov chain with gamma amounts and wet-season storms."""
    rng = _rng(seed, "rain")
    months = np.array([(start + timedelta(d)).month for d in range(days)])
    p_wet = np.array(RAIN_P_WET)[months - 1]
    mean = np.array(RAIN_MEAN_MM)[months - 1]
    u = rng.random(days)
    amount = rng.gamma(RAIN_GAMMA_SHAPE, mean / RAIN_GAMMA_SHAPE)
    heavy = (rng.random(days) < RAIN_HEAVY_P) & np.isin(months, WET_MONTHS)
    heavy_mm = rng.uniform(*RAIN_HEAVY_MM, days)
    rain = np.zeros(days)
    wet = False
    for d in range(days):
        p = p_wet[d] + (RAIN_PERSIST[0] if wet else RAIN_PERSIST[1])
        wet = u[d] < min(max(p, 0.0), 0.9)
        rain[d] = amount[d] if wet else 0.0
        if heavy[d]:
            rain[d] += heavy_mm[d]
            wet = True
    return np.round(rain, 1), months


@dataclass
class PCIHistory:
    """Result of the weekly PCI simulation."""

    states: np.ndarray          # (n_streets, weeks) true PCI at each week date
    resurf: pd.DataFrame        # street, day, pci_before
    resurfaced_on: np.ndarray   # datetime64[D] as of end
    hv_end: np.ndarray          # heavy vehicles per day at `end`
    built_year: np.ndarray


def site_traffic(st: Streets, sites: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(street index, site index, heavy vehicles per day) for street-site pairs within reach."""
    pts = shapely.points(sites["x"].to_numpy(), sites["y"].to_numpy())
    tree = shapely.STRtree(st.geom)
    site_idx, street_idx = tree.query(pts, predicate="dwithin", distance=SITE_HV_RADIUS_M)
    dist = shapely.distance(st.geom[street_idx], pts[site_idx])
    return street_idx, site_idx, SITE_HV * np.exp(-dist / SITE_HV_DECAY_M)


def simulate_pci(seed: int, st: Streets, sites: pd.DataFrame, rain: np.ndarray,
                 start: date, days: int) -> PCIHistory:
    """Weekly PCI per street: traffic-, age-, weather- and condition-driven loss, resurfacing."""
    rng = _rng(seed, "pci")
    n = st.length.size
    weeks = -(-days // 7)
    week_dates = [start + timedelta(7 * k) for k in range(weeks)]
    week_rain = np.add.reduceat(rain, np.arange(0, days, 7))
    wet = np.array([d.month in WET_MONTHS for d in week_dates])

    pci = 100 * rng.beta(*PCI_START_BETA, n)
    pci = np.clip(pci, 0.5, 99.5)
    age = ((100 - pci) / PCI_AGE_C) ** (1 / PCI_AGE_P) * rng.uniform(0.85, 1.15, n)
    last_resurf = np.datetime64(start, "D") - np.rint(age * 365.25).astype("timedelta64[D]")
    resurf_year = last_resurf.astype("datetime64[Y]").astype(int) + 1970
    built_year = np.minimum(st.built_year, resurf_year).astype(np.int32)

    base = np.array([PCI_BASE_RATE[c] for c in st.road_class]) * np.array(
        [SURFACE_MULT[s] for s in st.surface]) * (1 + PCI_GRADE_COEF * st.grade)
    street_idx, site_idx, hv_site = site_traffic(st, sites)
    active = ((sites["start_day"].to_numpy()[:, None] <= np.arange(weeks) * 7)
              & (np.arange(weeks) * 7 < sites["end_day"].to_numpy()[:, None]))
    threshold = np.array([RESURF_THRESHOLD[c] for c in st.road_class])
    weekly_p = np.array([RESURF_WEEKLY_P[c] for c in st.road_class])
    budget = max(1, round(RESURF_BUDGET_SHARE * n))
    used: dict[int, int] = {}
    noise = rng.lognormal(0, PCI_NOISE_SD, (weeks, n))
    draws = rng.random((weeks, n))
    new_pci = rng.uniform(*RESURF_NEW_PCI, (weeks, n))
    states = np.empty((n, weeks), dtype=np.float32)
    events = []
    dt = 7 / 365.25
    for k in range(weeks):
        if k > 0:
            hv = st.hv_base.copy()
            on = active[site_idx, k - 1]
            np.add.at(hv, street_idx[on], hv_site[on])
            rate = (base * (1 + PCI_AGE_COEF * age) * (1 + PCI_TRAFFIC_COEF * np.log1p(hv / 100))
                    * (1 + PCI_WET_SEASON * wet[k - 1] + PCI_WEEK_RAIN * week_rain[k - 1])
                    * (1 + PCI_K * ((100 - pci) / 100) ** 2))
            pci = np.maximum(pci - rate * dt * noise[k - 1], 0.0)
            age = age + dt
        when = week_dates[k]
        if when.month in RESURF_MONTHS:
            cand = np.flatnonzero((pci < threshold) & (draws[k] < weekly_p))
            left = budget - used.get(when.year, 0)
            if cand.size and left > 0:
                cand = cand[np.lexsort((cand, pci[cand]))][:left]
                used[when.year] = used.get(when.year, 0) + cand.size
                events.append(pd.DataFrame({"street": cand, "day": 7 * k,
                                            "pci_before": pci[cand].copy()}))
                pci[cand] = new_pci[k, cand]
                age[cand] = 0.0
                last_resurf[cand] = np.datetime64(when, "D")
        states[:, k] = pci
    resurf = (pd.concat(events, ignore_index=True) if events
              else pd.DataFrame({"street": [], "day": [], "pci_before": []}))
    hv_end = st.hv_base.copy()
    on_end = (sites["start_day"].to_numpy() <= days) & (days < sites["end_day"].to_numpy())
    on = on_end[site_idx]
    np.add.at(hv_end, street_idx[on], hv_site[on])
    return PCIHistory(states=states, resurf=resurf, resurfaced_on=last_resurf,
                      hv_end=np.rint(hv_end).astype(np.int32), built_year=built_year)


def _pci_at(hist: PCIHistory, street: np.ndarray, minute: np.ndarray) -> np.ndarray:
    week = np.minimum(minute // (7 * 1440), hist.states.shape[1] - 1)
    return hist.states[street, week].astype(float)


@dataclass
class Readings:
    """Columnar readings: layer index, asset index, metric index, minute, value, source index."""

    layer: list
    asset: list
    metric: list
    minute: list
    value: list
    source: list

    @classmethod
    def empty(cls) -> Readings:
        """No readings yet."""
        return cls([], [], [], [], [], [])

    def add(self, layer: str, asset, metric: str, minute, value, source: str) -> None:
        """Append one metric's readings for the given assets and minutes."""
        asset = np.asarray(asset, dtype=np.int32)
        size = asset.size
        self.layer.append(np.full(size, LAYERS.index(layer), np.int8))
        self.asset.append(asset)
        self.metric.append(np.full(size, METRICS.index(metric), np.int8))
        self.minute.append(np.asarray(minute, dtype=np.int32))
        # rounded now (to 2 decimals, finer than any metric is written) so float32 suffices
        self.value.append(np.round(np.asarray(value, dtype=np.float64), 2).astype(np.float32))
        self.source.append(np.full(size, SOURCES.index(source), np.int8))


def surveys_iri_damage(seed: int, st: Streets, hist: PCIHistory, rain: np.ndarray,
                       start: date, days: int, readings: Readings) -> pd.DataFrame:
    """PCI surveys, IRI vehicle passes and road-damage observations (survey/vehicle/resident)."""
    rng = _rng(seed, "surveys")
    n = st.length.size
    # --- PCI surveys: irregular, some districts skip a whole year
    m = int(days // SURVEY_GAP_DAYS[0]) + 2
    gaps = rng.uniform(*SURVEY_GAP_DAYS, (n, m))
    gaps[:, 0] = rng.uniform(0, SURVEY_FIRST_DAYS, n)
    day = np.cumsum(gaps, axis=1)
    street = np.repeat(np.arange(n), m)
    day = day.ravel()
    n_years = int(days // 365) + 1
    skip = rng.random((int(st.district.max()) + 1, n_years)) < SURVEY_SKIP_YEAR_P
    keep = (day < days)
    keep &= ~skip[st.district[street], np.minimum((day // 365).astype(int), n_years - 1)]
    street, day = street[keep], np.floor(day[keep]).astype(np.int64)
    minute = day * 1440 + 9 * 60 + rng.integers(0, 7 * 60, day.size)
    true = _pci_at(hist, street, minute)
    observed = np.clip(np.rint(true + rng.normal(0, SURVEY_SD, true.size)), 0, 100)
    readings.add("streets", street, "pci", minute, observed, "survey")
    events = [("survey", street, minute, true)]

    # --- IRI: one sensor-vehicle pass a month over primary and secondary streets
    major = np.flatnonzero(np.isin(st.road_class, ["primary", "secondary"]))
    m_start = []
    d = date(start.year, start.month, 1)
    while d < start + timedelta(days):
        m_start.append((d - start).days)
        d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    iri_s, iri_m = [], []
    for first in m_start:
        pass_day = max(0, first) + int(rng.integers(0, 25))
        if pass_day >= days:
            continue
        iri_s.append(major)
        iri_m.append(pass_day * 1440 + 8 * 60 + rng.integers(0, 8 * 60, major.size))
    if iri_s:
        s_arr, m_arr = np.concatenate(iri_s), np.concatenate(iri_m)
        true_v = _pci_at(hist, s_arr, m_arr)
        iri = np.clip(IRI_A + IRI_B * (100 - true_v) + rng.normal(0, IRI_SD, s_arr.size),
                      0.3, 20)
        readings.add("streets", s_arr, "iri_m_per_km", m_arr, np.round(iri, 2), "vehicle")
        events.append(("vehicle", s_arr, m_arr, true_v))

    def resident_events():
        """Residents: a weekly chance per street, at a random time of day (in street chunks)."""
        weeks = hist.states.shape[1]
        for a in range(0, n, 2000):
            rs = np.repeat(np.arange(a, min(a + 2000, n)), weeks)
            rw = np.tile(np.arange(weeks), rs.size // weeks)
            rmin = ((rw * 7 + rng.integers(0, 7, rs.size)) * 1440
                    + rng.integers(7 * 60, 22 * 60, rs.size))
            ok = rmin < days * 1440
            yield "resident", rs[ok], rmin[ok], hist.states[rs[ok], rw[ok]].astype(float)

    frames = []
    months = np.array([(start + timedelta(int(x))).month for x in range(days)])
    for source, s_arr, m_arr, true_v in itertools.chain(events, resident_events()):
        dd = (100 - true_v) / 100
        wet = np.isin(months[np.minimum(m_arr // 1440, days - 1)], WET_MONTHS)
        lam = {
            "D00": 0.2 + 1.6 * dd,
            "D10": 0.1 + 1.2 * dd,
            "D20": 3.0 * dd ** 2,
            "D40": 2.5 * np.clip((65 - true_v) / 65, 0, 1) ** 2 * (1 + 1.5 * wet),
        }
        per100 = st.length[s_arr] / 100
        for c in DAMAGE_CLASSES:
            factor = DAMAGE_RESIDENT_WEEKLY[c] if source == "resident" else DAMAGE_DETECT[source]
            count = rng.poisson(lam[c] * per100 * factor)
            if not count.any():
                continue
            idx = np.repeat(np.arange(count.size), count)
            score = dd[idx] + rng.normal(0, 0.12, idx.size) - SEVERITY_SHIFT[c]
            sev = np.where(score < 0.3, 0, np.where(score < 0.55, 1, 2))
            median = np.array(SIZE_MEDIAN_M2[c])[sev]
            size = np.maximum(0.01, np.round(median * rng.lognormal(0, 0.35, idx.size), 2))
            frames.append(pd.DataFrame({
                "street": s_arr[idx], "minute": m_arr[idx], "damage_class": c,
                "severity": np.array(["low", "medium", "high"], dtype=object)[sev],
                "size_m2": size, "source": source, "frac": rng.uniform(0.02, 0.98, idx.size),
                "noise_x": rng.normal(0, POS_SD_M[source], idx.size),
                "noise_y": rng.normal(0, POS_SD_M[source], idx.size)}))
    if not frames:
        frames.append(pd.DataFrame({
            "street": np.array([], np.int64), "minute": np.array([], np.int64),
            "damage_class": np.array([], object), "severity": np.array([], object),
            "size_m2": np.array([], float), "source": np.array([], object),
            "frac": np.array([], float), "noise_x": np.array([], float),
            "noise_y": np.array([], float)}))
    damage = pd.concat(frames, ignore_index=True)
    src_rank = damage["source"].map({"survey": 0, "vehicle": 1, "resident": 2})
    damage = damage.assign(src_rank=src_rank).sort_values(
        ["minute", "street", "src_rank", "damage_class", "frac"], kind="mergesort",
        ignore_index=True)
    pts = shapely.line_interpolate_point(st.geom[damage["street"].to_numpy()],
                                         damage["frac"].to_numpy(), normalized=True)
    damage["x"] = shapely.get_x(pts) + damage["noise_x"]
    damage["y"] = shapely.get_y(pts) + damage["noise_y"]
    damage["confidence"] = damage["source"].map(CONFIDENCE)
    return damage


@dataclass
class Debris:
    """Debris piles (truth) and their observations."""

    piles: pd.DataFrame
    obs: pd.DataFrame


def simulate_debris(seed: int, scale: float, st: Streets, frame: Frame, sites: pd.DataFrame,
                    days: int) -> Debris:
    """Piles near active building sites and at recurring back-street dumping spots."""
    rng = _rng(seed, "debris")
    tree = shapely.STRtree(st.geom)
    places = []  # (x, y, kind, site_id, window_start, window_end)

    def snap(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pts = shapely.points(px, py)
        near = tree.nearest(pts)
        on = shapely.line_interpolate_point(st.geom[near], shapely.line_locate_point(
            st.geom[near], pts))
        ox, oy = shapely.get_x(on), shapely.get_y(on)
        dx, dy = px - ox, py - oy
        dn = np.maximum(np.hypot(dx, dy), 1e-6)
        off = st.width[near] / 2 + 2.0
        return ox + dx / dn * off, oy + dy / dn * off

    for row in sites.itertuples(index=False):
        k = int(rng.integers(2, 5))
        ang = rng.uniform(0, 2 * np.pi, k)
        dist = rng.uniform(50, 200, k)
        px, py = snap(row.x + dist * np.cos(ang), row.y + dist * np.sin(ang))
        w0, w1 = max(0, int(row.start_day)), min(days, int(row.end_day))
        for a, b in zip(px, py, strict=True):
            places.append((a, b, "site", row.site_id, w0, w1))
    back = np.flatnonzero(np.isin(st.road_class, ["residential", "service"]))
    n_dump = min(back.size, max(1, round(DUMPS_PER_SCALE * scale)))
    lw = st.length[back]
    dump_streets = rng.choice(back, n_dump, replace=False, p=lw / lw.sum())
    on = shapely.line_interpolate_point(st.geom[dump_streets], rng.uniform(0.1, 0.9, n_dump),
                                        normalized=True)
    ang = rng.uniform(0, 2 * np.pi, n_dump)
    px, py = snap(shapely.get_x(on) + 5 * np.cos(ang), shapely.get_y(on) + 5 * np.sin(ang))
    for a, b in zip(px, py, strict=True):
        places.append((a, b, "dump", None, 0, days))

    # patrol schedules per zone along the river
    zone_of = lambda x: int((frame.to_uv(x, 0.0)[0] - st.u_mid.min()) // PATROL_ZONE_M)  # noqa: E731
    zones = sorted({zone_of(p[0]) for p in places})
    patrol: dict[int, np.ndarray] = {}
    for z in zones:
        t = [rng.uniform(0, PATROL_GAP_DAYS[1])]
        while t[-1] < days:
            t.append(t[-1] + rng.uniform(*PATROL_GAP_DAYS))
        day_ = np.floor(np.array(t[:-1]))
        patrol[z] = day_ + rng.uniform(9 / 24, 16 / 24, day_.size)

    piles, obs = [], []
    for (x, y, kind, site_id, w0, w1) in places:
        zdates = patrol[zone_of(x)]
        t = w0 + rng.exponential(PILE_GAP_MEAN_DAYS[kind] * (0.75 if kind == "site" else 1.0))
        probs = np.array(MATERIAL_P[kind])
        while t < w1:
            v0 = rng.uniform(*PILE_V0[kind])
            g = rng.uniform(*PILE_GROWTH[kind])
            material = MATERIALS[rng.choice(len(MATERIALS), p=probs)]
            jx, jy = rng.normal(0, 2.0, 2)
            res_first = t + rng.exponential(RESIDENT_FIRST_MEAN_DAYS / (1 + v0 / 3))
            later = zdates[zdates >= t]
            seen = later[rng.random(later.size) < PATROL_SIGHT_P]
            report = min(res_first, seen[0] if seen.size else np.inf)
            natural = rng.uniform(*PILE_NATURAL_CLEAR_DAYS)
            clear = t + min(natural, report - t + rng.uniform(*PILE_CLEAR_AFTER_REPORT_DAYS))
            ref = len(piles)
            piles.append((x + jx, y + jy, t, clear if clear < days else np.nan, v0, g, kind,
                          site_id or ""))
            stop = min(clear, days)
            sightings = seen[seen < stop]
            res = [res_first] if res_first < stop else []
            while res and res[-1] < stop:
                res.append(res[-1] + rng.exponential(RESIDENT_REPEAT_MEAN_DAYS))
            res = [r for r in res if r < stop]
            for when, source in [(s_, "patrol") for s_ in sightings] + [(r, "resident")
                                                                        for r in res]:
                true_v = v0 + g * (when - t)
                est = max(0.1, round(true_v * float(rng.lognormal(0, 0.25)), 1))
                keep_true = rng.random() < (0.85 if source == "patrol" else 0.7)
                mat = material if keep_true else ("mixed" if material != "mixed" else
                                                  MATERIALS[rng.integers(3)])
                nx, ny = rng.normal(0, POS_SD_M[source], 2)
                obs.append((ref, when, x + jx + nx, y + jy + ny, est, mat, source))
            t = clear + rng.exponential(PILE_GAP_MEAN_DAYS[kind])
    piles_df = pd.DataFrame(piles, columns=["x", "y", "appeared", "cleared", "v0", "growth",
                                            "kind", "site"])
    obs_df = pd.DataFrame(obs, columns=["pile", "when", "x", "y", "volume", "material",
                                        "source"])
    # minutes, sorted by time for stable identifiers
    piles_df["appeared_min"] = np.floor(piles_df["appeared"] * 1440).astype(np.int64)
    obs_df["minute"] = np.floor(obs_df["when"] * 1440).astype(np.int64)
    order = np.lexsort((piles_df["x"].to_numpy(), piles_df["appeared_min"].to_numpy()))
    piles_df = piles_df.iloc[order].reset_index(drop=True)
    remap = np.empty(order.size, dtype=np.int64)
    remap[order] = np.arange(order.size)
    obs_df["pile"] = remap[obs_df["pile"].to_numpy()] if len(obs_df) else obs_df["pile"]
    obs_df = obs_df.sort_values(["minute", "pile", "source"], kind="mergesort",
                                ignore_index=True)
    return Debris(piles=piles_df, obs=obs_df)


def simulate_sensors(seed: int, scale: float, mh: Manholes, rain: np.ndarray, days: int,
                     readings: Readings) -> pd.DataFrame:
    """Daily heartbeats of smart covers, injected faults and hourly alarm reports."""
    rng = _rng(seed, "sensors")
    frng = _rng(seed, "faults")
    sens = np.flatnonzero(mh.sensor_id != None)  # noqa: E711
    n_s = sens.size
    kind = mh.kind[sens]
    sewer, storm = kind == "sewer", kind == "storm"
    d0 = max(0, days - SENSOR_HISTORY_DAYS)
    n_d = days - d0
    day = np.arange(d0, days)
    hour = rng.integers(0, 24, (n_s, n_d))
    minute = day[None, :] * 1440 + hour * 60 + rng.integers(0, 60, (n_s, n_d))

    eff = rain + 0.5 * np.concatenate([[0.0], rain[:-1]]) + 0.25 * np.concatenate(
        [[0.0, 0.0], rain[:-2]])
    r_eff = eff[day][None, :]
    base_tilt = rng.uniform(0.3, 1.5, n_s)
    tilt = np.maximum(0.05, base_tilt[:, None] + rng.normal(0, 0.1, (n_s, n_d)))
    cover = np.zeros((n_s, n_d))
    wl_base = np.where(sewer, rng.uniform(15, 35, n_s), np.where(storm, rng.uniform(3, 8, n_s),
                                                                rng.uniform(0, 5, n_s)))
    wl_gain = np.where(sewer, 0.12, np.where(storm, rng.uniform(0.35, 0.6, n_s), 0.04))
    diurnal = np.where(sewer[:, None], 4 * np.sin(2 * np.pi * (hour - 8) / 24), 0.0)
    wl_sd = np.where(sewer, 2.0, np.where(storm, 1.2, 0.8))[:, None]
    wl = np.clip(wl_base[:, None] + wl_gain[:, None] * r_eff + diurnal
                 + rng.normal(0, 1, (n_s, n_d)) * wl_sd, 0, 78)
    o2 = 20.9 + rng.normal(0, 0.08, (n_s, n_d))
    lel = np.clip(0.4 + np.abs(rng.normal(0, 0.7, (n_s, n_d))), 0, 6)
    h2s = np.clip(np.exp(rng.normal(np.log(0.6), 0.7, (n_s, n_d))), 0, 6)
    co = np.clip(np.abs(rng.normal(1.5, 1.2, (n_s, n_d))), 0, 15)
    b0 = rng.uniform(20, 100, n_s)
    b_rate = rng.uniform(0.08, 0.22, n_s)
    battery = 100 - ((100 - b0)[:, None] + b_rate[:, None] * (day - d0)[None, :]) % 90
    battery = np.clip(battery + rng.normal(0, 0.3, (n_s, n_d)), 0, 100)
    present = np.ones((n_s, n_d), bool)

    # --- faults
    busy: dict[int, list[tuple[int, int]]] = {}
    faults = []
    heavy_days = np.flatnonzero(rain[d0:] >= 40) + d0
    if heavy_days.size == 0:
        heavy_days = d0 + np.argsort(-rain[d0:], kind="stable")[:3]
    n_f = max(1, round(FAULTS_PER_SCALE * scale))
    eligible = {"flooding": np.flatnonzero(storm), "gas_alarm": np.flatnonzero(sewer)}
    for fk in FAULT_KINDS:
        pool = eligible.get(fk, np.arange(n_s))
        if pool.size == 0:
            continue
        for _fault in range(n_f):
            for _attempt in range(40):
                s = int(pool[frng.integers(pool.size)])
                if fk == "flooding":
                    a = int(heavy_days[frng.integers(heavy_days.size)]) * 1440 + int(
                        frng.integers(0, 20 * 60))
                    dur = int(frng.integers(2 * 60, 14 * 60))
                else:
                    lo_hi = {"tilted_cover": (6 * 60, 10 * 1440), "cover_open": (2 * 60, 3 * 1440),
                             "stuck_sensor": (5 * 1440, 30 * 1440),
                             "silent_sensor": (3 * 1440, 20 * 1440),
                             "sensor_drift": (20 * 1440, 60 * 1440),
                             "gas_alarm": (2 * 60, 36 * 60)}[fk]
                    dur = int(frng.integers(*lo_hi))
                    a = int(frng.integers(d0 * 1440, max(d0 * 1440 + 1, days * 1440 - dur)))
                b = min(a + dur, days * 1440)
                if all(b + 1440 <= x or a >= y + 1440 for x, y in busy.get(s, [])):
                    busy.setdefault(s, []).append((a, b))
                    faults.append((s, fk, a, b))
                    break
    faults.sort(key=lambda f: (f[2], f[0], f[1]))

    extra_minute: dict[str, list] = {m: [] for m in METRICS}
    extra_value: dict[str, list] = {m: [] for m in METRICS}
    extra_asset: dict[str, list] = {m: [] for m in METRICS}

    def extra(metric: str, s: int, mins: np.ndarray, vals: np.ndarray) -> None:
        extra_minute[metric].append(mins)
        extra_value[metric].append(vals)
        extra_asset[metric].append(np.full(mins.size, sens[s]))

    for s, fk, a, b in faults:
        inside = (minute[s] >= a) & (minute[s] < b)
        hourly = np.arange(a, b, 60)
        f_h = (hourly - a) / max(1, b - a)
        f_d = (minute[s][inside] - a) / max(1, b - a)
        if fk == "tilted_cover":
            value = float(frng.uniform(12, 35))
            tilt[s, inside] = value + frng.normal(0, 0.4, inside.sum())
            extra("tilt_deg", s, hourly, value + frng.normal(0, 0.4, hourly.size))
            extra("cover_open", s, hourly, np.zeros(hourly.size))
        elif fk == "cover_open":
            cover[s, inside] = 1
            extra("cover_open", s, hourly, np.ones(hourly.size))
            extra("tilt_deg", s, hourly, np.maximum(0.05, base_tilt[s] + frng.normal(
                0, 0.1, hourly.size)))
        elif fk == "stuck_sensor":
            first = np.flatnonzero(minute[s] >= a)
            if first.size:
                wl[s, inside] = np.round(wl[s, first[0]], 1)
        elif fk == "flooding":
            peak = float(frng.uniform(86, 100))
            wl[s, inside] = 80.5 + (peak - 80.5) * np.sin(np.pi * f_d)
            extra("water_level_pct", s, hourly, 80.5 + (peak - 80.5) * np.sin(np.pi * f_h))
        elif fk == "silent_sensor":
            present[s, inside] = False
        elif fk == "sensor_drift":
            rate = min(float(frng.uniform(0.4, 1.2)), 40 / ((b - a) / 1440))
            wl[s, inside] = np.minimum(100.0, wl[s, inside] + rate * (minute[s][inside] - a)
                                       / 1440)
        elif fk == "gas_alarm":
            mode = frng.choice(["h2s", "lel", "both"], p=[0.5, 0.25, 0.25])
            h2s_pk, lel_pk = float(frng.uniform(12, 60)), float(frng.uniform(11, 35))
            co_pk = float(frng.uniform(40, 120)) if frng.random() < 0.3 else 0.0
            o2_dip = float(frng.uniform(1.5, 2.3)) if frng.random() < 0.4 else 0.0

            def gas(f, base_h2s, base_lel, base_co, base_o2, mode=mode, h2s_pk=h2s_pk,
                    lel_pk=lel_pk, co_pk=co_pk, o2_dip=o2_dip):
                bump = np.sin(np.pi * f)
                h = 10.5 + (h2s_pk - 10.5) * bump if mode != "lel" else base_h2s
                ll = 10.5 + (lel_pk - 10.5) * bump if mode != "h2s" else base_lel
                c = np.maximum(base_co, co_pk * bump)
                o = base_o2 - o2_dip * bump
                return h, ll, c, o

            h, ll, c, o = gas(f_d, h2s[s, inside], lel[s, inside], co[s, inside], o2[s, inside])
            h2s[s, inside], lel[s, inside], co[s, inside], o2[s, inside] = h, ll, c, o
            nh = hourly.size
            h, ll, c, o = gas(f_h, np.clip(np.exp(frng.normal(np.log(0.6), 0.7, nh)), 0, 6),
                              np.clip(0.4 + np.abs(frng.normal(0, 0.7, nh)), 0, 6),
                              np.clip(np.abs(frng.normal(1.5, 1.2, nh)), 0, 15),
                              20.9 + frng.normal(0, 0.08, nh))
            for metric, vals in (("h2s_ppm", h), ("lel_pct", ll), ("co_ppm", c), ("o2_pct", o)):
                extra(metric, s, hourly, vals)

    # --- heartbeat rows first (they win over an alarm report at the same minute)
    sel = np.nonzero(present)
    assets = sens[sel[0]]
    hb = {"tilt_deg": tilt, "cover_open": cover, "water_level_pct": wl, "battery_pct": battery}
    for metric, arr in hb.items():
        readings.add("manholes", assets, metric, minute[sel], arr[sel], "sensor")
    gsel = np.nonzero(present & sewer[:, None])
    for metric, arr in (("o2_pct", o2), ("lel_pct", lel), ("h2s_ppm", h2s), ("co_ppm", co)):
        readings.add("manholes", sens[gsel[0]], metric, minute[gsel], arr[gsel], "sensor")
    for metric in METRICS:
        if extra_minute[metric]:
            readings.add("manholes", np.concatenate(extra_asset[metric]), metric,
                         np.concatenate(extra_minute[metric]),
                         np.concatenate(extra_value[metric]), "sensor")
    return pd.DataFrame({
        "manhole": [int(sens[s]) for s, *_ in faults], "fault": [f[1] for f in faults],
        "start": [f[2] for f in faults], "end": [f[3] for f in faults]})


def simulate_parking(seed: int, parking: pd.DataFrame, days: int, readings: Readings,
                     start: date) -> None:
    """Hourly occupancy of sensored car parks over the last PARKING_DAYS days."""
    rng = _rng(seed, "parking")
    idx = np.flatnonzero(parking["has_sensor"].to_numpy())
    n_days = min(PARKING_DAYS, days)
    hours = np.arange((days - n_days) * 24, days * 24)
    hod = hours % 24
    weekday = np.array([(start + timedelta(int(h // 24))).weekday() for h in hours])
    weekend = weekday >= 5
    is_lot = parking["kind"].to_numpy()[idx] == "lot"
    residential = is_lot & (rng.random(idx.size) < 0.6)
    res_curve = np.where(weekend, 70 + 18 * np.cos(2 * np.pi * (hod - 2) / 24),
                         65 + 25 * np.cos(2 * np.pi * (hod - 2) / 24))
    com_curve = np.where(weekend, 53 - 38 * np.cos(2 * np.pi * (hod - 14) / 24),
                         45 - 38 * np.cos(2 * np.pi * (hod - 14) / 24))
    curve = np.where(residential[:, None], res_curve[None, :], com_curve[None, :])
    amp = rng.uniform(0.85, 1.1, idx.size)[:, None]
    shocks = rng.normal(0, 4.0, (idx.size, hours.size))
    noise = np.zeros_like(shocks)
    for h in range(1, hours.size):
        noise[:, h] = 0.8 * noise[:, h - 1] + shocks[:, h]
    occ = np.clip(curve * amp + noise, 0, 100)
    readings.add("parking", np.repeat(idx, hours.size), "occupancy_pct",
                 np.tile(hours * 60, idx.size), occ.ravel(), "sensor")


# ============================================================================================
# writers
# ============================================================================================

# Districts: one sub-district (街道) over the whole sample, split along the river into
# communities (社区), each cut into GRID_ROWS x GRID_COLS grids (网格). Codes follow the
# national pattern: county 610924 (Ziyang), sub-district +3 digits, community +3, grid +G2.
SUB_DISTRICT = ("610924001", "城关街道", "Chengguan Sub-district")
COMMUNITIES = (("滨江社区", "Binjiang Community"), ("新城社区", "Xincheng Community"),
               ("文化社区", "Wenhua Community"), ("和平社区", "Heping Community"),
               ("兴隆社区", "Xinglong Community"), ("安乐社区", "Anle Community"))
GRID_ROWS, GRID_COLS = 2, 2
DISTRICT_MARGIN_M = 150.0
_CN_DIGITS = "一二三四五六七八九十"


def build_districts(scale: float, extent: tuple[float, float, float, float]) -> dict:
    """The sample's districts over ``extent`` (EPSG:4545 metres), as GeoPackage fields."""
    x0, y0, x1, y1 = (extent[0] - DISTRICT_MARGIN_M, extent[1] - DISTRICT_MARGIN_M,
                      extent[2] + DISTRICT_MARGIN_M, extent[3] + DISTRICT_MARGIN_M)
    n_comm = max(3, min(len(COMMUNITIES), round(3 * math.sqrt(scale))))
    code, name, name_en = SUB_DISTRICT
    rows = [(code, name, name_en, "sub_district", None, shapely.box(x0, y0, x1, y1))]
    width = (x1 - x0) / n_comm
    for c in range(n_comm):
        c_code = f"{code}{c + 1:03d}"
        c_name, c_en = COMMUNITIES[c]
        cx0, cx1 = x0 + c * width, x0 + (c + 1) * width
        rows.append((c_code, c_name, c_en, "community", code, shapely.box(cx0, y0, cx1, y1)))
        gw, gh = (cx1 - cx0) / GRID_COLS, (y1 - y0) / GRID_ROWS
        for g in range(GRID_ROWS * GRID_COLS):
            gx, gy = cx0 + (g % GRID_COLS) * gw, y0 + (g // GRID_COLS) * gh
            rows.append((f"{c_code}G{g + 1:02d}", f"{c_name}第{_CN_DIGITS[g]}网格",
                         f"{c_en} Grid {g + 1}", "grid", c_code,
                         shapely.box(gx, gy, gx + gw, gy + gh)))
    codes, names, names_en, levels, parents, geoms = zip(*rows, strict=True)
    return {"geom": np.array(geoms, dtype=object), "fields": {
        "external_id": np.array(codes, dtype=object), "name": np.array(names, dtype=object),
        "name_en": np.array(names_en, dtype=object), "level": np.array(levels, dtype=object),
        "parent_code": np.array(parents, dtype=object)}}


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, lineterminator="\n")


def _write_gpkg(path: Path, end: date, layers: list[tuple[str, np.ndarray, dict]]) -> None:
    for suffix in ("", *SIDE_CAR_SUFFIXES):
        Path(str(path) + suffix).unlink(missing_ok=True)
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": f"{end.isoformat()}T00:00:00.000Z"})
    try:
        for name, geom, fields in layers:
            gtype = shapely.get_type_id(geom[0]) if geom.size else 0
            pyogrio.raw.write(
                str(path), shapely.to_wkb(geom), list(fields.values()), list(fields.keys()),
                layer=name, driver="GPKG", crs=CRS, encoding="UTF-8",
                geometry_type={0: "Point", 1: "LineString", 3: "Polygon"}[int(gtype)],
                promote_to_multi=False, dataset_options={"VERSION": "1.2"})
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def _write_geojson(path: Path, name: str, lon: np.ndarray, lat: np.ndarray,
                   props: pd.DataFrame) -> None:
    keys = list(props.columns)
    columns = [props[k].tolist() for k in keys]
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write('{"type":"FeatureCollection","name":' + json.dumps(name) + ',"features":[\n')
        step = 50_000
        for a in range(0, len(props), step):
            lines = []
            for i in range(a, min(a + step, len(props))):
                p = json.dumps({k: col[i] for k, col in zip(keys, columns, strict=True)},
                               ensure_ascii=False, separators=(",", ":"))
                lines.append(f'{{"type":"Feature","properties":{p},"geometry":{{"type":"Point",'
                             f'"coordinates":[{lon[i]:.7f},{lat[i]:.7f}]}}}}')
            out.write(",\n".join(lines))
            if a + step < len(props):
                out.write(",\n")
        out.write("\n]}\n")


def _write_readings(path: Path, readings: Readings, start: date, ids: dict[str, np.ndarray]
                    ) -> int:
    def take(parts: list) -> np.ndarray:
        joined = np.concatenate(parts)
        parts.clear()
        return joined

    layer, asset, metric = take(readings.layer), take(readings.asset), take(readings.metric)
    minute, value, source = take(readings.minute), take(readings.value), take(readings.source)
    # string rank of each asset id inside its layer, so the sort matches the written text
    rank = np.empty(asset.size, dtype=np.int32)
    for li, lname in enumerate(LAYERS):
        sel = layer == li
        if sel.any():
            order = np.argsort(ids[lname].astype(str), kind="stable")
            r = np.empty(order.size, dtype=np.int32)
            r[order] = np.arange(order.size)
            rank[sel] = r[asset[sel]]
    order = np.lexsort((metric, rank, layer, minute))
    layer, asset, metric, minute, value, source, rank = (
        a[order] for a in (layer, asset, metric, minute, value, source, rank))
    dup = np.zeros(order.size, bool)
    dup[1:] = ((minute[1:] == minute[:-1]) & (layer[1:] == layer[:-1])
               & (rank[1:] == rank[:-1]) & (metric[1:] == metric[:-1]))
    keep = ~dup
    layer, asset, metric, minute, value, source = (
        a[keep] for a in (layer, asset, metric, minute, value, source))
    lo = np.array([METRIC_RANGE[m][0] for m in METRICS], dtype=np.float64)
    hi = np.array([METRIC_RANGE[m][1] for m in METRICS], dtype=np.float64)
    decimals = np.array([METRIC_DECIMALS[m] for m in METRICS])
    first_minute = int(minute.min()) if minute.size else 0
    stamps = _iso_minutes(start, np.arange(first_minute, int(minute.max()) + 1)
                          if minute.size else np.array([], dtype=np.int64))
    layer_names = np.array(LAYERS, dtype=object)
    metric_names = np.array(METRICS, dtype=object)
    source_names = np.array(SOURCES, dtype=object)
    fmts = ["{:.0f}", "{:.1f}", "{:.2f}"]
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write("asset_layer,asset_external_id,metric,observed_at,value,source\n")
        step = 500_000
        for a in range(0, layer.size, step):
            sl = slice(a, a + step)
            lay = layer_names[layer[sl]]
            aid = np.empty(lay.size, dtype=object)
            for li, lname in enumerate(LAYERS):
                m = layer[sl] == li
                aid[m] = ids[lname][asset[sl][m]]
            met = metric[sl]
            # clip to the declared range of the metric, then write with its decimals
            val = np.clip(np.round(value[sl].astype(np.float64), 2), lo[met], hi[met])
            vals = [fmts[d].format(v + 0.0) for d, v in zip(decimals[met].tolist(),
                                                              val.tolist(), strict=True)]
            rows = [f"{l_},{i_},{m_},{t_},{v_},{s_}" for l_, i_, m_, t_, v_, s_ in zip(
                lay.tolist(), aid.tolist(), metric_names[metric[sl]].tolist(),
                stamps[minute[sl] - first_minute].tolist(), vals,
                source_names[source[sl]].tolist(),
                strict=True)]
            out.write("\n".join(rows))
            out.write("\n")
    return int(layer.size)


def _write_pci_truth(path: Path, hist: PCIHistory, ids: np.ndarray, start: date) -> int:
    n, weeks = hist.states.shape
    dates = _iso_dates(start, np.arange(weeks) * 7)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write("street_external_id,date,pci\n")
        step = max(1, 400_000 // max(1, weeks))
        for a in range(0, n, step):
            block = np.round(hist.states[a:a + step].astype(float), 1)
            rows = [f"{sid},{d},{v:.1f}" for sid, row in zip(ids[a:a + step].tolist(),
                                                              block.tolist(), strict=True)
                    for d, v in zip(dates.tolist(), row, strict=True)]
            out.write("\n".join(rows))
            out.write("\n")
    return n * weeks


# ============================================================================================
# entry point
# ============================================================================================

def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidInput(_("The output path {out} is an existing file, not a directory.",
                             out=out))
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    ours_top = {Path(f).parts[0] for f in DATA_FILES} | {MANIFEST}
    ours_top |= {GPKG + s for s in SIDE_CAR_SUFFIXES}
    truth_names = {Path(f).name for f in DATA_FILES if f.startswith("truth/")}
    only_ours = set(entries) <= ours_top and (
        not (out / "truth").is_dir()
        or {p.name for p in (out / "truth").iterdir()} <= truth_names)
    manifest = out / MANIFEST
    previous = False
    if manifest.is_file():
        try:
            previous = str(json.loads(manifest.read_text(encoding="utf-8")).get(
                "generator", "")).startswith("neighbourhood-twin-sample")
        except (ValueError, OSError, AttributeError):
            previous = False
    if not (only_ours or previous):
        raise InvalidInput(_("The output directory {out} is not empty and does not hold a "
                             "previous sample; choose an empty or new directory.", out=out))
    if (out / "truth").exists() and not (out / "truth").is_dir():
        raise InvalidInput(_("{path} is a file where the generator writes a directory.",
                             path=out / "truth"))


def generate(out: Path, *, seed: int = 7, scale: float = 1.0, months: int = 24,
             end: date = DEFAULT_END, progress=None) -> dict[str, int]:
    """Write a synthetic neighbourhood with its history and ground truth into ``out``.

    The same arguments always give byte-identical files. Only files this generator writes are
    replaced in ``out``; other files are left alone, and a non-empty directory that is not a
    previous sample is refused. Returns {relative file name: number of rows/features} for every
    data file written (``manifest.json`` lists them with their sha256).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInput(_("The seed must be a non-negative integer, not {seed}.",
                             seed=repr(seed)))
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not (
            math.isfinite(float(scale)) and 0 < float(scale) <= 1000):
        raise InvalidInput(_("The scale must be a number above 0 and at most 1000, not {scale}.",
                             scale=repr(scale)))
    if isinstance(months, bool) or not isinstance(months, (int, np.integer)) or not (
            1 <= months <= 240):
        raise InvalidInput(_("The months of history must be an integer from 1 to 240, not "
                             "{months}.", months=repr(months)))
    if isinstance(end, datetime) or not isinstance(end, date):
        raise InvalidInput(_("The end must be a date (without a time), not {end}.",
                             end=repr(end)))
    seed, scale, months = int(seed), float(scale), int(months)
    out = Path(out)
    _check_out(out)
    try:
        (out / "truth").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInput(_("The output directory {out} cannot be created: {error}.", out=out,
                             error=error.strerror or error)) from None

    start = _months_before(end, months)
    days = (end - start).days
    to_wgs = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    rows: dict[str, int] = {}
    with _Steps(progress, 12) as steps:
        steps.step("Streets on the hillside")
        frame, st = build_streets(seed, scale)
        steps.done()
        steps.step("Manholes")
        mh = build_manholes(seed, scale, st)
        steps.done()
        steps.step("Blocks: compounds, parking, building sites")
        blocks = build_blocks(seed, scale, frame, st, start, days)
        houses = build_houses(seed, blocks.compounds, end)
        steps.done()
        steps.step("Rain and road condition")
        rain, _wet = simulate_rain(seed, start, days)
        hist = simulate_pci(seed, st, blocks.sites, rain, start, days)
        steps.done()
        readings = Readings.empty()
        steps.step("Surveys, roughness and road damage")
        damage = surveys_iri_damage(seed, st, hist, rain, start, days, readings)
        steps.done()
        steps.step("Debris piles")
        debris = simulate_debris(seed, scale, st, frame, blocks.sites, days)
        steps.done()
        steps.step("Manhole sensors and faults")
        faults = simulate_sensors(seed, scale, mh, rain, days, readings)
        steps.done()
        steps.step("Parking occupancy")
        simulate_parking(seed, blocks.parking, days, readings, start)
        steps.done()

        steps.step(f"Writing {GPKG}")
        comp, park = blocks.compounds, blocks.parking
        districts = build_districts(scale, tuple(shapely.total_bounds(
            np.concatenate([st.geom, comp["geom"].to_numpy(), park["geom"].to_numpy()]))))
        _write_gpkg(out / GPKG, end, [
            ("streets", st.geom, {
                "external_id": st.ids, "name": st.name, "road_class": st.road_class,
                "surface": st.surface, "width_m": st.width.astype(float),
                "lanes": st.lanes.astype(np.int32),
                "resurfaced_on": hist.resurfaced_on.astype("datetime64[D]"),
                "built_year": hist.built_year.astype(np.int32),
                "grade_pct": st.grade.astype(float),
                "heavy_vehicles_per_day": hist.hv_end.astype(np.int32)}),
            ("manholes", mh.geom, {
                "external_id": mh.ids, "kind": mh.kind, "depth_m": mh.depth.astype(float),
                "cover_state": np.full(mh.ids.size, "ok", dtype=object),
                "sensor_id": mh.sensor_id, "street_external_id": st.ids[mh.street]}),
            ("parking", park["geom"].to_numpy(), {
                "external_id": park["external_id"].to_numpy(dtype=object),
                "name": park["name"].to_numpy(dtype=object),
                "kind": park["kind"].to_numpy(dtype=object),
                "capacity": park["capacity"].to_numpy(dtype=np.int32),
                "has_sensor": park["has_sensor"].to_numpy(dtype=bool)}),
            ("compounds", comp["geom"].to_numpy(), {
                "external_id": comp["external_id"].to_numpy(dtype=object),
                "name": comp["name"].to_numpy(dtype=object),
                "management_type": comp["management_type"].to_numpy(dtype=object),
                "households": comp["households"].to_numpy(dtype=np.int32),
                "built_year": comp["built_year"].to_numpy(dtype=np.int32),
                "property_company": comp["property_company"].to_numpy(dtype=object)}),
            ("buildings", houses["geom"].to_numpy(), {
                column: houses[column].to_numpy(dtype=dtype) for column, dtype in (
                    ("external_id", object), ("name", object), ("use", object),
                    ("floors", np.int32), ("height_m", float), ("year_built", np.int32),
                    ("households", np.int32), ("structure", object), ("condition", object),
                    ("compound_external_id", object))}),
            ("districts", districts["geom"], districts["fields"]),
        ])
        layer_rows = {"streets": int(st.ids.size), "manholes": int(mh.ids.size),
                      "parking": len(park), "compounds": len(comp), "buildings": len(houses),
                      "districts": int(districts["geom"].size)}
        rows[GPKG] = sum(layer_rows.values())
        steps.done()

        steps.step(f"Writing {READINGS}")
        rows[READINGS] = _write_readings(out / READINGS, readings, start, {
            "streets": st.ids, "manholes": mh.ids,
            "parking": park["external_id"].to_numpy(dtype=object)})
        del readings
        steps.done()

        steps.step("Writing observations and ground truth")
        lon, lat = to_wgs.transform(damage["x"].to_numpy(), damage["y"].to_numpy())
        _write_geojson(out / ROAD_DAMAGE, "road_damage", lon, lat, pd.DataFrame({
            "external_id": _ids("RD", len(damage), 6),
            "observed_at": _iso_minutes(start, damage["minute"].to_numpy()),
            "damage_class": damage["damage_class"].to_numpy(dtype=object),
            "severity": damage["severity"].to_numpy(dtype=object),
            "size_m2": damage["size_m2"].to_numpy(dtype=float),
            "source": damage["source"].to_numpy(dtype=object),
            "confidence": damage["confidence"].to_numpy(dtype=float),
            "street_external_id": st.ids[damage["street"].to_numpy()]}))
        rows[ROAD_DAMAGE] = len(damage)

        piles, obs = debris.piles, debris.obs
        pile_refs = _ids("PILE", len(piles), 4)
        lon, lat = to_wgs.transform(obs["x"].to_numpy(), obs["y"].to_numpy())
        _write_geojson(out / DEBRIS, "debris_piles", lon, lat, pd.DataFrame({
            "external_id": _ids("DB", len(obs), 6),
            "pile_ref": pile_refs[obs["pile"].to_numpy(dtype=np.int64)],
            "observed_at": _iso_minutes(start, obs["minute"].to_numpy()),
            "volume_m3": obs["volume"].to_numpy(dtype=float),
            "material": obs["material"].to_numpy(dtype=object),
            "source": obs["source"].to_numpy(dtype=object),
            "confidence": obs["source"].map(CONFIDENCE).to_numpy(dtype=float)}))
        rows[DEBRIS] = len(obs)

        rows[T_PCI] = _write_pci_truth(out / T_PCI, hist, st.ids, start)
        rs = hist.resurf
        _write_csv(pd.DataFrame({
            "street_external_id": st.ids[rs["street"].to_numpy(dtype=np.int64)],
            "date": _iso_dates(start, rs["day"].to_numpy(dtype=np.int64)),
            "pci_before": np.char.mod("%.1f", rs["pci_before"].to_numpy(dtype=float))
        }).sort_values(
                ["date", "street_external_id"], kind="mergesort"), out / T_RESURF)
        rows[T_RESURF] = len(rs)
        man = faults["manhole"].to_numpy(dtype=np.int64)
        _write_csv(pd.DataFrame({
            "manhole_external_id": mh.ids[man], "sensor_id": mh.sensor_id[man],
            "fault": faults["fault"].to_numpy(dtype=object),
            "start": _iso_minutes(start, faults["start"].to_numpy(dtype=np.int64)),
            "end": _iso_minutes(start, faults["end"].to_numpy(dtype=np.int64))}),
            out / T_FAULTS)
        rows[T_FAULTS] = len(faults)
        plon, plat = to_wgs.transform(piles["x"].to_numpy(), piles["y"].to_numpy())
        cleared = piles["cleared"].to_numpy(dtype=float)
        cleared_str = np.full(cleared.size, "", dtype=object)
        has = ~np.isnan(cleared)
        cleared_str[has] = _iso_minutes(start, np.floor(cleared[has] * 1440).astype(np.int64))
        _write_csv(pd.DataFrame({
            "pile_ref": pile_refs, "lon": np.char.mod("%.7f", plon),
            "lat": np.char.mod("%.7f", plat),
            "appeared_at": _iso_minutes(start, piles["appeared_min"].to_numpy()),
            "cleared_at": cleared_str,
            "v0_m3": np.char.mod("%.2f", piles["v0"].to_numpy(dtype=float)),
            "growth_m3_per_day": np.char.mod("%.3f", piles["growth"].to_numpy(dtype=float)),
            "site": piles["site"].to_numpy(dtype=object)}), out / T_PILES)
        rows[T_PILES] = len(piles)
        _write_csv(pd.DataFrame({"date": _iso_dates(start, np.arange(days)),
                                 "rain_mm": np.char.mod("%.1f", rain)}), out / T_RAIN)
        rows[T_RAIN] = days
        sites = blocks.sites
        slon, slat = to_wgs.transform(sites["x"].to_numpy(), sites["y"].to_numpy())
        _write_csv(pd.DataFrame({
            "site_id": sites["site_id"].to_numpy(dtype=object),
            "lon": np.char.mod("%.7f", slon), "lat": np.char.mod("%.7f", slat),
            "start": _iso_dates(start, sites["start_day"].to_numpy()),
            "end": _iso_dates(start, sites["end_day"].to_numpy())}), out / T_SITES)
        rows[T_SITES] = len(sites)
        steps.done()

        steps.step(f"Writing {MANIFEST}")
        files = {}
        for name in sorted(rows):
            entry = {"rows": rows[name], "sha256": _sha256(out / name)}
            if name == GPKG:
                entry["layers"] = layer_rows
            files[name] = entry
        manifest = {"seed": seed, "scale": scale, "months": months, "end": end.isoformat(),
                    "start": start.isoformat(), "crs": CRS, "generator": GENERATOR_VERSION,
                    "files": files}
        (out / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n",
                                    encoding="utf-8", newline="\n")
        steps.done()
    return {name: rows[name] for name in sorted(rows)}
