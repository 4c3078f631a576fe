"""The councils' living list (三事清单): requests by compound, party, matter and status.

Building, group and community councils meet over it ("one matter, one discussion"): each
line is a compound and its responsible party with a matter (big, small, private) and a
status, with how many requests, how many residents support them, the oldest one's age and
how many are overdue. The same lines serve the page, CSV and JSON.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

from sqlalchemy.engine import Connection

from civic.catalogue import MATTERS, service_name
from civic.routing import party_of
from geo import requests as store

STATUSES = ("open", "closed")
CSV_FIELDS = ("compound_external_id", "compound_name", "responsible_party", "responsible_kind",
              "matter", "status", "requests", "supporters", "oldest_days", "overdue",
              "request_ids")


@dataclass
class Line:
    """One line of the living list."""

    compound_external_id: str | None
    compound_name: str | None
    responsible_party: str  # in English, as stored: the line's key
    responsible_kind: str
    matter: str
    status: str
    requests: int
    supporters: int
    oldest_days: float
    overdue: int
    request_ids: list[int]
    responsible: str = ""  # the party in the reader's language


def living_list(conn: Connection, *, compound: str | None = None,
                matters: list[str] | None = None,
                statuses: list[str] | None = None,
                lang: str | None = None) -> tuple[list[Line], list[dict]]:
    """The list's lines and the requests behind them, parties named in ``lang``."""
    items = store.living_list(conn, compound=compound, matters=matters, statuses=statuses)
    lines: dict[tuple, Line] = {}
    for item in items:
        key = (item["compound_external_id"], item["responsible_party"], item["matter"],
               item["status"])
        line = lines.get(key)
        if line is None:
            line = lines[key] = Line(
                item["compound_external_id"], item["compound_name"], item["responsible_party"],
                item["responsible_kind"], item["matter"], item["status"], 0, 0, 0.0, 0, [],
                party_of(item, lang))
        line.requests += 1
        line.supporters += int(item["supporters"])
        line.oldest_days = max(line.oldest_days, round(float(item["age_days"]), 1))
        line.overdue += int(bool(item["overdue"]))
        line.request_ids.append(int(item["id"]))
    for item in items:
        item["service_name"] = service_name(item["service_code"])
    order = {m: i for i, m in enumerate(MATTERS)}
    ordered = sorted(lines.values(), key=lambda ln: (
        ln.compound_name is None, ln.compound_name or "", ln.responsible_party,
        order[ln.matter], ln.status != "open"))
    return ordered, items


def as_json(lines: list[Line]) -> list[dict]:
    """The lines as JSON objects."""
    return [asdict(line) for line in lines]


def as_csv(lines: list[Line]) -> str:
    """The lines as CSV (UTF-8 text; request ids separated by spaces)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for line in lines:
        row = asdict(line)
        row["request_ids"] = " ".join(str(i) for i in line.request_ids)
        writer.writerow([row[f] for f in CSV_FIELDS])
    return out.getvalue()
