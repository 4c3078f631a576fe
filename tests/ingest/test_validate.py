"""ingest/validate.py and ingest/mapping.py, function by function (no database needed)."""

from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, MultiLineString, Point, Polygon

from geo.errors import InvalidInput
from geo.vocabulary import FIELD_VOCABULARIES, MANHOLE_KINDS, OTHER
from ingest.draft import _date_format, _unit, detect_preset, nearest_value, profile
from ingest.fields import LAYER_FIELDS, Field
from ingest.mapping import FieldRule, Mapping, identity_mapping, load_mapping
from ingest.pipeline import distance_to_area_km
from ingest.validate import (
    Area,
    Problems,
    check_field,
    check_geometry,
    is_blank,
    parse_numbers,
    parse_times,
    properties_json,
    validate_layer,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LON, LAT = 108.54, 32.52


def check(values, spec: Field, rule: FieldRule | None = None, unmapped="reject"):
    frame = pd.DataFrame({"c": values, "row_number": np.arange(1, len(values) + 1)})
    problems = Problems(frame["row_number"])
    parsed, originals = check_field(frame, spec, rule or FieldRule(column="c"), "UTC", problems,
                                    NOW, unmapped=unmapped)
    return parsed, originals, problems


def test_nulls_of_every_spelling_are_blank():
    values = pd.Series(["x", "", "  ", None, np.nan, pd.NaT, "NaT", "nan", "NULL", "<Null>", "0"])
    assert is_blank(values).tolist() == [False] + [True] * 9 + [False]
    assert is_blank(pd.Series([1.0, np.nan, 0.0])).tolist() == [False, True, False]


def test_an_unusable_optional_number_is_dropped_and_the_row_kept():
    width = LAYER_FIELDS["streets"].fields[4]
    assert width.name == "width_m" and not width.required
    parsed, _, problems = check([7.5, 0.0, "wide", None, "NaN"], width)
    assert parsed.tolist()[0] == 7.5 and all(pd.isna(v) for v in parsed.tolist()[1:])
    assert not problems.bad.any()
    dropped = problems.dropped_frame(pd.Series([], dtype=int))
    assert dropped["row_number"].tolist() == [2, 3]
    assert "below the smallest allowed value 0.5" in dropped["reason"].iloc[0]
    assert dropped["reason"].iloc[1] == "is not a number"


def test_a_null_date_is_null_not_the_text_nat_and_a_bad_one_is_dropped():
    resurfaced = Field("resurfaced_on", "date")
    parsed, _, problems = check(["2024-05-01", None, "NaT", "soon", "2099-01-01"], resurfaced)
    assert parsed.iloc[0].isoformat() == "2024-05-01"
    assert parsed.iloc[1:].isna().all()
    dropped = problems.dropped_frame(pd.Series([], dtype=int))
    assert dict(zip(dropped["row_number"], dropped["reason"], strict=True)) == {
        4: "cannot be read as a date", 5: "is in the future"}
    assert not problems.bad.any()


def test_dates_read_as_date_objects_and_timestamps_with_nulls():
    resurfaced = Field("resurfaced_on", "date")
    dates = pd.Series([datetime(2020, 3, 1).date(), None], dtype=object)
    parsed, _, problems = check(dates, resurfaced)
    assert parsed.iloc[0].isoformat() == "2020-03-01" and pd.isna(parsed.iloc[1])
    stamps = pd.Series(pd.to_datetime(["2021-06-01", None]))
    parsed, _, problems = check(stamps, resurfaced)
    assert parsed.iloc[0].isoformat() == "2021-06-01" and pd.isna(parsed.iloc[1])
    assert problems.frame().empty and problems.dropped_frame(pd.Series([], dtype=int)).empty


def test_a_required_field_rejects_its_row():
    observed = Field("observed_at", "datetime", required=True)
    _, _, problems = check(["2024-01-01T00:00:00Z", None, "never"], observed)
    rejected = problems.frame()
    assert problems.bad.tolist() == [False, True, True]
    assert rejected["reason"].tolist() == ["is missing", "cannot be read as a date"]


def test_an_open_vocabulary_makes_unknown_values_other_and_keeps_the_original():
    kind = Field("kind", "text", required=True, vocabulary=MANHOLE_KINDS)
    parsed, originals, problems = check(["sewer", "heating", "other", None], kind,
                                        unmapped="other")
    assert parsed.tolist()[:3] == ["sewer", OTHER, OTHER]
    assert originals.tolist()[1] == "heating" and pd.isna(originals.iloc[0])
    assert pd.isna(originals.iloc[2])  # 'other' in the file is the twin's own value
    assert problems.bad.tolist() == [False, False, False, True]  # still required


def test_without_a_mapping_file_an_unknown_class_is_refused():
    kind = Field("kind", "text", required=True, vocabulary=MANHOLE_KINDS)
    _, originals, problems = check(["sewer", "lava"], kind, unmapped="reject")
    assert originals is None and problems.bad.tolist() == [False, True]
    assert problems.frame()["reason"].iloc[0].startswith("is not one of sewer")


def test_a_closed_optional_vocabulary_drops_an_unknown_value_to_the_default():
    cover = next(f for f in LAYER_FIELDS["manholes"].fields if f.name == "cover_state")
    parsed, _, problems = check(["open", "wobbly", None], cover, unmapped="other")
    assert parsed.tolist() == ["open", "ok", "ok"]
    assert problems.dropped_frame(pd.Series([], dtype=int))["row_number"].tolist() == [2]


def test_a_map_and_a_default_translate_before_checking():
    road_class = next(f for f in LAYER_FIELDS["streets"].fields if f.name == "road_class")
    rule = FieldRule(column="c", map={"Local": "residential"}, default=OTHER)
    parsed, originals, problems = check(["Local", "", "residential"], road_class, rule,
                                        unmapped="other")
    assert parsed.tolist() == ["residential", OTHER, "residential"]
    assert originals.tolist()[0] == "Local" and originals.iloc[1:].isna().all()
    assert not problems.bad.any()


def test_numbers_convert_units_and_flag_text():
    numbers, bad = parse_numbers(pd.Series(["10", "x", None]), FieldRule(column="c",
                                                                          from_unit="ft"))
    assert numbers.iloc[0] == pytest.approx(3.048) and bad.tolist() == [False, True, False]


def test_times_in_a_pattern_and_a_zone():
    times, bad = parse_times(pd.Series(["03/04/2024 10:00", "bad"]),
                             FieldRule(column="c", format="%m/%d/%Y %H:%M"), "Asia/Shanghai")
    assert times.iloc[0].isoformat() == "2024-03-04T02:00:00+00:00" and bad.tolist() == [
        False, True]


def _gdf(geoms):
    return gpd.GeoDataFrame({"row_number": np.arange(1, len(geoms) + 1)}, geometry=geoms,
                            crs=4326)


def test_multi_part_lines_are_kept_and_single_part_multis_unwrapped():
    two = MultiLineString([[(LON, LAT), (LON + 0.001, LAT)],
                           [(LON, LAT + 0.001), (LON + 0.001, LAT + 0.001)]])
    one = MultiLineString([[(LON, LAT), (LON + 0.001, LAT)]])
    gdf = _gdf([two, one, Point(LON, LAT)])
    problems = Problems(gdf["row_number"])
    geoms, _, place = check_geometry(gdf, LAYER_FIELDS["streets"], Area(None), problems)
    assert [g.geom_type for g in geoms[:2]] == ["MultiLineString", "LineString"]
    assert problems.bad.tolist() == [False, False, True] and place.placed == 2


def test_swapped_only_where_the_swap_lands_in_the_area():
    area = Area((LON - 0.01, LAT - 0.01, LON + 0.01, LAT + 0.01))
    gdf = _gdf([Point(LAT, LON), Point(-121.9, 37.3), Point(37.3, -121.9)])
    problems = Problems(gdf["row_number"])
    _, _, place = check_geometry(gdf, LAYER_FIELDS["manholes"], area, problems)
    reasons = problems.frame()["reason"].tolist()
    assert reasons[0] == "longitude and latitude look swapped"
    assert reasons[1] == "lies far outside the area already in the twin"
    assert "swapped" not in reasons[2]
    assert (place.placed, place.far) == (3, 1)


def test_a_bow_tie_is_not_repaired_into_another_kind_of_geometry():
    bowtie = Polygon([(LON, LAT), (LON + 0.001, LAT + 0.001), (LON + 0.001, LAT),
                      (LON, LAT + 0.001)])
    gdf = _gdf([bowtie])
    problems = Problems(gdf["row_number"])
    _, repaired, _ = check_geometry(gdf, LAYER_FIELDS["compounds"], Area(None), problems)
    assert repaired.empty and "cannot be repaired into a Polygon" in problems.frame()[
        "reason"].iloc[0]


def test_validate_layer_keeps_rows_with_dropped_values_and_originals_in_properties():
    gdf = gpd.GeoDataFrame(
        {"row_number": [1, 2], "id": ["a", "b"], "hw": ["unclassified", "footway"],
         "width": [0.0, 6.0], "maxspeed": ["30", None]},
        geometry=[LineString([(LON, LAT), (LON + 0.001, LAT)])] * 2, crs=4326)
    mapping = Mapping(fields={"external_id": "id", "width_m": "width",
                              "road_class": FieldRule(column="hw",
                                                      map={"unclassified": "residential"})})
    checked = validate_layer(gdf, LAYER_FIELDS["streets"], mapping, source="osm", area=Area(None),
                             seen_ids={}, now=NOW)
    assert len(checked.accepted) == 2 and checked.rejects.empty
    assert checked.accepted["road_class"].tolist() == ["residential", OTHER]
    assert checked.dropped["row_number"].tolist() == [1]
    props = checked.accepted["properties"].tolist()
    assert '"original_road_class": "unclassified"' in props[0] and '"maxspeed": "30"' in props[0]
    assert '"original_road_class": "footway"' in props[1]


def test_properties_json_adds_originals_only_where_there_are_some():
    frame = pd.DataFrame({"a": [1, None]})
    out = properties_json(frame, ["a"], {"original_x": pd.Series([None, "y"])})
    assert out.tolist() == ['{"a": 1.0}', '{"a": null, "original_x": "y"}']


# -- mapping ---------------------------------------------------------------------------------


def test_identity_mapping_finds_fields_and_refuses_unknown_classes():
    mapping = identity_mapping(["External_ID", "KIND", "depth_m"], ("external_id", "kind"))
    assert mapping.fields == {"external_id": "External_ID", "kind": "KIND"}
    assert mapping.unmapped == "reject"
    assert identity_mapping(["external_i"], ("external_id",)).fields == {
        "external_id": "external_i"}


def test_a_mapping_file_defaults_to_open_vocabularies_and_takes_defaults(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('layer = "streets"\n[fields]\nexternal_id = "osm_id"\n'
                    '[fields.road_class]\ncolumn = "highway"\ndefault = "other"\n'
                    '[fields.road_class.map]\nunclassified = "residential"\n')
    mapping = load_mapping(path)
    assert mapping.unmapped == "other"
    assert mapping.rule("road_class").default == OTHER
    assert mapping.rule("external_id") == FieldRule(column="osm_id")


@pytest.mark.parametrize(("text", "message"), [
    ('unmapped = "maybe"\n', "'unmapped'"),
    ('[fields.width_m]\ncolumn = "w"\nfrom_unit = "furlong"\n', "unknown unit 'furlong'"),
    ('[fields.name]\ncolumn = "a"\nvalue = "b"\n', "either 'column' or a constant 'value'"),
    ("layer = \n", "is not valid TOML"),
])
def test_a_bad_mapping_file_is_one_sentence(tmp_path, text, message):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")) as caught:
        load_mapping(path)
    assert str(caught.value).startswith(f"Mapping file {path}")


# -- draft helpers -----------------------------------------------------------------------------


def test_every_canonical_value_maps_to_itself_and_other_to_other():
    for (table, name), vocabulary in FIELD_VOCABULARIES.items():
        for value in vocabulary.values:
            assert nearest_value(value, table, name, vocabulary) == value
        assert nearest_value("zzqx", table, name, vocabulary) == OTHER


# (table, field) -> what a city's value is nearest to in that field's vocabulary.
NEAREST = {
    ("streets", "road_class"): [
        ("unclassified", "residential"), ("motorway_link", "primary"), ("A41", "residential"),
        ("A63", "service"), ("S1200", "secondary"), ("Major Collector", "tertiary"),
        ("MA", "other"),
    ],
    ("manholes", "kind"): [("drain", "storm"), ("Sanitary Sewer", "sewer"), ("heating", "other")],
    ("parking", "kind"): [("street_side", "on_street"), ("multi-storey", "lot")],
    ("road_damage", "damage_class"): [("Pothole", "D40")],
}


@pytest.mark.parametrize(("table", "field", "value", "expected"), [
    (table, field, value, expected)
    for (table, field), cases in NEAREST.items() for value, expected in cases
])
def test_nearest_value(table, field, value, expected):
    assert nearest_value(value, table, field, FIELD_VOCABULARIES[(table, field)]) == expected


def test_presets_and_formats_and_units_are_recognised():
    osm = profile(pd.DataFrame({"osm_id": ["1"], "highway": ["service"]}))
    tiger = profile(pd.DataFrame({"TLID": [1], "MTFCC": ["S1400"]}))
    assert detect_preset(osm) == "osm" and detect_preset(tiger) == "tiger"
    assert detect_preset(profile(pd.DataFrame({"id": [1]}))) is None
    dates = profile(pd.DataFrame({"d": ["03/31/2024", "12/01/2023", None]}))["d"]
    assert _date_format(dates) == ("%m/%d/%Y", 1.0)  # of the values present
    epoch = profile(pd.DataFrame({"t": [1_700_000_000_000, 1_710_000_000_000]}))["t"]
    assert _date_format(epoch)[0] == "epoch_ms"
    assert _unit("WIDTH_FT", "width_m", pd.Series([30.0]))[0] == "ft"
    assert _unit("WIDTH", "width_m", pd.Series([28.0, 36.0, 40.0]))[0] == "ft"
    assert _unit("WIDTH", "width_m", pd.Series([6.0, 9.5]))[0] is None


def test_distance_to_area():
    assert distance_to_area_km(0.5, 0.5, (0, 0, 1, 1)) == 0
    assert distance_to_area_km(0.0, 2.0, (0, 0, 1, 1)) == pytest.approx(111.2, abs=0.5)


def test_an_observation_without_confidence_gets_the_tables_default():
    confidence = next(f for f in LAYER_FIELDS["debris_piles"].fields if f.name == "confidence")
    parsed, _, problems = check([0.4, None, 7], confidence)
    assert parsed.tolist() == [0.4, 1.0, 1.0]  # 7 is out of range: dropped, then the default
    assert problems.dropped_frame(pd.Series([], dtype=int))["row_number"].tolist() == [3]


def test_the_docs_list_every_vocabulary_as_the_code_has_it():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "vocabularies.md").read_text()
    for (table, name), vocabulary in FIELD_VOCABULARIES.items():
        layer = table.replace("road_damage", "road-damage")
        row = re.search(rf"^\| {layer} \| `{name}` \|.*\|(.*)\|$", text, re.M)
        assert row, (table, name)
        assert re.findall(r"`([^`]+)`", row[1]) == list(vocabulary.allowed)
        assert ("| open |" in row[0]) == vocabulary.open
