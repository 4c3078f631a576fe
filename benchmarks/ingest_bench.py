"""Ingest speed of the twin against plain PostgreSQL COPY and ogr2ogr, side by side.

    .venv/bin/python benchmarks/ingest_bench.py            # the full run (about 10-15 minutes)
    .venv/bin/python benchmarks/ingest_bench.py --quick    # tiny sizes, a smoke check

Everything runs against one embedded PostGIS cluster (``geo.cluster.EmbeddedCluster``) that
this script starts in a temporary TWIN_HOME and destroys at the end. Every timed run gets a
fresh database (or, for the COPY peer, a fresh bare table) and starts after a CHECKPOINT.

1. readings: ``ingest_file(engine, "readings", csv)`` (validation on, manholes loaded first,
   not timed) vs three plain COPYs, each streamed through psycopg's ``cursor.copy``:
   - the fair peer (the target's): COPY into the twin's own ``readings`` table, as migrated
     (monthly partitions, primary key (metric_id, asset_id, observed_at), BRIN on observed_at),
     of the same rows with their asset and metric already resolved to ids (resolved untimed,
     partitions made untimed: COPY cannot look ids up, so this is all PostgreSQL has to do);
   - the same CSV file into a table keyed like ``readings`` on the file's own columns: primary
     key (metric, asset_layer, asset_external_id, observed_at) and BRIN on observed_at;
   - for reference, the same CSV into a bare table without indexes (the peer of the first runs),
     and with ``psql \\copy``.
2. streets: ``ingest_file(engine, "streets", gpkg, ...)`` vs ``ogr2ogr -f PostgreSQL`` of the
   same GeoPackage, reprojected to EPSG:4326 like the twin, with default options and with
   ``--config PG_USE_COPY YES``.
3. peak memory of ``twin ingest readings FILE --json`` on 5,000,000 readings, under
   ``/usr/bin/time -v`` (the twin process), with the server backend's peak sampled from /proc.

Input data is made by this script (seeded, so identical between runs) and cached under
``--data-dir`` (default /tmp/twin-bench-data); results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyogrio
import pyogrio.raw
import shapely
import sqlalchemy as sa
from pyproj import Transformer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geo import migrate  # noqa: E402
from geo.cluster import EmbeddedCluster  # noqa: E402
from geo.database import create_engine  # noqa: E402
from ingest import pipeline  # noqa: E402
from ingest.pipeline import ingest_file  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
TWIN_BIN = REPO / ".venv" / "bin" / "twin"
CRS = "EPSG:4545"  # CGCS2000 / 3-degree Gauss-Kruger CM 108E, as the sample's GeoPackage
CENTRE_LON, CENTRE_LAT = 108.54, 32.52
SEED = 20261130

FULL = {
    "readings": 1_000_000,
    "streets": 100_000,
    "memory_readings": 5_000_000,
    "manholes": 2_000,
    "repeats": 3,
}
QUICK = {
    "readings": 20_000,
    "streets": 2_000,
    "memory_readings": 50_000,
    "manholes": 200,
    "repeats": 3,
}

# Metrics the migration declares, with a plausible generator of values inside their range.
READING_METRICS = ("tilt_deg", "water_level_pct", "battery_pct", "o2_pct", "lel_pct")
READINGS_END_UTC = np.datetime64("2026-10-01T00:00:00", "s")
READINGS_SPAN_DAYS = 180

COPY_TABLE_DDL = (
    "CREATE TABLE readings_copy (asset_layer text, asset_external_id text, metric text,"
    " observed_at timestamptz, value double precision, source text)"
)
COPY_SQL = (
    "COPY readings_copy (asset_layer, asset_external_id, metric, observed_at, value, source)"
    " FROM STDIN (FORMAT csv, HEADER true)"
)
# The same CSV into a table with the same kind of key and indexes as `readings`, on the file's
# own columns (a plain COPY cannot resolve them to ids): the key in readings' order (metric,
# asset, time) and BRIN on the time.
KEYED_TABLE_DDL = (
    "CREATE TABLE readings_keyed (asset_layer text NOT NULL, asset_external_id text NOT NULL,"
    " metric text NOT NULL, observed_at timestamptz NOT NULL, value double precision NOT NULL,"
    " source text NOT NULL,"
    " PRIMARY KEY (metric, asset_layer, asset_external_id, observed_at));"
    " CREATE INDEX ix_readings_keyed_observed_at ON readings_keyed USING brin (observed_at)"
)
KEYED_COPY_SQL = COPY_SQL.replace("readings_copy", "readings_keyed")
RESOLVED_COPY_SQL = (
    "COPY readings (metric_id, asset_id, observed_at, value, source) FROM STDIN (FORMAT csv)"
)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def _centre_xy() -> tuple[float, float]:
    return Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(CENTRE_LON, CENTRE_LAT)


def make_manholes(path: Path, count: int) -> None:
    """``count`` manhole points in EPSG:4545 within ~3 km of the centre."""
    if path.exists():
        return
    rng = np.random.default_rng([SEED, 1])
    cx, cy = _centre_xy()
    geom = shapely.points(
        cx + rng.uniform(-3000, 3000, count), cy + rng.uniform(-3000, 3000, count)
    )
    fields = {
        "external_id": np.array([f"MH-{i:06d}" for i in range(1, count + 1)], dtype=object),
        "kind": rng.choice(["sewer", "storm", "water", "power", "telecom", "gas"], count).astype(
            object
        ),
        "depth_m": np.round(rng.uniform(0.8, 6.0, count), 2),
        "cover_state": rng.choice(["ok", "ok", "ok", "damaged"], count).astype(object),
        "sensor_id": np.array([f"S{i:06d}" for i in range(1, count + 1)], dtype=object),
    }
    _write_gpkg(path, "manholes", geom, fields, "Point")


def make_streets(path: Path, count: int) -> None:
    """``count`` random-walk LineStrings (4-12 vertices, 15-60 m steps) in EPSG:4545.

    Made here with numpy + shapely rather than the sample generator, which at the scale needed
    for 100,000 streets (~240) would also simulate years of readings and observations.
    """
    if path.exists():
        return
    rng = np.random.default_rng([SEED, 2])
    cx, cy = _centre_xy()
    vertices = rng.integers(4, 13, count)
    total = int(vertices.sum())
    line = np.repeat(np.arange(count), vertices)
    first = np.concatenate([[0], np.cumsum(vertices)[:-1]])
    heading = rng.uniform(0, 2 * np.pi, count)[line] + np.cumsum(rng.normal(0, 0.35, total))
    step = rng.uniform(15, 60, total)
    dx, dy = step * np.cos(heading), step * np.sin(heading)
    dx[first], dy[first] = 0.0, 0.0
    # cumulative sums restarted at each line's first vertex
    x = np.cumsum(dx)
    y = np.cumsum(dy)
    x -= np.repeat(x[first], vertices)
    y -= np.repeat(y[first], vertices)
    x += np.repeat(cx + rng.uniform(-12_000, 12_000, count), vertices)
    y += np.repeat(cy + rng.uniform(-8_000, 8_000, count), vertices)
    geom = shapely.linestrings(np.column_stack([x, y]), indices=line)
    classes = np.array(["primary", "secondary", "tertiary", "residential", "service"], dtype=object)
    road_class = rng.choice(classes, count, p=[0.05, 0.1, 0.15, 0.55, 0.15])
    lanes_by_class = {"primary": 4, "secondary": 2, "tertiary": 2, "residential": 2, "service": 1}
    days = rng.integers(0, 15 * 365, count)
    fields = {
        "external_id": np.array([f"ST-{i:07d}" for i in range(1, count + 1)], dtype=object),
        "road_class": road_class,
        "surface": rng.choice(["asphalt", "concrete", "paving", "gravel"], count).astype(object),
        "width_m": np.round(rng.uniform(3.0, 18.0, count), 1),
        "lanes": np.array([lanes_by_class[c] for c in road_class], dtype=np.int32),
        "resurfaced_on": (np.datetime64("2011-01-01") + days).astype("datetime64[D]"),
    }
    _write_gpkg(path, "streets", geom, fields, "LineString")


def _write_gpkg(path: Path, layer: str, geom, fields: dict, geometry_type: str) -> None:
    tmp = path.with_suffix(".tmp.gpkg")
    tmp.unlink(missing_ok=True)
    pyogrio.raw.write(
        str(tmp),
        shapely.to_wkb(geom),
        list(fields.values()),
        list(fields.keys()),
        layer=layer,
        driver="GPKG",
        crs=CRS,
        encoding="UTF-8",
        geometry_type=geometry_type,
        promote_to_multi=False,
    )
    tmp.rename(path)


def make_readings(path: Path, rows: int, assets: int) -> None:
    """Long-form sensor readings of ``assets`` manholes, one row per (time, manhole, metric).

    Each manhole reports all five metrics at once, at a regular interval staggered per manhole,
    over the 180 days before 2026-10-01; times are written in local time with the +08:00 offset.
    Rows are in the order a feed would deliver them (time, then manhole, then metric).
    """
    if path.exists():
        return
    rng = np.random.default_rng([SEED, 3, rows])
    metrics = len(READING_METRICS)
    steps = -(-rows // (assets * metrics))
    interval = READINGS_SPAN_DAYS * 86_400 // steps  # seconds
    start = READINGS_END_UTC - np.timedelta64(READINGS_SPAN_DAYS * 86_400, "s")
    offsets = rng.integers(0, interval, assets)  # stagger each manhole
    # one timestamp per (step, asset), written once and repeated for the five metrics
    utc = start + (np.arange(steps)[:, None] * interval + offsets[None, :]).astype("timedelta64[s]")
    local = np.datetime_as_string(utc.ravel() + np.timedelta64(8 * 3600, "s"), unit="s")
    stamps = pd.Series(local, dtype=object) + "+08:00"
    n = steps * assets * metrics
    which = np.arange(n)
    asset = (which // metrics) % assets
    stamp = which // metrics
    metric = which % metrics
    names = np.array(READING_METRICS, dtype=object)
    value = np.empty(n)
    lo_hi = {
        "tilt_deg": (0, 8),
        "water_level_pct": (0, 95),
        "battery_pct": (5, 100),
        "o2_pct": (19.5, 21.5),
        "lel_pct": (0, 6),
    }
    for m, name in enumerate(READING_METRICS):
        lo, hi = lo_hi[name]
        value[metric == m] = rng.uniform(lo, hi, int((metric == m).sum()))
    frame = pd.DataFrame(
        {
            "asset_layer": "manholes",
            "asset_external_id": pd.Series(
                np.array([f"MH-{i:06d}" for i in range(1, assets + 1)], dtype=object)[asset]
            ),
            "metric": names[metric],
            "observed_at": stamps.to_numpy()[stamp],
            "value": value,
            "source": "sensor",
        }
    ).iloc[:rows]
    tmp = path.with_suffix(".tmp.csv")
    frame.to_csv(tmp, index=False, float_format="%.2f", lineterminator="\n")
    tmp.rename(path)


# ---------------------------------------------------------------------------------------------
# the cluster and its databases
# ---------------------------------------------------------------------------------------------


class Server:
    """Fresh PostGIS databases on the embedded cluster, all dropped at the end."""

    def __init__(self, cluster: EmbeddedCluster) -> None:
        self.cluster = cluster
        self.socket = str(cluster.socket_dir)
        self.admin = create_engine(
            cluster.url.set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        self.made: list[str] = []

    def fresh(self, label: str, *, twin: bool) -> str:
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        self.made.append(name)
        engine = create_engine(self.url(name))
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION postgis"))
        if twin:
            migrate.upgrade(engine)
        engine.dispose()
        return name

    def url(self, name: str):
        return self.cluster.url.set(database=name)

    def libpq(self, name: str) -> str:
        return f"host={self.socket} dbname={name} user=twin"

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        self.made.remove(name)

    def checkpoint(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text("CHECKPOINT"))

    def close(self) -> None:
        for name in list(self.made):
            self.drop(name)
        self.admin.dispose()


def twin_fingerprint() -> dict:
    """Which state of the (concurrently edited) tree was measured: schema head and file hashes."""
    import hashlib

    files = [
        "ingest/pipeline.py",
        "ingest/validate.py",
        "ingest/readers.py",
        "geo/store.py",
        *sorted(str(p.relative_to(REPO)) for p in (REPO / "geo/migrations/versions").glob("0*.py")),
        "geo/migrations/ddl.py",  # the revisions build their columns and triggers with it
    ]
    return {
        "schema_head": migrate.head_revision(),
        "sha256_12": {f: hashlib.sha256((REPO / f).read_bytes()).hexdigest()[:12] for f in files},
    }


def versions(server: Server) -> dict:
    with server.admin.connect() as conn:
        pg = conn.execute(sa.text("SELECT version()")).scalar_one()
        settings = {
            name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
            for name in (
                "shared_buffers",
                "work_mem",
                "maintenance_work_mem",
                "temp_buffers",
                "fsync",
                "synchronous_commit",
                "max_wal_size",
            )
        }
    name = server.fresh("versions", twin=False)
    with create_engine(server.url(name)).connect() as conn:
        postgis = conn.execute(sa.text("SELECT postgis_full_version()")).scalar_one()
    server.drop(name)
    ogr = subprocess.run(["ogr2ogr", "--version"], capture_output=True, text=True).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "python": sys.version.split()[0],
        "postgresql": pg,
        "postgis": postgis,
        "ogr2ogr": ogr,
        "pyogrio_gdal": pyogrio.__gdal_version_string__,
        "pyogrio": pyogrio.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "shapely": shapely.__version__,
        "psycopg": psycopg.__version__,
        "sqlalchemy": sa.__version__,
        "cpu_count": os.cpu_count(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu_model": cpu,
        "memory": subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip(),
        "kernel": platform.release(),
        "server_settings": settings,
    }


# ---------------------------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------------------------


def twin_database_with_manholes(server: Server, manholes: Path) -> str:
    name = server.fresh("twin", twin=True)
    engine = create_engine(server.url(name))
    report = ingest_file(
        engine,
        "manholes",
        manholes,
        layer_name="manholes",
        source="city",
        rejects_path=Path(os.devnull),
    )
    assert report.rows_new > 0 and report.rows_rejected == 0, report
    engine.dispose()
    return name


def _timed_ingest(server: Server, name: str, table: str, prepare: list[str] | None, load):
    """``load(engine)`` on database ``name`` timed after a CHECKPOINT (``prepare`` run first):
    its report, the seconds and the rows then in ``table``; the database is dropped after."""
    engine = create_engine(server.url(name))
    _prepare(engine, prepare)
    server.checkpoint()
    started = time.perf_counter()
    report = load(engine)
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        stored = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    server.drop(name)
    return report, seconds, stored


def _result(seconds: float, stored: int, rows: int, **extra) -> dict:
    """One timed run's figures, once its row count is checked."""
    assert stored == rows, stored
    return {"seconds": seconds, "rows": stored, "rows_per_s": rows / seconds, **extra}


def _timed_copy(server: Server, conn, sql: str, path: Path, table: str) -> tuple[float, int]:
    """Seconds to COPY the file through ``sql`` after a CHECKPOINT, and the rows in ``table``."""
    server.checkpoint()
    started = time.perf_counter()
    _copy_file(conn, sql, path)
    conn.commit()
    seconds = time.perf_counter() - started
    return seconds, conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def run_twin_readings(
    server: Server, manholes: Path, csv: Path, rows: int, prepare: list[str] | None = None
) -> dict:
    report, seconds, stored = _timed_ingest(
        server,
        twin_database_with_manholes(server, manholes),
        "readings",
        prepare,
        lambda engine: ingest_file(engine, "readings", csv, rejects_path=Path(os.devnull)),
    )
    assert report.rows_new == rows and stored == rows and report.rows_rejected == 0, report
    return _result(seconds, stored, rows, report_duration_s=report.duration_s)


def _prepare(engine, statements: list[str] | None) -> None:
    if statements:
        with engine.begin() as conn:
            for sql in statements:
                conn.execute(sa.text(sql))


def _run_table_copy(
    server: Server, label: str, ddl: str, sql: str, table: str, csv: Path, rows: int
) -> dict:
    """COPY of the CSV into ``table``, made by ``ddl`` in a fresh database without the twin."""
    name = server.fresh(label, twin=False)
    with psycopg.connect(server.libpq(name)) as conn:
        conn.execute(ddl)
        conn.commit()
        seconds, stored = _timed_copy(server, conn, sql, csv, table)
    server.drop(name)
    return _result(seconds, stored, rows)


def run_copy_readings(server: Server, csv: Path, rows: int) -> dict:
    """psycopg ``cursor.copy`` streaming the CSV file in 1 MiB blocks into a bare table."""
    return _run_table_copy(server, "copy", COPY_TABLE_DDL, COPY_SQL, "readings_copy", csv, rows)


def _copy_file(conn, sql: str, path: Path) -> None:
    with conn.cursor() as cur, open(path, "rb") as handle:
        with cur.copy(sql) as copy:
            while block := handle.read(1 << 20):
                copy.write(block)


def run_keyed_copy_readings(server: Server, csv: Path, rows: int) -> dict:
    """The same CSV into ``readings_keyed``: a primary key and BRIN like ``readings``."""
    return _run_table_copy(
        server, "keyed", KEYED_TABLE_DDL, KEYED_COPY_SQL, "readings_keyed", csv, rows
    )


_RESOLVED: dict = {}  # the resolved CSV, made once for a given id assignment


def _resolved_readings(conn, csv: Path) -> tuple[Path, pd.Timestamp, pd.Timestamp]:
    """The CSV's rows as (metric_id, asset_id, observed_at, value, source), ids as this
    database assigned them; made once and reused while the ids come out the same (they do:
    each database is migrated and loaded with the same manholes in the same order)."""
    from geo import store

    assets = store.asset_keys(conn)
    metrics = store.metric_ranges(conn)
    ids = dict(zip(assets["external_id"], assets["id"], strict=True))
    key = (tuple(sorted(ids.items())), tuple(sorted(metrics["id"].items())))
    if _RESOLVED.get("key") != key:
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        resolved = pd.DataFrame(
            {
                "metric_id": frame["metric"].map(metrics["id"]),
                "asset_id": frame["asset_external_id"].map(ids),
                "observed_at": frame["observed_at"],
                "value": frame["value"],
                "source": frame["source"],
            }
        )
        assert resolved[["metric_id", "asset_id"]].notna().all().all()
        times = pd.to_datetime(frame["observed_at"], format="ISO8601", utc=True)
        path = csv.with_name(csv.stem + ".resolved.csv")
        resolved.to_csv(path, index=False, header=False)
        _RESOLVED.update(key=key, path=path, first=times.min(), last=times.max())
    return _RESOLVED["path"], _RESOLVED["first"], _RESOLVED["last"]


def run_readings_table_copy(server: Server, manholes: Path, csv: Path, rows: int) -> dict:
    """The fair peer: COPY into the twin's own ``readings`` table as migrated (partitions,
    primary key, BRIN), of the rows already resolved to ids; the database, its manholes, the
    resolved file and the month partitions are made before the clock starts."""
    from geo import store

    name = twin_database_with_manholes(server, manholes)
    engine = create_engine(server.url(name))
    with engine.begin() as conn:
        resolved, first, last = _resolved_readings(conn, csv)
        store.ensure_reading_partitions(conn, first, last)
    engine.dispose()
    with psycopg.connect(server.libpq(name)) as conn:
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'readings' ORDER BY indexname"
            )
        ]
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'readings'::regclass"
            " AND NOT tgisinternal"
        ).fetchone()[0]
        seconds, stored = _timed_copy(server, conn, RESOLVED_COPY_SQL, resolved, "readings")
    server.drop(name)
    return _result(seconds, stored, rows, indexes=indexes, triggers=triggers)


def run_psql_copy_readings(server: Server, csv: Path, rows: int) -> dict:
    """``psql -c "\\copy ..."``: the same COPY, driven by psql (for reference)."""
    name = server.fresh("psql", twin=False)
    with psycopg.connect(server.libpq(name), autocommit=True) as conn:
        conn.execute(COPY_TABLE_DDL)
    server.checkpoint()
    command = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        server.socket,
        "-U",
        "twin",
        "-d",
        name,
        "-c",
        f"\\copy readings_copy FROM '{csv}' (FORMAT csv, HEADER true)",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=_clean_env())
    seconds = time.perf_counter() - started
    with psycopg.connect(server.libpq(name)) as conn:
        stored = conn.execute("SELECT count(*) FROM readings_copy").fetchone()[0]
    server.drop(name)
    return _result(seconds, stored, rows)


def ingest_streets(engine, gpkg: Path):
    """The twin's ingest of the generated streets (the file's ``streets`` layer, source city)."""
    return ingest_file(
        engine, "streets", gpkg, layer_name="streets", source="city", rejects_path=Path(os.devnull)
    )


def run_twin_streets(
    server: Server, gpkg: Path, rows: int, prepare: list[str] | None = None
) -> dict:
    report, seconds, stored = _timed_ingest(
        server,
        server.fresh("twin", twin=True),
        "streets",
        prepare,
        lambda engine: ingest_streets(engine, gpkg),
    )
    assert report.rows_new == rows and stored == rows, report
    return _result(seconds, stored, rows, report_duration_s=report.duration_s)


def ogr2ogr_command(server: Server, name: str, gpkg: Path, *, use_copy: bool) -> list[str]:
    config = ["--config", "PG_USE_COPY", "YES"] if use_copy else []
    return [
        "ogr2ogr",
        *config,
        "-f",
        "PostgreSQL",
        f"PG:{server.libpq(name)}",
        str(gpkg),
        "streets",
        "-nln",
        "streets_ogr",
        "-lco",
        "GEOMETRY_NAME=geom",
        "-t_srs",
        "EPSG:4326",
    ]


def run_ogr2ogr_streets(server: Server, gpkg: Path, rows: int, *, use_copy: bool) -> dict:
    name = server.fresh("ogr", twin=False)
    command = ogr2ogr_command(server, name, gpkg, use_copy=use_copy)
    server.checkpoint()
    started = time.perf_counter()
    subprocess.run(command, check=True, env=_clean_env(), capture_output=True)
    seconds = time.perf_counter() - started
    with psycopg.connect(server.libpq(name)) as conn:
        stored = conn.execute("SELECT count(*) FROM streets_ogr").fetchone()[0]
        indexes = [
            r[0]
            for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'streets_ogr'")
        ]
    server.drop(name)
    return _result(seconds, stored, rows, indexes=indexes)


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class BackendWatch:
    """Sample the peak memory of the server backends serving the twin's connections."""

    def __init__(self, server: Server, database: str) -> None:
        self.server, self.database = server, database
        self.peak_hwm_kb = 0
        self.peak_anon_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.server.libpq("postgres"), autocommit=True) as conn:
            while not self._stop.is_set():
                pids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (self.database,),
                    )
                ]
                for pid in pids:
                    with contextlib.suppress(OSError):
                        status = Path(f"/proc/{pid}/status").read_text()
                        hwm = int(re.search(r"VmHWM:\s+(\d+)", status)[1])
                        anon = int(re.search(r"RssAnon:\s+(\d+)", status)[1])
                        self.peak_hwm_kb = max(self.peak_hwm_kb, hwm)
                        self.peak_anon_kb = max(self.peak_anon_kb, anon)
                self._stop.wait(0.2)


def run_memory(server: Server, manholes: Path, csv: Path, rows: int, home: Path) -> dict:
    name = twin_database_with_manholes(server, manholes)
    env = _clean_env() | {
        "TWIN_DATABASE_URL": f"postgresql://twin@/{name}?host={server.socket}",
        "TWIN_HOME": str(home / "cli-home"),
    }
    command = [
        "/usr/bin/time",
        "-v",
        str(TWIN_BIN),
        "ingest",
        "readings",
        str(csv),
        "--json",
        "--rejects",
        os.devnull,
    ]
    server.checkpoint()
    started = time.perf_counter()
    with BackendWatch(server, name) as watch:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"twin ingest failed:\n{result.stdout}\n{result.stderr}")
    report = json.loads(result.stdout)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1])
    server.drop(name)
    assert report["rows_new"] == rows, report
    return {
        "command": " ".join(
            command[:3] + ["ingest", "readings", "FILE", "--json", "--rejects", "/dev/null"]
        ),
        "seconds": seconds,
        "rows": report["rows_new"],
        "rows_per_s": rows / seconds,
        "twin_peak_rss_mb": peak_kb / 1024,
        "server_backend_peak_vmhwm_mb": watch.peak_hwm_kb / 1024,
        "server_backend_peak_rss_anon_mb": watch.peak_anon_kb / 1024,
        "time_v": {
            k.strip(): v.strip()
            for k, v in (line.split(": ", 1) for line in result.stderr.splitlines() if ": " in line)
            if k.strip()
            in (
                "Elapsed (wall clock) time (h:mm:ss or m:ss)",
                "User time (seconds)",
                "System time (seconds)",
                "Percent of CPU this job got",
                "Maximum resident set size (kbytes)",
            )
        },
    }


# ---------------------------------------------------------------------------------------------
# profile: where the twin's time goes (one extra, instrumented run; not part of the medians)
# ---------------------------------------------------------------------------------------------


class Phases:
    """Wall time per pipeline phase, by wrapping the functions ingest_file calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sql: list[tuple[float, str]] = []
        self._undo: list = []

    def patch(self, owner, attribute: str, replacement) -> None:
        """Put ``replacement`` in place of ``owner.attribute`` until :meth:`undo`."""
        self._undo.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, replacement)

    def wrap(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        self.patch(owner, attribute, timed)

    def wrap_generator(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        phases = self

        def timed(*args, **kwargs):
            iterator = iter(original(*args, **kwargs))
            while True:
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    phases.seconds[label] += time.perf_counter() - started
                    return
                phases.seconds[label] += time.perf_counter() - started
                phases.calls[label] += 1
                yield item

        self.patch(owner, attribute, timed)

    def listen(self, engine) -> None:
        @sa.event.listens_for(engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info.setdefault("bench_started", []).append(time.perf_counter())

        @sa.event.listens_for(engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):
            started = conn.info["bench_started"].pop()
            self.sql.append((time.perf_counter() - started, " ".join(statement.split())[:110]))

    def undo(self) -> None:
        for owner, attribute, original in reversed(self._undo):
            setattr(owner, attribute, original)
        self._undo.clear()


def ingest_phases(engine) -> Phases:
    """Phases timing what every ingest does: its SQL on ``engine``, the file's hash, the COPY."""
    from geo import store

    phases = Phases()
    phases.listen(engine)
    phases.wrap(pipeline, "sha256_of", "sha256 of the file")
    phases.wrap(store, "copy_frame", "copy_frame (to_csv + COPY to stage)")
    phases.wrap(pd.DataFrame, "to_csv", "  DataFrame.to_csv (inside copy_frame and rejects)")
    return phases


def profiled(server: Server, name: str, engine, phases: Phases, load) -> tuple:
    """``load()`` under cProfile after a CHECKPOINT: the profile and the wall seconds.

    ``phases`` is undone after, and database ``name`` (of ``engine``) dropped.
    """
    profiler = cProfile.Profile()
    server.checkpoint()
    started = time.perf_counter()
    try:
        profiler.enable()
        load()
        profiler.disable()
    finally:
        phases.undo()
    total = time.perf_counter() - started
    engine.dispose()
    server.drop(name)
    return profiler, total


def profile_twin_readings(
    server: Server, manholes: Path, csv: Path, rows: int, out_dir: Path
) -> dict:
    from geo import store
    from ingest import readers, timewindow, validate

    name = twin_database_with_manholes(server, manholes)
    engine = create_engine(server.url(name))
    phases = ingest_phases(engine)
    phases.wrap_generator(readers, "read_table_chunks", "read CSV chunks (pandas)")
    phases.wrap(pipeline, "validate_readings", "validate_readings (total)")
    for function in ("check_field", "parse_times", "parse_numbers", "is_blank"):
        phases.wrap(validate, function, f"  validate.{function}")
    for function in ("screen_raw", "check_parsed"):
        phases.wrap(timewindow, function, f"  timewindow.{function} (time window)")
    phases.wrap(store, "take_duplicate_readings", "take_duplicate_readings (SQL)")
    phases.wrap(store, "upsert_readings_from_stage", "upsert_readings_from_stage (SQL)")
    profiler, total = profiled(
        server,
        name,
        engine,
        phases,
        lambda: ingest_file(engine, "readings", csv, rejects_path=Path(os.devnull)),
    )
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
    (out_dir / "ingest_readings_profile.txt").write_text(text.getvalue())
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    (out_dir / "ingest_readings_profile_tottime.txt").write_text(text.getvalue())
    slow_sql = sorted(phases.sql, reverse=True)[:10]
    return {
        "total_s_with_cprofile": total,
        "phases_s": {k: round(v, 3) for k, v in phases.seconds.items()},
        "phase_calls": dict(phases.calls),
        "slowest_sql": [{"seconds": round(s, 3), "sql": q} for s, q in slow_sql],
        "note": "wall times of one instrumented run under cProfile (which slows Python code);"
        " ratios between phases matter, not the absolute numbers",
    }


def profile_twin_streets(server: Server, gpkg: Path, rows: int, out_dir: Path) -> dict:
    """One instrumented twin streets run: phases, cProfile, and EXPLAIN ANALYZE of the upsert
    (which, under EXPLAIN ANALYZE, really runs; the run's counts are then not reported)."""
    from geo import store
    from ingest import readers, validate

    name = server.fresh("twin", twin=True)
    engine = create_engine(server.url(name))
    phases = ingest_phases(engine)
    phases.wrap_generator(readers, "read_chunks", "read GeoPackage chunks (pyogrio arrow)")
    phases.wrap(pipeline, "to_storage_crs", "to_storage_crs (reproject to 4326)")
    phases.wrap(pipeline, "validate_layer", "validate_layer (total)")
    for function in ("check_field", "check_geometry", "properties_json"):
        phases.wrap(validate, function, f"  validate.{function}")
    phases.wrap(store, "upsert_layer_from_stage", "upsert_layer_from_stage (SQL)")
    plans: dict = {}

    def explained(conn, statement, total, **params):
        sql = (
            f"WITH written AS ({statement} RETURNING (xmax = 0) AS inserted) "
            f"SELECT count(*) FILTER (WHERE inserted), count(*) FROM written"
        )
        plans["upsert"] = [
            r[0] for r in conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql), params)
        ]
        return store.UpsertCounts(rows_new=total)

    phases.patch(store, "_count_upsert", explained)
    profiler, total = profiled(server, name, engine, phases, lambda: ingest_streets(engine, gpkg))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    (out_dir / "ingest_streets_profile_tottime.txt").write_text(text.getvalue())
    return {
        "total_s_with_cprofile": total,
        "phases_s": {k: round(v, 3) for k, v in phases.seconds.items()},
        "slowest_sql": [
            {"seconds": round(t, 3), "sql": q} for t, q in sorted(phases.sql, reverse=True)[:6]
        ],
        "explain": plans,
    }


def explain_upsert(server: Server, manholes: Path, csv: Path) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) the readings SQL of a run, in a copy of its staging data."""
    from geo import store
    from ingest import validate
    from ingest.fields import READING_FIELDS
    from ingest.mapping import identity_mapping
    from ingest.readers import read_table_chunks

    name = twin_database_with_manholes(server, manholes)
    engine = create_engine(server.url(name))
    plans = {}
    with engine.connect() as conn, conn.begin():
        store.create_rejects_stage(conn)
        store.create_readings_stage(conn)
        context = validate.ReadingContext(
            metrics=store.metric_ranges(conn), assets=store.asset_keys(conn)
        )
        names = tuple(f.name for f in READING_FIELDS) + ("source",)
        for frame in read_table_chunks(csv):
            checked = validate.validate_readings(
                frame, identity_mapping(list(frame.columns), names), context, source="bench"
            )
            store.copy_frame(
                conn, "stage_readings", checked.accepted[list(store.READING_STAGE_COLUMNS)]
            )
        first, last = conn.execute(
            sa.text("SELECT min(observed_at), max(observed_at) FROM stage_readings")
        ).one()
        store.ensure_reading_partitions(conn, first, last)
        statements = {
            "take_duplicate_readings": (
                "WITH ranked AS (SELECT row_number, first_value(row_number) OVER ("
                " PARTITION BY metric_id, asset_id, observed_at ORDER BY row_number) AS first_row"
                " FROM stage_readings) DELETE FROM stage_readings s USING ranked r"
                " WHERE s.row_number = r.row_number AND r.first_row <> r.row_number",
                {},
            ),
            "update_existing": (
                "UPDATE readings r SET value = s.value, source = s.source FROM stage_readings s"
                " WHERE r.metric_id = s.metric_id AND r.asset_id = s.asset_id"
                " AND r.observed_at = s.observed_at AND r.observed_at BETWEEN :first AND :last"
                " AND (r.value, r.source) IS DISTINCT FROM (s.value, s.source)",
                {"first": first, "last": last},
            ),
            "insert_new": (
                "INSERT INTO readings (metric_id, asset_id, observed_at, value, source)"
                " SELECT metric_id, asset_id, observed_at, value, source FROM stage_readings"
                " ON CONFLICT (metric_id, asset_id, observed_at) DO NOTHING",
                {},
            ),
        }
        for label, (sql, params) in statements.items():
            rows = conn.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"), params).all()
            plans[label] = [r[0] for r in rows]
        conn.rollback()
    engine.dispose()
    server.drop(name)
    return plans


# ---------------------------------------------------------------------------------------------
# prototypes: proposed changes to the product, applied here by monkeypatching (the product's
# files are not touched) and to a benchmark database's schema, to measure what they would gain
# ---------------------------------------------------------------------------------------------


def arrow_copy_frame(conn, table: str, frame: pd.DataFrame) -> None:
    """``store.copy_frame`` with pyarrow's C++ CSV writer instead of ``DataFrame.to_csv``.

    Same COPY (FORMAT csv) contract: nulls are unquoted empty fields, strings are quoted;
    timestamps come out as ``2026-04-04 09:34:53.000000Z``, dates as ``2020-01-02``.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if frame.empty:
        return
    sink = pa.BufferOutputStream()
    pacsv.write_csv(
        pa.Table.from_pandas(frame, preserve_index=False),
        sink,
        write_options=pacsv.WriteOptions(include_header=False),
    )
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(memoryview(sink.getvalue()))


def make_vector_check_field(original):
    """``validate.check_field`` whose text branch strips with ``.str.strip()`` (vectorised)
    instead of a Python lambda per value; every other kind of field goes to the original."""
    from ingest import validate

    def check_field(frame, spec, rule, zone, problems, now, *, unmapped="reject"):
        raw = validate._raw(frame, rule)
        # Free text only: vocabularies (open ones map to "other") go to the original.
        vector = (
            spec.kind == "text"
            and spec.vocabulary is None
            and (rule is None or (rule.map is None and rule.default is None))
            and pd.api.types.is_string_dtype(raw.dtype)
            and raw.dtype != object
        )
        if not vector:
            return original(frame, spec, rule, zone, problems, now, unmapped=unmapped)
        missing = validate.is_blank(raw)
        if spec.required:
            problems.add(missing, spec.name, raw, "is missing")
        text = raw.where(~missing).str.strip()
        if spec.default is not None:
            text = text.astype(object).where(text.notna(), spec.default)
        return text, None

    return check_field


def make_tuned_readings_stage(original):
    """``store.create_readings_stage`` that first sets, for this transaction only, work_mem
    for an in-memory sort of the duplicate check, no JIT (it costs ~0.1 s per statement on
    a 2-core box), and locks the declared metrics against deletion (FOR KEY SHARE: what the
    readings -> metrics foreign key guarantees, taken once instead of once per row)."""

    def create_readings_stage(conn):
        conn.execute(sa.text("SET LOCAL work_mem = '256MB'"))
        conn.execute(sa.text("SET LOCAL jit = off"))
        conn.execute(sa.text("SELECT id FROM metrics FOR KEY SHARE"))
        return original(conn)

    return create_readings_stage


@contextlib.contextmanager
def code_prototypes():
    from geo import store
    from ingest import validate

    saved = [
        (store, "copy_frame", store.copy_frame),
        (validate, "check_field", validate.check_field),
        (store, "create_readings_stage", store.create_readings_stage),
    ]
    store.copy_frame = arrow_copy_frame
    validate.check_field = make_vector_check_field(saved[1][2])
    store.create_readings_stage = make_tuned_readings_stage(saved[2][2])
    try:
        yield
    finally:
        for owner, attribute, original in saved:
            setattr(owner, attribute, original)


# Schema prototypes, applied to the benchmark database before the timed run.
SCHEMA_PROTOTYPES = {
    "readings": [
        # validation already checks metrics; the loader locks them FOR KEY SHARE instead
        "ALTER TABLE readings DROP CONSTRAINT IF EXISTS readings_metric_id_fkey",
        # the statement triggers' transition tables keep a copy of every inserted row
        "DROP TRIGGER IF EXISTS readings_insert_changed ON readings",
        "DROP TRIGGER IF EXISTS readings_update_changed ON readings",
    ],
    "streets": [
        "DROP TRIGGER IF EXISTS streets_insert_changed ON streets",
        "DROP TRIGGER IF EXISTS streets_update_changed ON streets",
    ],
}


def run_floor_readings(server: Server, manholes: Path, csv: Path, rows: int) -> dict:
    """What PostgreSQL alone needs to put the rows into the twin's ``readings`` table: COPY of
    rows already resolved to ids straight into it (primary key and BRIN kept; no foreign key,
    no triggers, no staging, no validation, no upsert). The resolved file is made untimed."""
    from geo import store

    name = twin_database_with_manholes(server, manholes)
    engine = create_engine(server.url(name))
    with engine.begin() as conn:
        for sql in SCHEMA_PROTOTYPES["readings"]:
            conn.execute(sa.text(sql))
        resolved, first, last = _resolved_readings(conn, csv)
        store.ensure_reading_partitions(conn, first, last)
    engine.dispose()
    with psycopg.connect(server.libpq(name)) as conn:
        seconds, stored = _timed_copy(server, conn, RESOLVED_COPY_SQL, resolved, "readings")
    server.drop(name)
    return _result(seconds, stored, rows)


def rounds(label: str, repeats: int, peers: dict, prototypes: dict | None = None) -> dict:
    """``repeats`` rounds of every peer in turn, so a change of load falls on all of them.

    ``peers`` and ``prototypes`` map a name to a call that times one run; the prototypes run
    with the code prototypes patched in. Returns each name's runs, and says each round.
    """
    runs: dict[str, list[dict]] = {k: [] for k in (*(prototypes or {}), *peers)}
    for i in range(repeats):
        if prototypes:
            with code_prototypes():
                for key, run in prototypes.items():
                    runs[key].append(run())
        for key, run in peers.items():
            runs[key].append(run())
        print(
            f"{label} run {i + 1}: "
            + ", ".join(f"{k} {v[-1]['seconds']:.2f} s" for k, v in runs.items()),
            flush=True,
        )
    return runs


def compared(runs: dict, reference: str, rate: float, base: float) -> dict:
    """Each name's median run, its rows/s over the ``reference`` rate and speed-up on ``base``."""
    out = {}
    for key, runs_of in runs.items():
        m = median_of(runs_of)
        m[reference] = m["rows_per_s"] / rate
        m["speedup_vs_twin"] = base / m["median_s"]
        out[key] = m
    return out


def twin_runs(server: Server, sizes: dict, manholes: Path, readings: Path, streets: Path) -> dict:
    """Per part, a call that times one twin ingest of its file (``prepare=``: schema first)."""
    return {
        "readings": functools.partial(
            run_twin_readings, server, manholes, readings, sizes["readings"]
        ),
        "streets": functools.partial(run_twin_streets, server, streets, sizes["streets"]),
    }


# Each part's prototypes are compared with its reference peer's rate and the twin's time.
PROTOTYPE_REFERENCES = {
    "readings": ("vs_copy", "copy_psycopg"),
    "streets": ("vs_ogr2ogr", "ogr2ogr"),
}


def run_prototypes(
    server: Server, sizes: dict, manholes: Path, readings: Path, streets: Path, results: dict
) -> dict:
    out: dict = {}
    twin = twin_runs(server, sizes, manholes, readings, streets)
    peers = {
        "readings": {
            "floor": lambda: run_floor_readings(server, manholes, readings, sizes["readings"])
        },
        "streets": {},
    }
    for part, (label, reference) in PROTOTYPE_REFERENCES.items():
        if part not in results:
            continue
        run = twin[part]
        runs = rounds(
            f"{part} prototypes",
            sizes["repeats"],
            peers[part],
            {"code": run, "code_schema": functools.partial(run, prepare=SCHEMA_PROTOTYPES[part])},
        )
        out[part] = compared(
            runs, label, results[part][reference]["rows_per_s"], results[part]["twin"]["median_s"]
        )
    out["what"] = {
        "code": "arrow_copy_frame + vectorised text check_field + per-transaction work_mem"
        " 256MB, jit off, metrics locked FOR KEY SHARE (monkeypatched)",
        "code_schema": "code + "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in SCHEMA_PROTOTYPES.items()),
        "floor": "COPY of pre-resolved rows straight into readings (PK + BRIN; no FK, triggers,"
        " staging, validation or upsert)",
    }
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def median_of(runs: list[dict]) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "median_s": seconds,
        "rows_per_s": runs[0]["rows"] / seconds,
        "runs_s": [round(r["seconds"], 3) for r in runs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke check")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/twin-bench-data"))
    parser.add_argument("--repeats", type=int, help="timed runs per peer (default 3)")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["readings", "streets", "memory", "profile", "prototype"],
        help="run only these parts (default: readings, streets, memory, and"
        " profile + prototype when a speed target is missed)",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip profile and prototypes even if a target is missed",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results JSON (default"
        " benchmarks/results/ingest.json, ingest.quick.json with --quick)",
    )
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    if args.repeats:
        sizes["repeats"] = args.repeats
    parts = set(args.only or ["readings", "streets", "memory"])
    out = args.out or RESULTS_DIR / ("ingest.quick.json" if args.quick else "ingest.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    data = args.data_dir
    data.mkdir(parents=True, exist_ok=True)
    manholes = data / f"manholes_{sizes['manholes']}.gpkg"
    readings = data / f"readings_{sizes['readings']}_{sizes['manholes']}.csv"
    big = data / f"readings_{sizes['memory_readings']}_{sizes['manholes']}.csv"
    streets = data / f"streets_{sizes['streets']}.gpkg"
    step = time.perf_counter()
    make_manholes(manholes, sizes["manholes"])
    if parts & {"readings", "profile"}:
        make_readings(readings, sizes["readings"], sizes["manholes"])
    if "memory" in parts:
        make_readings(big, sizes["memory_readings"], sizes["manholes"])
    if "streets" in parts:
        make_streets(streets, sizes["streets"])
    print(f"data ready in {data} ({time.perf_counter() - step:.1f} s)", flush=True)

    home = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    home.chmod(0o755)  # so the cluster's account (postgres, when run as root) can reach it
    cluster = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    results: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/ingest_bench.py", *sys.argv[1:]]),
        "quick": args.quick,
        "sizes": sizes,
        "data": {
            "generator": "benchmarks/ingest_bench.py (numpy + shapely, seeded)",
            "manholes": str(manholes),
            "readings": str(readings),
            "memory_readings": str(big),
            "streets": str(streets),
        },
    }
    server = None
    try:
        cluster.start()
        server = Server(cluster)
        results["versions"] = versions(server)
        results["twin"] = twin_fingerprint()
        print(f"cluster up at {server.socket}", flush=True)
        repeats = sizes["repeats"]
        twin_run = twin_runs(server, sizes, manholes, readings, streets)

        if "readings" in parts:
            n = sizes["readings"]
            runs = rounds(
                "readings",
                repeats,
                {
                    "twin": twin_run["readings"],
                    "readings_table": lambda: run_readings_table_copy(
                        server, manholes, readings, n
                    ),
                    "keyed": lambda: run_keyed_copy_readings(server, readings, n),
                    "copy": lambda: run_copy_readings(server, readings, n),
                    "psql": lambda: run_psql_copy_readings(server, readings, n),
                },
            )
            twin, table, keyed, copy, psql = (
                median_of(runs[k]) for k in ("twin", "readings_table", "keyed", "copy", "psql")
            )
            ratio = twin["rows_per_s"] / table["rows_per_s"]
            results["readings"] = {
                "rows": n,
                "file_bytes": readings.stat().st_size,
                "twin": twin,
                "copy_readings_table": table,
                "copy_readings_table_indexes": runs["readings_table"][0]["indexes"],
                "copy_readings_table_triggers": runs["readings_table"][0]["triggers"],
                "copy_keyed": keyed,
                "copy_psycopg": copy,
                "copy_psql": psql,
                "twin_vs_readings_table_copy": ratio,
                "twin_vs_keyed_copy": twin["rows_per_s"] / keyed["rows_per_s"],
                "twin_vs_copy": twin["rows_per_s"] / copy["rows_per_s"],
                "twin_vs_psql_copy": twin["rows_per_s"] / psql["rows_per_s"],
                "target": ">= 0.50 of the rows/s of COPY into a table with readings' primary key"
                " and indexes",
                "met": ratio >= 0.5,
                "peer": "psycopg cursor.copy (1 MiB blocks, one transaction) into the twin's own"
                " readings table as migrated (partitions, primary key, BRIN) of the same rows"
                " resolved to ids beforehand (untimed)",
                "references": {
                    "copy_keyed": "the same CSV into readings_keyed: primary key (metric,"
                    " asset_layer, asset_external_id, observed_at) + BRIN (observed_at)",
                    "copy_psycopg": "the same CSV into readings_copy(text, text, text,"
                    " timestamptz, double precision, text), no indexes",
                    "copy_psql": "the same, by psql \\copy",
                },
            }

        if "streets" in parts:
            n = sizes["streets"]
            runs = rounds(
                "streets",
                repeats,
                {
                    "twin": twin_run["streets"],
                    "ogr2ogr": lambda: run_ogr2ogr_streets(server, streets, n, use_copy=False),
                    "ogr2ogr_copy": lambda: run_ogr2ogr_streets(
                        server, streets, n, use_copy=True
                    ),
                },
            )
            twin, ogr, ogr_copy = (median_of(runs[k]) for k in ("twin", "ogr2ogr", "ogr2ogr_copy"))
            ratio = twin["rows_per_s"] / ogr["rows_per_s"]
            results["streets"] = {
                "features": n,
                "file_bytes": streets.stat().st_size,
                "twin": twin,
                "ogr2ogr": ogr,
                "ogr2ogr_pg_use_copy": ogr_copy,
                "ogr2ogr_indexes": runs["ogr2ogr"][0]["indexes"],
                "ogr2ogr_command": " ".join(ogr2ogr_command(server, "DB", streets, use_copy=False)),
                "twin_vs_ogr2ogr": ratio,
                "twin_vs_ogr2ogr_pg_use_copy": twin["rows_per_s"] / ogr_copy["rows_per_s"],
                "target": ">= 1.0 of ogr2ogr's features/s",
                "met": ratio >= 1.0,
            }

        if "memory" in parts:
            n = sizes["memory_readings"]
            memory = run_memory(server, manholes, big, n, home)
            memory.update(
                {
                    "readings": n,
                    "file_bytes": big.stat().st_size,
                    "target": "twin process peak RSS < 500 MB",
                    "met": memory["twin_peak_rss_mb"] < 500,
                }
            )
            results["memory"] = memory
            print(
                f"memory: {memory['twin_peak_rss_mb']:.0f} MB in {memory['seconds']:.1f} s",
                flush=True,
            )

        missed = [k for k in ("readings", "streets") if not results.get(k, {}).get("met", True)]
        auto = bool(missed) and not args.no_profile and not args.only
        if "profile" in parts or auto:
            results["profile"] = {}
            if "readings" in missed or "profile" in parts:
                make_readings(readings, sizes["readings"], sizes["manholes"])
                prof = profile_twin_readings(
                    server, manholes, readings, sizes["readings"], out.parent
                )
                prof["explain"] = explain_upsert(server, manholes, readings)
                results["profile"]["readings"] = prof
            if "streets" in missed or "profile" in parts:
                make_streets(streets, sizes["streets"])
                results["profile"]["streets"] = profile_twin_streets(
                    server, streets, sizes["streets"], out.parent
                )
        if "prototype" in parts or auto:
            results["prototypes"] = run_prototypes(
                server, sizes, manholes, readings, streets, results
            )
    finally:
        if server is not None:
            server.close()
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)

    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_table(results)
    print(f"\nresults: {out}")
    return 0


PSQL_LABEL = "  COPY CSV, bare table, psql \\copy (ref.)"


def print_table(results: dict) -> None:
    lines = [f"{'benchmark':<44}{'median s':>10}{'rows/s':>12}{'ratio':>8}  target"]
    if "readings" in results:
        r = results["readings"]
        lines += [
            f"{'readings ' + format(r['rows'], ','):<44}",
            f"{'  twin ingest_file (validation on)':<44}{r['twin']['median_s']:>10.2f}"
            f"{r['twin']['rows_per_s']:>12,.0f}{r['twin_vs_readings_table_copy']:>8.2f}"
            f"  >= 0.50: {'met' if r['met'] else 'NOT met'}",
        ]
        base = r["copy_readings_table"]["rows_per_s"]
        for label, key in (
            ("  COPY into readings (ids; PK + BRIN): peer", "copy_readings_table"),
            ("  COPY CSV into keyed table (PK + BRIN)", "copy_keyed"),
            ("  COPY CSV into bare table (reference)", "copy_psycopg"),
            (PSQL_LABEL, "copy_psql"),
        ):
            lines.append(
                f"{label:<44}{r[key]['median_s']:>10.2f}{r[key]['rows_per_s']:>12,.0f}"
                f"{r[key]['rows_per_s'] / base:>8.2f}"
            )
    if "streets" in results:
        s = results["streets"]
        lines += [
            f"{'streets ' + format(s['features'], ',') + ' (GeoPackage)':<44}",
            f"{'  twin ingest_file':<44}{s['twin']['median_s']:>10.2f}"
            f"{s['twin']['rows_per_s']:>12,.0f}{s['twin_vs_ogr2ogr']:>8.2f}  >= 1.00: "
            f"{'met' if s['met'] else 'NOT met'}",
            f"{'  ogr2ogr (defaults)':<44}{s['ogr2ogr']['median_s']:>10.2f}"
            f"{s['ogr2ogr']['rows_per_s']:>12,.0f}{1:>8.2f}",
            f"{'  ogr2ogr --config PG_USE_COPY YES':<44}"
            f"{s['ogr2ogr_pg_use_copy']['median_s']:>10.2f}"
            f"{s['ogr2ogr_pg_use_copy']['rows_per_s']:>12,.0f}"
            f"{s['ogr2ogr_pg_use_copy']['rows_per_s'] / s['ogr2ogr']['rows_per_s']:>8.2f}",
        ]
    if "memory" in results:
        m = results["memory"]
        lines += [
            f"{'memory: twin ingest readings ' + format(m['readings'], ','):<44}"
            f"{m['seconds']:>10.2f}{m['rows_per_s']:>12,.0f}",
            f"  twin process peak RSS {m['twin_peak_rss_mb']:.0f} MB (< 500 MB: "
            f"{'met' if m['met'] else 'NOT met'}); server backend peak VmHWM "
            f"{m['server_backend_peak_vmhwm_mb']:.0f} MB, RssAnon "
            f"{m['server_backend_peak_rss_anon_mb']:.0f} MB",
        ]
    for layer, p in results.get("profile", {}).items():
        lines += [
            "",
            f"profile of one twin {layer} run ({p['total_s_with_cprofile']:.1f} s under cProfile):",
        ]
        lines += [f"  {k:<58}{v:>8.2f} s" for k, v in p["phases_s"].items()]
        lines += ["  slowest SQL:"] + [
            f"  {q['seconds']:>8.2f} s  {q['sql']}" for q in p["slowest_sql"][:4]
        ]
    prototypes = results.get("prototypes", {})
    if prototypes:
        lines += ["", "prototypes (monkeypatched code / schema changed in the benchmark database):"]
        for key, m in prototypes.get("readings", {}).items():
            lines.append(
                f"  readings {key:<34}{m['median_s']:>10.2f}{m['rows_per_s']:>12,.0f}"
                f"{m['vs_copy']:>8.2f}  x{m['speedup_vs_twin']:.2f} vs twin today"
            )
        for key, m in prototypes.get("streets", {}).items():
            lines.append(
                f"  streets {key:<35}{m['median_s']:>10.2f}{m['rows_per_s']:>12,.0f}"
                f"{m['vs_ogr2ogr']:>8.2f}  x{m['speedup_vs_twin']:.2f} vs twin today"
            )
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
