"""The export formats: the twin's layers as files for GIS analysts.

Shared by ``GET /exports`` (``service/routers/exports.py``) and ``twin export``
(``service/cli/export.py``); the SQL that reads the features is ``geo/exports.py``.

Formats: GeoPackage, GeoJSON (RFC 7946), CSV with a WKT column (its types in a ``.csvt`` and
its CRS in a ``.prj`` beside it, the side files GDAL and so QGIS read), zipped ESRI Shapefile,
FlatGeobuf and GeoParquet; every one in EPSG:4326 (longitude, latitude) with the layer's types
kept.

Memory
------
An export never holds the whole layer. Rows come from a server-side cursor in chunks of
:data:`geo.exports.EXPORT_CHUNK_ROWS` (10,000) rows; GeoJSON and CSV are encoded chunk by chunk
straight into the response (or file), and GeoPackage, Shapefile and GeoParquet are written
chunk by chunk into a temporary file (pyogrio in append mode, pyarrow's ParquetWriter) that is
then streamed. At any moment the process holds at most one chunk: its rows, their Arrow or
text encoding and the write buffers of GDAL or Parquet, i.e. O(chunk size x feature size)
(about 10-20 MB for the sample's layers) whatever the size of the layer.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from geo import STORAGE_SRID, filtering
from geo.errors import InvalidInput, NotFound
from geo.exports import Column, ExportQuery, read_features
from geo.i18n import _
from geo.layers import Layer
from service import params

# The query parameters an export takes besides property filters.
EXPORT_PARAMETERS = ("bbox", "datetime", "properties", "filter", "filter-lang", "filter-crs")
# Side files of a CSV export (GeoCSV as GDAL reads it): the column types and the CRS.
CSV_SIDE_FILES = ("csvt", "prj")


@dataclass(frozen=True)
class ExportFormat:
    """A file format an export can be written in."""

    suffix: str  # in the file name: streets.<suffix>
    title: str
    media_type: str
    streamed: bool  # rows go straight to the output; else a temporary file is built first


FORMATS: dict[str, ExportFormat] = {
    f.suffix: f
    for f in (
        ExportFormat("gpkg", "GeoPackage", "application/geopackage+sqlite3", False),
        ExportFormat("geojson", "GeoJSON (RFC 7946)", "application/geo+json", True),
        ExportFormat("csv", "CSV with a WKT geometry column", "text/csv; charset=utf-8", True),
        ExportFormat("shp.zip", "ESRI Shapefile, zipped", "application/zip", False),
        ExportFormat("parquet", "GeoParquet 1.0", "application/vnd.apache.parquet", False),
        ExportFormat("fgb", "FlatGeobuf", "application/flatgeobuf", False),
    )
}
# Other file name endings the CLI recognises in --out.
_SUFFIX_ALIASES = {"json": "geojson", "zip": "shp.zip", "geoparquet": "parquet",
                   "flatgeobuf": "fgb"}


# -- what the user asked ------------------------------------------------------------------------


def find_layer(name: str) -> Layer:
    """The published layer called ``name`` or one of its aliases (``road-damage``)."""
    return params.find_layer(name)


def find_format(suffix: str) -> ExportFormat:
    """The export format written with file name ending ``suffix`` (``gpkg``, ``shp.zip``...)."""
    key = suffix.lower().lstrip(".")
    found = FORMATS.get(key) or FORMATS.get(_SUFFIX_ALIASES.get(key, ""))
    if found is None:
        raise NotFound(_("'{suffix}' is not an export format; the formats are: {formats}.",
                         suffix=suffix, formats=", ".join(FORMATS)))
    return found


def split_file_name(name: str) -> tuple[Layer, ExportFormat]:
    """Layer and format of an export's file name, e.g. ``streets.shp.zip``."""
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.lower().endswith("." + suffix):
            return find_layer(name[: -len(suffix) - 1]), FORMATS[suffix]
    layer_name, _dot, suffix = name.partition(".")
    return find_layer(layer_name), find_format(suffix)  # or NotFound naming the formats


def format_of_path(path: Path) -> ExportFormat:
    """The format a file name asks for by its ending (``.gpkg``, ``.shp.zip``, ``.json``...)."""
    name = path.name.lower()
    for suffix in sorted([*FORMATS, *_SUFFIX_ALIASES], key=len, reverse=True):
        if name.endswith("." + suffix):
            return find_format(suffix)
    raise InvalidInput(_("Cannot tell the format from the name '{name}'; give --format "
                         "(one of: {formats}).", name=path.name, formats=", ".join(FORMATS)))


def export_query(
    layer: Layer,
    *,
    bbox: str | None = None,
    datetime_text: str | None = None,
    properties: str | None = None,
    filters: Iterable[tuple[str, str]] = (),
    cql: str | None = None,
    cql_lang: str | None = None,
    cql_crs: str | None = None,
    now: datetime | None = None,
) -> ExportQuery:
    """Validate what a user asked of a layer (as typed) into an :class:`ExportQuery`.

    Raises
    ------
    InvalidInput
        With one sentence naming the parameter and what is wrong with it.
    """
    now = now or datetime.now(UTC)
    # An instant is the state at that time (a date alone: at the end of that day); an interval
    # is the state at its end with, for layers in time, only the observations from its start.
    span = None if datetime_text is None else params.parse_datetime(datetime_text,
                                                                     whole_day=False)
    return ExportQuery(
        layer=layer,
        as_of=now if span is None else span.as_of(now),
        since=None if span is None or span.instant else span.start,
        bbox=None if bbox is None else params.parse_bbox(bbox),
        equals=params.parse_filters(layer, filters),
        filter=None if cql is None else filtering.parse_filter(cql, cql_lang, cql_crs),
        properties=None if properties is None else params.parse_properties(
            layer, properties, as_given=True, skip=("id",)),  # the id always comes
    )


# -- values ---------------------------------------------------------------------------------------


def _iso_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_value(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return _iso_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _text_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, datetime):
        return _iso_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# -- streamed formats: GeoJSON and CSV -------------------------------------------------------------


def _geojson_pieces(query: ExportQuery, columns: tuple[Column, ...],
                    chunks: Iterator[Sequence]) -> Iterator[bytes]:
    # One piece per chunk; the first carries the head, so the first rows are read before
    # anything is sent. "name" is a foreign member (RFC 7946, 6.1) GDAL takes as layer name;
    # the id is repeated among the properties, where GIS software shows it as a field.
    names = [c.name for c in columns[2:]]
    head = '{"type":"FeatureCollection","name":' + json.dumps(query.layer.id) + ',"features":['
    separator = "\n"
    for chunk in chunks:
        parts = [head]
        head = ""
        for row in chunk:
            properties = {"id": row[0]}
            properties.update((n, _json_value(v)) for n, v in zip(names, row[2:], strict=True))
            text = json.dumps(properties, ensure_ascii=False, separators=(",", ":"))
            parts.append(f'{separator}{{"type":"Feature","id":{row[0]},"geometry":{row[1]},'
                         f'"properties":{text}}}')
            separator = ",\n"
        yield "".join(parts).encode()
    yield (head + "\n]}\n").encode()


def _csv_pieces(query: ExportQuery, columns: tuple[Column, ...],
                chunks: Iterator[Sequence]) -> Iterator[bytes]:
    # The geometry column is called WKT, the name GDAL (and so QGIS) reads as geometry.
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["WKT", "id", *(c.name for c in columns[2:])])
    for chunk in chunks:
        writer.writerows([row[1], *(_text_value(v) for v in (row[0], *row[2:]))]
                         for row in chunk)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


# GDAL's .csvt names: one per column, in order (the first is the WKT geometry).
_CSVT_TYPES = {"number": "Real", "string": "String", "date": "Date", "datetime": "DateTime",
               "boolean": "Integer(Boolean)"}


def csvt_text(columns: tuple[Column, ...]) -> str:
    r"""The ``.csvt`` of a CSV export: GDAL's type of each column, WKT first, then id, ...

    Examples
    --------
    >>> csvt_text((Column("id", "integer"), Column("geom", "geometry"),
    ...            Column("lanes", "integer", wide=False), Column("pci", "number")))
    '"WKT","Integer64","Integer","Real"\n'
    """
    def kind(column: Column) -> str:
        if column.type == "integer":
            return "Integer64" if column.wide else "Integer"
        return _CSVT_TYPES.get(column.type, "String")

    ordered = [columns[0], *columns[2:]]
    return ",".join(['"WKT"', *(f'"{kind(c)}"' for c in ordered)]) + "\n"


def prj_text() -> str:
    """The ``.prj`` of a CSV export: EPSG:4326 as the WKT a Shapefile's .prj holds."""
    from pyproj import CRS

    return CRS.from_epsg(STORAGE_SRID).to_wkt("WKT1_ESRI")


def csv_side_file(engine: Engine, query: ExportQuery, suffix: str) -> str:
    """The text of one side file (``csvt`` or ``prj``) of a CSV export of ``query``."""
    if suffix == "prj":
        return prj_text()
    from geo.exports import describe_columns

    with engine.connect() as conn:
        return csvt_text(describe_columns(conn, query))


_PIECES: dict[str, tuple[str, Callable]] = {
    "geojson": ("geojson", _geojson_pieces),
    "csv": ("wkt", _csv_pieces),
}


def _pieces(engine: Engine, query: ExportQuery, fmt: ExportFormat,
            counter: list[int] | None = None) -> Iterator[bytes]:
    geometry, encode = _PIECES[fmt.suffix]
    with engine.connect() as conn:
        columns, chunks = read_features(conn, query, geometry=geometry)
        if counter is not None:
            chunks = _counted(chunks, counter)
        yield from encode(query, columns, chunks)


def _counted(chunks: Iterator[Sequence], counter: list[int]) -> Iterator[Sequence]:
    for rows in chunks:
        counter[0] += len(rows)
        yield rows


def stream_export(engine: Engine, query: ExportQuery, fmt: ExportFormat) -> Iterator[bytes]:
    """The bytes of a GeoJSON or CSV export, produced while the rows are read.

    The query runs and its first chunk is encoded before this returns, so an error in the
    database surfaces here (as an exception) rather than in the middle of a response. The
    connection is released when the iterator is exhausted, closed or collected.

    Memory: one chunk of rows and its encoding at a time (see the module's docstring).
    """
    pieces = _pieces(engine, query, fmt)
    first = next(pieces)
    return itertools.chain((first,), pieces)


# -- file formats: GeoPackage, Shapefile, GeoParquet ---------------------------------------------


def _arrow_type(column: Column, *, datetime_as_text: bool = False):
    import pyarrow as pa

    if column.type == "integer":
        return pa.int64() if column.wide else pa.int32()
    return {
        "number": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "datetime": pa.string() if datetime_as_text else pa.timestamp("us", tz="UTC"),
        "geometry": pa.binary(),
    }.get(column.type, pa.string())


def _arrow_schema(columns: tuple[Column, ...], *, names: dict[str, str] | None = None,
                  for_shapefile: bool = False, metadata: dict | None = None):
    import pyarrow as pa

    names = names or {}
    fields = []
    for column in columns:
        kind = _arrow_type(column, datetime_as_text=for_shapefile)
        # dBASE text fields are fixed width: GDAL's default of 80 would cut longer values.
        width = ({"GDAL:OGR:width": "32" if column.type == "datetime" else "254"}
                 if for_shapefile and kind == pa.string() else None)
        fields.append(pa.field(names.get(column.name, column.name), kind, metadata=width))
    return pa.schema(fields, metadata=metadata)


def _arrow_table(schema, columns: tuple[Column, ...], rows: Sequence, *,
                 datetime_as_text: bool = False):
    import pyarrow as pa

    values: list[Sequence] = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = []
    for column, field, column_values in zip(columns, schema, values, strict=True):
        if datetime_as_text and column.type == "datetime":
            column_values = [None if v is None else _iso_datetime(v) for v in column_values]
        arrays.append(pa.array(column_values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


_OGR_GEOMETRY_TYPES = {"Point": "Point", "LineString": "LineString", "Polygon": "Polygon"}


def _multipart(conn, layer: Layer) -> bool:
    """Whether a line or polygon layer holds a multi-part feature (its type is then multi)."""
    from geo.exports import has_multipart

    return layer.geometry_type in ("LineString", "Polygon") and has_multipart(conn, layer)


def _single_type_features(conn, query: ExportQuery) -> tuple:
    """What a one-type format (GeoPackage, FlatGeobuf) writes, and the geometry type it declares.

    Returns the type, the columns, their chunks (``read_features``) and their Arrow schema.

    A streets or compounds layer holding any multi-part feature is declared MultiLineString or
    MultiPolygon, its single parts made multi, as those formats expect one type per layer.
    """
    geometry_type = _OGR_GEOMETRY_TYPES.get(query.layer.geometry_type, "Unknown")
    encoding = "wkb"
    if _multipart(conn, query.layer):
        geometry_type, encoding = "Multi" + geometry_type, "wkb_multi"
    columns, chunks = read_features(conn, query, geometry=encoding)
    return geometry_type, columns, chunks, _arrow_schema(columns)


def _write_gpkg(conn, query: ExportQuery, directory: Path) -> tuple[Path, int]:
    import pyogrio

    layer = query.layer
    path = directory / f"{layer.id}.gpkg"
    geometry_type, columns, chunks, schema = _single_type_features(conn, query)

    def write(rows: Sequence, *, append: bool) -> None:
        # Options apply when the file and layer are made; GeoPackage 1.2 is what GDAL >= 2.2,
        # QGIS 3 and ArcGIS read without a warning (GDAL 3.9+ would write 1.4).
        options = {} if append else {
            "dataset_options": {"VERSION": "1.2"},
            "layer_options": {"IDENTIFIER": layer.title, "DESCRIPTION": layer.description}}
        pyogrio.write_arrow(
            _arrow_table(schema, columns, rows), path, layer=layer.id, driver="GPKG",
            geometry_name="geom", crs=f"EPSG:{STORAGE_SRID}", geometry_type=geometry_type,
            append=append, **options)

    written = 0
    for rows in chunks:
        write(rows, append=written > 0)
        written += len(rows)
    if not written:  # nothing matched: an empty layer, with its fields
        write([], append=False)
    return path, written


def shapefile_field_names(layer: Layer) -> dict[str, str]:
    """Field names for the .dbf of a layer (at most 10 characters, unique ignoring case).

    The mapping depends only on the layer's declared properties, in their order, so it is the
    same for every export of a layer: a name of 10 characters or fewer is kept; a longer one
    is cut to 10; a cut name already taken becomes its first 8 characters, ``_`` and a number
    (``_1``, ``_2``..., the prefix shortening as the number grows).

    Examples
    --------
    >>> shapefile_field_names(find_layer("parking"))["occupancy_observed_at"]
    'occupanc_1'
    """
    taken: set[str] = set()
    mapping: dict[str, str] = {}
    for name in ("id", *layer.property_names):
        field = name[:10]
        number = 0
        while field.lower() in taken:
            number += 1
            field = f"{name[: 10 - len(str(number)) - 1]}_{number}"
        taken.add(field.lower())
        mapping[name] = field
    return mapping


# WKB type codes (ISO, 2D) -> the part of a mixed layer they go to: one Shapefile per part.
_SHAPE_PARTS = {1: "points", 4: "multipoints", 2: "lines", 5: "lines", 3: "polygons",
                6: "polygons"}
_PART_TYPES = {"points": "Point", "multipoints": "MultiPoint", "lines": "LineString",
               "polygons": "Polygon"}
_LAYER_PARTS = {"Point": "points", "LineString": "lines", "Polygon": "polygons"}


def _wkb_type(wkb: bytes) -> int:
    return int.from_bytes(wkb[1:5], "little" if wkb[0] == 1 else "big") % 1000


def _shapefile_readme(query: ExportQuery, columns: tuple[Column, ...], names: dict[str, str],
                      files: list[str], features: int) -> str:
    layer = query.layer
    descriptions = {p.name: p.description for p in layer.properties}
    kinds = {"integer": "integer", "number": "real", "string": "text (up to 254 bytes)",
             "boolean": "logical", "date": "date",
             "datetime": "text: ISO 8601 date-time in UTC (dBASE has no date-time type)"}
    lines = [
        f"{layer.title} ({layer.id}) from Neighbourhood Twin",
        "",
        layer.description,
        "",
        f"Features:    {features:,}",
        f"State as of: {_iso_datetime(query.as_of)}",
        *([f"Since:       {_iso_datetime(query.since)}"] if query.since else []),
        *([f"Bounding box (west, south, east, north): {query.bbox}"] if query.bbox else []),
        *([f"Filter:      {n} = {' or '.join(map(str, v))}" for n, v in query.equals]),
        "CRS:         EPSG:4326 (WGS 84), longitude/latitude in degrees (.prj)",
        "Encoding:    UTF-8 (.cpg)",
        f"Files:       {', '.join(files) or 'none (no features matched)'}",
    ]
    if layer.geometry_type not in _LAYER_PARTS:
        lines.append("A Shapefile holds one kind of geometry, so this layer's features are split "
                     "by kind into the files above.")
    lines += ["", "Fields: dBASE field names are at most 10 characters; each property maps to "
              "the same field name in every export of this layer.", "",
              f"{'field':<12}{'property':<26}type"]
    for column in columns:
        if column.type == "geometry":
            continue
        note = descriptions.get(column.name, "The feature's id in the twin" if column.name == "id"
                                else "")
        lines.append(f"{names[column.name]:<12}{column.name:<26}{kinds[column.type]}"
                     + (f" - {note}" if note else ""))
    return "\n".join(lines) + "\n"


def _write_shapefile_zip(conn, query: ExportQuery, directory: Path) -> tuple[Path, int]:
    import pyogrio

    layer = query.layer
    parts_dir = directory / "shp"
    parts_dir.mkdir()
    names = shapefile_field_names(layer)
    columns, chunks = read_features(conn, query)
    schema = _arrow_schema(columns, names=names, for_shapefile=True)
    fixed = _LAYER_PARTS.get(layer.geometry_type)
    written = 0
    created: set[str] = set()

    def write(part: str, rows: Sequence) -> None:
        stem = layer.id if fixed else f"{layer.id}_{part}"
        pyogrio.write_arrow(
            _arrow_table(schema, columns, rows, datetime_as_text=True),
            parts_dir / f"{stem}.shp", layer=stem, driver="ESRI Shapefile",
            geometry_name="geom", geometry_type=_PART_TYPES[part], crs=f"EPSG:{STORAGE_SRID}",
            encoding="UTF-8", append=part in created)
        created.add(part)

    for rows in chunks:
        if fixed:
            write(fixed, rows)
        else:
            by_part: dict[str, list] = {}
            for row in rows:
                part = _SHAPE_PARTS.get(_wkb_type(row[1]))
                if part is None:
                    raise InvalidInput(_("Feature {id} of '{layer}' is a geometry "
                                         "collection, which a Shapefile cannot hold; export "
                                         "GeoPackage instead.", id=row[0], layer=layer.id))
                by_part.setdefault(part, []).append(row)
            for part, part_rows in sorted(by_part.items()):
                write(part, part_rows)
        written += len(rows)
    if fixed and not created:  # nothing matched: an empty layer, with its fields
        write(fixed, [])
    files = sorted(p.name for p in parts_dir.iterdir())
    readme = _shapefile_readme(query, columns, names, files, written)
    path = directory / f"{layer.id}.shp.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(parts_dir / name, arcname=name)
        archive.writestr("README.txt", readme)
    shutil.rmtree(parts_dir)
    return path, written


def geoparquet_metadata(layer: Layer, geometry_column: str = "geometry", *,
                        multipart: bool = False) -> dict:
    """The GeoParquet 1.0 ``geo`` metadata of a layer's export: WKB, its types, EPSG:4326.

    ``multipart``: the layer holds multi-part features too (its types list both kinds).
    """
    from pyproj import CRS

    known = _OGR_GEOMETRY_TYPES.get(layer.geometry_type)
    return {
        "version": "1.0.0",
        "primary_column": geometry_column,
        "columns": {geometry_column: {
            "encoding": "WKB",
            "geometry_types": ([known, f"Multi{known}"] if multipart and known != "Point"
                               else [known]) if known else [],
            "crs": CRS.from_epsg(STORAGE_SRID).to_json_dict(),
        }},
    }


def _write_parquet(conn, query: ExportQuery, directory: Path) -> tuple[Path, int]:
    import pyarrow.parquet as pq

    layer = query.layer
    path = directory / f"{layer.id}.parquet"
    columns, chunks = read_features(conn, query)
    names = {"geom": "geometry"}
    schema = _arrow_schema(columns, names=names, metadata={
        "geo": json.dumps(geoparquet_metadata(layer, multipart=_multipart(conn, layer)))})
    written = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for rows in chunks:
            writer.write_table(_arrow_table(schema, columns, rows))
            written += len(rows)
    return path, written


def _write_fgb(conn, query: ExportQuery, directory: Path) -> tuple[Path, int]:
    # FlatGeobuf is written in one pass (its spatial index is built at the end), so the
    # chunks go to GDAL as one Arrow stream rather than as appends.
    import pyarrow as pa
    import pyogrio

    layer = query.layer
    path = directory / f"{layer.id}.fgb"
    geometry_type, columns, chunks, schema = _single_type_features(conn, query)
    written = [0]

    def batches() -> Iterator:
        for rows in chunks:
            written[0] += len(rows)
            yield from _arrow_table(schema, columns, rows).to_batches()

    pyogrio.write_arrow(
        pa.RecordBatchReader.from_batches(schema, batches()), path, layer=layer.id,
        driver="FlatGeobuf", geometry_name="geom", crs=f"EPSG:{STORAGE_SRID}",
        geometry_type=geometry_type,
        layer_options={"TITLE": layer.title, "DESCRIPTION": layer.description})
    return path, written[0]


_FILE_WRITERS: dict[str, Callable] = {
    "gpkg": _write_gpkg,
    "shp.zip": _write_shapefile_zip,
    "parquet": _write_parquet,
    "fgb": _write_fgb,
}


@dataclass(frozen=True)
class ExportFile:
    """An export written to disk."""

    path: Path
    features: int
    side_files: tuple[Path, ...] = ()  # beside path, same stem: a CSV's .csvt and .prj


def write_export(engine: Engine, query: ExportQuery, fmt: ExportFormat,
                 directory: Path) -> ExportFile:
    """Write an export as ``<layer>.<suffix>`` into ``directory`` (which the caller cleans up).

    Memory: one chunk of rows at a time (see the module's docstring); the file grows on disk.
    """
    if fmt.streamed:
        path = directory / f"{query.layer.id}.{fmt.suffix}"
        counter = [0]
        with open(path, "wb") as out:
            for piece in _pieces(engine, query, fmt, counter):
                out.write(piece)
        sides: tuple[Path, ...] = ()
        if fmt.suffix == "csv":
            sides = tuple(path.with_suffix("." + side) for side in CSV_SIDE_FILES)
            for side in sides:
                side.write_text(csv_side_file(engine, query, side.suffix[1:]), encoding="utf-8")
        return ExportFile(path, counter[0], sides)
    with engine.connect() as conn:
        path, features = _FILE_WRITERS[fmt.suffix](conn, query, directory)
    return ExportFile(path, features)


def write_export_to(engine: Engine, query: ExportQuery, fmt: ExportFormat,
                    out: Path) -> ExportFile:
    """Write an export to ``out`` atomically: a temporary name beside it, renamed at the end.

    On any failure nothing is left at ``out`` (an earlier file there is kept as it was). A
    CSV's side files land beside ``out`` with its stem (``streets.csvt``, ``streets.prj``),
    moved in before the CSV itself.
    """
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(_("The directory '{parent}' of --out does not exist.", parent=parent))
    if out.is_dir():
        raise InvalidInput(_("'{out}' is a directory; give the path of a file to write.",
                             out=out))
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as error:
        raise InvalidInput(_("Cannot write in '{parent}': {reason}.", parent=parent,
                             reason=error.strerror)) from None
    try:
        written = write_export(engine, query, fmt, scratch)
        sides = tuple(out.with_suffix(side.suffix) for side in written.side_files)
        for side, target in zip(written.side_files, sides, strict=True):
            os.replace(side, target)
        os.replace(written.path, out)
        return ExportFile(out, written.features, sides)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
