"""Chat-group intake: a message as a group's bot relays it becomes a request or a "+1".

The group is mapped to its compound, and a building's group to its building, by the
sample's group file (``sample_data/requests/chat_groups.csv``: ``group_id, name,
compound_external_id, building_external_id``; a compound's own group leaves the building
empty). The text is triaged like any request and located by what it names: another compound
of the twin, a gate of the compound ("2号门外", "gate 2") or a street; else the group's
building, else its compound. A request placed at a building counts among that building's open
matters (the buildings layer counts those at the house). The answer to post back into the
group is in Chinese.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection

from civic import workflow
from civic.routing import party_text
from civic.texts import text
from geo import requests as store
from geo.errors import InvalidInput
from geo.i18n import _, format_datetime, local_zone, use_locale

MAX_IMAGES = 3  # photos a message may carry
GROUPS_FILE = Path(__file__).resolve().parents[1] / "sample_data" / "requests" / "chat_groups.csv"
_GATE = re.compile(r"(\d+)\s*号?\s*门|gate\s*(\d+)", re.IGNORECASE)
# Chinese names of the sample's streets that residents use (the twin stores English names).
STREET_ALIASES = {"滨江路": "Binjiang Road"}


@dataclass(frozen=True)
class ChatGroup:
    """A residents' chat group and the place it belongs to."""

    group_id: str
    name: str
    compound_external_id: str
    building_external_id: str | None


def load_groups(path: Path = GROUPS_FILE) -> dict[str, ChatGroup]:
    """The chat groups by id."""
    with path.open(encoding="utf-8", newline="") as f:
        return {row["group_id"]: ChatGroup(row["group_id"], row["name"],
                                           row["compound_external_id"],
                                           row.get("building_external_id") or None)
                for row in csv.DictReader(f)}


@dataclass
class ChatMessage:
    """One message of a group, as a bot relays it."""

    group_id: str
    sender_id: str
    sent_at: datetime
    text: str
    images: int = 0


@dataclass
class Located:
    """Where a message's problem is, and how that was told."""

    lon: float
    lat: float
    how: str
    compound_id: int


def locate(conn: Connection, group: ChatGroup, message: str) -> Located:
    """Place a message: a named compound, gate or street, else the group's building or compound."""
    compound = store.compound_place(conn, group.compound_external_id)
    if compound is None:
        raise InvalidInput(_("The group {group}'s compound {compound} is not in the twin.",
                             group=group.group_id, compound=group.compound_external_id))
    names = store.place_names(conn)
    # The group's own compound and building are where the message comes from, not places it
    # names: take their names out first, so that a street or another compound whose name is
    # part of them ("Anle Lane" in "Anle Lane Houses", 滨江花园 in 滨江花园二期) is not found.
    lowered = message.lower()
    house = (store.building_place(conn, group.building_external_id)
             if group.building_external_id else None)
    for own in sorted(filter(None, (compound["name"], house and house["name"])), key=len,
                      reverse=True):
        lowered = lowered.replace(own.lower(), " ")
    for other in sorted(names["compounds"], key=len, reverse=True):
        if other.lower() in lowered and other != compound["name"]:
            ext = store.compound_by_name(conn, other)
            found = store.compound_place(conn, ext) if ext else None
            if found:
                return Located(found["lon"], found["lat"], f"compound {other}", found["id"])
    gate = _GATE.search(lowered)
    if gate:
        number = int(gate.group(1) or gate.group(2))
        point = store.gate_point(conn, compound["id"], number) if 0 < number < 20 else None
        if point:
            return Located(*point, f"gate {number} of {compound['name']}", compound["id"])
    streets = {**{n.lower(): n for n in names["streets"]},
               **{k: v for k, v in STREET_ALIASES.items()}}
    for typed in sorted(streets, key=len, reverse=True):
        if typed in lowered:
            point = store.street_point(conn, streets[typed], compound["id"])
            if point:
                return Located(*point, f"{streets[typed]} near {compound['name']}",
                               compound["id"])
    if house is not None:
        return Located(house["lon"], house["lat"], f"building {house['name']}",
                       house["compound_id"] or compound["id"])
    return Located(compound["lon"], compound["lat"], f"compound {compound['name']}",
                   compound["id"])


def _when_zh(value: datetime) -> str:
    """A time for the group's reply: in Chinese, on the deployment's clock (TWIN_TIMEZONE)."""
    with use_locale("zh"):
        return format_datetime(value, tz=local_zone())


def take(conn: Connection, groups: dict[str, ChatGroup], msg: ChatMessage,
         classify: workflow.Classify, status_url: str) -> tuple[workflow.Outcome, str]:
    """Make the request (or the +1) of a chat message; the outcome and the reply to post.

    ``status_url`` is formatted with the request's token (the reporter's status page).
    """
    group = groups.get(msg.group_id)
    if group is None:
        raise InvalidInput(_("group_id '{group_id}' is not a known chat group; This group is "
                             "not linked to a compound yet; ask the community staff.",
                             group_id=msg.group_id[:60]))
    place = locate(conn, group, msg.text)
    sub = workflow.Submission(
        service_code="other", description=msg.text, actor=f"chat:{msg.group_id}:{msg.sender_id}",
        channel="chat", point=(place.lon, place.lat), address=place.how,
        contact={"account_id": msg.sender_id}, chat_group_id=msg.group_id,
        compound_id=place.compound_id)
    done = workflow.submit(conn, sub, classify)
    if done.duplicate_of is not None:
        reply = text("chat.plus_one", "zh",
            id=done.duplicate_of, supporters=store.supporters_of(conn, done.duplicate_of))
    elif done.matter == "private":
        reply = text("chat.private", "zh", id=done.request_id)
    else:
        reply = text("chat.new", "zh",
            matter=text(f"matter.{done.matter}"), id=done.request_id,
            party=party_text(done.party_message, "zh"),
            expected=_when_zh(done.public["expected_at"]),
            url=status_url.format(token=done.token))
    return done, reply
