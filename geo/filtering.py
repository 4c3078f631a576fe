"""The one translator from what a client asked to a parameterised SQL ``WHERE`` clause.

OGC API items, exports and ``GET /alerts`` all filter through :func:`where_clause`: a box, a
time span, property equality (``?road_class=primary``) and OGC API - Features Part 3 filters in
CQL2 text or CQL2 JSON. CQL2 is parsed by the ``cql2`` library (both encodings), then the
normalised CQL2 JSON is walked here. Every column put into SQL is a :class:`Field` of the
caller's registry (a layer's declared properties, or the alert columns); every value typed by a
client travels as a bound parameter. Whatever cannot be translated raises
:class:`geo.errors.InvalidInput` with one sentence naming the problem (the service answers 400).

Supported: ``= <> < <= > >=``, ``BETWEEN``, ``IN``, ``LIKE`` (``%`` and ``_``; ``CASEI`` for
case-insensitive), ``IS NULL``, ``AND OR NOT``; ``S_INTERSECTS S_WITHIN S_CONTAINS S_DISJOINT
S_TOUCHES S_CROSSES S_OVERLAPS S_EQUALS`` and ``S_DWITHIN(geom, geometry, distance[, units])``
(metres by default); ``T_INTERSECTS T_BEFORE T_AFTER T_DISJOINT T_EQUALS T_DURING`` on date
and date-time properties. A date compared with a date-time property is that whole day (UTC).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from geo import DEG_PER_M_BOUND, STORAGE_SRID
from geo.errors import InvalidInput
from geo.i18n import _
from geo.layers import Layer

# Guards put before the parser: the cql2 library is native code, and a filter nested thousands
# of levels deep would exhaust its stack (measured: 5,000 nested parentheses crash the process).
MAX_FILTER_CHARS = 8_000
MAX_NESTING = 40
MAX_IN_VALUES = 1_000
LANGUAGES = ("cql2-text", "cql2-json")
# GDAL's OAPIF driver (3.6 to 3.11) pushes `-where` filters only to servers whose filter-lang
# lists "cql-text", the pre-standard name, and sends that name; its text is CQL2 text.
LANGUAGE_ALIASES = {"cql-text": "cql2-text", "cql-json": "cql2-json"}
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
# filter-crs values taken: (SRID, whether coordinates come latitude first).
FILTER_CRS: dict[str, tuple[int, bool]] = {
    CRS84: (STORAGE_SRID, False),
    "http://www.opengis.net/def/crs/EPSG/0/4326": (STORAGE_SRID, True),
    "http://www.opengis.net/def/crs/EPSG/0/3857": (3857, False),
}
# The coordinate range of each filter-crs: (|x| at most, |y| at most), x first as stored.
_EXTENTS = {STORAGE_SRID: (180.0, 90.0), 3857: (20037508.342789244, 20037508.342789244)}
_UNITS_M = {
    "m": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "km": 1000.0,
    "kilometer": 1000.0,
    "kilometers": 1000.0,
    "kilometre": 1000.0,
    "kilometres": 1000.0,
}
_SHOWN = 80

_COMPARISONS = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_MIRRORED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SPATIAL = {
    "s_intersects": "ST_Intersects",
    "s_within": "ST_Within",
    "s_contains": "ST_Contains",
    "s_disjoint": "ST_Disjoint",
    "s_touches": "ST_Touches",
    "s_crosses": "ST_Crosses",
    "s_overlaps": "ST_Overlaps",
    "s_equals": "ST_Equals",
}
_SPATIAL_MIRRORED = {"s_within": "s_contains", "s_contains": "s_within"}
_ARITHMETIC = ("+", "-", "*", "/", "%", "^", "div")
_TEMPORAL = ("t_intersects", "t_before", "t_after", "t_disjoint", "t_equals", "t_during")
# The _Walker method that turns each operator (lower case) into SQL.
_HANDLERS = {
    "and": "_logical",
    "or": "_logical",
    "not": "_not",
    **dict.fromkeys(_COMPARISONS, "_comparison"),
    "between": "_between",
    "in": "_in",
    "like": "_like",
    "isnull": "_isnull",
    **dict.fromkeys(_SPATIAL, "_spatial"),
    "s_dwithin": "_dwithin",
    **dict.fromkeys(_TEMPORAL, "_temporal"),
}
_GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)


@dataclass(frozen=True)
class Field:
    """A queryable: its public name, type and the SQL expression behind it (code constants)."""

    name: str
    type: str  # string, number, integer, boolean, date, datetime, geometry
    sql: str


@dataclass(frozen=True)
class Filter:
    """A parsed CQL2 filter: normalised CQL2 JSON, and the SRID and axis order of its literals."""

    expression: object
    srid: int = STORAGE_SRID
    lat_first: bool = False


@dataclass(frozen=True)
class Criteria:
    """Everything a request may narrow a collection by; all parts are AND-ed."""

    bbox: tuple[float, float, float, float] | None = None
    # (field name, start, end), open ends None
    time_range: tuple[str, datetime | None, datetime | None] | None = None
    equals: tuple[tuple[str, tuple[object, ...]], ...] = ()  # (field, any of these values)
    filter: Filter | None = None


@dataclass
class _Binder:
    params: dict = field(default_factory=dict)
    prefix: str = "w_"

    def __call__(self, value: object) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f":{name}"


# -- parsing ----------------------------------------------------------------------------------


def language(text: str | None) -> str:
    """The filter language asked for (``cql2-text`` when None); 400 for another.

    >>> language(None), language("cql-text"), language("cql2-json")
    ('cql2-text', 'cql2-text', 'cql2-json')
    """
    if text is None:
        return "cql2-text"
    found = LANGUAGE_ALIASES.get(text.strip(), text.strip())
    if found not in LANGUAGES:
        raise InvalidInput(
            _(
                "filter-lang: '{text}' is not one of {languages}.",
                text=text[:_SHOWN],
                languages=", ".join(LANGUAGES),
            )
        )
    return found


def filter_crs(text: str | None) -> tuple[int, bool]:
    """SRID and axis order (latitude first?) of ``filter-crs``; CRS84 when None."""
    if text is None:
        return FILTER_CRS[CRS84]
    key = text.strip().strip("[]")
    key = {
        "EPSG:4326": "http://www.opengis.net/def/crs/EPSG/0/4326",
        "EPSG:3857": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "OGC:CRS84": CRS84,
    }.get(key, key).replace("https://", "http://")
    if key not in FILTER_CRS:
        raise InvalidInput(
            _(
                "filter-crs: '{text}' is not one of {filter_crs}.",
                text=text[:_SHOWN],
                filter_crs=", ".join(FILTER_CRS),
            )
        )
    return FILTER_CRS[key]


def _nesting(text: str) -> int:
    """How deep a filter nests: brackets and NOTs, outside quoted text.

    >>> _nesting("NOT (a = 1 OR (b = '((('))")
    3
    """
    # Quoted text may hold brackets and the word "not": it nests nothing.
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest + len(re.findall(r"\bnot\b", text, re.IGNORECASE))


def _parse_error(error: Exception, lang: str) -> InvalidInput:
    # The library's message spans lines (a caret drawing): keep where, and what it expected.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    where = next((line[3:].strip() for line in lines if line.startswith("-->")), None)
    expected = next((line[1:].strip() for line in lines if line.startswith("=")), None)
    if where:
        line_no, _sep, column = where.partition(":")
        return InvalidInput(
            _(
                "filter: not valid {lang} at line {line}, column {column} ({expected}).",
                lang=lang.upper(),
                line=line_no,
                column=column,
                expected=expected or "?",
            )
        )
    return InvalidInput(
        _(
            "filter: not valid {lang} ({reason}).",
            lang=lang.upper(),
            reason=(lines[0] if lines else "?")[:160],
        )
    )


def parse_filter(text: str, lang: str | None = None, crs: str | None = None) -> Filter:
    """Parse a ``filter`` in CQL2 text or CQL2 JSON into a :class:`Filter`.

    Raises
    ------
    InvalidInput
        For a filter that is empty, too long, too deeply nested or not valid CQL2.

    Examples
    --------
    >>> parse_filter("pci < 55 AND road_class = 'primary'").expression["op"]
    'and'
    >>> parse_filter("pci <")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    geo.errors.InvalidInput: filter: not valid CQL2-TEXT at line 1, column 6 ...
    """
    import cql2  # here: the parser is needed only by requests that filter

    lang = language(lang)
    srid, lat_first = filter_crs(crs)
    if "\x00" in text:
        raise InvalidInput(_("filter: the value holds a NUL character."))
    if not text.strip():
        raise InvalidInput(_("filter: the filter is empty."))
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidInput(
            _(
                "filter: at most {max_filter_chars} characters, not {text}.",
                max_filter_chars=format(MAX_FILTER_CHARS, ","),
                text=format(len(text), ","),
            )
        )
    if _nesting(text) > MAX_NESTING:
        raise InvalidInput(
            _("filter: nested more than {max_nesting} levels deep.", max_nesting=MAX_NESTING)
        )
    try:
        if lang == "cql2-json":
            try:
                json.loads(text)
            except (ValueError, RecursionError) as error:
                raise InvalidInput(
                    _("filter: not valid JSON ({error}).", error=str(error)[:120])
                ) from None
            expression = cql2.parse_json(text).to_json()
        else:
            expression = cql2.parse_text(text).to_json()
    except InvalidInput:
        raise
    except RecursionError:
        raise InvalidInput(_("filter: the expression is too deeply nested.")) from None
    except Exception as error:  # cql2.ParseError and what the library raises for odd input
        raise _parse_error(error, lang) from None
    return Filter(expression, srid, lat_first)


# -- translation ------------------------------------------------------------------------------


def where_clause(
    fields: Mapping[str, Field],
    criteria: Criteria,
    *,
    geometry: str,
    prefix: str = "w_",
    what: str = "the collection",
) -> tuple[str, dict]:
    """The SQL condition (``TRUE`` when nothing narrows) and its bound parameters.

    Parameters
    ----------
    fields : mapping of str to Field
        The queryables, by name; nothing else can reach the SQL.
    criteria : Criteria
        What to keep.
    geometry : str
        The SQL expression of the geometry (SRID 4326), for ``bbox`` and spatial operators.
    prefix : str
        Prefix of the bound parameters' names (they must not collide with the statement's).
    what : str
        What the fields belong to, for messages (``'streets'``).

    Examples
    --------
    >>> fields = {"pci": Field("pci", "number", "q.pci"),
    ...           "name": Field("name", "string", "q.name")}
    >>> where_clause(fields, Criteria(filter=parse_filter("pci < 55 OR name LIKE 'B%'")),
    ...              geometry="q.geom")
    ('((q.pci < :w_0) OR (q.name LIKE :w_1))', {'w_0': 55.0, 'w_1': 'B%'})
    """
    bind = _Binder(prefix=prefix)
    clauses: list[str] = []
    if criteria.bbox is not None:
        west, south, east, north = (bind(v) for v in criteria.bbox)
        clauses.append(
            f"ST_Intersects({geometry}, ST_MakeEnvelope({west}, {south}, {east}, "
            f"{north}, {STORAGE_SRID}))"
        )
    if criteria.time_range is not None:
        name, start, end = criteria.time_range
        column = _field(fields, name, what).sql
        if start is not None:
            clauses.append(f"{column} >= {bind(start)}")
        if end is not None:
            clauses.append(f"{column} <= {bind(end)}")
    for name, values in criteria.equals:
        column = _field(fields, name, what).sql
        if not values:
            raise InvalidInput(_("{name}: give at least one value to filter by.", name=name))
        clauses.append(f"{column} IN ({', '.join(bind(v) for v in values)})")
    if criteria.filter is not None:
        walker = _Walker(fields, bind, geometry, criteria.filter, what)
        clauses.append(walker.condition(criteria.filter.expression))
    return (" AND ".join(clauses) if clauses else "TRUE"), bind.params


def _field(fields: Mapping[str, Field], name: str, what: str) -> Field:
    found = fields.get(name)
    if found is None:
        raise InvalidInput(
            _(
                "'{name}' is not a queryable of {what} (one of: {fields}).",
                name=str(name)[:_SHOWN],
                what=what,
                fields=", ".join(fields),
            )
        )
    return found


def _shown(value: object) -> str:
    return json.dumps(value, default=str)[:_SHOWN]


def _day(text: str) -> date | None:
    # GDAL 3.6 writes a date alone as "2026-01-01T" (a date with an empty time).
    candidate = text[:-1] if text.endswith(("T", "t")) and len(text) == 11 else text
    if len(candidate) == 10:
        try:
            return date.fromisoformat(candidate)
        except ValueError:
            return None
    return None


def _instant(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace(" ", "T", 1))
    except ValueError:
        raise InvalidInput(
            _(
                "filter: {what}: '{text}' is not an RFC 3339 "
                "date-time (e.g. 2026-01-01T00:00:00Z).",
                what=what,
                text=text[:_SHOWN],
            )
        ) from None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            _("filter: {what}: '{text}' is out of range.", what=what, text=text[:_SHOWN])
        ) from None


@dataclass(frozen=True)
class _Span:
    """A time literal: [start, end] (an instant has start == end); open ends None."""

    start: datetime | date | None
    end: datetime | date | None


@dataclass
class _Walker:
    """Walks normalised CQL2 JSON, returning SQL text; values go through ``bind``."""

    fields: Mapping[str, Field]
    bind: _Binder
    geometry: str
    parsed: Filter
    what: str

    # -- structure

    def condition(self, node: object) -> str:
        if isinstance(node, bool):
            return "TRUE" if node else "FALSE"
        if not isinstance(node, dict) or "op" not in node:
            raise InvalidInput(_("filter: expected a condition, found {node}.", node=_shown(node)))
        op = str(node["op"]).lower()
        args = node.get("args")
        if not isinstance(args, list):
            raise InvalidInput(_("filter: the operator '{op}' needs its arguments.", op=op))
        handler = _HANDLERS.get(op)
        if handler is not None:
            return getattr(self, handler)(op, args)
        if op in _ARITHMETIC:
            raise InvalidInput(
                _("filter: arithmetic is not supported; compare a property with a value.")
            )
        raise InvalidInput(
            _(
                "filter: the operator or function '{node}' is not supported.",
                node=str(node["op"])[:_SHOWN],
            )
        )

    def _logical(self, op: str, args: list) -> str:
        if len(args) < 2:
            raise InvalidInput(_("filter: '{op}' needs at least two conditions.", op=op))
        joined = f" {op.upper()} ".join(self.condition(a) for a in args)
        return f"({joined})"

    def _not(self, op: str, args: list) -> str:
        self._count(op, args, 1)
        return f"(NOT {self.condition(args[0])})"

    def _isnull(self, op: str, args: list) -> str:
        self._count(op, args, 1)
        return f"({self._property(args[0])[1]} IS NULL)"

    @staticmethod
    def _count(op: str, args: list, *counts: int) -> None:
        if len(args) not in counts:
            wanted = " or ".join(str(c) for c in counts)
            raise InvalidInput(
                _(
                    "filter: '{op}' takes {wanted} arguments, not {args}.",
                    op=op,
                    wanted=wanted,
                    args=len(args),
                )
            )

    @staticmethod
    def _text_only(operator: str, found: Field) -> None:
        if found.type != "string":
            raise InvalidInput(
                _(
                    "filter: {operator} applies to text; '{name}' is {type}.",
                    operator=operator,
                    name=found.name,
                    type=_article(found.type),
                )
            )

    def _property(self, node: object, *, casei: bool = False) -> tuple[Field, str]:
        if isinstance(node, dict) and str(node.get("op", "")).lower() == "casei":
            inner = node.get("args") or [None]
            found, sql = self._property(inner[0])
            self._text_only("CASEI", found)
            return found, f"lower({sql})"
        if isinstance(node, dict) and "op" in node:
            if str(node["op"]).lower() in _ARITHMETIC:
                raise InvalidInput(
                    _("filter: arithmetic is not supported; compare a property with a value.")
                )
            raise InvalidInput(
                _("filter: the function '{node}' is not supported.", node=str(node["op"])[:_SHOWN])
            )
        if not isinstance(node, dict) or "property" not in node:
            raise InvalidInput(
                _(
                    "filter: expected a property (a queryable's name), found {node}.",
                    node=_shown(node),
                )
            )
        found = _field(self.fields, str(node["property"]), self.what)
        return found, found.sql

    @staticmethod
    def _is_property(node: object) -> bool:
        return isinstance(node, dict) and (
            "property" in node or str(node.get("op", "")).lower() == "casei"
        )

    # -- values, typed by the property they are compared with

    def _value(self, found: Field, node: object) -> object:
        kind = found.type
        if isinstance(node, dict) and str(node.get("op", "")).lower() == "casei":
            inner = (node.get("args") or [None])[0]
            if kind != "string" or not isinstance(inner, str):
                raise InvalidInput(_("filter: CASEI applies to text."))
            return inner.lower()
        wrong = InvalidInput(
            _(
                "filter: '{name}' is {kind}; {node} is not.",
                name=found.name,
                kind=_article(kind),
                node=_shown(node),
            )
        )
        if kind in ("number", "integer"):
            if isinstance(node, bool) or not isinstance(node, int | float):
                raise wrong
            if not math.isfinite(node):
                raise wrong
            if kind == "integer" and float(node).is_integer() and abs(node) < 2**63:
                return int(node)
            return float(node)
        if kind == "boolean":
            if not isinstance(node, bool):
                raise wrong
            return node
        if kind == "string":
            if not isinstance(node, str):
                raise wrong
            return node
        if kind in ("date", "datetime"):
            span = self._span(node, found)
            if span.start != span.end or span.start is None:
                raise InvalidInput(
                    _(
                        "filter: compare '{name}' with one date or date-time "
                        "(use T_INTERSECTS for an interval).",
                        name=found.name,
                    )
                )
            return span.start
        raise wrong

    def _span(self, node: object, found: Field) -> _Span:
        """A time literal as a span, in the property's own type (date or datetime)."""
        as_date = found.type == "date"
        if isinstance(node, dict) and "interval" in node:
            ends = node["interval"]
            if not isinstance(ends, list) or len(ends) != 2:
                raise InvalidInput(_("filter: an interval has a start and an end."))
            start = self._span(ends[0], found).start if ends[0] != ".." else None
            end = self._span(ends[1], found).end if ends[1] != ".." else None
            return _Span(start, end)
        if isinstance(node, dict) and "date" in node:
            text = str(node["date"])
        elif isinstance(node, dict) and "timestamp" in node:
            text = str(node["timestamp"])
        elif isinstance(node, str):
            text = node
        else:
            raise InvalidInput(
                _(
                    "filter: '{name}' is {type}; {node} is not.",
                    name=found.name,
                    type=_article(found.type),
                    node=_shown(node),
                )
            )
        text = text.strip()
        day = _day(text)
        if day is not None:
            if as_date:
                return _Span(day, day)
            # A date compared with a date-time is that whole day, in UTC.
            return _Span(
                datetime.combine(day, time.min, tzinfo=UTC),
                datetime.combine(day, time.max, tzinfo=UTC),
            )
        moment = _instant(text, found.name)
        return _Span(moment.date() if as_date else moment, moment.date() if as_date else moment)

    # -- predicates

    def _comparison(self, op: str, args: list) -> str:
        self._count(op, args, 2)
        left, right = args
        if not self._is_property(left) and self._is_property(right):
            left, right, op = right, left, _MIRRORED[op]
        found, column = self._property(left)
        if found.type == "geometry":
            raise InvalidInput(
                _(
                    "filter: compare the geometry '{name}' with "
                    "a spatial operator such as S_INTERSECTS.",
                    name=found.name,
                )
            )
        if self._is_property(right):
            raise InvalidInput(
                _("filter: compare a property with a value, not with another property.")
            )
        if found.type in ("date", "datetime") and not isinstance(right, bool):
            span = self._span(right, found)
            if span.start is None or span.end is None:
                raise InvalidInput(
                    _("filter: compare '{name}' with one date or date-time.", name=found.name)
                )
            # A day: '=' is within it, '<' before it starts, '>' after it ends...
            low, high = self.bind(span.start), self.bind(span.end)
            return {
                "=": f"({column} BETWEEN {low} AND {high})",
                "<>": f"(NOT ({column} BETWEEN {low} AND {high}))",
                "<": f"({column} < {low})",
                "<=": f"({column} <= {high})",
                ">": f"({column} > {high})",
                ">=": f"({column} >= {low})",
            }[op]
        return f"({column} {_COMPARISONS[op]} {self.bind(self._value(found, right))})"

    def _between(self, op: str, args: list) -> str:
        if len(args) == 2 and isinstance(args[1], list):  # older JSON: [prop, [low, high]]
            args = [args[0], *args[1]]
        self._count(op, args, 3)
        found, column = self._property(args[0])
        if found.type not in ("number", "integer", "date", "datetime"):
            raise InvalidInput(
                _(
                    "filter: BETWEEN needs a number or a time; '{name}' is {type}.",
                    name=found.name,
                    type=_article(found.type),
                )
            )
        low: object
        high: object
        if found.type in ("date", "datetime"):
            low = self._span(args[1], found).start
            high = self._span(args[2], found).end
        else:
            low, high = self._value(found, args[1]), self._value(found, args[2])
        return f"({column} BETWEEN {self.bind(low)} AND {self.bind(high)})"

    def _in(self, op: str, args: list) -> str:
        self._count(op, args, 2)
        found, column = self._property(args[0])
        options = args[1]
        if not isinstance(options, list) or not options:
            raise InvalidInput(_("filter: IN needs a list of at least one value."))
        if len(options) > MAX_IN_VALUES:
            raise InvalidInput(
                _("filter: IN takes at most {max_in_values} values.", max_in_values=MAX_IN_VALUES)
            )
        values = [self._value(found, option) for option in options]
        return f"({column} IN ({', '.join(self.bind(v) for v in values)}))"

    def _like(self, op: str, args: list) -> str:
        self._count(op, args, 2)
        found, column = self._property(args[0])
        self._text_only("LIKE", found)
        pattern = self._value(found, args[1])
        # CQL2's wildcards (% and _) and escape (\) are PostgreSQL's own.
        return f"({column} LIKE {self.bind(pattern)})"

    def _geometry(self, node: object) -> str:
        """A geometry literal as SQL in SRID 4326 (its text bound, never inlined)."""
        from shapely.geometry import box, shape  # here: only spatial filters need it
        from shapely.geometry.base import BaseGeometry

        srid, lat_first = self.parsed.srid, self.parsed.lat_first
        if isinstance(node, dict) and "bbox" in node:
            numbers = node["bbox"]
            if (
                not isinstance(numbers, list)
                or len(numbers) not in (4, 6)
                or not all(_finite(n) for n in numbers)
            ):
                raise InvalidInput(_("filter: a BBOX has 4 (or 6) finite numbers."))
            if len(numbers) == 6:
                numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
            shapely_geometry: BaseGeometry = box(*numbers)
        elif isinstance(node, dict) and node.get("type") in _GEOMETRY_TYPES:
            try:
                shapely_geometry = shape(node)
            except Exception:
                raise InvalidInput(
                    _("filter: the {node} is not a valid geometry.", node=node["type"])
                ) from None
            if not all(_finite(c) for c in _coordinates(shapely_geometry)):
                raise InvalidInput(_("filter: a geometry's coordinates must be finite numbers."))
        elif isinstance(node, dict) and str(node.get("op", "")).upper() in (
            t.upper() for t in _GEOMETRY_TYPES
        ):
            raise InvalidInput(
                _(
                    "filter: the {upper} is not a valid geometry (e.g. POINT(108.54 32.52)).",
                    upper=str(node["op"]).upper(),
                )
            )
        else:
            raise InvalidInput(
                _(
                    "filter: expected a geometry (WKT, GeoJSON or BBOX), found {node}.",
                    node=_shown(node),
                )
            )
        if shapely_geometry.is_empty:
            raise InvalidInput(_("filter: the geometry is empty."))
        if not shapely_geometry.is_valid:  # GEOS may fail on it (a ring that crosses itself)
            from shapely.validation import explain_validity

            raise InvalidInput(
                _(
                    "filter: the geometry is not valid ({reason}).",
                    reason=explain_validity(shapely_geometry)[:120],
                )
            )
        # Out-of-range coordinates would make PostGIS fail (geography, ST_Transform): refuse.
        west, south, east, north = shapely_geometry.bounds
        x_max, y_max = _EXTENTS[srid]
        if lat_first:
            x_max, y_max = y_max, x_max
        if not (-x_max <= west <= east <= x_max and -y_max <= south <= north <= y_max):
            raise InvalidInput(
                _("filter: a geometry's coordinates lie outside the range of its CRS.")
            )
        sql = f"ST_GeomFromText({self.bind(shapely_geometry.wkt)}, {srid})"
        if lat_first:
            sql = f"ST_FlipCoordinates({sql})"
        if srid != STORAGE_SRID:
            sql = f"ST_Transform({sql}, {STORAGE_SRID})"
        return sql

    def _geometry_property(self, node: object) -> str:
        found, column = self._property(node)
        if found.type != "geometry":
            raise InvalidInput(
                _(
                    "filter: spatial operators apply to the geometry; '{name}' is {type}.",
                    name=found.name,
                    type=_article(found.type),
                )
            )
        return column

    def _spatial(self, op: str, args: list) -> str:
        self._count(op, args, 2)
        left, right = args
        if not self._is_property(left) and self._is_property(right):
            left, right, op = right, left, _SPATIAL_MIRRORED.get(op, op)
        column = self._geometry_property(left)
        return f"{_SPATIAL[op]}({column}, {self._geometry(right)})"

    def _dwithin(self, op: str, args: list) -> str:
        self._count(op, args, 3, 4)
        column = self._geometry_property(args[0])
        distance = args[2]
        if isinstance(distance, bool) or not _finite(distance) or distance < 0:
            raise InvalidInput(_("filter: S_DWITHIN's distance must be a number >= 0."))
        unit = "meters"
        if len(args) == 4:
            given = args[3]
            unit = str(
                given["property"] if isinstance(given, dict) and "property" in given else given
            ).lower()
        if unit not in _UNITS_M:
            raise InvalidInput(
                _(
                    "filter: S_DWITHIN's unit '{unit}' is not one of meters, kilometers.",
                    unit=unit[:_SHOWN],
                )
            )
        metres = float(distance) * _UNITS_M[unit]
        other = self._geometry(args[1])
        near = self.bind(metres)
        box = self.bind(metres * DEG_PER_M_BOUND)
        return (
            f"({column} && ST_Expand({other}, {box}) AND "
            f"ST_DWithin({column}::geography, ({other})::geography, {near}))"
        )

    def _temporal(self, op: str, args: list) -> str:
        self._count(op, args, 2)
        left, right = args
        if not self._is_property(left) and self._is_property(right):
            left, right = right, left
            op = {"t_before": "t_after", "t_after": "t_before"}.get(op, op)
        found, column = self._property(left)
        if found.type not in ("date", "datetime"):
            raise InvalidInput(
                _(
                    "filter: temporal operators apply to dates and times; '{name}' is {type}.",
                    name=found.name,
                    type=_article(found.type),
                )
            )
        span = self._span(right, found)
        start = None if span.start is None else self.bind(span.start)
        end = None if span.end is None else self.bind(span.end)
        inside = (
            " AND ".join(
                c for c in (start and f"{column} >= {start}", end and f"{column} <= {end}") if c
            )
            or "TRUE"
        )
        if op in ("t_intersects", "t_equals", "t_during"):
            if op == "t_during" and start is not None and end is not None:
                return f"({column} > {start} AND {column} < {end})"
            return f"({column} IS NOT NULL AND {inside})"
        if op == "t_disjoint":
            return f"({column} IS NOT NULL AND NOT ({inside}))"
        if op == "t_before":
            return f"({column} < {start})" if start is not None else "FALSE"
        return f"({column} > {end})" if end is not None else "FALSE"  # t_after


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _coordinates(geometry) -> Iterable[float]:
    import shapely

    return shapely.get_coordinates(geometry).ravel().tolist()


def _article(kind: str) -> str:
    return {
        "integer": _("an integer"),
        "number": _("a number"),
        "string": _("text"),
        "boolean": _("true or false"),
        "date": _("a date"),
        "datetime": _("a date-time"),
        "geometry": _("a geometry"),
    }.get(kind, kind)


def layer_fields(layer: Layer) -> dict[str, Field]:
    """The queryables of a published layer wrapped as ``q``: ``id``, its properties, ``geom``.

    The geometry answers to ``geom`` and ``geometry`` (the name clients such as GDAL use).
    """
    fields = {"id": Field("id", "integer", "q.id")}
    fields.update((p.name, Field(p.name, p.type, f"q.{p.name}")) for p in layer.properties)
    fields["geometry"] = Field("geometry", "geometry", "q.geom")
    fields["geom"] = Field("geom", "geometry", "q.geom")
    return fields


def layer_where(layer: Layer, *, bbox: tuple[float, float, float, float] | None = None,
                time_range: tuple[datetime | None, datetime | None] | None = None,
                equals: tuple[tuple[str, tuple[object, ...]], ...] = (),
                filter: Filter | None = None) -> tuple[str, dict]:
    """The WHERE clause of a published layer's rows, wrapped as ``q``, and its parameters.

    ``time_range`` (start, end; open ends None) applies to the layer's time property, if it
    has one. OGC items and exports narrow a layer through this one call.
    """
    timed = ((layer.time_property, *time_range)
             if time_range is not None and layer.time_property is not None else None)
    return where_clause(layer_fields(layer),
                        Criteria(bbox=bbox, time_range=timed, equals=equals, filter=filter),
                        geometry="q.geom", what=f"'{layer.id}'")
