"""The shared request parsers (service.params): no database, so these run in milliseconds."""

import doctest
from datetime import UTC, date, datetime

import pytest

from geo.errors import InvalidInput, NotFound
from geo.layers import LAYERS
from service import params

STREETS = LAYERS["streets"]
ALERTS = LAYERS["alerts"]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_docstring_examples_hold():
    result = doctest.testmod(params, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


# -- layers and text ------------------------------------------------------------------------------


def test_find_layer():
    assert params.find_layer("streets") is STREETS
    # One name per layer; the command line's older spellings are aliases everywhere.
    assert params.find_layer("road-damage").id == "road_damage"
    assert params.find_layer("debris").id == "debris_piles"
    with pytest.raises(NotFound, match="no layer 'road-dmg'; the layers are: streets"):
        params.find_layer("road-dmg")
    with pytest.raises(NotFound, match="There is no collection 'x'"):
        params.find_layer("x", what="collection")
    with pytest.raises(NotFound) as error:
        params.find_layer("n" * 10_000)
    assert len(str(error.value)) < 300  # a long name is not echoed whole


@pytest.mark.parametrize("text", ["a\x00b", "lone \ud800 surrogate"])
def test_text_postgresql_cannot_store_is_refused(text):
    with pytest.raises(InvalidInput, match="^note: "):
        params.clean_text(text, "note")


def test_choices_repeat_or_take_comma_lists():
    allowed = ("low", "medium", "high", "critical")
    assert params.parse_choices(["high,critical", " low ", "high", ""], "severity", allowed) == (
        "high", "critical", "low")
    assert params.parse_choices(None, "kind") == ()
    assert params.parse_choices(["anything,goes"], "kind") == ("anything", "goes")
    with pytest.raises(InvalidInput, match="severity: 'urgent' is not one of low"):
        params.parse_choices(["high,urgent"], "severity", allowed)
    with pytest.raises(InvalidInput, match="NUL"):
        params.parse_choices(["a\x00"], "kind")


# -- bbox -----------------------------------------------------------------------------------------


def test_bbox():
    assert params.parse_bbox(" 108.5, 32.5 ,108.6,32.6") == (108.5, 32.5, 108.6, 32.6)
    assert params.parse_bbox("1,2,0,3,4,9", heights=True) == (1, 2, 3, 4)
    assert params.parse_bbox("-180,-90,180,90") == (-180, -90, 180, 90)


@pytest.mark.parametrize(("text", "heights", "message"), [
    ("1,2,3", False, "expected 4 numbers"),
    ("1,2,3,4,5", True, "or 6 with heights, got 5"),
    ("1,2,0,3,4,9", False, "got 6"),
    ("a,b,c,d", False, "'a' is not a number"),
    ("nan,0,1,1", False, "not a finite number"),
    ("1e999,0,1,1", False, "not a finite number"),
    ("0,0,200,10", False, "longitudes"),
    ("0,-95,10,10", False, "latitudes"),
    ("10,0,0,10", False, "west is greater than east"),
    ("0,10,10,0", False, "south is greater than north"),
    ("", False, "got 1"),
])
def test_bad_bbox(text, heights, message):
    with pytest.raises(InvalidInput, match=message):
        params.parse_bbox(text, heights=heights)


# -- instants and intervals -----------------------------------------------------------------------


def test_rfc3339_instants():
    expected = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)
    for text in ("2025-06-01T08:00:00+08:00", "2025-06-01t00:00:00Z", "2025-06-01 00:00:00Z",
                 " 2025-06-01T00:00:00.000Z "):
        moment = params.parse_instant(text)
        assert moment == expected and moment.tzinfo is UTC, text
    assert params.parse_instant("2025-06-01") == expected
    assert params.parse_instant("2025-06-01", end_of_day=True) == datetime(
        2025, 6, 1, 23, 59, 59, 999_999, tzinfo=UTC)


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", "not an RFC 3339 date-time"),
    ("2024-05-01T00:00:00", "not an RFC 3339 date-time"),
    ("2024-05-01T00:00:00.5", "no time zone offset"),
    ("2024-02-30T00:00:00Z", "not an RFC 3339 date-time"),
    ("2025-13-01", r"not a date \(YYYY-MM-DD\)"),
    ("2025-06-01T08:00Z", "not an RFC 3339 date-time"),  # seconds are required
    ("0001-01-01T00:00:00+14:00", "out of range"),
    ("9999-12-31T23:00:00-05:00", "out of range"),
])
def test_bad_rfc3339_instants(text, message):
    with pytest.raises(InvalidInput, match=f"^when: .*{message}"):
        params.parse_instant(text, "when")


def test_iso8601_instants_for_tiles():
    lenient = {"rfc3339": False}
    assert params.parse_instant("2026-06-01", **lenient) == datetime(2026, 6, 1, tzinfo=UTC)
    assert params.parse_instant("2026-06-01T12:00", **lenient) == datetime(
        2026, 6, 1, 12, tzinfo=UTC)  # no offset: UTC
    assert params.parse_instant("2026-06-01T12:00:00+02:00", **lenient) == datetime(
        2026, 6, 1, 10, tzinfo=UTC)
    for text in ("yesterday", "2026-01-01/2026-02-01", "2026-13-45"):
        with pytest.raises(InvalidInput):
            params.parse_instant(text, **lenient)
    with pytest.raises(InvalidInput, match="out of range"):
        params.parse_instant("0001-01-01T00:00:00+01:00", **lenient)


def test_datetime_instants_and_intervals():
    moment = datetime(2025, 3, 1, tzinfo=UTC)
    assert params.parse_datetime("2025-03-01T00:00:00Z") == params.TimeSpan(moment, moment, True)
    day_end = datetime(2025, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    # OGC: a date alone is that whole day; exports: the state at its end.
    assert params.parse_datetime("2025-03-01") == params.TimeSpan(moment, day_end, False)
    assert params.parse_datetime("2025-03-01", whole_day=False) == params.TimeSpan(
        day_end, day_end, True)
    span = params.parse_datetime("2025-03-01/2025-03-01")
    assert (span.start, span.end, span.instant) == (moment, day_end, False)
    assert params.parse_datetime("../2025-03-01T00:00:00Z") == params.TimeSpan(None, moment)
    assert params.parse_datetime("2025-03-01T00:00:00Z/") == params.TimeSpan(moment, None)
    assert params.parse_datetime("../..") == params.TimeSpan(None, None)


def test_as_of_is_the_end_or_now():
    assert params.parse_datetime("2024-01-01T00:00:00Z/..").as_of(NOW) == NOW
    assert params.parse_datetime("../2025-06-01").as_of(NOW) == datetime(
        2025, 6, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    assert params.parse_datetime("2025-06-01T00:00:00Z").as_of(NOW) == datetime(
        2025, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "message"), [
    ("a/b/c", "an interval is start/end"),
    ("2025-01-01T00:00:00Z/2024-01-01T00:00:00Z", "starts after it ends"),
    ("2025-06-01/2025-01-01", "starts after it ends"),
    ("yesterday/..", "not an RFC 3339"),
])
def test_bad_datetimes(text, message):
    with pytest.raises(InvalidInput, match=message):
        params.parse_datetime(text)


# -- typed values and filters ---------------------------------------------------------------------


def test_values_are_typed_by_the_property():
    assert params.parse_value(STREETS, "lanes", " -3 ") == -3
    assert params.parse_value(STREETS, "width_m", "7.5") == 7.5
    assert params.parse_value(STREETS, "resurfaced_on", "2020-05-01") == date(2020, 5, 1)
    assert params.parse_value(STREETS, "pci_observed_at", "2025-01-01T08:00:00+08:00") == \
        datetime(2025, 1, 1, tzinfo=UTC)
    assert params.parse_value(STREETS, "name", " x' OR '1'='1") == " x' OR '1'='1"


@pytest.mark.parametrize(("name", "text", "message"), [
    ("lanes", "two", "not an integer"),
    ("lanes", "99999999999999999999", "out of range"),
    ("width_m", "inf", "not a finite number"),
    ("resurfaced_on", "soon", "not a date"),
    ("pci_observed_at", "2024", "not an RFC 3339"),
    ("name", "a\x00b", "NUL"),
])
def test_bad_values(name, text, message):
    with pytest.raises(InvalidInput, match=message):
        params.parse_value(STREETS, name, text)


def test_filters_or_the_values_of_a_property():
    pairs = [("lanes", "2"), ("name", "A"), ("lanes", "4"), ("lanes", "2")]
    assert params.parse_filters(STREETS, pairs) == (("lanes", (2, 4)), ("name", ("A",)))
    assert params.parse_filters(STREETS, [("name", "a,b")]) == (("name", ("a,b",)),)
    assert params.parse_filters(STREETS, [("name", "")]) == (("name", ("",)),)
    assert params.parse_filters(STREETS, []) == ()


def test_filter_limits():
    with pytest.raises(InvalidInput, match="'colour' is not a property of 'streets'"):
        params.parse_filters(STREETS, [("colour", "red")])
    with pytest.raises(InvalidInput, match="at most 3 values"):
        params.parse_filters(STREETS, [("lanes", str(n)) for n in range(4)], max_values=3)
    assert len(params.parse_filters(STREETS, [("lanes", str(n)) for n in range(100)])[0][1]) \
        == 100


def test_filters_of_comma_lists_with_vocabularies():
    options = {"names": ("status", "severity", "kind"), "comma_lists": True,
               "choices": {"severity": ("low", "medium", "high", "critical")},
               "max_values": 2, "max_chars": 6}
    assert params.parse_filters(ALERTS, [("severity", "high, low,high"), ("kind", "tilt")],
                                **options) == (("severity", ("high", "low")), ("kind", ("tilt",)))
    for pairs, message in [
        ([("reason", "x")], "not a property of 'alerts' to filter by"),
        ([("status", " , ")], "at least one value"),
        ([("severity", "urgent")], "not one of low"),
        ([("kind", "a,b,c")], "at most 2 values"),
        ([("kind", "toolong")], "at most 6 characters"),
        ([("kind", "a\x00")], "NUL"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            params.parse_filters(ALERTS, pairs, **options)


# -- properties and sortby ------------------------------------------------------------------------


def test_properties_in_the_layers_order_or_as_given():
    assert params.parse_properties(STREETS, "pci, name,,pci") == ("name", "pci")
    assert params.parse_properties(STREETS, "") == ()
    assert params.parse_properties(STREETS, "pci,id,name", as_given=True, skip=("id",)) == (
        "pci", "name")
    with pytest.raises(InvalidInput, match="'id' is not a property of 'streets'"):
        params.parse_properties(STREETS, "name,id")
    with pytest.raises(InvalidInput, match="'nope' is not a property"):
        params.parse_properties(STREETS, "name,nope", as_given=True)


def test_sortby():
    assert params.parse_sortby(STREETS, "-pci, name,+lanes, id") == (
        ("pci", True), ("name", False), ("lanes", False), ("id", False))
    for text, message in [("nope", "not a property"), ("name,-name", "given twice"),
                          ("name;DROP TABLE streets", "not a property"), ("", "not a property")]:
        with pytest.raises(InvalidInput, match=message):
            params.parse_sortby(STREETS, text)


# -- a caller: tiles, whose validation keeps its own meaning -------------------------------------


def test_tile_requests_written_differently_are_one_request():
    from service.routers.tiles import build_tile_request

    one = build_tile_request("alerts", 3, 1, 2, filters={"severity": "low,high", "kind": "b,a"},
                            properties_text="kind,severity", datetime_text="2026-06-01T02:00")
    other = build_tile_request("alerts", 3, 1, 2,
                              filters={"kind": "a, b,a", "severity": "high,low", "status": None},
                              properties_text="severity,,kind",
                              datetime_text="2026-06-01T04:00:00+02:00")
    assert one == other and one.query_key() == other.query_key()
    assert one.filters == (("kind", ("a", "b")), ("severity", ("high", "low")))
    assert build_tile_request("alerts", 0, 0, 0).properties == ALERTS.property_names
    assert build_tile_request("road-damage", 0, 0, 0).layer_id == "road_damage"
    with pytest.raises(NotFound):
        build_tile_request("road-dmg", 0, 0, 0)
    with pytest.raises(InvalidInput, match="not one of"):
        build_tile_request("manholes", 0, 0, 0, filters={"status": "open"})
