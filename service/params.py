"""Request parameters, checked: the parsers shared by OGC items, tiles, exports and alerts.

Every parser takes text as typed (a query parameter or a CLI option) and returns values checked
against the layer registry (:data:`geo.layers.LAYERS`), or raises :class:`geo.errors.InvalidInput`
(:class:`geo.errors.NotFound` for an unknown layer) with one sentence naming the parameter.
Where the interfaces give a parameter different meanings (what a date alone means, whether
an interval is allowed, the order of ``properties``), the difference is a keyword argument here,
documented by the caller that picks it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from geo.errors import InvalidInput, NotFound
from geo.features import MAX_VALUES_PER_PROPERTY
from geo.i18n import _
from geo.layers import LAYERS, Layer, canonical_name

_INT64 = 2**63  # integer properties are bigint at most
_SHOWN_CHARS = 100  # how much of a bad value an error message repeats


# -- layers and plain text ----------------------------------------------------------------------


def find_layer(name: str, *, what: str = "layer") -> Layer:
    """The published layer with id ``name``.

    Parameters
    ----------
    name : str
        The layer's id as the client typed it.
    what : str
        What the interface calls a layer, for the message (``"collection"`` in OGC API).

    Raises
    ------
    NotFound
        When no layer has that id; the message lists the layers.

    Examples
    --------
    >>> find_layer("road-damage").id, find_layer("debris").id
    ('road_damage', 'debris_piles')
    >>> find_layer("nope", what="collection")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    geo.errors.NotFound: There is no collection 'nope'; the collections are: streets, ...
    """
    layer = LAYERS.get(canonical_name(name))
    if layer is None:
        raise NotFound(_("There is no {what} '{name}'; the {what}s are: {names}.",
                         what=what, name=name[:_SHOWN_CHARS], names=", ".join(LAYERS)))
    return layer


def clean_text(text: str, what: str) -> str:
    r"""``text`` unchanged, once it is known that PostgreSQL can store it (no NUL, valid Unicode).

    Examples
    --------
    >>> clean_text("cover reseated", "note")
    'cover reseated'
    >>> clean_text("a\x00b", "note")
    Traceback (most recent call last):
    ...
    geo.errors.InvalidInput: note: the value holds a NUL character.
    """
    if "\x00" in text:
        raise InvalidInput(_("{what}: the value holds a NUL character.", what=what))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(_("{what}: the value is not valid Unicode text.", what=what)) from None
    return text


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated list, stripped; empty items are dropped.

    Examples
    --------
    >>> comma_list(" name, ,pci,")
    ['name', 'pci']
    """
    return [part.strip() for part in text.split(",") if part.strip()]


def _not_one_of(what: str, value: str, allowed: Iterable[str]) -> InvalidInput:
    return InvalidInput(_("{what}: '{value}' is not one of {allowed}.", what=what,
                          value=value[:_SHOWN_CHARS], allowed=", ".join(allowed)))


def parse_choices(values: Iterable[str] | None, what: str,
                  allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Repeated and comma-separated values as one tuple, first come first, each once.

    Parameters
    ----------
    values : iterable of str or None
        The values given (a parameter may be repeated, and each may be a comma list).
    what : str
        The parameter's name, for messages.
    allowed : tuple of str, optional
        A closed vocabulary; any other value is an error (not merely no match).

    Examples
    --------
    >>> parse_choices(["high,critical", "high"], "severity", ("low", "high", "critical"))
    ('high', 'critical')
    >>> parse_choices(None, "kind")
    ()
    """
    found = []
    for value in values or ():
        for part in comma_list(clean_text(value, what)):
            if allowed is not None and part not in allowed:
                raise _not_one_of(what, part, allowed)
            found.append(part)
    return tuple(dict.fromkeys(found))


# -- numbers, places and times ------------------------------------------------------------------


def parse_number(text: str, what: str) -> float:
    """A finite number (``nan`` and ``inf`` are refused).

    Examples
    --------
    >>> parse_number(" 2.5", "width_m")
    2.5
    """
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(_("{what}: '{value}' is not a number.", what=what,
                             value=text[:_SHOWN_CHARS])) from None
    if not math.isfinite(value):
        raise InvalidInput(_("{what}: '{value}' is not a finite number.", what=what,
                             value=text[:_SHOWN_CHARS]))
    return value


def parse_bbox(text: str, *, heights: bool = False) -> tuple[float, float, float, float]:
    """Parse ``bbox``: ``west,south,east,north`` in degrees (CRS84, i.e. EPSG:4326 lon/lat).

    Parameters
    ----------
    text : str
        The box as typed.
    heights : bool
        Also take 6 numbers (``west,south,min_height,east,north,max_height``, as OGC API
        allows); the heights are dropped.

    Raises
    ------
    InvalidInput
        For another count of numbers, a value that is not a finite number, coordinates out of
        range, or west above east (boxes across the antimeridian) or south above north.

    Examples
    --------
    >>> parse_bbox("108.5,32.5,108.6,32.6")
    (108.5, 32.5, 108.6, 32.6)
    >>> parse_bbox("108.5,32.5,0,108.6,32.6,10", heights=True)
    (108.5, 32.5, 108.6, 32.6)
    """
    parts = text.split(",")
    counts = (4, 6) if heights else (4,)
    if len(parts) not in counts:
        raise InvalidInput(
            _("bbox: expected 4 numbers (west,south,east,north) or 6 with heights, got {n}.",
              n=len(parts)) if heights else
            _("bbox: expected 4 numbers (west,south,east,north), got {n}.", n=len(parts)))
    numbers = [parse_number(p.strip(), "bbox") for p in parts]
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    west, south, east, north = numbers
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InvalidInput(_("bbox: longitudes must lie within -180..180 degrees."))
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise InvalidInput(_("bbox: latitudes must lie within -90..90 degrees."))
    if west > east:
        raise InvalidInput(_("bbox: west is greater than east (boxes across the antimeridian "
                             "are not supported)."))
    if south > north:
        raise InvalidInput(_("bbox: south is greater than north."))
    return west, south, east, north


def _utc(moment: datetime, what: str, text: str) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise InvalidInput(_("{what}: '{value}' is out of range.", what=what, value=text)) from None


def parse_instant(text: str, what: str = "datetime", *, end_of_day: bool = False,
                  rfc3339: bool = True) -> datetime:
    """Parse one instant, returned in UTC.

    Parameters
    ----------
    text : str
        A date-time, or a full date (``YYYY-MM-DD``).
    what : str
        The parameter's name, for messages.
    end_of_day : bool
        A date alone means the last microsecond of that day (UTC) rather than its start.
    rfc3339 : bool
        True: an RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``; ``T``, ``t`` or a space
        between date and time). False: any ISO 8601 date-time Python reads, one without an
        offset being in UTC.

    Raises
    ------
    InvalidInput
        When the text is not such a date or date-time, or is out of range.

    Examples
    --------
    >>> parse_instant("2025-06-01T08:00:00+08:00").isoformat()
    '2025-06-01T00:00:00+00:00'
    >>> parse_instant("2025-06-01", end_of_day=True).isoformat()
    '2025-06-01T23:59:59.999999+00:00'
    >>> parse_instant("2025-06-01T08:00", rfc3339=False).isoformat()
    '2025-06-01T08:00:00+00:00'
    """
    text = text.strip()
    shown = text[:_SHOWN_CHARS]
    if len(text) == 11 and text[10] in "Tt":
        text = text[:10]  # GDAL 3.6's OAPIF driver writes a date filter as "2026-01-01T"
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(_("{what}: '{value}' is not a date (YYYY-MM-DD).", what=what,
                                 value=shown)) from None
        return datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
    if not rfc3339:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(_("{what}: '{value}' is not an ISO 8601 date or date-time, such "
                                 "as 2026-06-01 or 2026-06-01T12:00:00Z.", what=what,
                                 value=shown)) from None
        return _utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC), what, shown)
    if len(text) < 20 or text[10] not in "Tt ":
        raise InvalidInput(_("{what}: '{value}' is not an RFC 3339 date-time "
                             "(e.g. 2025-06-01T08:00:00Z).", what=what, value=shown))
    try:
        moment = datetime.fromisoformat(text[:10] + "T" + text[11:])
    except ValueError:
        raise InvalidInput(_("{what}: '{value}' is not an RFC 3339 date-time.", what=what,
                             value=shown)) from None
    if moment.tzinfo is None:
        raise InvalidInput(_("{what}: '{value}' has no time zone offset (add Z or +hh:mm).",
                             what=what, value=shown))
    return _utc(moment, what, shown)


@dataclass(frozen=True)
class TimeSpan:
    """A parsed ``datetime``: an instant (``start == end``) or an interval, open ends ``None``."""

    start: datetime | None
    end: datetime | None
    instant: bool = False

    def as_of(self, now: datetime) -> datetime:
        """The state of the twin asked for: the span's end (an instant's moment), else ``now``.

        Examples
        --------
        >>> now = datetime(2026, 1, 1, tzinfo=UTC)
        >>> parse_datetime("2025-01-01/..").as_of(now) == now
        True
        """
        return now if self.end is None else self.end


def parse_datetime(text: str, *, whole_day: bool = True) -> TimeSpan:
    """Parse ``datetime``: an RFC 3339 instant, or ``start/end`` with ``..`` (or nothing) open.

    An interval's end, given as a date alone, is the end of that day.

    Parameters
    ----------
    text : str
        The instant or interval as typed.
    whole_day : bool
        What a date alone, as an instant, means: True, that whole day (an interval from its
        first to its last microsecond); False, the instant at the end of that day.

    Raises
    ------
    InvalidInput
        For text that is not an instant or an interval, or an interval that ends before it
        starts.

    Examples
    --------
    >>> parse_datetime("2024-05-01T00:00:00Z/..").end is None
    True
    >>> parse_datetime("2026-01-01T/..").start.isoformat()  # as GDAL 3.6 sends a date
    '2026-01-01T00:00:00+00:00'
    >>> day = parse_datetime("2024-05-01")
    >>> day.start.isoformat(), day.end.isoformat(), day.instant
    ('2024-05-01T00:00:00+00:00', '2024-05-01T23:59:59.999999+00:00', False)
    >>> parse_datetime("2024-05-01", whole_day=False).instant
    True
    """
    if "/" not in text:
        if len(text.strip()) == 10 or (len(text.strip()) == 11 and text.strip()[10] in "Tt"):
            day_end = parse_instant(text, end_of_day=True)
            if whole_day:
                return TimeSpan(parse_instant(text), day_end)
            return TimeSpan(day_end, day_end, instant=True)
        moment = parse_instant(text)
        return TimeSpan(moment, moment, instant=True)
    if text.count("/") != 1:
        raise InvalidInput(_("datetime: an interval is start/end, with '..' for an open end."))
    first, second = (part.strip() for part in text.split("/"))
    start = None if first in ("", "..") else parse_instant(first)
    end = None if second in ("", "..") else parse_instant(second, end_of_day=True)
    if start is not None and end is not None and start > end:
        raise InvalidInput(_("datetime: the interval starts after it ends."))
    return TimeSpan(start, end)


# -- properties of a layer ----------------------------------------------------------------------


def parse_value(layer: Layer, name: str, text: str) -> object:
    """A value of property ``name`` from text, typed by the property's declared type.

    Integers (bigint range), finite numbers, ``true``/``false``, dates (``YYYY-MM-DD``) and
    RFC 3339 date-times are converted; text is kept as it is.

    Examples
    --------
    >>> streets = LAYERS["streets"]
    >>> parse_value(streets, "lanes", " 2"), parse_value(streets, "name", "Binjiang Road")
    (2, 'Binjiang Road')
    """
    kind = next(p.type for p in layer.properties if p.name == name)
    what = f"{name} ({kind})"
    clean_text(text, what)
    shown = text[:_SHOWN_CHARS]
    if kind == "integer":
        try:
            value = int(text.strip())
        except ValueError:
            raise InvalidInput(_("{what}: '{value}' is not an integer.", what=what,
                                 value=shown)) from None
        if not -_INT64 <= value < _INT64:
            raise InvalidInput(_("{what}: '{value}' is out of range.", what=what, value=shown))
        return value
    if kind == "number":
        return parse_number(text.strip(), what)
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise InvalidInput(_("{what}: '{value}' is not true or false.", what=what,
                                 value=shown))
        return lowered == "true"
    if kind == "date":
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            raise InvalidInput(_("{what}: '{value}' is not a date (YYYY-MM-DD).", what=what,
                                 value=shown)) from None
    if kind == "datetime":
        return parse_instant(text, what)
    return text


def parse_filters(
    layer: Layer,
    pairs: Iterable[tuple[str, str]],
    *,
    names: Iterable[str] | None = None,
    comma_lists: bool = False,
    choices: Mapping[str, tuple[str, ...]] | None = None,
    max_values: int = MAX_VALUES_PER_PROPERTY,
    max_chars: int | None = None,
) -> tuple[tuple[str, tuple[object, ...]], ...]:
    """Attribute equality filters from ``(property, value)`` pairs; a property's values are OR-ed.

    Parameters
    ----------
    layer : Layer
        The layer filtered; values are typed by its properties (see :func:`parse_value`).
    pairs : iterable of (str, str)
        Property names and values as typed; a property may come more than once.
    names : iterable of str, optional
        The properties that may be filtered on (default: all of the layer's).
    comma_lists : bool
        Each value is a comma-separated list of values (an empty list is an error).
    choices : mapping of str to tuple of str, optional
        Closed vocabularies by property; other values are an error, not merely no match.
    max_values : int
        Most distinct values of one property.
    max_chars : int, optional
        Longest value, in characters.

    Returns
    -------
    tuple of (str, tuple)
        The properties in the order first given, each with its distinct values.

    Examples
    --------
    >>> parse_filters(LAYERS["streets"], [("lanes", "2"), ("road_class", "primary"),
    ...                                   ("lanes", "4")])
    (('lanes', (2, 4)), ('road_class', ('primary',)))
    >>> parse_filters(LAYERS["alerts"], [("severity", "high,low,high")], names=("severity",),
    ...               comma_lists=True, choices={"severity": ("low", "high")})
    (('severity', ('high', 'low')),)
    """
    if names is None:
        filterable = layer.property_names
    else:
        chosen = set(names)
        filterable = tuple(n for n in layer.property_names if n in chosen)
    found: dict[str, list[object]] = {}
    for name, text in pairs:
        if name not in filterable:
            raise InvalidInput(_("'{name}' is not a property of '{layer}' to filter by (one "
                                 "of: {names}).", name=name[:_SHOWN_CHARS], layer=layer.id,
                                 names=", ".join(filterable) or "-"))
        parts = comma_list(text) if comma_lists else [text]
        if not parts:
            raise InvalidInput(_("{name}: give at least one value (a comma-separated list).",
                                 name=name))
        allowed = (choices or {}).get(name)
        values = found.setdefault(name, [])
        for part in parts:
            if max_chars is not None and len(part) > max_chars:
                raise InvalidInput(_("{name}: a value may have at most {count} characters.",
                                     name=name, count=max_chars))
            if allowed is not None and part not in allowed:
                raise _not_one_of(name, part, allowed)
            value = parse_value(layer, name, part)
            if value not in values:
                values.append(value)
        if len(values) > max_values:
            raise InvalidInput(_("{name}: give at most {count} values.", name=name,
                                 count=max_values))
    return tuple((name, tuple(values)) for name, values in found.items())


def parse_properties(layer: Layer, text: str, *, as_given: bool = False,
                     skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Parse ``properties``: the properties to return, each once; empty text for none.

    Parameters
    ----------
    layer : Layer
        The layer whose properties may be named.
    text : str
        A comma-separated list of property names.
    as_given : bool
        Keep the order given rather than the layer's.
    skip : tuple of str
        Names accepted and left out (e.g. ``id``, which an export always has).

    Examples
    --------
    >>> parse_properties(LAYERS["streets"], "pci,name,pci")
    ('name', 'pci')
    >>> parse_properties(LAYERS["streets"], "pci,id,name", as_given=True, skip=("id",))
    ('pci', 'name')
    """
    wanted: list[str] = []
    for name in comma_list(text):
        if name in skip or name in wanted:
            continue
        if name not in layer.property_names:
            raise InvalidInput(_("properties: '{name}' is not a property of '{layer}' (one of: "
                                 "{names}).", name=name[:_SHOWN_CHARS], layer=layer.id,
                                 names=", ".join(layer.property_names)))
        wanted.append(name)
    if as_given:
        return tuple(wanted)
    return tuple(name for name in layer.property_names if name in wanted)


def parse_sortby(layer: Layer, text: str) -> tuple[tuple[str, bool], ...]:
    """Parse ``sortby``: property names (or ``id``), each with a ``-`` before it for descending.

    Returns
    -------
    tuple of (str, bool)
        Each key with True when it is descending.

    Examples
    --------
    >>> parse_sortby(LAYERS["streets"], "-pci,+name")
    (('pci', True), ('name', False))
    """
    return parse_sort_keys(text, ("id", *layer.property_names),
                           f"a property of '{layer.id}'")


def parse_sort_keys(text: str, names: Iterable[str], described: str
                    ) -> tuple[tuple[str, bool], ...]:
    """Parse ``sortby`` against the names allowed (``described`` says what they are).

    >>> parse_sort_keys("-priority", ("priority", "id"), "a worklist key")
    (('priority', True),)
    """
    names = tuple(names)
    keys: list[tuple[str, bool]] = []
    for raw in text.split(","):
        # '+' arrives as a space when it is not percent-encoded.
        item = raw.strip()
        descending = item.startswith("-")
        name = item.lstrip("+-").strip()
        if name not in names:
            raise InvalidInput(_("sortby: '{name}' is not {described} (one of: {names}).",
                                 name=name[:_SHOWN_CHARS], described=described,
                                 names=", ".join(names)))
        if name in (k for k, _ in keys):
            raise InvalidInput(_("sortby: '{name}' is given twice.", name=name))
        keys.append((name, descending))
    return tuple(keys)
