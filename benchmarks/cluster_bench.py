"""Tiles/s and p99 of one node against two nodes behind HAProxy, on the local cluster.

    TWIN_CLUSTER_DIR=/tmp/twin-cl bash scripts/cluster.sh up
    .venv/bin/python benchmarks/cluster_bench.py --base 18700 --duration 10

Needs ``wrk`` (``apt-get install wrk``). The tile list: ``manholes`` tiles at z16-18 over the
layer's TileJSON bounds (up to 400). Each server is first walked once (untimed) so that its
tile cache holds every tile, then wrk (``-t2 -c32``) walks the list for ``--duration`` seconds,
with the nodes' warm caches ("cached"). Then the same with a query string no earlier run used
(``?properties=external_id`` and, at the second target, ``?properties=kind``), every tile once
per target from 16 threads of this process, so each is drawn by the database ("uncached": one
pass, tiles / seconds; the client shares the cores, so this figure is a floor).
Results go to ``benchmarks/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cluster.json"

LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
"""


def tiles(base: str, limit: int = 400) -> list[str]:
    bounds = httpx.get(f"{base}/tiles/manholes/tilejson.json", timeout=60).json()["bounds"]
    west, south, east, north = bounds
    paths = []
    for z in (16, 17, 18):
        def tx(lon: float, z: int = z) -> int:
            return int((lon + 180) / 360 * 2 ** z)

        def ty(lat: float, z: int = z) -> int:
            r = math.radians(lat)
            return int((1 - math.asinh(math.tan(r)) / math.pi) / 2 * 2 ** z)

        for x in range(tx(west), tx(east) + 1):
            for y in range(ty(north), ty(south) + 1):
                paths.append(f"/tiles/manholes/{z}/{x}/{y}.mvt")
    step = max(1, len(paths) // limit)
    return paths[::step][:limit]


def wrk(base: str, paths: list[str], duration: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        script = Path(tmp) / "walk.lua"
        script.write_text(LUA % listing)
        out = subprocess.run(["wrk", "-t1", "-c32", f"-d{duration}s",
                              "--latency", "-s", str(script), base], capture_output=True,
                             text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"per_s": round(rate), "p99_ms": round(float(p99.group(1)) * scale, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=18700, help="TWIN_CLUSTER_PORT")
    parser.add_argument("--duration", type=int, default=10)
    options = parser.parse_args()
    lb = f"http://127.0.0.1:{options.base}"
    node = f"http://127.0.0.1:{options.base + 11}"
    paths = tiles(lb)
    results: dict = {"cores": os.cpu_count(), "tiles": len(paths),
                     "load_average": os.getloadavg()[0]}
    for name, target in (("1 node", node), ("2 nodes behind HAProxy", lb)):
        with httpx.Client(timeout=60) as client:
            for _ in range(2):  # behind HAProxy each node gets every other tile
                for path in paths:
                    client.get(target + path)
        results[name] = {"cached": wrk(target, paths, options.duration)}
        print(name, results[name], flush=True)
    for name, target, query in (("1 node", node, "external_id"),
                                ("2 nodes behind HAProxy", lb, "kind")):
        fresh = [f"{target}{p}?properties={query}" for p in paths]
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16)) as client, \
                ThreadPoolExecutor(16) as pool:
            started = time.perf_counter()
            codes = list(pool.map(lambda url: client.get(url).status_code, fresh))
            seconds = time.perf_counter() - started
        assert set(codes) <= {200, 204}, set(codes)
        results[name]["uncached"] = {"per_s": round(len(fresh) / seconds)}
        print(name, results[name], flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
