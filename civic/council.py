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
from geo.i18n import speaking

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
    """The list's lines and the requests behind them, parties named in ``lang``.

    The lines count every request; the requests listed under them are the first
    ``geo.requests.living_list`` gives (a page to meet over, not an archive).
    """
    lines = [Line(row["compound_external_id"], row["compound_name"], row["responsible_party"],
                  row["responsible_kind"], row["matter"], row["status"], int(row["requests"]),
                  int(row["supporters"]), round(float(row["oldest_days"]), 1),
                  int(row["overdue"]), [int(i) for i in row["request_ids"]],
                  party_of(row, lang))
             for row in store.living_lines(conn, compound=compound, matters=matters,
                                           statuses=statuses)]
    items = store.living_list(conn, compound=compound, matters=matters, statuses=statuses)
    with speaking(lang):
        for item in items:
            item["service_name"] = service_name(item["service_code"])
    order = {m: i for i, m in enumerate(MATTERS)}
    lines.sort(key=lambda ln: (ln.compound_name is None, ln.compound_name or "",
                               ln.responsible_party, order[ln.matter], ln.status != "open"))
    return lines, items


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
