"""Mapping files and rules (ingest/mapping.py) on their own: no database, no data file.

What a department writes in a mapping file must come out as the rules the ingest applies, and
every mistake in the file must be refused in one sentence naming the file and the key.
"""

import math
from pathlib import Path

import pytest

from geo.errors import InvalidInput
from ingest.mapping import (
    UNIT_FACTORS,
    FieldRule,
    Mapping,
    MetricRule,
    identity_mapping,
    load_mapping,
)
from sample_data import SAMPLE_DIR

MAPPINGS = SAMPLE_DIR.parent / "mappings"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- the committed mapping ----------------------------------------------------------------------

def test_the_committed_san_jose_mapping_loads_as_written():
    mapping = load_mapping(MAPPINGS / "sanjose_illegal_dumping.toml")
    assert (mapping.layer, mapping.source, mapping.timezone) == (
        "debris", "sanjose-illegal-dumping", "UTC")
    assert (mapping.geometry.x, mapping.geometry.y, mapping.geometry.crs) == (
        "LONGITUDE", "LATITUDE", "EPSG:4326")
    assert mapping.rule("external_id") == FieldRule(column="WORKORDERREFNO")
    observed = mapping.rule("observed_at")
    assert (observed.column, observed.format) == ("DATETIMERECEIVEDUTC", "epoch_ms")
    assert mapping.rule("confidence").value == 0.8
    assert mapping.rule("material").value == "household_waste"
    assert mapping.rule("severity") is None  # not named: the ingest's default applies
    assert "NOTES" in mapping.properties.keep and mapping.properties.drop == []


# -- rules --------------------------------------------------------------------------------------

def test_a_bare_column_name_is_a_rule_reading_that_column():
    mapping = Mapping(fields={"external_id": "ID"})
    rule = mapping.rule("external_id")
    assert isinstance(rule, FieldRule)
    assert (rule.column, rule.value, rule.factor()) == ("ID", None, 1.0)


@pytest.mark.parametrize(("rule", "factor"), [
    (FieldRule(column="d"), 1.0),
    (FieldRule(column="d", from_unit="ft"), 0.3048),
    (FieldRule(column="d", from_unit="in/mi"), 1 / 63.36),  # IRI: 63.36 in/mi is 1 m/km
    (FieldRule(column="d", multiply=2.5), 2.5),
    (FieldRule(column="d", from_unit="cm", multiply=3), 0.03),
    (FieldRule(column="d", from_unit="fraction"), 100.0),
])
def test_factor_combines_the_unit_and_the_multiplier(rule, factor):
    assert math.isclose(rule.factor(), factor, rel_tol=1e-12)


def test_every_unit_factor_is_positive():
    assert all(f > 0 for f in UNIT_FACTORS.values())


@pytest.mark.parametrize("fields", [{}, {"column": "a", "value": 1}])
def test_a_rule_needs_exactly_one_of_column_and_value(fields):
    with pytest.raises(ValueError, match="either 'column' or a constant 'value'"):
        FieldRule(**fields)


def test_an_unknown_unit_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown unit 'furlong'; known: m, cm"):
        FieldRule(column="d", from_unit="furlong")


def test_wide_readings_name_one_metric_per_value_column():
    mapping = Mapping(readings={"values": {
        "TILT": "tilt_deg",
        "LEVEL_FT": {"metric": "water_level_pct", "multiply": 2.0},
    }})
    rules = mapping.metric_rules()
    assert rules["TILT"] == MetricRule(metric="tilt_deg", column="TILT")
    assert (rules["LEVEL_FT"].metric, rules["LEVEL_FT"].column, rules["LEVEL_FT"].factor()) == (
        "water_level_pct", "LEVEL_FT", 2.0)
    assert Mapping().metric_rules() == {}


def test_mappings_are_frozen():
    mapping = Mapping(fields={"external_id": "ID"})
    with pytest.raises(ValueError):
        mapping.source = "elsewhere"


# -- identity_mapping ---------------------------------------------------------------------------

def test_identity_mapping_matches_names_ignoring_case_and_shapefile_cuts():
    mapping = identity_mapping(["EXTERNAL_I", "Kind", "geometry", "depth_m"],
                               ("external_id", "kind", "depth_m", "cover_type"))
    assert mapping.fields == {"external_id": "EXTERNAL_I", "kind": "Kind", "depth_m": "depth_m"}
    assert mapping.rule("cover_type") is None


def test_identity_mapping_prefers_the_whole_name_to_a_shapefile_cut():
    mapping = identity_mapping(["external_i", "external_id"], ("external_id",))
    assert mapping.fields == {"external_id": "external_id"}


def test_identity_mapping_of_no_columns_maps_nothing():
    assert identity_mapping([], ("external_id",)).fields == {}


# -- load_mapping: every mistake in one sentence naming the file and the key ---------------------

def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(InvalidInput, match=r"^Mapping file .*nope\.toml does not exist\.$"):
        load_mapping(tmp_path / "nope.toml")


def test_a_file_that_is_not_toml_is_named(tmp_path):
    path = write(tmp_path, "layer = debris\n")
    with pytest.raises(InvalidInput, match=r"^Mapping file .*mapping\.toml is not valid TOML: "):
        load_mapping(path)


def test_a_file_that_is_not_text_is_named(tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_bytes(b"\xff\xfe\x00layer")
    with pytest.raises(InvalidInput, match=r"is not valid TOML"):
        load_mapping(path)


@pytest.mark.parametrize(("text", "where", "what"), [
    ('timezone = "Mars/Olympus"\n', "timezone", "unknown time zone 'Mars/Olympus'"),
    ('[fields]\ndepth_m = { column = "D", from_unit = "furlong" }\n',
     "fields.depth_m.from_unit", "unknown unit 'furlong'"),
    ('[fields]\ndepth_m = { format = "iso" }\n',
     "fields.depth_m", "give either 'column' or a constant 'value'"),
    ('[fields]\ndepth_m = { column = "D", colour = "red" }\n',
     "fields.depth_m.colour", "Extra inputs are not permitted"),
    ('layers = "debris"\n', "layers", "Extra inputs are not permitted"),
    ('[geometry]\nx = 3\n', "geometry.x", "Input should be a valid string"),
    ('[readings.values]\nTILT = { multiply = 2 }\n', "readings.values.TILT.metric",
     "Field required"),
])
def test_a_mistake_in_the_file_is_one_sentence_naming_the_key(tmp_path, text, where, what):
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as raised:
        load_mapping(path)
    message = str(raised.value)
    assert message.startswith(f"Mapping file {path}: '{where}' ")
    assert what in message and message.endswith(".")
    assert "\n" not in message and "Value error" not in message


def test_an_empty_file_is_an_empty_mapping(tmp_path):
    mapping = load_mapping(write(tmp_path, ""))
    assert mapping == Mapping()
    assert (mapping.layer, mapping.timezone, mapping.fields) == (None, "UTC", {})


def test_a_key_starting_with_str_is_still_named(tmp_path):
    path = write(tmp_path, '[fields]\nstreet_ref = { column = "S", from_unit = "furlong" }\n')
    with pytest.raises(InvalidInput, match=r": 'fields\.street_ref\.from_unit' unknown unit"):
        load_mapping(path)
