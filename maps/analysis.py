"""Small, pure summaries the maps draw: damage density points and debris hotspot cells.

They keep a page light at city scale: thousands of observations become a bounded number of
weighted cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

METRES_PER_DEGREE = 111_320.0
SEVERITY_WEIGHTS = {"low": 1.0, "medium": 2.0, "high": 3.0}


def _steps(lat0: float, cell_m: float) -> tuple[float, float]:
    dlat = cell_m / METRES_PER_DEGREE
    dlon = cell_m / (METRES_PER_DEGREE * max(math.cos(math.radians(lat0)), 0.01))
    return dlon, dlat


def damage_density(points: Iterable[tuple[float, float, str | None]], *, cell_m: float = 20.0
                   ) -> list[list[float]]:
    """Damage observations as heat-map points: ``[lat, lon, weight]`` per occupied cell.

    Parameters
    ----------
    points : iterable of (lon, lat, severity)
        Observations; severity ``low``/``medium``/``high`` weighs 1/2/3 (others 1).
    cell_m : float
        Cell size in metres: observations in one cell become one point at their mean.

    Returns
    -------
    list of [lat, lon, weight]
        Weights scaled to (0, 1], the heaviest cell being 1.

    Examples
    --------
    >>> damage_density([(108.5, 32.5, "high"), (108.5, 32.5, "low"), (108.6, 32.6, None)])
    [[32.5, 108.5, 1.0], [32.6, 108.6, 0.25]]
    """
    points = [(lon, lat, sev) for lon, lat, sev in points
              if lon is not None and lat is not None]
    if not points:
        return []
    dlon, dlat = _steps(sum(p[1] for p in points) / len(points), cell_m)
    cells: dict[tuple[int, int], list[float]] = {}
    for lon, lat, severity in points:
        key = (math.floor(lon / dlon), math.floor(lat / dlat))
        weight = SEVERITY_WEIGHTS.get(severity or "", 1.0)
        cell = cells.setdefault(key, [0.0, 0.0, 0.0])
        cell[0] += lat * weight
        cell[1] += lon * weight
        cell[2] += weight
    heaviest = max(c[2] for c in cells.values())
    return [[round(c[0] / c[2], 6), round(c[1] / c[2], 6), round(c[2] / heaviest, 4)]
            for c in cells.values()]


def debris_hotspots(observations: Iterable[tuple[float, float, datetime | None]], *,
                    cell_m: float = 100.0, min_reports: int = 2) -> dict:
    """Cells where debris keeps being reported, as a GeoJSON FeatureCollection of squares.

    Kernel density of past reports is a strong baseline for where piles appear next
    (docs/domain.md); these cells are its simplest, explainable form: how many reports fell in
    each ``cell_m`` square, and when the last one came.

    Parameters
    ----------
    observations : iterable of (lon, lat, observed_at)
        Debris reports.
    cell_m : float
        Cell size in metres.
    min_reports : int
        Cells with fewer reports are left out.

    Returns
    -------
    dict
        Features with properties ``reports``, ``last_seen`` (ISO date or null) and ``level``
        (0-3, more reports higher, relative to the busiest cell).
    """
    observations = [o for o in observations if o[0] is not None and o[1] is not None]
    if not observations:
        return {"type": "FeatureCollection", "features": []}
    dlon, dlat = _steps(sum(o[1] for o in observations) / len(observations), cell_m)
    cells: dict[tuple[int, int], list] = {}
    for lon, lat, when in observations:
        key = (math.floor(lon / dlon), math.floor(lat / dlat))
        cell = cells.setdefault(key, [0, None])
        cell[0] += 1
        if when is not None and (cell[1] is None or when > cell[1]):
            cell[1] = when
    kept = {k: v for k, v in cells.items() if v[0] >= min_reports}
    busiest = max((v[0] for v in kept.values()), default=1)
    features = []
    for (i, j), (count, last) in sorted(kept.items(), key=lambda kv: -kv[1][0]):
        west, south = i * dlon, j * dlat
        ring = [[west, south], [west + dlon, south], [west + dlon, south + dlat],
                [west, south + dlat], [west, south]]
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)]
                                                             for x, y in ring]]},
            "properties": {"reports": count,
                           "last_seen": last.date().isoformat() if last is not None else None,
                           "level": min(3, int(4 * (count - min_reports + 1)
                                               / (busiest - min_reports + 2)))},
        })
    return {"type": "FeatureCollection", "features": features}
