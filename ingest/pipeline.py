"""One ingest run: read -> validate -> load, all of a file's accepted rows or none of them.

A run is recorded in ``ingest_runs`` as 'running' before any data moves, in a transaction of
its own; the data then goes through COPY into staging tables and one upsert, in a single
transaction that also marks the run 'succeeded'. A run whose process dies leaves nothing
but its 'running' record, which the next run marks 'interrupted'.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from rich.progress import Progress
from sqlalchemy.engine import Connection, Engine

from geo import store
from geo.errors import InvalidInput, TwinError
from geo.i18n import _, format_decimal
from geo.layers import canonical_name
from ingest import readers
from ingest.fields import LAYER_FIELDS, LAYER_TABLES, READING_FIELDS, READINGS
from ingest.mapping import Mapping, identity_mapping, load_mapping
from ingest.validate import (
    REJECT_COLUMNS,
    REJECTED,
    REPAIRED,
    VALUE_DROPPED,
    Area,
    Checked,
    Placement,
    ReadingContext,
    melt_wide_readings,
    to_storage_crs,
    validate_layer,
    validate_readings,
)

DEFAULT_CHUNK_ROWS = 50_000


@dataclass
class RunReport:
    """What a run did, as ``twin ingest`` prints it (``--json`` prints these fields)."""

    layer: str
    path: str
    source: str
    status: str
    dry_run: bool
    run_id: int | None = None
    rows_read: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0
    rows_repaired: int = 0
    rows_with_values_dropped: int = 0
    duration_s: float = 0.0
    rejects_path: str | None = None
    checksum_sha256: str = ""

    def as_dict(self) -> dict:
        """The report as plain JSON-ready data."""
        return asdict(self)


def sha256_of(path: Path) -> str:
    """Checksum of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_rejects_path(path: Path, layer_name: str | None = None) -> Path:
    """``<name>.rejects.csv`` next to the input, with the layer's name for multi-layer files.

    ``streets.shp`` -> ``streets.rejects.csv``; layer ``manholes`` of ``city.gpkg`` ->
    ``city.manholes.rejects.csv``.
    """
    stem = f"{path.stem}.{layer_name}" if layer_name else path.stem
    return path.absolute().with_name(f"{stem}.rejects.csv")


class _RejectsFile:
    """Rejected and repaired rows, spooled to a temporary file until the run is settled."""

    def __init__(self) -> None:
        self.handle = tempfile.NamedTemporaryFile(
            "w+", suffix=".csv", delete=False, encoding="utf-8", newline=""
        )
        pd.DataFrame(columns=[*REJECT_COLUMNS, "outcome"]).to_csv(self.handle, index=False)
        self.rejected_rows = 0
        self.repaired_rows = 0
        self.dropped_rows = 0

    def add(self, conn: Connection | None, frame: pd.DataFrame, outcome: str) -> None:
        if frame.empty:
            return
        frame = frame.assign(outcome=outcome)[[*REJECT_COLUMNS, "outcome"]]
        frame.to_csv(self.handle, index=False, header=False, lineterminator="\n")
        if conn is not None:
            store.copy_frame(conn, "stage_rejects", frame)
        rows = frame["row_number"].nunique()
        if outcome == REJECTED:
            self.rejected_rows += rows
        elif outcome == REPAIRED:
            self.repaired_rows += rows
        else:
            self.dropped_rows += rows

    def discard(self) -> None:
        """Drop the spooled rows (the run failed; they describe nothing that happened)."""
        self.handle.close()
        os.unlink(self.handle.name)

    def settle(self, target: Path, *, remove_stale: bool) -> Path | None:
        """Write the rows to ``target`` if there are any; return where they are.

        The rows are copied into ``target`` rather than the file moved there, so a target
        such as /dev/null or a pipe stays what it is. Without rows, an old report at the
        default place is removed, as it would now mislead.
        """
        self.handle.close()
        spool = Path(self.handle.name)
        try:
            if self.rejected_rows + self.repaired_rows + self.dropped_rows == 0:
                if remove_stale and target.is_file() and not target.is_symlink():
                    target.unlink()
                return None
            with open(spool, "rb") as rows, open(target, "wb") as out:
                shutil.copyfileobj(rows, out)
            return target
        except OSError:  # a read-only input directory, say: the rows stay in the spool
            kept = spool.with_name(f"twin-{target.name}")
            os.replace(spool, kept)
            return kept
        finally:
            spool.unlink(missing_ok=True)


def check_arguments(
    layer: str, path: Path, mapping_path: Path | None = None
) -> tuple[str, Mapping | None]:
    """The layer's one name and the mapping, once they and the file are known to be usable.

    What :func:`ingest_file` checks first, before it reads the file; the command calls it
    before it connects, so that a mistyped layer or path is answered at once, without
    starting or migrating a database.

    Raises
    ------
    InvalidInput
        When the layer is unknown, the mapping unusable or for another layer, or the file
        not there.
    """
    layer = canonical_name(layer)
    if layer != READINGS and layer not in LAYER_TABLES:
        raise InvalidInput(_("Unknown layer '{layer}'; choose one of {layers}.", layer=layer,
                             layers=", ".join([*LAYER_TABLES, READINGS])))
    mapping = load_mapping(mapping_path) if mapping_path else None
    if mapping and mapping.layer and canonical_name(mapping.layer) != layer:
        raise InvalidInput(_("Mapping file {path} is for layer '{mapped}', not '{layer}'.",
                             path=mapping_path, mapped=mapping.layer, layer=layer))
    if not Path(path).is_file():
        raise InvalidInput(_("{path} does not exist or is not a file.", path=path))
    return layer, mapping


def ingest_file(
    engine: Engine,
    layer: str,
    path: Path,
    *,
    mapping_path: Path | None = None,
    crs: str | None = None,
    source: str | None = None,
    layer_name: str | None = None,
    dry_run: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    allow_new_area: bool = False,
) -> RunReport:
    """Load one file into one layer of the twin (or readings), atomically.

    Parameters
    ----------
    engine : Engine
        A migrated twin database.
    layer : str
        One of ``streets``, ``manholes``, ``parking``, ``compounds``, ``buildings``,
        ``road_damage``, ``debris_piles`` (or an alias of one, such as ``debris``) or
        ``readings``.
    path : Path
        The file to load.
    mapping_path : Path, optional
        A TOML mapping of the file's columns to the twin's fields.
    crs : str, optional
        The CRS of a file that declares none (``EPSG:N``).
    source : str, optional
        The source system's name, half of each row's natural key; by default the mapping's
        ``source``, else the file's name without extension.
    layer_name : str, optional
        The layer of a multi-layer file (GeoPackage).
    dry_run : bool
        Validate and count, then roll back: nothing is kept, and no run is recorded.
    rejects_path : Path, optional
        Where to write rejected rows; ``<name>.rejects.csv`` next to the input by default.
    progress : Progress, optional
        A rich progress display to advance.
    chunk_rows : int
        Rows read and validated at a time; memory is bounded by it.
    allow_new_area : bool
        Load a file that lies far from the area already in the twin (another town).

    Raises
    ------
    InvalidInput
        When the file, the mapping or an option is unusable, a required field is absent
        from every row, or every row lies far outside the twin's area; nothing is written.
    """
    started = time.monotonic()
    path = Path(path)
    layer, mapping = check_arguments(layer, path, mapping_path)
    source = source or (mapping.source if mapping else None) or path.stem
    report = RunReport(
        layer=layer,
        path=str(path.absolute()),
        source=source,
        status="running",
        dry_run=dry_run,
        checksum_sha256=sha256_of(path),
    )
    if layer == READINGS:
        chunks, total = _reading_chunks(path, mapping, chunk_rows)
    else:
        geometry = mapping.geometry if mapping else None
        info = readers.open_layer(
            path,
            layer_name=layer_name,
            crs=crs or (geometry.crs if geometry else None),
            x_column=geometry.x if geometry else None,
            y_column=geometry.y if geometry else None,
            wkt_column=geometry.wkt if geometry else None,
        )
        chunks, total = readers.read_chunks(info, chunk_rows=chunk_rows), info.feature_count
        spec = LAYER_FIELDS[LAYER_TABLES[layer]]
        file_mapping = mapping or identity_mapping(list(info.fields), (*spec.columns, "source"))
        check_columns(file_mapping, list(info.fields), (*spec.columns, "source"), str(path))
        check_required(file_mapping, spec, list(info.fields), path, layer)
    task = progress.add_task(f"Loading {layer} from {path.name}", total=total) if progress else None

    rejects = _RejectsFile()
    run_id = None
    if not dry_run:
        with engine.begin() as conn:
            store.mark_interrupted_runs(conn)
    with engine.connect() as conn:
        pid = store.backend_pid(conn)
        conn.rollback()
        if not dry_run:
            with engine.begin() as bookkeeping:
                run_id = store.start_run(
                    bookkeeping,
                    layer=layer,
                    source=source,
                    path=report.path,
                    checksum_sha256=report.checksum_sha256,
                    mapping_path=str(mapping_path) if mapping_path else None,
                    pid=pid,
                )
        try:
            with conn.begin() as transaction:
                counts = _load(
                    conn, layer, chunks, mapping, source, rejects, report, progress, task,
                    allow_new_area=allow_new_area,
                )
                report.rows_new, report.rows_updated = counts.rows_new, counts.rows_updated
                report.rows_unchanged = counts.rows_unchanged
                report.rows_rejected = rejects.rejected_rows
                report.rows_repaired = rejects.repaired_rows
                report.rows_with_values_dropped = rejects.dropped_rows
                if dry_run:
                    transaction.rollback()
                else:
                    assert run_id is not None  # recorded above when not a dry run
                    store.save_rejects(conn, run_id)
                    store.finish_run(
                        conn,
                        run_id,
                        status="succeeded",
                        rows_read=report.rows_read,
                        counts=counts,
                        rows_rejected=report.rows_rejected,
                        rows_repaired=report.rows_repaired,
                    )
        except BaseException as error:
            if run_id is not None:
                message = (
                    str(error)
                    if isinstance(error, TwinError)
                    else (f"{type(error).__name__}: {error}")
                )
                with engine.begin() as bookkeeping:
                    store.finish_run(
                        bookkeeping,
                        run_id,
                        status="failed",
                        rows_read=report.rows_read,
                        message=message,
                    )
            rejects.discard()
            raise
    report.run_id = run_id
    report.status = "dry-run" if dry_run else "succeeded"
    settled = rejects.settle(
        rejects_path or default_rejects_path(path, layer_name), remove_stale=rejects_path is None
    )
    report.rejects_path = str(settled) if settled else None
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def _load(conn, layer, chunks, mapping, source, rejects, report, progress, task, *,
          allow_new_area=False):
    store.tune_for_bulk_load(conn)
    store.create_rejects_stage(conn)
    now = datetime.now(UTC)
    if layer == READINGS:
        store.create_readings_stage(conn)
        context = ReadingContext(metrics=store.metric_ranges(conn), assets=store.asset_keys(conn))
        for frame, chunk_mapping in chunks:
            checked = validate_readings(frame, chunk_mapping, context, source=source, now=now)
            rows = frame["row_number"].nunique()  # a wide row holds several readings
            _take(conn, "stage_readings", store.READING_STAGE_COLUMNS, checked, rejects, report,
                  rows, progress, task)
        duplicates = store.take_duplicate_readings(conn)
        if len(duplicates):
            rejects.add(
                conn,
                pd.DataFrame(
                    {
                        "row_number": duplicates["row_number"],
                        "field": "observed_at",
                        "value": "",
                        "reason": "repeats the asset, metric and time of row "
                        + duplicates["first_row"].astype(str),
                    }
                ),
                "rejected",
            )
        return store.upsert_readings_from_stage(conn)

    table = LAYER_TABLES[layer]
    spec = LAYER_FIELDS[table]
    columns = store.layer_stage_columns(spec.columns)
    stage = store.create_layer_stage(conn, table, columns)
    area = Area(None if allow_new_area else store.twin_area(conn))
    seen: dict[str, int] = {}
    place = Placement()
    missing_required: dict[str, int] = {}
    for gdf in chunks:
        gdf = to_storage_crs(gdf)
        chunk_mapping = mapping or identity_mapping(list(gdf.columns), (*spec.columns, "source"))
        check_columns(chunk_mapping, list(gdf.columns), (*spec.columns, "source"), report.path)
        checked = validate_layer(
            gdf, spec, chunk_mapping, source=source, area=area, seen_ids=seen, now=now
        )
        _take(conn, stage, columns, checked, rejects, report, len(gdf), progress, task)
        assert checked.place is not None  # validate_layer always says where the rows lie
        place = Placement(place.placed + checked.place.placed, place.far + checked.place.far,
                          (place.far_sum[0] + checked.place.far_sum[0],
                           place.far_sum[1] + checked.place.far_sum[1]))
        for name, count in checked.rejects[checked.rejects["reason"] == "is missing"][
                "field"].value_counts().items():
            missing_required[name] = missing_required.get(name, 0) + int(count)
    _refuse_whole_file_problems(report, spec, place, area, missing_required)
    return store.upsert_layer_from_stage(conn, table, columns)


def _refuse_whole_file_problems(report: RunReport, spec, place: Placement, area: Area,
                                missing_required: dict[str, int]) -> None:
    """Raise InvalidInput for what is wrong with the file as a whole, not with some rows."""
    path, layer = Path(report.path), report.layer
    for name, count in missing_required.items():
        if report.rows_read and count == report.rows_read:
            raise InvalidInput(_(
                "{path} has no value for {field} in any of its {rows} rows; map another column "
                "to it (run `twin mapping draft {path} --layer {layer}`).", path=path,
                field=name, rows=format_decimal(report.rows_read), layer=layer))
    if area.bounds is not None and place.far and place.far == place.placed:
        lon, lat = place.far_sum[0] / place.far, place.far_sum[1] / place.far
        km = distance_to_area_km(lon, lat, area.bounds)
        raise InvalidInput(_(
            "{path} lies {km} km from the twin's area (its features centre on lat {lat}, lon "
            "{lon}); is it another city? use a new database or --allow-new-area.", path=path,
            km=format_decimal(round(km)), lat=format(lat, ".4f"), lon=format(lon, ".4f")))


EARTH_RADIUS_KM = 6371.0088


def distance_to_area_km(lon: float, lat: float, bounds: tuple[float, float, float, float]) -> float:
    """Great-circle distance from a point to the nearest point of a lon/lat box, in km.

    Examples
    --------
    >>> round(distance_to_area_km(0.0, 1.0, (0.0, -1.0, 1.0, 0.0)))
    111
    """
    west, south, east, north = bounds
    near_lon, near_lat = min(max(lon, west), east), min(max(lat, south), north)
    p1, p2 = math.radians(lat), math.radians(near_lat)
    dp, dl = p2 - p1, math.radians(near_lon - lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _take(
    conn,
    stage: str,
    columns: tuple[str, ...],
    checked: Checked,
    rejects: _RejectsFile,
    report: RunReport,
    rows: int,
    progress: Progress | None,
    task,
) -> None:
    store.copy_frame(conn, stage, checked.accepted[list(columns)])
    rejects.add(conn, checked.rejects, REJECTED)
    rejects.add(conn, checked.repaired, REPAIRED)
    rejects.add(conn, checked.dropped, VALUE_DROPPED)
    report.rows_read += rows
    if progress is not None:
        progress.advance(task, rows)


def check_columns(mapping: Mapping, columns: list[str], fields: tuple[str, ...], path: str) -> None:
    """Refuse a mapping that names a column the file does not have."""
    for field in fields:
        rule = mapping.rule(field)
        if rule is not None and rule.column is not None and rule.column not in columns:
            raise InvalidInput(_(
                "{path} has no column '{column}' for the field '{field}' (it has: {columns}).",
                path=path, column=rule.column, field=field,
                columns=", ".join(c for c in columns if c != "row_number")))


def check_required(mapping: Mapping, spec, columns: list[str], path: Path, layer: str) -> None:
    """Refuse a file in which no column gives a required field (the whole file would fail)."""
    fields = spec.fields if layer != READINGS else READING_FIELDS
    for field in fields:
        if field.required and mapping.rule(field.name) is None:
            shown = [c for c in columns if c not in ("row_number", "geometry")]
            listed = ", ".join(shown[:8]) + (", ..." if len(shown) > 8 else "")
            # Whole sentences: with or without columns, for a layer or for readings.
            if layer != READINGS:
                raise InvalidInput(
                    _("{path} has no column for {field}; the file has {columns}; run `twin "
                      "mapping draft {path} --layer {layer}` and load it with --mapping.",
                      path=path, field=field.name, columns=listed, layer=layer) if listed
                    else _("{path} has no column for {field}; the file has no columns; run "
                           "`twin mapping draft {path} --layer {layer}` and load it with "
                           "--mapping.", path=path, field=field.name, layer=layer))
            raise InvalidInput(
                _("{path} has no column for {field}; the file has {columns}; name its column "
                  "in a mapping file (--mapping).", path=path, field=field.name,
                  columns=listed) if listed
                else _("{path} has no column for {field}; the file has no columns; name its "
                       "column in a mapping file (--mapping).", path=path, field=field.name))


def _reading_chunks(
    path: Path, mapping: Mapping | None, chunk_rows: int
) -> tuple[Iterator[tuple[pd.DataFrame, Mapping]], None]:
    names = tuple(f.name for f in READING_FIELDS) + ("source",)

    def chunks():
        for frame in readers.read_table_chunks(path, chunk_rows=chunk_rows):
            chunk_mapping = mapping or identity_mapping(list(frame.columns), names)
            if chunk_mapping.readings is not None:
                try:
                    frame, chunk_mapping = melt_wide_readings(frame, chunk_mapping)
                except KeyError as missing:
                    raise InvalidInput(_(
                        "{path} has no column {column} that the mapping's [readings.values] "
                        "names.", path=path, column=missing)) from None
            check_columns(chunk_mapping, list(frame.columns), names, str(path))
            check_required(chunk_mapping, None, list(frame.columns), path, READINGS)
            yield frame, chunk_mapping

    return chunks(), None
