"""``twin mapping draft``: read a city's file and write a commented mapping for it.

The draft looks at the file's columns, their types and their values, and proposes for each of
the layer's fields the column that gives it: the identifier (a column unique and never empty),
names, classes with a value map (every distinct value listed, mapped to the nearest value of
the twin's vocabulary or to ``other``), dates with their format, numbers with their unit
guessed from the name and the range. OpenStreetMap extracts (``osm_id``, ``highway``,
``man_made=manhole``, ``amenity=parking``...) and TIGER/Line files (CFCC ``A41``, MTFCC
``S1400``) are recognised and mapped by their published meaning. The result is a TOML file
in the format ``ingest.mapping`` reads; used unedited it should load nearly every row, and
its comments say what to check.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from geo.vocabulary import FIELD_VOCABULARIES, OTHER, Vocabulary
from ingest import readers
from ingest.fields import LAYER_FIELDS, LAYER_TABLES, Field
from ingest.mapping import SHAPEFILE_NAME_LENGTH, FieldRule
from ingest.validate import is_blank, parse_times

# Rows read to profile a file: enough for every class value of a city's layer.
PROFILE_ROWS = 200_000
# A value map lists at most this many values (the most frequent); the rest become ``other``.
MAX_MAPPED_VALUES = 300

# -- what columns are called ---------------------------------------------------------------

ID_NAMES = ("osm_id", "tlid", "linearid", "objectid", "globalid", "fid", "gid", "id", "uid",
            "asset_id", "assetid", "facilityid", "segment_id", "segmentid", "block_id", "code",
            "ref", "key")
NAMES = {
    "name": ("name", "fullname", "full_name", "street_name", "st_name", "streetname", "stname",
             "road_name", "roadname", "street", "road", "label", "title", "site_name"),
    "surface": ("surface", "pavement", "pave_type", "pavetype", "surf_type", "surface_type",
                "surf", "material_type"),
    "width_m": ("width", "width_m", "road_width", "roadwidth", "pave_width", "pavewidth",
                "width_ft", "st_width", "breite"),
    "lanes": ("lanes", "num_lanes", "numlanes", "lane_count", "lanecount", "no_lanes"),
    "resurfaced_on": ("resurfaced_on", "resurfaced", "last_paved", "paved_date", "pave_date",
                      "date", "last_treatment", "treatment_date", "rehab_date", "install_date",
                      "survey_date", "updated"),
    "depth_m": ("depth", "depth_m", "depth_ft", "invert_depth", "rim_depth"),
    "cover_state": ("cover_state", "cover_condition", "cover", "condition"),
    "sensor_id": ("sensor_id", "sensor", "device_id", "deviceid"),
    "capacity": ("capacity", "spaces", "num_spaces", "stalls", "spots"),
    "households": ("households", "units", "dwellings", "num_units", "housing_units"),
    "built_year": ("built_year", "year_built", "yearbuilt", "start_date", "built", "year"),
    "observed_at": ("observed_at", "observed", "datetime", "timestamp", "reported", "date",
                    "created", "created_date", "requested_datetime", "time", "opened"),
    "confidence": ("confidence", "score", "probability", "conf"),
    "severity": ("severity", "priority"),
    "size_m2": ("size_m2", "area_m2", "area", "size", "shape_area"),
    "volume_m3": ("volume_m3", "volume", "amount", "quantity"),
    "pile_ref": ("pile_ref", "pile", "pile_id", "site_id"),
    "material": ("material", "debris_type", "waste_type", "type_of_waste"),
    # Houses (OSM: building:levels, height, start_date).
    "floors": ("building:levels", "building_levels", "levels", "floors", "storeys", "stories",
               "num_floors", "floor_count", "no_floors"),
    "height_m": ("height", "height_m", "building_height", "bldg_height", "bldg_ht"),
    "year_built": ("year_built", "built_year", "yearbuilt", "start_date", "construction_year",
                   "year"),
}
CLASS_NAMES = {
    "road_class": ("road_class", "highway", "mtfcc", "cfcc", "fclass", "func_class",
                   "funcclass", "functional_class", "class", "road_type", "roadtype",
                   "street_type", "type", "category", "hierarchy"),
    "kind": ("kind", "manhole", "utility", "network", "system", "parking", "parking_type",
             "type", "category", "subtype"),
    "management_type": ("management_type", "management", "manager", "operator_type", "type",
                        "category", "building", "landuse"),
    "damage_class": ("damage_class", "damage_type", "defect", "class", "label", "type"),
    "use": ("use", "building", "usage", "building_use", "function", "type"),
    "structure": ("structure", "building:material", "structure_type", "construction",
                  "material"),
    "condition": ("condition", "safety_grade", "grade", "safety"),
}

# -- what values mean -------------------------------------------------------------------------

# OpenStreetMap highway=* -> road class (service roads and tracks to `service`, ways for
# people on foot or bike and roads not built yet to `other`).
OSM_HIGHWAY = {
    "motorway": "primary", "motorway_link": "primary", "trunk": "primary",
    "trunk_link": "primary", "primary": "primary", "primary_link": "primary",
    "secondary": "secondary", "secondary_link": "secondary", "tertiary": "tertiary",
    "tertiary_link": "tertiary", "residential": "residential", "unclassified": "residential",
    "living_street": "residential", "road": "residential", "service": "service",
    "track": "service", "busway": "service",
}
# TIGER/Line CFCC (before 2007): A1 primary limited access, A2 primary, A3 secondary and
# connecting, A4 local and rural, A5 vehicular trail, A6 special (A61 cul-de-sac, A63 ramp,
# A64 service drive), A7 other (A73 alley, A74 driveway).
CFCC = {"A1": "primary", "A2": "primary", "A3": "secondary", "A4": "residential"}
CFCC_DETAIL = {"A61": "residential", "A62": "residential", "A63": "service", "A64": "service",
               "A73": "service", "A74": "service"}
# TIGER/Line MTFCC (2007 on).
MTFCC = {"S1100": "primary", "S1200": "secondary", "S1400": "residential", "S1500": OTHER,
         "S1630": "service", "S1640": "service", "S1730": "service", "S1740": "service",
         "S1780": "service"}
# Words in a city's own class names -> the twin's value, tried in this order.
KEYWORDS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("streets", "road_class"): (
        ("minor arterial", "secondary"), ("principal arterial", "primary"),
        ("major arterial", "primary"), ("freeway", "primary"), ("expressway", "primary"),
        ("motorway", "primary"), ("interstate", "primary"), ("highway", "primary"),
        ("trunk", "primary"), ("arterial", "primary"), ("primary", "primary"),
        ("secondary", "secondary"), ("collector", "tertiary"), ("tertiary", "tertiary"),
        ("residential", "residential"), ("local", "residential"), ("neighbourhood", "residential"),
        ("neighborhood", "residential"), ("living", "residential"), ("minor", "residential"),
        ("unclassified", "residential"), ("alley", "service"), ("lane", "service"),
        ("driveway", "service"), ("service", "service"), ("private", "service"),
        ("parking", "service"), ("access", "service"),
    ),
    ("manholes", "kind"): (
        ("storm", "storm"), ("drain", "storm"), ("rain", "storm"), ("surface water", "storm"),
        ("sanitary", "sewer"), ("sewer", "sewer"), ("sewage", "sewer"), ("foul", "sewer"),
        ("waste", "sewer"), ("combined", "sewer"), ("telecom", "telecom"),
        ("telephone", "telecom"), ("communication", "telecom"), ("fibre", "telecom"),
        ("fiber", "telecom"), ("cable", "telecom"), ("power", "power"), ("electric", "power"),
        ("gas", "gas"), ("water", "water"), ("potable", "water"),
    ),
    ("parking", "kind"): (
        ("street side", "on_street"), ("on street", "on_street"), ("street", "on_street"),
        ("lane", "on_street"), ("curb", "on_street"), ("kerb", "on_street"),
        ("layby", "on_street"), ("surface", "lot"), ("multi storey", "lot"),
        ("underground", "lot"), ("garage", "lot"), ("rooftop", "lot"), ("lot", "lot"),
        ("carport", "lot"), ("off street", "lot"),
    ),
    ("compounds", "management_type"): (
        ("resettle", "resettlement"), ("affordable", "resettlement"), ("social", "resettlement"),
        ("public housing", "resettlement"), ("council", "resettlement"),
        ("unmanaged", "unmanaged"), ("no management", "unmanaged"), ("none", "unmanaged"),
        ("commodity", "commodity"), ("property", "commodity"), ("managed", "commodity"),
        ("old", "old"), ("bungalow", "old"), ("historic", "old"),
    ),
    # OSM's building=* values and words of a city's own uses.
    ("buildings", "use"): (
        ("apartment", "residential"), ("residential", "residential"), ("house", "residential"),
        ("detached", "residential"), ("terrace", "residential"), ("dormitory", "residential"),
        ("bungalow", "residential"), ("dwelling", "residential"), ("housing", "residential"),
        ("mixed", "mixed"), ("retail", "commercial"), ("commercial", "commercial"),
        ("office", "commercial"), ("shop", "commercial"), ("hotel", "commercial"),
        ("supermarket", "commercial"), ("school", "public"), ("kindergarten", "public"),
        ("hospital", "public"), ("university", "public"), ("college", "public"),
        ("government", "public"), ("civic", "public"), ("public", "public"),
        ("temple", "public"), ("church", "public"), ("industrial", "industrial"),
        ("warehouse", "industrial"), ("factory", "industrial"), ("garage", "ancillary"),
        ("shed", "ancillary"), ("carport", "ancillary"), ("roof", "ancillary"),
    ),
    ("buildings", "structure"): (
        ("reinforced", "reinforced_concrete"), ("concrete", "reinforced_concrete"),
        ("brick", "brick_concrete"), ("masonry", "brick_concrete"), ("steel", "steel"),
        ("metal", "steel"), ("wood", "timber"), ("timber", "timber"), ("mud", "earth"),
        ("adobe", "earth"), ("earth", "earth"), ("loam", "earth"),
    ),
    ("road_damage", "damage_class"): (
        ("longitudinal", "D00"), ("transverse", "D10"), ("alligator", "D20"),
        ("crocodile", "D20"), ("fatigue", "D20"), ("pothole", "D40"), ("pot hole", "D40"),
    ),
    ("districts", "level"): (
        ("sub district", "sub_district"), ("subdistrict", "sub_district"),
        ("street office", "sub_district"), ("township", "sub_district"),
        ("town", "sub_district"), ("jiedao", "sub_district"), ("community", "community"),
        ("village", "community"), ("shequ", "community"), ("grid", "grid"), ("wangge", "grid"),
    ),
}
OSM_CLASS_COLUMNS = {"streets": "highway", "manholes": "manhole", "parking": "parking",
                     "buildings": "building"}
OSM_TAGS = ("osm_id", "highway", "building", "amenity", "man_made", "landuse", "other_tags",
            "osm_type", "osm_way_id")

# Units: a name that says it, else the range of the values.
UNIT_WORDS = {"_ft": "ft", "feet": "ft", "_in": "in", "inch": "in", "_mm": "mm", "_cm": "cm",
              "sqft": "ft2", "sq_ft": "ft2", "_ft2": "ft2", "cuyd": "yd3", "cu_yd": "yd3",
              "_yd3": "yd3"}
# field -> (median above which the values are taken to be in the unit, that unit): a street
# 25 wide is in feet, not metres; a manhole 15 deep likewise; mm show in the hundreds.
UNIT_RANGES = {"width_m": ((25.0, "ft"), (400.0, "mm")), "depth_m": ((12.0, "ft"),
                                                                     (300.0, "mm"))}
DATE_PATTERNS = ("%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d", "%m/%d/%Y %H:%M",
                 "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%d/%m/%Y %H:%M")


@dataclass
class ColumnProfile:
    """What a column holds: its type, how full and how varied it is, its commonest values."""

    name: str
    dtype: str
    rows: int
    filled: int
    distinct: int
    counts: pd.Series  # value -> rows, commonest first (values as text, as a map sees them)
    numbers: pd.Series  # the values that are numbers
    values: pd.Series  # the column as read

    @property
    def unique_and_full(self) -> bool:
        """Whether every row has a value and no two rows share one (an identifier)."""
        return self.rows > 0 and self.filled == self.rows and self.distinct == self.rows


@dataclass
class Draft:
    """A drafted mapping: the TOML text, and what was decided, for tests and the CLI."""

    layer: str
    preset: str | None
    fields: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    text: str = ""


def profile(frame: pd.DataFrame) -> dict[str, ColumnProfile]:
    """Profile every column of a frame (geometry and row numbers left out)."""
    found = {}
    for name in frame.columns:
        if name in ("geometry", "row_number"):
            continue
        values = frame[name]
        blank = is_blank(values)
        present = values[~blank]
        counts = present.map(_as_key).value_counts()
        numbers = pd.to_numeric(present, errors="coerce").dropna()
        found[name] = ColumnProfile(name, str(values.dtype), len(values), int((~blank).sum()),
                                    int(counts.size), counts, numbers, values)
    return found


def _as_key(value) -> str:
    # As check_field looks a value up in a map: str() of the value read.
    return str(value)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", str(text).lower()).strip()


def _find(columns: dict[str, ColumnProfile], names: tuple[str, ...],
          taken: set[str]) -> str | None:
    """The first column named like one of ``names`` (ignoring case; shapefile cuts too)."""
    by_lower = {c.lower(): c for c in columns if c not in taken}
    for name in names:
        for candidate in (name, name[:SHAPEFILE_NAME_LENGTH]):
            if candidate in by_lower and columns[by_lower[candidate]].filled:
                return by_lower[candidate]
    return None


def detect_preset(columns: dict[str, ColumnProfile]) -> str | None:
    """``osm`` for OpenStreetMap extracts, ``tiger`` for TIGER/Line, else None."""
    lower = {c.lower() for c in columns}
    if "mtfcc" in lower or "cfcc" in lower or "tlid" in lower or "linearid" in lower:
        return "tiger"
    if "osm_id" in lower or "osm_way_id" in lower or len(lower & set(OSM_TAGS)) >= 2:
        return "osm"
    return None


# District levels as Chinese files write them (in the value, often after a name): grid 网格;
# community 社区, village 村, residents' committee 居委会; sub-district 街道, town 镇/乡.
DISTRICT_LEVEL_WORDS = (("网格", "grid"), ("社区", "community"), ("居委会", "community"),
                        ("村", "community"), ("街道", "sub_district"), ("镇", "sub_district"),
                        ("乡", "sub_district"))


def nearest_value(value: str, table: str, field_name: str, vocabulary: Vocabulary) -> str:
    """The twin's value nearest a city's class value, or ``other``.

    Examples
    --------
    >>> from geo.vocabulary import ROAD_CLASSES
    >>> [nearest_value(v, "streets", "road_class", ROAD_CLASSES)
    ...  for v in ("living_street", "A41", "S1400", "Minor Arterial", "footway", "Residental")]
    ['residential', 'residential', 'residential', 'secondary', 'other', 'residential']
    >>> from geo.vocabulary import DISTRICT_LEVELS
    >>> [nearest_value(v, "districts", "level", DISTRICT_LEVELS)
    ...  for v in ("网格", "社区", "行政村", "街道办事处", "Township", "Sub-district", "ward")]
    ['grid', 'community', 'community', 'sub_district', 'sub_district', 'sub_district', 'other']
    """
    text = str(value).strip()
    if text in vocabulary.values:
        return text
    if (table, field_name) == ("districts", "level"):
        for word, level in DISTRICT_LEVEL_WORDS:
            if word in text:
                return level
    if (table, field_name) == ("streets", "road_class"):
        code = text.upper()
        if code in MTFCC:
            return MTFCC[code]
        if re.fullmatch(r"A\d\d?", code):
            return CFCC_DETAIL.get(code) or CFCC.get(code[:2], OTHER)
        if text.lower() in OSM_HIGHWAY:
            return OSM_HIGHWAY[text.lower()]
    words = f" {_norm(text)} "
    for keyword, twin_value in KEYWORDS.get((table, field_name), ()):
        if f" {keyword}" in words:
            return twin_value
    close = difflib.get_close_matches(text.lower(), vocabulary.values, n=1, cutoff=0.8)
    return close[0] if close else OTHER


def _class_column(columns, table: str, field_name: str, vocabulary: Vocabulary,
                  preset: str | None, taken: set[str]) -> str | None:
    if preset == "tiger" and table == "streets":
        for name in ("MTFCC", "CFCC", "mtfcc", "cfcc"):
            if name in columns and name not in taken:
                return name
    if preset == "osm" and table in OSM_CLASS_COLUMNS:
        found = _find(columns, (OSM_CLASS_COLUMNS[table],), taken)
        if found:
            return found
    # A column named like the field whose values fit the vocabulary at all; else the column
    # whose values fit it best (street names with "Lane" in them must not win over a class
    # column, hence the order).
    def fit(name: str) -> float:
        column = columns[name]
        if not column.filled or column.distinct > MAX_MAPPED_VALUES:
            return 0.0
        fits = sum(n for value, n in column.counts.items()
                   if nearest_value(value, table, field_name, vocabulary) != OTHER)
        return fits / column.filled

    named = _find(columns, CLASS_NAMES.get(field_name, (field_name,)), taken)
    if named is not None and fit(named) > 0:
        return named
    scores = {name: fit(name) for name in columns if name not in taken}
    best = max(scores, key=scores.__getitem__, default=None)
    if best is not None and scores[best] >= 0.5:
        return best
    return named


def _id_column(columns, preset: str | None, taken: set[str]) -> tuple[str | None, str]:
    unique = [name for name, c in columns.items() if c.unique_and_full and name not in taken]
    named = _find({n: columns[n] for n in unique}, ID_NAMES, taken)
    if named:
        return named, "unique and never empty"
    if unique:
        # Prefer a name that says id, then whole numbers or short codes to free text that
        # happens to be unique.
        unique.sort(key=lambda n: (not re.search(r"(^|_)(id|fid|key|no|nr)$|id$", n.lower()),
                                   columns[n].numbers.size < columns[n].filled,
                                   pd.Series(columns[n].counts.index).str.len().mean()))
        return unique[0], "unique and never empty"
    scored = sorted(((c.distinct / max(c.rows, 1), name) for name, c in columns.items()
                     if name not in taken), reverse=True)
    if scored and scored[0][0] > 0.5:
        name = scored[0][1]
        c = columns[name]
        return name, (f"the most nearly unique column ({c.distinct:,} values in {c.rows:,} rows); "
                      "rows that repeat an id will be rejected")
    return None, ""


def _unit(name: str, field_name: str, numbers: pd.Series) -> tuple[str | None, str]:
    lower = name.lower()
    for word, unit in UNIT_WORDS.items():
        if word in lower or lower.endswith(word.strip("_")):
            return unit, f"the name says {unit}"
    if numbers.size and field_name in UNIT_RANGES:
        median = float(numbers[numbers > 0].median()) if (numbers > 0).any() else 0.0
        for threshold, unit in reversed(UNIT_RANGES[field_name]):
            if median > threshold:
                return unit, f"values around {median:g} are too large for metres"
    return None, ""


def _date_format(column: ColumnProfile) -> tuple[str | None, float]:
    """The format that reads most of a column's values as times, and the share it reads."""
    present = column.values[~is_blank(column.values)]
    if present.empty:
        return None, 0.0
    sample = present.head(2000)
    if pd.api.types.is_datetime64_any_dtype(sample) or sample.map(
            lambda v: hasattr(v, "isoformat")).all():
        return "iso", 1.0
    numbers = pd.to_numeric(sample, errors="coerce")
    if numbers.notna().all():
        median = float(numbers.median())
        if 1e11 <= median <= 1e13:
            return "epoch_ms", 1.0
        if 1e8 <= median <= 1e10:
            return "epoch_s", 1.0
    best, best_share = None, 0.0
    text = sample.astype(str)
    for fmt in ("iso", *DATE_PATTERNS):
        times, _ = parse_times(text, FieldRule(column=column.name, format=fmt), "UTC")
        share = float(times.notna().mean())
        if share > best_share:
            best, best_share = fmt, share
    return best, best_share


def _looks_like_time(column: ColumnProfile) -> bool:
    fmt, share = _date_format(column)
    return fmt is not None and share >= 0.8


def draft_mapping(path: Path | str, layer: str, *, layer_name: str | None = None,
                  crs: str | None = None) -> Draft:
    """Draft a mapping of a file's columns to a layer's fields.

    Raises
    ------
    InvalidInput
        When the file cannot be read or the layer is unknown.
    """
    from geo.errors import InvalidInput
    from geo.i18n import _

    path = Path(path)
    if layer not in LAYER_TABLES:
        raise InvalidInput(_("Unknown layer '{layer}'; choose one of {layers}.", layer=layer,
                             layers=", ".join(LAYER_TABLES)))
    table = LAYER_TABLES[layer]
    spec = LAYER_FIELDS[table]
    info = readers.open_layer(path, layer_name=layer_name, crs=crs)
    frames, rows = [], 0
    for chunk in readers.read_chunks(info, chunk_rows=50_000):
        frames.append(chunk)
        rows += len(chunk)
        if rows >= PROFILE_ROWS:
            break
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(info.fields))
    columns = profile(frame)
    preset = detect_preset(columns)
    draft = Draft(layer=layer, preset=preset)
    taken: set[str] = set()
    for spec_field in spec.fields:
        decided = _decide(spec_field, table, columns, preset, taken, len(frame))
        if decided is not None:
            draft.fields[spec_field.name] = decided
            if decided.get("column"):
                taken.add(decided["column"])
    draft.text = render(draft, path, info, columns, len(frame), rows >= PROFILE_ROWS)
    return draft


def _decide(spec_field: Field, table: str, columns: dict[str, ColumnProfile],
            preset: str | None, taken: set[str], rows: int) -> dict | None:
    name = spec_field.name
    vocabulary = FIELD_VOCABULARIES.get((table, name)) or spec_field.vocabulary
    if name == "external_id":
        column, why = _id_column(columns, preset, taken)
        return {"column": column, "why": why} if column else {
            "missing": "no column is unique and never empty; name one, or make one"}
    if vocabulary is not None:
        column = _class_column(columns, table, name, vocabulary, preset, taken)
        if column is None:
            if spec_field.required:
                return {"value": OTHER if vocabulary.open else vocabulary.values[0],
                        "why": "no column holds it; every row gets this value (edit it)"}
            return None
        profile_ = columns[column]
        value_map = {value: nearest_value(value, table, name, vocabulary)
                     for value in profile_.counts.index[:MAX_MAPPED_VALUES]}
        decided = {"column": column, "map": value_map, "counts": profile_.counts,
                   "why": f"{profile_.distinct:,} distinct values"}
        if spec_field.required and profile_.filled < rows and vocabulary.open:
            decided["default"] = OTHER
        return decided
    if spec_field.kind in ("date", "datetime"):
        column = _find(columns, NAMES.get(name, (name,)), taken)
        if column is None:
            column = next((n for n, c in columns.items() if n not in taken and c.filled
                           and re.search(r"date|time|_at$|_on$", n.lower())
                           and _looks_like_time(c)), None)
        if column is None:
            return None
        fmt, share = _date_format(columns[column])
        if fmt is None or share < 0.5:
            return None
        return {"column": column, "format": fmt,
                "why": f"{share:.0%} of the values read as times in this format"}
    column = _find(columns, NAMES.get(name, (name,)), taken)
    if column is None:
        return None
    decided = {"column": column}
    if spec_field.kind in ("float", "int"):
        numbers = columns[column].numbers
        if columns[column].filled and numbers.size / columns[column].filled < 0.5:
            return None  # mostly not numbers (OSM's "2;3" lanes stay in properties)
        unit, why = _unit(column, name, numbers)
        if unit:
            decided["from_unit"] = unit
            decided["why"] = why
    return decided


def _toml(value) -> str:
    """A TOML basic string or number (JSON's escapes are TOML's)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _key(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else _toml(text)


def render(draft: Draft, path: Path, info, columns: dict[str, ColumnProfile], rows: int,
           partial: bool) -> str:
    """The mapping as commented TOML."""
    spec = LAYER_FIELDS[LAYER_TABLES[draft.layer]]
    lines = [
        f"# Mapping drafted by `twin mapping draft` from {path.name}"
        + (f" (layer {info.layer_name})" if info.layer_name else "") + ".",
        f"# {rows:,} rows read{' (the first ones: the file is larger)' if partial else ''}; "
        f"columns: {', '.join(columns)}.",
    ]
    if draft.preset == "osm":
        lines.append("# Recognised as an OpenStreetMap extract: tags mapped by their OSM meaning.")
    elif draft.preset == "tiger":
        lines.append("# Recognised as TIGER/Line: CFCC/MTFCC codes mapped by their published "
                     "meaning.")
    crs = info.crs
    crs_text = f"EPSG:{crs.to_epsg()}" if crs is not None and crs.to_epsg() else (
        crs.name if crs is not None else "none")
    lines += [
        f"# CRS: {crs_text} ({'from the file' if crs is not None else 'give one below'}); "
        "ingest reprojects to EPSG:4326.",
        "# Check the fields below, then: twin ingest "
        f"{draft.layer} {path} --mapping THIS_FILE",
        "",
        f'layer = "{draft.layer}"',
        f"source = {_toml(re.sub(r'[^A-Za-z0-9_-]+', '-', path.stem).strip('-') or 'file')}",
        "# A class value not in the map below becomes 'other'; the file's value is kept in",
        "# properties as original_<field>.",
        'unmapped = "other"',
        "",
    ]
    if info.format == "CSV":
        lines.append("[geometry]")
        if info.x_column:
            lines += [f"x = {_toml(info.x_column)}", f"y = {_toml(info.y_column)}"]
        elif info.wkt_column:
            lines.append(f"wkt = {_toml(info.wkt_column)}")
        lines += [f"crs = {_toml(crs_text)}", ""]
    simple, tables = [], []
    for spec_field in spec.fields:
        decided = draft.fields.get(spec_field.name)
        vocabulary = (FIELD_VOCABULARIES.get((LAYER_TABLES[draft.layer], spec_field.name))
                      or spec_field.vocabulary)
        about = _about(spec_field, vocabulary)
        if decided is None:
            simple.append(f"# {spec_field.name}: no column found ({about})")
            continue
        if "missing" in decided:
            simple.append(f"# {spec_field.name} = ?  # REQUIRED: {decided['missing']}")
            continue
        if "map" not in decided and set(decided) <= {"column", "why"}:
            why = f"{decided['why']}; " if decided.get("why") else ""
            simple.append(f"{spec_field.name} = {_toml(decided['column'])}  # {why}{about}")
            continue
        block = [f"[fields.{spec_field.name}]  # {about}"]
        if "value" in decided:
            block.append(f"value = {_toml(decided['value'])}  # {decided['why']}")
        else:
            block.append(f"column = {_toml(decided['column'])}"
                         + (f"  # {decided['why']}" if decided.get("why") else ""))
        for option in ("default", "format", "from_unit"):
            if option in decided:
                block.append(f"{option} = {_toml(decided[option])}")
        if "map" in decided:
            counts = decided["counts"]
            block.append(f"[fields.{spec_field.name}.map]  # file value = twin value  # rows")
            for value, twin_value in decided["map"].items():
                block.append(f"{_key(value)} = {_toml(twin_value)}  # {counts[value]:,}")
            if len(counts) > len(decided["map"]):
                block.append(f"# ... {len(counts) - len(decided['map']):,} rarer values become "
                             "'other'")
        tables.append("\n".join(block))
    lines.append("[fields]")
    lines += simple
    lines.append("")
    lines += [f"{block}\n" for block in tables]
    lines += [
        "[properties]",
        "# Every column not mapped above is kept in each row's properties; list the ones to",
        "# keep (keep = [...]) or to leave out (drop = [...]).",
        "drop = []",
        "",
    ]
    return "\n".join(lines)


def _about(spec_field: Field, vocabulary: Vocabulary | None) -> str:
    parts = ["required" if spec_field.required else "optional", spec_field.kind]
    if vocabulary is not None:
        parts.append("values " + ", ".join(vocabulary.allowed))
    elif spec_field.min_value is not None and spec_field.max_value is not None:
        unit = {"m": " m", "m2": " m2", "m3": " m3"}.get(spec_field.name.rsplit("_", 1)[-1], "")
        parts.append(f"{spec_field.min_value:g}-{spec_field.max_value:g}{unit}")
    return ", ".join(parts)


def canonical_values() -> dict[str, tuple[str, ...]]:
    """Layer.field -> the values it may hold, for the docs and ``--help``."""
    return {f"{table}.{name}": vocabulary.allowed
            for (table, name), vocabulary in FIELD_VOCABULARIES.items()}

