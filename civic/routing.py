"""Routing: who acts on a matter, from its kind, its trade and the compound at its place."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from civic.catalogue import DEPARTMENTS, DISTRICT
from geo import requests as store

RESIDENT_PARTY = "The resident (a market service; the residents' committee can refer one)"


@dataclass(frozen=True)
class Route:
    """Who fixes a matter: the party, its kind, the trade, and the compound it was decided by."""

    party: str
    kind: str  # department, property_company, resettlement_office, residents_committee,
    # sub_district, resident
    department: str | None = None
    compound_id: int | None = None


def route(conn: Connection, department: str | None, matter: str, lon: float,
          lat: float) -> Route:
    """Route a matter by its kind, trade and place.

    Big matters go to the trade's county department, small ones to the compound's manager
    (else the sub-district office), private ones to the resident.
    """
    compound = store.compound_at(conn, lon, lat)
    compound_id = compound["id"] if compound else None
    if matter == "private":
        return Route(RESIDENT_PARTY, "resident", "resident", compound_id)
    if matter == "big":
        name = DEPARTMENTS[department or "sanitation"]
        return Route(f"{name} ({DISTRICT})", "department", department, compound_id)
    if compound is None:
        return Route(f"{DISTRICT} office, with community volunteers", "sub_district",
                     department)
    name, kind = compound["name"] or "The compound", compound["management_type"]
    party = {
        "commodity": (f"{name} property management company", "property_company"),
        "resettlement": (f"{name} resettlement community service centre",
                         "resettlement_office"),
        "old": (f"{name} residents' committee, with the sub-district office",
                "residents_committee"),
        "unmanaged": (f"{name} residents' committee", "residents_committee"),
    }.get(kind, (f"{name} residents' committee", "residents_committee"))
    return Route(party[0], party[1], department, compound_id)
