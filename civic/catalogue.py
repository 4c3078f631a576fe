"""The services catalogue of residents' requests: services, trades, matters and SLAs.

Facts only, no SQL and no HTTP: what residents may ask for (GeoReport v2 services and their
attributes), which trade acts on each, the matter a service or an attribute decides, and how
long each may take.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MATTERS = ("big", "small", "private")
DISTRICT = "Chengguan sub-district, Ziyang County"
OVERDUE_KIND = "request_overdue"
OVERDUE_SEVERITY = {"big": "high", "small": "medium", "private": "low"}
# SLA by matter when the service has no fixed one (free-text requests).
MATTER_SLA_HOURS = {"big": 72, "small": 168, "private": 72}

# The trades that act on requests (predict.triage.DEPARTMENTS names the same ones) and the
# county department that answers for each one's big matters. Small matters go to the compound's
# manager whatever the trade; the trade is kept so the manager knows whom to send.
DEPARTMENTS = {
    "roads": "County Transport Bureau, roads section",
    "drainage": "County Water Affairs Bureau, drainage section",
    "utilities": "County Housing and Urban-Rural Development Bureau, municipal facilities",
    "lighting": "County Urban Management Bureau, street lighting",
    "sanitation": "County Urban Management Bureau, sanitation and enforcement",
    "greening": "County Urban Management Bureau, parks and greening",
    "property_management": "County Housing and Urban-Rural Development Bureau, property "
                           "management office",
}
PARTY_KINDS = {
    "department": "government department", "property_company": "property company",
    "resettlement_office": "resettlement community service centre",
    "residents_committee": "residents' committee", "sub_district": "sub-district office",
    "resident": "residents themselves",
}


@dataclass(frozen=True)
class Attribute:
    """A service attribute (GeoReport v2 service definition)."""

    code: str
    description: str
    datatype: str = "singlevaluelist"  # string, number, datetime, text, singlevaluelist
    required: bool = False
    values: tuple[tuple[str, str], ...] = ()
    datatype_description: str = ""


@dataclass(frozen=True)
class Service:
    """One kind of request residents may make."""

    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    matter: str | None  # None: decided from the description by the classifier
    department: str | None  # its trade (DEPARTMENTS); None: decided from the description
    sla_hours: int | None
    attributes: tuple[Attribute, ...] = ()
    # attribute code -> value -> matter, overriding the service's own matter
    matter_by_attribute: dict[str, dict[str, str]] = field(default_factory=dict)
    alert_kinds: tuple[str, ...] = ()  # active alerts that are the same matter
    observation: str | None = None  # the twin layer a report feeds


_WHERE_DRAIN = Attribute(
    "where", "Where is the drain?", required=True,
    values=(("street", "On a street or public space"), ("compound", "Inside a compound"),
            ("inside_home", "Inside my home (sink, toilet, private pipe)")))
_WHERE_LIGHT = Attribute(
    "where", "Where is the light?", required=True,
    values=(("street", "On a street"), ("compound", "Inside a compound")))

SERVICES: dict[str, Service] = {s.code: s for s in (
    Service("pothole", "Pothole", "A hole in the road surface (坑槽).", "Roads",
            ("pothole", "road", "坑槽"), "big", "roads", 72,
            (Attribute("size", "How big is it?", required=True,
                       values=(("small", "Smaller than a shoe box"),
                               ("medium", "About a bucket"),
                               ("large", "Larger than a bicycle wheel"))),),
            alert_kinds=("road_wear",), observation="road_damage"),
    Service("road_cracking", "Road cracking", "Cracks in the road surface (路面裂缝).", "Roads",
            ("crack", "road", "裂缝"), "big", "roads", 720,
            (Attribute("crack_type", "What do the cracks look like?",
                       values=(("longitudinal", "Along the road"),
                               ("transverse", "Across the road"),
                               ("alligator", "A web of cracks"))),),
            alert_kinds=("road_wear",)),
    Service("manhole_cover", "Manhole cover missing or broken",
            "A manhole cover that is missing, broken, open or tilted (井盖缺失/破损).",
            "Manholes", ("manhole", "cover", "井盖"), "big", "utilities", 4,
            (Attribute("cover_state", "What is wrong with the cover?", required=True,
                       values=(("missing", "Missing"), ("broken", "Broken"),
                               ("open", "Open"), ("tilted", "Tilted or loose"))),),
            alert_kinds=("manhole_cover_open", "manhole_tilt")),
    Service("blocked_drain", "Blocked or overflowing drain",
            "A drain or gully that is blocked or overflowing (下水道堵塞/积水).", "Drainage",
            ("drain", "flooding", "下水道", "积水"), "big", "drainage", 24,
            (_WHERE_DRAIN,
             Attribute("flooding", "Is water standing on the road?",
                       values=(("yes", "Yes"), ("no", "No")))),
            matter_by_attribute={"where": {"inside_home": "private"}},
            alert_kinds=("manhole_flooding",)),
    Service("debris_pile", "Debris or construction-spoil pile",
            "Construction spoil or rubble left in a public place (渣土堆积).", "Debris",
            ("debris", "spoil", "rubble", "渣土"), "small", "sanitation", 168,
            (Attribute("volume", "About how much is there?", required=True,
                       values=(("lt1", "Less than 1 m³ (a few bags)"),
                               ("1to5", "1-5 m³ (a small truck)"),
                               ("gt5", "More than 5 m³"))),
             Attribute("material", "What is it mostly?", required=False,
                       values=(("soil", "Soil"), ("rubble", "Bricks and concrete"),
                               ("mixed", "Mixed")))),
            observation="debris_piles"),
    Service("illegal_dumping", "Illegal dumping",
            "Household waste, furniture or bulky items dumped in a public place (乱倒垃圾).",
            "Debris", ("dumping", "waste", "垃圾"), "small", "sanitation", 72,
            (Attribute("waste_type", "What was dumped?",
                       values=(("household", "Household waste"), ("bulky", "Furniture or "
                               "bulky items"), ("other", "Other"))),)),
    Service("ground_lock", "Private ground lock on public parking",
            "A private lock or barrier taking a public parking space (私装地锁).", "Parking",
            ("parking", "ground lock", "地锁"), "small", "property_management", 168),
    Service("occupied_green_space", "Occupied green space",
            "Green space taken for vegetable plots, storage or parking (占用绿地).",
            "Green space", ("green space", "绿地"), "small", "greening", 336),
    Service("streetlight", "Broken streetlight", "A streetlight that is off, flickering or "
            "damaged (路灯损坏).", "Lighting", ("streetlight", "路灯"), "big", "lighting", 72,
            (_WHERE_LIGHT,), matter_by_attribute={"where": {"compound": "small"}}),
    Service("other", "Something else", "Describe the problem; it is triaged from the "
            "description (其他).", "Other", ("other", "其他"), None, None, None),
)}



def matter_from_service(service: Service, attributes: dict[str, str]) -> tuple[str | None, str]:
    """The matter a service and its attributes decide, and which of them decided it."""
    for code, by_value in service.matter_by_attribute.items():
        if attributes.get(code) in by_value:
            return by_value[attributes[code]], "attributes"
    return service.matter, "service"


def sla_hours(service: Service | None, matter: str) -> int:
    """The service's SLA, or the matter's when the service has none."""
    if service is not None and service.sla_hours is not None and service.matter == matter:
        return service.sla_hours
    return MATTER_SLA_HOURS[matter]


def service_name(code: str) -> str:
    """A service's name, or its code when the catalogue no longer has it."""
    service = SERVICES.get(code)
    return service.name if service else code
