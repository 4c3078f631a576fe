"""The services catalogue of residents' requests: services, trades, matters and SLAs.

Facts only, no SQL and no HTTP: what residents may ask for (GeoReport v2 services and their
attributes), which trade acts on each, the matter a service or an attribute decides, and how
long each may take.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geo.i18n import N_, gettext

MATTERS = ("big", "small", "private")
OVERDUE_KIND = "request_overdue"
OVERDUE_SEVERITY = {"big": "high", "small": "medium", "private": "low"}
# SLA by matter when the service has no fixed one (free-text requests).
MATTER_SLA_HOURS = {"big": 72, "small": 168, "private": 72}

# The trades that act on requests (predict.triage.DEPARTMENTS names the same ones) and the
# county department that answers for each one's big matters. Small matters go to the compound's
# manager whatever the trade; the trade is kept so the manager knows whom to send.
DEPARTMENTS = {
    "roads": N_("County Transport Bureau, roads section"),
    "drainage": N_("County Water Affairs Bureau, drainage section"),
    "utilities": N_("County Housing and Urban-Rural Development Bureau, municipal facilities"),
    "lighting": N_("County Urban Management Bureau, street lighting"),
    "sanitation": N_("County Urban Management Bureau, sanitation and enforcement"),
    "greening": N_("County Urban Management Bureau, parks and greening"),
    "property_management": N_("County Housing and Urban-Rural Development Bureau, property "
                              "management office"),
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
    "where", N_("Where is the drain?"), required=True,
    values=(("street", N_("On a street or public space")),
            ("compound", N_("Inside a compound")),
            ("inside_home", N_("Inside my home (sink, toilet, private pipe)"))))
_WHERE_LIGHT = Attribute(
    "where", N_("Where is the light?"), required=True,
    values=(("street", N_("On a street")), ("compound", N_("Inside a compound"))))

SERVICES: dict[str, Service] = {s.code: s for s in (
    Service("pothole", N_("Pothole"), N_("A hole in the road surface."), N_("Roads"),
            ("pothole", "road", "坑槽"), "big", "roads", 72,
            (Attribute("size", N_("How big is it?"), required=True,
                       values=(("small", N_("Smaller than a shoe box")),
                               ("medium", N_("About a bucket")),
                               ("large", N_("Larger than a bicycle wheel")))),),
            alert_kinds=("road_wear",), observation="road_damage"),
    Service("road_cracking", N_("Road cracking"), N_("Cracks in the road surface."),
            N_("Roads"),
            ("crack", "road", "裂缝"), "big", "roads", 720,
            (Attribute("crack_type", N_("What do the cracks look like?"),
                       values=(("longitudinal", N_("Along the road")),
                               ("transverse", N_("Across the road")),
                               ("alligator", N_("A web of cracks")))),),
            alert_kinds=("road_wear",)),
    Service("manhole_cover", N_("Manhole cover missing or broken"),
            N_("A manhole cover that is missing, broken, open or tilted."),
            N_("Manholes"), ("manhole", "cover", "井盖"), "big", "utilities", 4,
            (Attribute("cover_state", N_("What is wrong with the cover?"), required=True,
                       values=(("missing", N_("Missing")), ("broken", N_("Broken")),
                               ("open", N_("Open")), ("tilted", N_("Tilted or loose")))),),
            alert_kinds=("manhole_cover_open", "manhole_tilt")),
    Service("blocked_drain", N_("Blocked or overflowing drain"),
            N_("A drain or gully that is blocked or overflowing."), N_("Drainage"),
            ("drain", "flooding", "下水道", "积水"), "big", "drainage", 24,
            (_WHERE_DRAIN,
             Attribute("flooding", N_("Is water standing on the road?"),
                       values=(("yes", N_("Yes")), ("no", N_("No"))))),
            matter_by_attribute={"where": {"inside_home": "private"}},
            alert_kinds=("manhole_flooding",)),
    Service("debris_pile", N_("Debris or construction-spoil pile"),
            N_("Construction spoil or rubble left in a public place."), N_("Debris"),
            ("debris", "spoil", "rubble", "渣土"), "small", "sanitation", 168,
            (Attribute("volume", N_("About how much is there?"), required=True,
                       values=(("lt1", N_("Less than 1 m³ (a few bags)")),
                               ("1to5", N_("1-5 m³ (a small truck)")),
                               ("gt5", N_("More than 5 m³")))),
             Attribute("material", N_("What is it mostly?"), required=False,
                       values=(("soil", N_("Soil")), ("rubble", N_("Bricks and concrete")),
                               ("mixed", N_("Mixed"))))),
            observation="debris_piles"),
    Service("illegal_dumping", N_("Illegal dumping"),
            N_("Household waste, furniture or bulky items dumped in a public place."),
            N_("Debris"), ("dumping", "waste", "垃圾"), "small", "sanitation", 72,
            (Attribute("waste_type", N_("What was dumped?"),
                       values=(("household", N_("Household waste")),
                               ("bulky", N_("Furniture or bulky items")),
                               ("other", N_("Other")))),)),
    Service("ground_lock", N_("Private ground lock on public parking"),
            N_("A private lock or barrier taking a public parking space."), N_("Parking"),
            ("parking", "ground lock", "地锁"), "small", "property_management", 168),
    Service("occupied_green_space", N_("Occupied green space"),
            N_("Green space taken for vegetable plots, storage or parking."),
            N_("Green space"), ("green space", "绿地"), "small", "greening", 336),
    Service("streetlight", N_("Broken streetlight"),
            N_("A streetlight that is off, flickering or damaged."), N_("Lighting"),
            ("streetlight", "路灯"), "big", "lighting", 72,
            (_WHERE_LIGHT,), matter_by_attribute={"where": {"compound": "small"}}),
    Service("other", N_("Something else"),
            N_("Describe the problem; it is triaged from the description."), N_("Other"),
            ("other", "其他"), None, None, None),
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
    """A service's name in the current language, or its code when the catalogue lacks it."""
    service = SERVICES.get(code)
    return gettext(service.name) if service else code
