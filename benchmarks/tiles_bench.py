"""Vector tiles of the twin against TiPg on the same PostGIS tables, side by side in one run.

    .venv/bin/python benchmarks/tiles_bench.py            # the full run (a few minutes)
    .venv/bin/python benchmarks/tiles_bench.py --quick    # small sample, few tiles: a smoke check

One embedded PostGIS cluster (``geo.cluster.EmbeddedCluster``) is started in a temporary
TWIN_HOME and destroyed at the end; it holds a city-scale sample
(``generate(out, seed=7, scale=10, months=3)`` loaded with ``ingest.sample.load_sample``).
The twin runs under uvicorn (``--factory service.asgi:create``, 1 and 2 workers, tile cache
off and on);
TiPg runs from its own virtualenv (``/tmp/tipg-venv``, made here when missing) as
``tipg.main:app`` under uvicorn (1 and 2 workers) with ``DATABASE_URL`` on the same socket and
``TIPG_TILE_BUFFER=64`` so both cut tiles alike.

The load comes from ``wrk`` (``apt-get install wrk``; loopback only, ``-t2``, 32 connections,
``--duration`` seconds per measurement) with a Lua script that walks a fixed list of tile URLs,
each wrk thread from its own offset; p50/p99 come from wrk's latency distribution. Without wrk
(or with ``--generator python``) a small asyncio HTTP/1.1 keep-alive client in this process
does it instead (each list asked once, bounded by ``RUN_CAP_S``), which shares the cores with
the servers and caps what it can observe. Measured:

1. uncached tiles/s: a fixed list of distinct tiles at z13-17 over the sample, walked over and
   over (twin with ``TWIN_TILE_CACHE_MB=0``, which makes no cache at all, so every request
   renders; TiPg has no tile cache), after one untimed pass that warms PostgreSQL's buffers for
   every server alike;
2. warm tiles/s: the same walk with the twin's cache on and filled first; TiPg renders every
   time, so its figure to compare is the uncached one (with the python generator: the same
   list repeated);
3. p50/p99 latency at 32 concurrent connections (every run above is at 32);
4. ``/ogc/collections/manholes/items?limit=1000`` against TiPg's
   ``/collections/public.manholes/items?limit=1000``, when the twin serves it (python client).

``--fast-io`` runs both servers with ``--loop uvloop --http httptools`` (uvicorn[standard]); the
packages must import in both environments, from their venvs or from ``--fast-io-path``.

Raw figures go to ``benchmarks/results/tiles.json`` (``tiles.quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import morecantile
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geo import migrate  # noqa: E402
from geo.cluster import EmbeddedCluster  # noqa: E402
from geo.database import create_engine  # noqa: E402
from ingest.sample import load_sample  # noqa: E402
from sample_data.generate import generate  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
TIPG_VENV = Path("/tmp/tipg-venv")
TIPG_SPEC = "tipg==1.6.*"
HOST = "127.0.0.1"
CLIENTS = 32
SEED = 7
ZOOMS = (12, 13, 14, 15, 16, 17)
FULL = {"scale": 10, "months": 3, "tiles": 500, "warm_requests": 3000, "tipg_repeat": 872,
        "items_requests": 60, "layers": ("manholes", "streets", "compounds")}
QUICK = {"scale": 1, "months": 3, "tiles": 80, "warm_requests": 400, "tipg_repeat": 160,
         "items_requests": 10, "layers": ("manholes", "streets")}
ROUNDS = 3  # each measurement, alternated between the servers; the median is kept
RUN_CAP_S = 60.0  # no single measured run goes on longer than this
WRK_THREADS = 2
WRK_DURATION_S = 15
# wrk's script: walk the paths of the file named after "--", each thread from its own offset,
# and print the results as one JSON line.
WRK_SCRIPT = r"""
local threads = {}
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  -- threads start 211 paths apart (a prime), so they do not ask for the same tiles in step
  idx = (id * 211) % #paths
end
function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""
# The table columns behind each twin layer, so TiPg puts the same table columns in its tiles.
TIPG_PROPERTIES = {
    "manholes": "external_id,source,kind,depth_m,cover_state,sensor_id",
    "streets": "external_id,source,name,road_class,surface,width_m,lanes,resurfaced_on",
    "compounds": "external_id,source,name,management_type,households,built_year",
}


def log(message: str) -> None:
    """Print a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the load generator -------------------------------------------------------------------

async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if status in (204, 304) or method == "HEAD":
        return status, 0
    if "content-length" in headers:
        size = int(headers["content-length"])
        await reader.readexactly(size)
        return status, size
    if headers.get("transfer-encoding", "").lower() == "chunked":
        size = 0
        while True:
            chunk_head = await reader.readuntil(b"\r\n")
            chunk = int(chunk_head.split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += chunk
            if chunk == 0:
                return status, size
    raise RuntimeError(f"response without length (status {status})")


async def _load(port: int, paths: list[str], clients: int, cap_s: float) -> dict:
    """GET every path once over ``clients`` keep-alive connections; latencies in ms."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    total_bytes = 0
    next_index = 0
    deadline = time.perf_counter() + cap_s

    async def worker() -> None:
        nonlocal next_index, errors, total_bytes
        reader = writer = None
        while next_index < len(paths) and time.perf_counter() < deadline:
            path = paths[next_index]
            next_index += 1
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                started = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                             f"Accept: */*\r\n\r\n".encode())
                status, size = await asyncio.wait_for(_read_response(reader, "GET"), 30)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                total_bytes += size
            except (TimeoutError, OSError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, RuntimeError, ValueError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "requests": len(latencies), "errors": errors, "statuses": statuses,
        "seconds": round(seconds, 3), "per_s": round(len(latencies) / seconds, 1),
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(ordered), 2) if ordered else None,
        "bytes": total_bytes, "clients": clients,
    }


def load(port: int, paths: list[str], clients: int = CLIENTS, cap_s: float = RUN_CAP_S) -> dict:
    """Run the load generator to completion (bounded by the list and ``cap_s``)."""
    return asyncio.run(_load(port, paths, clients, cap_s))


def wrk_load(port: int, paths: list[str], duration_s: float, work_dir: Path,
             connections: int = CLIENTS, threads: int = WRK_THREADS) -> dict:
    """Walk ``paths`` over and over with wrk for ``duration_s`` seconds; latencies in ms.

    ``errors`` counts socket errors and timeouts; ``status_errors`` the responses that were
    not 2xx or 3xx (wrk does not tell the statuses apart).
    """
    script = work_dir / "walk.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    listing = work_dir / f"paths-{port}.txt"
    listing.write_text("\n".join(paths) + "\n")
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(duration_s)}s", "--latency",
            "--timeout", "30s", "-s", str(script), f"http://{HOST}:{port}", "--", str(listing)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60,
                          check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds = raw["duration_us"] / 1e6
    return {
        "generator": "wrk", "requests": raw["requests"],
        "errors": raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]
        + raw["timeouts"], "status_errors": raw["status_errors"],
        "seconds": round(seconds, 3), "per_s": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2), "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2), "mean_ms": round(raw["mean_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2), "bytes": raw["bytes"],
        "clients": connections, "threads": threads, "paths": len(paths),
    }


# -- servers --------------------------------------------------------------------------------

def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_text, _, rest = data.partition(b"\r\n")
        size = int(size_text.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A uvicorn server started by this script, in its own process group."""

    def __init__(self, name: str, argv: list[str], env: dict, ready_path: str, log_dir: Path,
                 cwd: Path = REPO) -> None:
        self.name, self.port = name, free_port()
        self.log_path = log_dir / f"{name}.log"
        argv = [*argv, "--host", HOST, "--port", str(self.port), "--log-level", "warning",
                "--no-access-log"]
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=cwd,
                                            start_new_session=True)
        self._wait(ready_path)

    def _wait(self, path: str) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-2000:])
            try:
                if self.get(path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not become ready; see {self.log_path}")

    def _exchange(self, path: str, timeout: float) -> tuple[bytes, bytes]:
        """One GET on a fresh connection: the raw head and body."""
        with socket.create_connection((HOST, self.port), timeout=timeout) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return head, body

    def get(self, path: str) -> tuple[int, bytes]:
        """One GET on a fresh connection: (status, body)."""
        head, body = self._exchange(path, 30)
        return int(head.split(b" ", 2)[1]), body

    def get_full(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """One GET on a fresh connection: (status, headers in lower case, body)."""
        head, body = self._exchange(path, 120)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = _unchunk(body)
        return int(lines[0].split(" ", 2)[1]), headers, body

    def stop(self) -> None:
        """Stop the server (its process group) and wait for it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group this script started
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def ensure_tipg() -> str:
    """TiPg in its own virtualenv (made when missing); returns its version."""
    python = TIPG_VENV / "bin" / "python"
    if not (TIPG_VENV / "bin" / "uvicorn").exists():
        log(f"installing {TIPG_SPEC} into {TIPG_VENV}")
        subprocess.run(["python3", "-m", "venv", str(TIPG_VENV)], check=True)
        subprocess.run([str(TIPG_VENV / "bin" / "pip"), "install", "-q", TIPG_SPEC, "uvicorn"],
                       check=True)
    return subprocess.run([str(python), "-c", "import tipg; print(tipg.__version__)"],
                          check=True, capture_output=True, text=True).stdout.strip()


def package_version(name: str, python: Path, env: dict | None = None) -> str:
    """The installed version of a package in the environment of ``python``."""
    return subprocess.run([str(python), "-c", f"import importlib.metadata as m; "
                           f"print(m.version('{name}'))"], capture_output=True,
                          text=True, env=env).stdout.strip()


def uptime() -> str:
    """What ``uptime`` says: the machine's load while the benchmark runs."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# -- the workload ---------------------------------------------------------------------------

def pick_tiles(engine, count: int, zooms: tuple[int, ...] = ZOOMS) -> list[morecantile.Tile]:
    """A fixed, seeded list of distinct tiles at z13-17 over the sample's streets.

    Every tile at z13-17 over the streets' extent, in a seeded order; a sample of ``count``
    of them when there are more.
    """
    with engine.connect() as conn:
        west, south, east, north = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(geom) AS e FROM streets) q")).one()
    tms = morecantile.tms.get("WebMercatorQuad")
    every = [t for z in zooms for t in tms.tiles(west, south, east, north, [z])]
    rng = random.Random(SEED)
    return rng.sample(every, min(count, len(every)))


def twin_paths(layer: str, tiles: list) -> list[str]:
    """The twin's tile paths of a layer."""
    return [f"/tiles/{layer}/{t.z}/{t.x}/{t.y}.mvt" for t in tiles]


def tipg_paths(layer: str, tiles: list) -> list[str]:
    """TiPg's tile paths of the same table, with the same table columns."""
    return [f"/collections/public.{layer}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}"
            f"?properties={TIPG_PROPERTIES[layer]}" for t in tiles]


def repeated(paths: list[str], total: int) -> list[str]:
    """The paths over and over, ``total`` in all."""
    return (paths * (total // len(paths) + 1))[:total]


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput, with every round's throughput beside it."""
    ordered = sorted(runs, key=lambda r: r["per_s"])
    return {**ordered[len(ordered) // 2], "rounds_per_s": [r["per_s"] for r in runs]}


def bench_interleaved(tipg: Server, nocache: Server, cache: Server, cfg: dict, tiles: list,
                      workers: int, run: dict) -> dict:
    """Every measurement alternated between the servers, ``ROUNDS`` times; medians kept.

    Other work on the machine then weighs on TiPg and the twin alike. ``run`` says how to
    load: ``{"generator": "wrk", "duration_s": ..., "work_dir": ...}`` or the python client.
    With wrk, TiPg's walk serves as its repeated figure too (it renders every time).
    """
    out: dict = {tipg.name: {}, nocache.name: {}, cache.name: {}}
    with_wrk = run["generator"] == "wrk"

    def walk(server: Server, paths: list[str]) -> dict:
        return wrk_load(server.port, paths, run["duration_s"], run["work_dir"])

    for layer in cfg["layers"]:
        twin, other = twin_paths(layer, tiles), tipg_paths(layer, tiles)
        for _ in range(workers):  # fill every worker's cache (not timed)
            load(cache.port, twin)
        if with_wrk:  # a second pass, so that every worker has seen every tile
            walk(cache, twin)
        rounds: dict = {"tipg": [], "tipg_repeat": [], "nocache": [], "warm": []}
        for _ in range(ROUNDS):
            if with_wrk:
                rounds["tipg"].append(walk(tipg, other))
                rounds["nocache"].append(walk(nocache, twin))
                rounds["warm"].append(walk(cache, twin))
                rounds["tipg_repeat"].append(rounds["tipg"][-1])
                continue
            rounds["tipg"].append(load(tipg.port, other))
            rounds["nocache"].append(load(nocache.port, twin))
            rounds["warm"].append(load(cache.port, repeated(twin, cfg["warm_requests"])))
            rounds["tipg_repeat"].append(load(tipg.port, repeated(other, cfg["tipg_repeat"])))
        out[tipg.name][layer] = {"uncached": median_run(rounds["tipg"]),
                                 "warm": median_run(rounds["tipg_repeat"])}
        out[nocache.name][layer] = {"uncached": median_run(rounds["nocache"])}
        out[cache.name][layer] = {"warm": median_run(rounds["warm"])}
        for name, key, result in ((tipg.name, "uncached", out[tipg.name][layer]["uncached"]),
                               (nocache.name, "uncached", out[nocache.name][layer]["uncached"]),
                               (tipg.name, "repeat", out[tipg.name][layer]["warm"]),
                               (cache.name, "warm", out[cache.name][layer]["warm"])):
            log(f"  {name} {layer} {key}: {result['per_s']} tiles/s (rounds "
                f"{result['rounds_per_s']}), p50 {result['p50_ms']} p99 {result['p99_ms']} ms, "
                f"statuses {result.get('statuses', '-')}, non-2xx/3xx "
                f"{result.get('status_errors', '-')}, errors {result['errors']}")
    return out


def bench_items(server: Server, path: str, requests: int) -> dict | None:
    """Pages of 1,000 features at 4 clients, when the server has the path."""
    status, _ = server.get(path)
    if status != 200:
        log(f"  {server.name}: {path} answered {status}; not measured")
        return {"path": path, "status": status, "measured": False}
    load(server.port, [path] * 4, clients=4)  # warm
    result = load(server.port, [path] * requests, clients=4)
    log(f"  {server.name} items: {result['per_s']} req/s, p50 {result['p50_ms']} "
        f"p99 {result['p99_ms']} ms")
    return {"path": path, "status": status, "measured": True, **result}


def bench_per_zoom(tipg: Server, twin: Server, engine_url: sa.URL, layer: str,
                   zooms: tuple[int, ...], per_zoom: int) -> dict:
    """Each of up to ``per_zoom`` tiles per zoom, one at a time, from TiPg and the twin.

    Alternated tile by tile (TiPg, then the twin) so both see the same machine. Per zoom:
    median and p90 time, mean and largest size, features per tile, and how many tiles were
    cut (the twin's Tile-Truncated header; TiPg: a tile holding exactly its 10,000 limit).
    """
    import mapbox_vector_tile

    engine = create_engine(engine_url)
    with engine.connect() as conn:
        west, south, east, north = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            f"(SELECT ST_Extent(geom) AS e FROM {layer}) q")).one()
    engine.dispose()
    tms = morecantile.tms.get("WebMercatorQuad")
    rng = random.Random(SEED)
    out: dict = {}
    for z in zooms:
        every = list(tms.tiles(west, south, east, north, [z]))
        chosen = rng.sample(every, min(per_zoom, len(every)))
        stats: dict = {name: {"ms": [], "bytes": [], "features": [], "cut": 0}
                       for name in ("tipg", "twin")}
        for tile in chosen:
            for name, server, path in (
                    ("tipg", tipg, tipg_paths(layer, [tile])[0]),
                    ("twin", twin, twin_paths(layer, [tile])[0])):
                started = time.perf_counter()
                status, headers, body = server.get_full(path)
                stats[name]["ms"].append((time.perf_counter() - started) * 1000)
                stats[name]["bytes"].append(len(body) if status == 200 else 0)
                decoded = mapbox_vector_tile.decode(body) if status == 200 and body else {}
                # TiPg names its tile layer "default", the twin by the layer's id.
                found = None
                for key, value in decoded.items():
                    if key in (layer, "default"):
                        found = len(value["features"])
                stats[name]["features"].append(found or 0)
                if name == "twin" and "tile-truncated" in headers:
                    stats[name]["cut"] += 1
                if name == "tipg" and found == 10_000:
                    stats[name]["cut"] += 1
        out[str(z)] = {"tiles": len(chosen), "of": len(every), **{name: {
            "median_ms": round(statistics.median(v["ms"]), 1) if v["ms"] else None,
            "p90_ms": round(sorted(v["ms"])[int(0.9 * (len(v["ms"]) - 1))], 1)
            if v["ms"] else None,
            "mean_kb": round(statistics.mean(v["bytes"]) / 1024, 1) if v["bytes"] else None,
            "max_kb": round(max(v["bytes"]) / 1024, 1) if v["bytes"] else None,
            "max_features": max(v["features"]) if v["features"] else None,
            "cut_tiles": v["cut"]} for name, v in stats.items()}}
        log(f"z{z}: {out[str(z)]}")
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    """The ratio of a to b, to two decimals (None without both)."""
    return round(a / b, 2) if a and b else None


def summarize(results: dict, cfg: dict) -> dict:
    """Ratios against the issue's targets."""
    runs, summary = results["runs"], {}
    for workers in results["workers"]:
        tipg = runs[f"tipg-{workers}w"]
        nocache = runs[f"twin-{workers}w-nocache"]
        cache = runs[f"twin-{workers}w-cache"]
        for layer in cfg["layers"]:
            tipg_uncached = tipg[layer]["uncached"]["per_s"]
            tipg_repeat = tipg[layer]["warm"]["per_s"]
            twin_uncached = nocache[layer]["uncached"]["per_s"]
            twin_warm = cache[layer]["warm"]["per_s"]
            summary[f"{layer}-{workers}w"] = {
                "tipg_uncached_per_s": tipg_uncached, "twin_uncached_per_s": twin_uncached,
                "uncached_ratio": ratio(twin_uncached, tipg_uncached),
                "uncached_met": (ratio(twin_uncached, tipg_uncached) or 0) >= 1.5,
                "tipg_repeat_per_s": tipg_repeat, "twin_warm_per_s": twin_warm,
                "warm_ratio": ratio(twin_warm, tipg_repeat),
                "warm_met": (ratio(twin_warm, tipg_repeat) or 0) >= 10,
                "twin_warm_p50_ms": cache[layer]["warm"]["p50_ms"],
                "twin_warm_p99_ms": cache[layer]["warm"]["p99_ms"],
                "p99_met": (cache[layer]["warm"]["p99_ms"] or 1e9) < 50,
                "twin_uncached_p50_ms": nocache[layer]["uncached"]["p50_ms"],
                "twin_uncached_p99_ms": nocache[layer]["uncached"]["p99_ms"],
                "tipg_p50_ms": tipg[layer]["uncached"]["p50_ms"],
                "tipg_p99_ms": tipg[layer]["uncached"]["p99_ms"],
            }
    items = results.get("items", {})
    twin_items, tipg_items = items.get("twin"), items.get("tipg")
    if twin_items and twin_items.get("measured") and tipg_items and tipg_items.get("measured"):
        summary["items"] = {"twin_per_s": twin_items["per_s"], "tipg_per_s": tipg_items["per_s"],
                            "ratio": ratio(twin_items["per_s"], tipg_items["per_s"]),
                            "met": twin_items["per_s"] >= tipg_items["per_s"]}
    else:
        summary["items"] = {"measured": False,
                            "twin_status": (twin_items or {}).get("status")}
    return summary


def main() -> int:
    """Run everything and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sample, few tiles")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/twin-tiles-bench-data"),
                        help="where the generated sample is cached between runs")
    parser.add_argument("--generator", choices=("wrk", "python"),
                        default="wrk" if shutil.which("wrk") else "python",
                        help="load generator (default: wrk when on PATH)")
    parser.add_argument("--duration", type=int, default=WRK_DURATION_S,
                        help="seconds per wrk measurement (default %(default)s)")
    parser.add_argument("--workers", default="1,2",
                        help="uvicorn worker counts to run, comma-separated (default 1,2)")
    parser.add_argument("--fast-io", action="store_true",
                        help="run both servers with --loop uvloop --http httptools")
    parser.add_argument("--fast-io-path", type=Path, default=None,
                        help="a directory holding uvloop and httptools (pip install --target), "
                        "put on both servers' PYTHONPATH")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the JSON (default benchmarks/results/tiles.json, "
                        "tiles.quick.json with --quick)")
    parser.add_argument("--layers", default=None,
                        help="layers to measure, comma-separated (default: the preset's)")
    parser.add_argument("--sample-dir", type=Path, default=None,
                        help="load this sample directory instead of generating one")
    parser.add_argument("--scale", type=float, default=None, help="the generated sample's scale")
    parser.add_argument("--zooms", default=None,
                        help="zooms of the throughput walk, comma-separated (default 12-17)")
    parser.add_argument("--per-zoom", type=int, default=0,
                        help="also time up to N tiles per zoom one at a time (TiPg and the "
                        "uncached twin, 1 worker): time, size, features, cut tiles")
    parser.add_argument("--per-zoom-zooms", default="10,11,12,13,14",
                        help="zooms of --per-zoom (default %(default)s)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout of the twin (e.g. a clone of main): its app, "
                        "uncached, takes the warm twin's place in every alternated round, so "
                        "before and after are measured side by side (reported as its 'warm')")
    parser.add_argument("--no-walk", action="store_true",
                        help="skip the throughput walks (with --per-zoom)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.scale:
        cfg = {**cfg, "scale": args.scale}
    zooms = tuple(int(z) for z in args.zooms.split(",")) if args.zooms else ZOOMS
    if args.layers:
        cfg = {**cfg, "layers": tuple(args.layers.split(","))}
    worker_counts = tuple(int(w) for w in args.workers.split(","))
    began = time.monotonic()
    results: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "quick": args.quick, "config": {**cfg, "layers": list(cfg["layers"])},
                     "clients": CLIENTS, "runs": {}, "timings_s": {},
                     "workers": list(worker_counts), "generator": args.generator,
                     "fast_io": args.fast_io,
                     "load_average_at_start": os.getloadavg(), "uptime_at_start": uptime()}
    if args.generator == "wrk":
        results["wrk"] = {"version": subprocess.run(["wrk", "--version"], capture_output=True,
                                                    text=True).stdout.splitlines()[0],
                          "threads": WRK_THREADS, "connections": CLIENTS,
                          "duration_s": args.duration}
    tipg_version = ensure_tipg()
    home = Path(tempfile.mkdtemp(prefix="twin-tiles-bench-"))
    cluster = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    servers: list[Server] = []
    try:
        started = time.monotonic()
        cluster.start()
        results["timings_s"]["cluster_start"] = round(time.monotonic() - started, 1)
        sample = args.sample_dir or args.data_dir / f"sample-s{cfg['scale']}-m{cfg['months']}"
        started = time.monotonic()
        if not (sample / "manifest.json").exists():
            generate(sample, seed=SEED, scale=cfg["scale"], months=cfg["months"])
        results["timings_s"]["generate"] = round(time.monotonic() - started, 1)
        engine = create_engine(cluster.url)
        started = time.monotonic()
        migrate.upgrade(engine)
        load_sample(engine, sample)
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
        results["timings_s"]["migrate_and_load"] = round(time.monotonic() - started, 1)
        with engine.connect() as conn:
            results["rows"] = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                               for t in ("streets", "manholes", "compounds", "parking",
                                         "road_damage", "debris_piles", "readings")}
            results["postgres"] = conn.execute(sa.text("SHOW server_version")).scalar()
            results["postgis"] = conn.execute(sa.text("SELECT postgis_lib_version()")).scalar()
        log(f"sample loaded: {results['rows']} ({results['timings_s']})")
        tiles = pick_tiles(engine, cfg["tiles"], zooms)
        results["tiles"] = {"count": len(tiles),
                            "per_zoom": {z: sum(t.z == z for t in tiles) for z in zooms}}
        engine.dispose()
        socket_dir = str(cluster.socket_dir)
        db_url = f"postgresql://twin@/twin?host={socket_dir}"
        # TiPg's settings want a host in the URL: the socket directory, percent-encoded.
        tipg_url = f"postgresql://twin@{quote(socket_dir, safe='')}/twin"
        results["database_urls"] = {"twin": db_url, "tipg": tipg_url}
        venv_python = REPO / ".venv" / "bin" / "python"
        results["versions"] = {
            "python": platform.python_version(), "tipg": tipg_version,
            "tipg_uvicorn": package_version("uvicorn", TIPG_VENV / "bin" / "python"),
            "tipg_asyncpg": package_version("asyncpg", TIPG_VENV / "bin" / "python"),
            "twin_uvicorn": package_version("uvicorn", venv_python),
            "twin_fastapi": package_version("fastapi", venv_python),
            "twin_psycopg": package_version("psycopg", venv_python),
            "cpus": os.cpu_count(), "platform": platform.platform(),
        }
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TWIN_", "TIPG_", "PG"))}
        io_args: list[str] = []
        if args.fast_io:
            if args.fast_io_path:
                base_env["PYTHONPATH"] = str(args.fast_io_path.resolve())
            for python in (venv_python, TIPG_VENV / "bin" / "python"):
                subprocess.run([str(python), "-c", "import uvloop, httptools"], env=base_env,
                               check=True)
            io_args = ["--loop", "uvloop", "--http", "httptools"]
            results["versions"]["uvloop"] = package_version("uvloop", venv_python, base_env)
            results["versions"]["httptools"] = package_version("httptools", venv_python,
                                                               base_env)
        log_dir = home / "logs"
        log_dir.mkdir()
        run = {"generator": args.generator, "duration_s": args.duration, "work_dir": home}

        def twin(workers: int, cache_mb: int, checkout: Path = REPO) -> Server:
            env = {**base_env, "TWIN_DATABASE_URL": db_url, "TWIN_TILE_CACHE_MB": str(cache_mb)}
            name = f"twin-{workers}w-{'cache' if cache_mb else 'nocache'}"
            if checkout != REPO:
                name = f"twin-{workers}w-against-nocache"
            # uvicorn imports the app from its working directory first: the checkout's code.
            return Server(name, [str(REPO / ".venv" / "bin" / "uvicorn"), "--factory",
                                 "service.asgi:create", "--workers", str(workers), *io_args],
                          env, "/healthz", log_dir, cwd=checkout)

        def tipg(workers: int) -> Server:
            env = {**base_env, "DATABASE_URL": tipg_url, "TIPG_TILE_BUFFER": "64",
                   "TIPG_DB_SCHEMAS": '["public"]', "TIPG_MAX_FEATURES_PER_TILE": "10000"}
            return Server(f"tipg-{workers}w", [str(TIPG_VENV / "bin" / "uvicorn"),
                                               "tipg.main:app", "--workers", str(workers),
                                               *io_args],
                          env, "/healthz", log_dir)

        if args.per_zoom:
            group = [tipg(1), twin(1, 0)]
            servers.extend(group)
            per_zoom_zooms = tuple(int(z) for z in args.per_zoom_zooms.split(","))
            results["per_zoom"] = {layer: bench_per_zoom(
                group[0], group[1], cluster.url, layer, per_zoom_zooms, args.per_zoom)
                for layer in cfg["layers"]}
            for server in group:
                server.stop()
                servers.remove(server)
        for workers in worker_counts if not args.no_walk else ():
            log(f"{workers} worker(s): TiPg {tipg_version}, twin cache off, twin cache on")
            group = [tipg(workers), twin(workers, 0),
                     twin(workers, 0, args.against) if args.against else twin(workers, 256)]
            servers.extend(group)
            if workers == worker_counts[0]:  # one untimed pass warms PostgreSQL's buffers
                for layer in cfg["layers"]:
                    load(group[0].port, tipg_paths(layer, tiles))
                    load(group[1].port, twin_paths(layer, tiles))
            results["runs"].update(bench_interleaved(*group, cfg, tiles, workers, run))
            if workers == worker_counts[0]:
                results["items"] = {
                    "tipg": bench_items(group[0], "/collections/public.manholes/items?limit=1000",
                                        cfg["items_requests"]),
                    "twin": bench_items(group[1], "/ogc/collections/manholes/items?limit=1000",
                                        cfg["items_requests"]),
                }
            for server in group:
                server.stop()
                servers.remove(server)
        results["summary"] = (summarize(results, cfg) if not (args.no_walk or args.against)
                              else {})
    finally:
        for server in servers:
            server.stop()
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)
    results["timings_s"]["total"] = round(time.monotonic() - began, 1)
    results["load_average_at_end"] = os.getloadavg()
    results["uptime_at_end"] = uptime()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS_DIR / ("tiles.quick.json" if args.quick else "tiles.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out} in {results['timings_s']['total']} s")
    print(json.dumps(results["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
