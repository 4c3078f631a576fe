"""What to fix first: a priority score for each open alert, with its reasons in numbers.

The score adds three parts, each said in the item's "why first":

- severity: critical 60, high 40, medium 20, low 5 points;
- exposure: who meets the problem. The street's class (primary 15, secondary 10, residential 4,
  service 2 points), its heavy traffic (up to 10 points at 1,000 heavy vehicles a day) and the
  households of compounds within 200 m (up to 15 points at 1,500 households);
- urgency: a sensor danger (an open cover or gas 25, flooding 15, a tilted cover 10 points),
  fresh serious road damage (10 points),
  days until a street crosses its threshold (20 points when it has, falling to 0 at 90 days),
  and a due date passed (10 points).

Tiers: the alerts in priority order are cut into weeks of the crews' capacity
(``LoopSettings.weekly_capacity``): the first ``capacity`` are "this_week", the next
"next_week", the rest "later". So the top tier never holds more than a week's work.
"""

from __future__ import annotations

from datetime import date

SEVERITY_POINTS = {"critical": 60.0, "high": 40.0, "medium": 20.0, "low": 5.0}
ROAD_CLASS_POINTS = {"motorway": 15.0, "trunk": 15.0, "primary": 15.0, "arterial": 15.0,
                     "secondary": 10.0, "collector": 10.0, "tertiary": 7.0,
                     "residential": 4.0, "local": 4.0, "service": 2.0}
DANGER = {
    "manhole_cover_open": (25.0, "an open cover: people and vehicles can fall in"),
    "manhole_gas": (25.0, "gas in the well: toxic or explosive"),
    "manhole_flooding": (15.0, "water near the top of the well: it may overflow"),
    "manhole_tilt": (10.0, "a tilted cover: a trip and tyre hazard"),
    "road_damage": (10.0, "fresh damage on the carriageway: potholes grow with every rain"),
}
TRAFFIC_FULL = 1000.0  # heavy vehicles a day for the full 10 points
HOUSEHOLDS_FULL = 1500.0  # households within reach for the full 15 points
URGENT_DAYS = 90
TIERS = ("this_week", "next_week", "later")


def _n(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}"


def score(item: dict, today: date) -> tuple[float, list[str]]:
    """An open alert's priority and its reasons ("critical severity: +60", ...)."""
    parts: list[tuple[float, str]] = []
    severity = item["severity"]
    parts.append((SEVERITY_POINTS.get(severity, 0.0), f"{severity} severity"))
    if item["kind"] in DANGER:
        points, what = DANGER[item["kind"]]
        parts.append((points, what))
    road_class = item.get("road_class")
    if road_class:
        where = "on" if item.get("asset_layer") == "streets" else "next to"
        name = item.get("street_name") or item.get("street_external_id") or "a street"
        parts.append((ROAD_CLASS_POINTS.get(road_class, 2.0),
                      f"{where} {name}, a {road_class} road"))
    traffic = item.get("heavy_vehicles_per_day")
    if traffic and traffic > 0:
        parts.append((round(min(10.0, 10.0 * traffic / TRAFFIC_FULL), 1),
                      f"{_n(traffic)} heavy vehicles a day"))
    households = item.get("households")
    if households and households > 0:
        parts.append((round(min(15.0, 15.0 * households / HOUSEHOLDS_FULL), 1),
                      f"{_n(households)} households in {_n(item.get('compounds') or 0)} "
                      f"compounds within 200 m"))
    days = (item.get("details") or {}).get("days_to_threshold")
    if days is not None:
        points = 20.0 * max(0.0, 1.0 - days / URGENT_DAYS)
        threshold = (item.get("details") or {}).get("threshold")
        label = f"PCI {threshold:g}" if threshold is not None else "its threshold"
        parts.append((round(points, 1), f"below {label} at its last survey" if days == 0
                      else f"crosses {label} in about {days} days"))
    due = item.get("due_on")
    if due is not None and due < today:
        parts.append((10.0, f"{(today - due).days} days past its due date"))
    total = round(sum(p for p, _ in parts), 1)
    reasons = [f"{what}: +{_n(points)}" for points, what in parts if points > 0]
    return total, reasons


def rank(items: list[dict], today: date, capacity: int) -> list[dict]:
    """Items with ``priority``, ``why_first``, ``rank`` and ``tier``, highest priority first.

    Ties go to the older alert (it has waited longer), then the lower id.
    """
    scored = []
    for item in items:
        priority, reasons = score(item, today)
        scored.append({**item, "priority": priority, "why_first": reasons})
    scored.sort(key=lambda i: (-i["priority"], i["opened_at"], i["id"]))
    for position, item in enumerate(scored):
        item["rank"] = position + 1
        item["tier"] = TIERS[min(position // max(capacity, 1), len(TIERS) - 1)]
    return scored
