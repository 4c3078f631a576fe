"""Routing: who acts on a matter, from its kind, its trade and the compound at its place."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from civic.catalogue import DEPARTMENTS
from geo import requests as store
from geo.i18n import N_, Message, deferred, render, speaking, use_locale

RESIDENT_PARTY = N_("The resident (a market service; the residents' committee can refer one)")
# Who runs a compound of each management type (geo.vocabulary's management types), by name.
_COMPOUND_PARTY = {
    "commodity": (N_("{name} property management company"), "property_company"),
    "resettlement": (N_("{name} resettlement community service centre"), "resettlement_office"),
    "old": (N_("{name} residents' committee, with the {sub_district} office"),
            "residents_committee"),
    "unmanaged": (N_("{name} residents' committee"), "residents_committee"),
}


@dataclass(frozen=True)
class Route:
    """Who fixes a matter: the party, its kind, the trade, and the compound it was decided by.

    ``message`` names the party as a message (``geo.i18n.deferred``), written in each reader's
    language; :attr:`party` is its English text, the one stored for grouping and search.
    """

    message: Message
    kind: str  # department, property_company, resettlement_office, residents_committee,
    # community, sub_district, resident
    department: str | None = None
    compound_id: int | None = None

    @property
    def party(self) -> str:
        """The party's name in English."""
        with use_locale("en"):
            return render(self.message)


def party_text(party: Message | str | None, lang: str | None = None) -> str:
    """A party (a message, or English text as older rows stored it) in ``lang``.

    ``lang`` defaults to the current language.
    """
    with speaking(lang):
        return render(party)


def party_of(row: dict, lang: str | None = None) -> str:
    """A stored request's responsible party in ``lang`` (default: the current language)."""
    return party_text(row.get("responsible_party_message") or row.get("responsible_party"), lang)


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
        return Route(deferred(RESIDENT_PARTY), "resident", "resident", compound_id)
    district = store.district_at(conn, lon, lat)
    sub_district = district["sub_district"] if district else None
    if matter == "big":
        name = deferred(DEPARTMENTS[department or "sanitation"])
        party = (deferred("{department} ({sub_district})", department=name,
                          sub_district=sub_district) if sub_district else name)
        return Route(party, "department", department, compound_id)
    if compound is None:
        if district is None:
            return Route(deferred(DEPARTMENTS["sanitation"]), "department", department)
        if district["community"]:
            if district["level"] == "grid":
                return Route(deferred("{community} residents' committee and the {grid} grid "
                                      "worker", community=district["community"],
                                      grid=district["name"]), "community", department)
            return Route(deferred("{name} residents' committee", name=district["community"]),
                         "community", department)
        return Route(deferred("{sub_district} office, with community volunteers",
                              sub_district=sub_district), "sub_district", department)
    name = compound["name"] or deferred("The compound")
    template, kind = _COMPOUND_PARTY.get(compound["management_type"],
                                         _COMPOUND_PARTY["unmanaged"])
    if "{sub_district}" in template and not sub_district:
        template = N_("{name} residents' committee, with the sub-district office")
    return Route(deferred(template, name=name, sub_district=sub_district), kind, department,
                 compound_id)
