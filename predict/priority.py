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

from geo.i18n import N_, _
from geo.vocabulary import ROAD_CLASSES, SEVERITY_LABELS, label

SEVERITY_POINTS = {"critical": 60.0, "high": 40.0, "medium": 20.0, "low": 5.0}
ROAD_CLASS_POINTS = {"motorway": 15.0, "trunk": 15.0, "primary": 15.0, "arterial": 15.0,
                     "secondary": 10.0, "collector": 10.0, "tertiary": 7.0,
                     "residential": 4.0, "local": 4.0, "service": 2.0}
DANGER = {
    "manhole_cover_open": (25.0, N_("an open cover: people and vehicles can fall in")),
    "manhole_gas": (25.0, N_("gas in the well: toxic or explosive")),
    "manhole_flooding": (15.0, N_("water near the top of the well: it may overflow")),
    "manhole_tilt": (10.0, N_("a tilted cover: a trip and tyre hazard")),
    "road_damage": (10.0, N_("fresh damage on the carriageway: potholes grow with every rain")),
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
    # The reasons are written in the current language (geo.i18n): the worklist's reader's.
    parts.append((SEVERITY_POINTS.get(severity, 0.0),
                  _("{severity} severity", severity=label(SEVERITY_LABELS, severity))))
    if item["kind"] in DANGER:
        points, what = DANGER[item["kind"]]
        parts.append((points, _(what)))
    road_class = item.get("road_class")
    if road_class:
        name = item.get("street_name") or item.get("street_external_id") or _("a street")
        kind = ROAD_CLASSES.label(road_class)
        parts.append((ROAD_CLASS_POINTS.get(road_class, 2.0),
                      _("on {name}, a {road_class}", name=name, road_class=kind)
                      if item.get("asset_layer") == "streets" else
                      _("next to {name}, a {road_class}", name=name, road_class=kind)))
    traffic = item.get("heavy_vehicles_per_day")
    if traffic and traffic > 0:
        parts.append((round(min(10.0, 10.0 * traffic / TRAFFIC_FULL), 1),
                      _("{count} heavy vehicles a day", count=_n(traffic))))
    households = item.get("households")
    if households and households > 0:
        parts.append((round(min(15.0, 15.0 * households / HOUSEHOLDS_FULL), 1),
                      _("{households} households in {compounds} compounds within 200 m",
                        households=_n(households), compounds=_n(item.get("compounds") or 0))))
    days = (item.get("details") or {}).get("days_to_threshold")
    if days is not None:
        points = 20.0 * max(0.0, 1.0 - days / URGENT_DAYS)
        threshold = (item.get("details") or {}).get("threshold")
        limit = f"PCI {threshold:g}" if threshold is not None else _("its threshold")
        parts.append((round(points, 1),
                      _("below {limit} at its last survey", limit=limit) if days == 0
                      else _("crosses {limit} in about {days} days", limit=limit, days=days)))
    due = item.get("due_on")
    if due is not None and due < today:
        parts.append((10.0, _("{days} days past its due date", days=(today - due).days)))
    total = round(sum(p for p, _points in parts), 1)
    reasons = [_("{what}: +{points}", what=what, points=_n(points))
               for points, what in parts if points > 0]
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
