"""The "read" step of ingest: open a county's file, whatever its format, and stream its features.

``open_layer`` inspects a file without reading its features and settles its layer and its
coordinate reference system; ``read_chunks`` then yields the features as GeoDataFrames of bounded
size, so memory stays bounded whatever the size of the file. A problem the user can fix raises
``InvalidInput`` (or ``CRSError``) with one sentence naming the file.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely
from pyogrio.errors import DataLayerError, DataSourceError

from geo.errors import CRSError, InvalidInput
from geo.i18n import _, format_decimal

# Extension -> format: GDAL's driver name for the formats GDAL reads.
FORMATS = {
    ".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON",
    ".geojsons": "GeoJSONSeq", ".geojsonl": "GeoJSONSeq", ".ndjson": "GeoJSONSeq",
    ".shp": "ESRI Shapefile", ".zip": "ESRI Shapefile", ".csv": "CSV",
    ".parquet": "Parquet", ".geoparquet": "Parquet",
}  # fmt: skip
X_NAMES = ("lon", "lng", "long", "longitude", "x")
Y_NAMES = ("lat", "latitude", "y")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")
CSV_DEFAULT_CRS = "EPSG:4326"
RESERVED_COLUMNS = frozenset({"geometry", "row_number"})  # what read_chunks puts in every chunk
ZIP_MAX_UNPACKED_BYTES = 2 * 1024**3
ZIP_MAX_RATIO = 200
# Below this size a zip may compress better than 200:1 (a .dbf of blank rows) and harms no one.
ZIP_RATIO_FLOOR_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class LayerInfo:
    """One layer of one file as ``open_layer`` found it; ``x/y/wkt_column`` are for CSV only."""

    path: Path
    layer_name: str | None
    format: str
    crs: pyproj.CRS | None
    geometry_type: str | None
    fields: tuple[str, ...]
    feature_count: int | None
    x_column: str | None = None
    y_column: str | None = None
    wkt_column: str | None = None


def open_layer(
    path: Path | str,
    *,
    layer_name: str | None = None,
    crs: str | None = None,
    x_column: str | None = None,
    y_column: str | None = None,
    wkt_column: str | None = None,
) -> LayerInfo:
    """Inspect a file and settle its layer, its geometry and its coordinate reference system.

    Parameters
    ----------
    path
        A file with one of the extensions in ``FORMATS``. A ``.zip`` must hold exactly one
        shapefile; it is read in place through GDAL's ``/vsizip/``.
    layer_name
        The layer to read; needed only when a GeoPackage has several layers with geometry.
    crs
        The CRS of the data, e.g. ``"EPSG:2227"``, used only when the file declares none. A CSV
        with coordinate columns and no ``crs`` is taken to be in EPSG:4326 (lon/lat).
    x_column, y_column, wkt_column
        CSV only: the columns holding the coordinates or the WKT geometry. By default, columns
        named lon/lng/long/longitude/x and lat/latitude/y (in any case), or else a column named
        wkt/geometry/geom/the_geom.

    Returns
    -------
    LayerInfo
        What ``read_chunks`` needs, with ``crs`` set.

    Raises
    ------
    InvalidInput
        The file is missing, empty, of an unsupported kind, unreadable or ambiguous.
    CRSError
        The file has no CRS and none was given, or it declares one other than ``crs``.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if not path.exists():
        raise InvalidInput(_("{path} does not exist.", path=path))
    if fmt is None:
        supported = ", ".join(FORMATS)
        raise InvalidInput(_("{path} is not of a supported kind; the extensions read are "
                             "{supported}.", path=path, supported=supported))
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidInput(_("{path} is empty (0 bytes).", path=path) if path.is_file()
                           else _("{path} is not a file.", path=path))
    if fmt == "CSV":
        info = _open_csv(path, x_column, y_column, wkt_column)
    elif fmt == "Parquet":
        info = _open_parquet(path)
    else:
        info = _open_gdal(path, fmt, layer_name)
    clashing = sorted(RESERVED_COLUMNS.intersection(info.fields))
    if clashing:
        raise InvalidInput(_("{path} has a column named {column}, which the reader adds.",
                             path=path, column=repr(clashing[0])))
    if layer_name is not None and info.layer_name is None:
        raise InvalidInput(_("{path} has no layers to choose from, yet layer {layer} was named.",
                             path=path, layer=repr(layer_name)))
    default = CSV_DEFAULT_CRS if info.x_column else None
    return replace(info, crs=_settle_crs(path, info.crs, crs, default))


def read_chunks(info: LayerInfo, *, chunk_rows: int = 50_000) -> Iterator[gpd.GeoDataFrame]:
    """Yield the layer's features as GeoDataFrames of at most ``chunk_rows`` rows.

    Each frame holds the layer's fields, the geometry in a column named ``geometry`` in
    ``info.crs``, and an int column ``row_number``: the 1-based position of the feature in the file
    (for CSV, the data record, header excluded), so that validation can report rejects by row.
    Geometry that cannot be parsed (bad WKT or coordinates in a CSV) is None; no row is dropped.
    An empty layer yields nothing. A file found broken part-way raises ``InvalidInput`` then.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    if info.format == "CSV":
        frames = _csv_frames(info, chunk_rows)
    elif info.format == "Parquet":
        frames = _parquet_frames(info, chunk_rows)
    else:
        frames = _gdal_frames(info, chunk_rows)
    first = 1
    for gdf in frames:
        if gdf.empty:
            continue
        gdf = gdf.set_crs(info.crs, allow_override=True).reset_index(drop=True)
        gdf.insert(0, "row_number", np.arange(first, first + len(gdf), dtype=np.int64))
        first += len(gdf)
        yield gdf


TABLE_FORMATS = {".csv": "CSV", ".parquet": "Parquet"}


def read_table_chunks(path: Path | str, *, chunk_rows: int = 50_000) -> Iterator[pd.DataFrame]:
    """Yield a table without geometry (readings: CSV or Parquet) in frames of ``chunk_rows``.

    Each frame starts with ``row_number`` (1-based data row); CSV values stay text, for
    validation to type.
    """
    path = Path(path)
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(_("{path} has an unsupported extension for a table; use {kinds}.",
                             path=path, kinds=" or ".join(TABLE_FORMATS)))
    if not path.is_file():
        raise InvalidInput(_("{path} does not exist.", path=path))
    if path.stat().st_size == 0:
        raise InvalidInput(_("{path} is empty.", path=path))
    first = 1
    for frame in _csv_table(path, chunk_rows) if kind == "CSV" else _parquet_table(path,
                                                                                    chunk_rows):
        if RESERVED_COLUMNS & set(frame.columns):
            raise InvalidInput(_("{path} has a column named row_number or geometry, which "
                                 "twin keeps for itself; rename it.", path=path))
        if frame.empty:
            continue
        frame = frame.reset_index(drop=True)
        frame.insert(0, "row_number", np.arange(first, first + len(frame), dtype=np.int64))
        first += len(frame)
        yield frame
    if first == 1:  # a whole-file problem (exit 2), not an empty load that "succeeded"
        raise InvalidInput(_("{path} has a header but no rows of data; nothing was loaded.",
                             path=path))


def _csv_table(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    _check_csv_width(path)
    options = {"dtype": str, "keep_default_na": False, "na_values": [""], "on_bad_lines": "error"}
    try:
        with pd.read_csv(path, chunksize=chunk_rows, encoding="utf-8-sig", **options) as rows:
            yield from rows
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInput(_csv_problem(path, exc)) from exc


def _parquet_table(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    pyarrow, parquet = _pyarrow(path)
    try:
        for batch in parquet.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    except (pyarrow.ArrowException, OSError) as exc:
        raise _unreadable(path, "Parquet", exc) from exc


def _settle_crs(
    path: Path, declared: pyproj.CRS | None, given: str | None, default: str | None
) -> pyproj.CRS:
    try:
        given_crs = pyproj.CRS.from_user_input(given) if given else None
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(_("{given}, given as the CRS of {path}, is not a known CRS.",
                         given=repr(given), path=path)) from exc
    if declared is None:
        if given_crs is None and default is None:
            raise CRSError(_("{path} has no coordinate reference system; give one with "
                             "--crs EPSG:N.", path=path))
        return given_crs or pyproj.CRS.from_user_input(default)
    # A .prj written by ESRI software seldom equals the EPSG definition to the last digit.
    if (
        given_crs is not None
        and not declared.equals(given_crs, ignore_axis_order=True)
        and (declared.to_epsg() is None or declared.to_epsg() != given_crs.to_epsg())
    ):
        raise CRSError(_("{path} declares its CRS as {declared}, but {given} was given; drop "
                         "--crs or reproject the file.", path=path,
                         declared=_crs_name(declared), given=_crs_name(given_crs)))
    return declared


def _crs_name(crs: pyproj.CRS) -> str:
    return f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else repr(crs.name)


def _unreadable(path: Path, fmt: str, exc: Exception) -> InvalidInput:
    # GDAL's messages run on ("...; It might help to ..."), repeat the path, or quote the SQL
    # that failed; keep only the gist after the sentence of our own.
    reason = str(exc).split(";")[0].split(" failed: ")[-1].replace(f"'{path}' ", "")
    return InvalidInput(_("{path} cannot be read as {format} ({reason}).", path=path,
                          format=fmt, reason=reason.strip().rstrip(".")[:200]))


def _pyarrow(path: Path):
    """Import pyarrow, through which pyogrio streams GDAL's features and GeoParquet is read."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise InvalidInput(_("Reading {path} needs the pyarrow package, which is not installed "
                             "(pip install pyarrow).", path=path)) from exc
    return pyarrow, pyarrow.parquet


def _from_wkb(batch, column: str) -> gpd.GeoDataFrame:
    frame = batch.to_pandas()
    return gpd.GeoDataFrame(
        frame, geometry=gpd.GeoSeries.from_wkb(frame.pop(column), on_invalid="ignore")
    )


# GDAL formats: GeoPackage, GeoJSON, GeoJSON sequence, shapefile.


def _open_gdal(path: Path, fmt: str, layer_name: str | None) -> LayerInfo:
    source = _gdal_source(path)
    try:
        layers = [(str(name), kind) for name, kind in pyogrio.list_layers(source)]
        layer = _choose_layer(path, layers, layer_name)
        meta = pyogrio.read_info(source, layer=layer)
    except (DataSourceError, DataLayerError) as exc:
        raise _unreadable(path, fmt, exc) from exc
    if not meta["geometry_type"]:
        raise InvalidInput(_("{path} has no geometry in layer {layer}.", path=path,
                             layer=repr(layer)))
    return LayerInfo(
        path=path,
        layer_name=layer,
        format=meta["driver"],
        crs=pyproj.CRS.from_user_input(meta["crs"]) if meta["crs"] else None,
        geometry_type=meta["geometry_type"],
        fields=tuple(meta["fields"]),
        feature_count=meta["features"] if meta["features"] >= 0 else None,
    )


def _choose_layer(path: Path, layers: list[tuple[str, str | None]], wanted: str | None) -> str:
    names = [name for name, _ in layers]
    if wanted is not None and wanted not in names:
        raise InvalidInput(_("{path} has no layer {layer}; its layers are {layers}.", path=path,
                             layer=repr(wanted), layers=", ".join(names)))
    # QGIS keeps its styles in a GeoPackage as a table without geometry: not a real choice.
    spatial = [name for name, kind in layers if kind]
    if wanted is None and len(names) > 1 and len(spatial) != 1:
        raise InvalidInput(_("{path} has {count} layers; name one of {layers}.", path=path,
                             count=len(names), layers=", ".join(names)))
    if not names:
        raise InvalidInput(_("{path} has no layers.", path=path))
    return wanted or (names[0] if len(names) == 1 else spatial[0])


def _gdal_source(path: Path) -> str:
    return _shapefile_in_zip(path) if path.suffix.lower() == ".zip" else str(path)


def _shapefile_in_zip(path: Path) -> str:
    """Return the /vsizip/ path of the one shapefile in a zip that is not a zip bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(_("{path} is not a readable zip archive ({error}).", path=path,
                             error=exc)) from exc
    # Judge by what the central directory declares, before GDAL inflates a single byte.
    unpacked = sum(member.file_size for member in members)
    packed = max(sum(member.compress_size for member in members), 1)
    too_dense = unpacked > ZIP_RATIO_FLOOR_BYTES and unpacked > ZIP_MAX_RATIO * packed
    if unpacked > ZIP_MAX_UNPACKED_BYTES or too_dense:
        raise InvalidInput(_(
            "{path} would expand from {packed} to {unpacked} bytes, beyond the limits of "
            "{limit} bytes and {ratio}:1, so it is refused as a possible zip bomb.",
            path=path, packed=format_decimal(packed), unpacked=format_decimal(unpacked),
            limit=format_decimal(ZIP_MAX_UNPACKED_BYTES), ratio=ZIP_MAX_RATIO))
    # macOS adds __MACOSX/._name.shp resource forks, which are not shapefiles.
    names = [m.filename for m in members if not m.is_dir() and "__MACOSX/" not in m.filename]
    shapefiles = [name for name in names if name.lower().endswith(".shp")]
    if not shapefiles:
        raise InvalidInput(_("{path} must hold one .shp file but holds 0.", path=path))
    if len(shapefiles) > 1:
        raise InvalidInput(_("{path} must hold one .shp file but holds {count}: {names}.",
                             path=path, count=len(shapefiles), names=", ".join(shapefiles)))
    lowered = {name.lower() for name in names}
    for sidecar in (".shx", ".dbf"):
        if shapefiles[0][:-4].lower() + sidecar not in lowered:
            raise InvalidInput(_("{path} holds {shapefile} without its {sidecar} file.",
                                 path=path, shapefile=shapefiles[0], sidecar=sidecar))
    return f"/vsizip/{path.resolve()}/{shapefiles[0]}"


def _gdal_frames(info: LayerInfo, chunk_rows: int) -> Iterator[gpd.GeoDataFrame]:
    _pyarrow(info.path)
    try:
        # Arrow batches stream the layer; paging with skip_features would rescan a GeoJSON
        # sequence from its start for every chunk.
        with pyogrio.open_arrow(
            _gdal_source(info.path), layer=info.layer_name, batch_size=chunk_rows, use_pyarrow=True
        ) as (meta, batches):
            for batch in batches:
                yield _from_wkb(batch, meta["geometry_name"] or "wkb_geometry")
    except (DataSourceError, DataLayerError) as exc:
        raise _unreadable(info.path, info.format, exc) from exc


# CSV: pandas reads it in chunks; shapely builds the geometry.

# A table the twin loads has a few dozen columns; a header far wider is a wrong file (or an
# attack), and parsing a million columns takes minutes before any check could speak.
MAX_CSV_COLUMNS = 1_000
MAX_CSV_HEADER_BYTES = 256 * 1024


def _check_csv_width(path: Path) -> None:
    """Refuse a CSV whose header is far wider than any layer's, reading only its start."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_CSV_HEADER_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(_("{path} cannot be read: {error}.", path=path,
                             error=exc.strerror or exc)) from None
    line, newline, _rest = head.partition(b"\n")
    # A comma inside a quoted name would be counted twice: close enough for a limit this wide.
    columns = line.count(b",") + 1
    if columns > MAX_CSV_COLUMNS or (not newline and len(head) > MAX_CSV_HEADER_BYTES):
        if newline:
            raise InvalidInput(_("{path} has {columns} columns; a file for the twin may have at "
                                 "most {limit} columns. Is it the right file?", path=path,
                                 columns=format_decimal(columns),
                                 limit=format_decimal(MAX_CSV_COLUMNS)))
        raise InvalidInput(_("{path} has a first line longer than {kb} KB ({columns} columns in "
                             "it so far); a file for the twin may have at most {limit} columns. "
                             "Is it the right file?", path=path, kb=MAX_CSV_HEADER_BYTES // 1024,
                             columns=format_decimal(columns),
                             limit=format_decimal(MAX_CSV_COLUMNS)))


def _open_csv(
    path: Path, x_column: str | None, y_column: str | None, wkt_column: str | None
) -> LayerInfo:
    _check_csv_width(path)
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInput(_csv_problem(path, exc)) from exc
    if (x_column is None) != (y_column is None):
        raise InvalidInput(_("{path} needs both an x and a y column to be named, or neither.",
                             path=path))
    if x_column is None and wkt_column is None:
        x_column, y_column = _find_column(columns, X_NAMES), _find_column(columns, Y_NAMES)
        if x_column is None or y_column is None:
            x_column = y_column = None
            wkt_column = _find_column(columns, WKT_NAMES)
    if wkt_column is not None:
        x_column = y_column = None
    used = [name for name in (x_column, y_column, wkt_column) if name is not None]
    if not used:
        raise InvalidInput(_("{path} has no lon/lat or WKT geometry column, only {columns}; "
                             "name the columns to use.", path=path, columns=", ".join(columns)))
    for name in used:
        if name not in columns:
            raise InvalidInput(_("{path} has no column {column}, only {columns}.", path=path,
                                 column=repr(name), columns=", ".join(columns)))
    return LayerInfo(
        path=path,
        layer_name=None,
        format="CSV",
        crs=None,
        geometry_type="Point" if x_column else None,
        fields=tuple(name for name in columns if name not in used),
        feature_count=None,
        x_column=x_column,
        y_column=y_column,
        wkt_column=wkt_column,
    )


def _find_column(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    by_lower = {name.lower(): name for name in reversed(columns)}
    return next((by_lower[name] for name in candidates if name in by_lower), None)


def _csv_frames(info: LayerInfo, chunk_rows: int) -> Iterator[gpd.GeoDataFrame]:
    used = [name for name in (info.x_column, info.y_column, info.wkt_column) if name]
    # Every value is read as text: typing is validation's job, and types inferred chunk by
    # chunk would give one column different dtypes in different chunks.
    options = {"dtype": str, "keep_default_na": False, "na_values": [""], "on_bad_lines": "error"}
    try:
        with pd.read_csv(info.path, chunksize=chunk_rows, encoding="utf-8-sig", **options) as rows:
            for frame in rows:
                yield gpd.GeoDataFrame(
                    frame.drop(columns=used), geometry=_csv_geometry(info, frame)
                )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidInput(_csv_problem(info.path, exc)) from exc


def _csv_geometry(info: LayerInfo, frame: pd.DataFrame) -> np.ndarray:
    if info.wkt_column is not None:
        text = frame[info.wkt_column].to_numpy(object)
        text[frame[info.wkt_column].isna().to_numpy()] = None
        return shapely.from_wkt(text, on_invalid="ignore")
    x = pd.to_numeric(frame[info.x_column], errors="coerce").to_numpy(float)
    y = pd.to_numeric(frame[info.y_column], errors="coerce").to_numpy(float)
    usable = np.isfinite(x) & np.isfinite(y)
    geometry = np.full(len(frame), None, dtype=object)
    geometry[usable] = shapely.points(x[usable], y[usable])
    return geometry


def _csv_problem(path: Path, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return _("{path} is not UTF-8 text (byte {byte}); save it as UTF-8 CSV.", path=path,
                 byte=format_decimal(exc.start))
    if isinstance(exc, pd.errors.EmptyDataError):
        return _("{path} has no header row.", path=path)
    # pandas counts records, not lines: "row N" counts from 0 at the header, "line N" from 1.
    message = str(exc)
    if match := re.search(r"EOF inside string starting at row (\d+)", message):
        return _("{path} has a quoted field opened at row {row} that is never closed.",
                 path=path, row=match[1])
    if match := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message):
        row = int(match[2]) - 1
        return _("{path} has {fields} fields at row {row} where the header has {expected}.",
                 path=path, fields=match[3], row=row, expected=match[1])
    return _("{path} is not valid CSV ({reason}).", path=path,
             reason=message.strip().splitlines()[-1][:200])


# GeoParquet: pyarrow reads it in batches; geometry is WKB, the CRS is in the 'geo' metadata.


def _open_parquet(path: Path) -> LayerInfo:
    pyarrow, parquet = _pyarrow(path)
    try:
        table = parquet.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise _unreadable(path, "Parquet", exc) from exc
    column, spec = _geo_column(path, table)
    if spec.get("encoding", "WKB").upper() != "WKB":
        raise InvalidInput(_("{path} stores geometry as {encoding}; only WKB is read.",
                             path=path, encoding=spec["encoding"]))
    # In GeoParquet, a missing "crs" means OGC:CRS84, and an explicit null an unknown CRS.
    declared = spec.get("crs", "OGC:CRS84")
    declared = json.dumps(declared) if isinstance(declared, dict) else declared  # PROJJSON
    try:
        crs = pyproj.CRS.from_user_input(declared) if declared else None
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(_("{path} declares a CRS that pyproj cannot read ({error}).", path=path,
                         error=exc)) from exc
    kinds = spec.get("geometry_types") or []
    return LayerInfo(
        path=path,
        layer_name=None,
        format="Parquet",
        crs=crs,
        geometry_type=kinds[0] if len(kinds) == 1 else None,
        fields=tuple(
            name
            for name in table.schema_arrow.names
            if name != column and not name.startswith("__index_level_")
        ),
        feature_count=table.metadata.num_rows,
    )


def _geo_column(path: Path, table) -> tuple[str, dict]:
    raw = (table.schema_arrow.metadata or {}).get(b"geo")
    if raw is None:
        raise InvalidInput(_("{path} is a Parquet file without GeoParquet ('geo') metadata.",
                             path=path))
    try:
        geo = json.loads(raw)
        return geo["primary_column"], geo["columns"][geo["primary_column"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(_("{path} has GeoParquet metadata that cannot be read ({error}).",
                             path=path, error=exc)) from exc


def _parquet_frames(info: LayerInfo, chunk_rows: int) -> Iterator[gpd.GeoDataFrame]:
    pyarrow, parquet = _pyarrow(info.path)
    try:
        table = parquet.ParquetFile(info.path)
        column, _spec = _geo_column(info.path, table)
        for batch in table.iter_batches(batch_size=chunk_rows, columns=[*info.fields, column]):
            yield _from_wkb(batch, column)
    except (pyarrow.ArrowException, OSError) as exc:
        raise _unreadable(info.path, "Parquet", exc) from exc
