"""Routing: who acts on a matter, from its kind, its trade and the compound at its place."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from civic.catalogue import DEPARTMENTS
from geo import requests as store

RESIDENT_PARTY = "The resident (a market service; the residents' committee can refer one)"


@dataclass(frozen=True)
class Route:
    """Who fixes a matter: the party, its kind, the trade, and the compound it was decided by."""

    party: str
    kind: str  # department, property_company, resettlement_office, residents_committee,
    # community, sub_district, resident
    department: str | None = None
    compound_id: int | None = None


def route(conn: Connection, department: str | None, matter: str, lon: float,
          lat: float) -> Route:
    """Route a matter by its kind, trade and place: the compound's manager, else the district's.

    Big matters go to the trade's county department, for the sub-district the point lies in;
    small ones to the compound's manager, else the community's residents' committee (with the
    grid's worker where the point lies in a grid), else the sub-district office; private ones
    to the resident. A point in no district goes to the county's urban management.
    """
    compound = store.compound_at(conn, lon, lat)
    compound_id = compound["id"] if compound else None
    if matter == "private":
        return Route(RESIDENT_PARTY, "resident", "resident", compound_id)
    district = store.district_at(conn, lon, lat)
    sub_district = district["sub_district"] if district else None
    if matter == "big":
        name = DEPARTMENTS[department or "sanitation"]
        return Route(f"{name} ({sub_district})" if sub_district else name, "department",
                     department, compound_id)
    if compound is None:
        if district is None:
            return Route(DEPARTMENTS["sanitation"], "department", department)
        if district["community"]:
            grid = (f" and the {district['name']} grid worker" if district["level"] == "grid"
                    else "")
            return Route(f"{district['community']} residents' committee{grid}", "community",
                         department)
        return Route(f"{sub_district} office, with community volunteers", "sub_district",
                     department)
    name, kind = compound["name"] or "The compound", compound["management_type"]
    office = f"the {sub_district} office" if sub_district else "the sub-district office"
    party = {
        "commodity": (f"{name} property management company", "property_company"),
        "resettlement": (f"{name} resettlement community service centre",
                         "resettlement_office"),
        "old": (f"{name} residents' committee, with {office}", "residents_committee"),
        "unmanaged": (f"{name} residents' committee", "residents_committee"),
    }.get(kind, (f"{name} residents' committee", "residents_committee"))
    return Route(party[0], party[1], department, compound_id)
