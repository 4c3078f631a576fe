"""Versioned tiles through nginx's proxy_cache against nginx serving the same tiles from disk.

    TWIN_CLUSTER_DIR=/tmp/twin-cl TWIN_CLUSTER_PORT=20300 bash scripts/cluster.sh up
    .venv/bin/python benchmarks/tile_cache_bench.py --base 20300 --duration 10

Needs the local cluster (its nginx, +6, keeps versioned tiles in its proxy_cache), ``wrk`` and
``nginx`` (Debian packages). The tile list: ``manholes`` tiles at z16-18 over the layer's
bounds (up to 400, as ``cluster_bench.py``), at the versioned URLs the layer's TileJSON hands
out. Each list is walked once (untimed): that fills nginx's cache and gives the bodies, which
are written as files under a temporary root. A second nginx, started here on
``--static-port`` with the cluster nginx's settings (``worker_processes auto``, no access log,
``sendfile``), serves those files. Then wrk (``-t1 -c32 --latency``) walks the same paths on
each, in turns (cache, files, cache, files), ``--duration`` seconds each; the best turn of each
is reported, with the node's own warm cache (the versioned URLs straight at node A) beside.
Results go to ``benchmarks/results/tile_cache.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_bench import tiles, wrk  # noqa: E402  (a sibling script, not a package)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "tile_cache.json"

STATIC_CONF = """
{user}
worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 2048; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  types {{ application/vnd.mapbox-vector-tile mvt; }}
  client_body_temp_path {root}/tmp;
  proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp;
  scgi_temp_path {root}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {root}/files;
  }}
}}
"""


def versioned(nginx: str, paths: list[str]) -> list[str]:
    """The same tiles at the versioned URLs of the layer's TileJSON (path only)."""
    template = httpx.get(f"{nginx}/tiles/manholes/tilejson.json", timeout=60).json()["tiles"][0]
    version = template.split("/tiles/manholes/", 1)[1].split("/", 1)[0]
    return [p.replace("/tiles/manholes/", f"/tiles/manholes/{version}/", 1) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=18700, help="TWIN_CLUSTER_PORT")
    parser.add_argument("--static-port", type=int, default=20399,
                        help="port of the nginx that serves the files")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--turns", type=int, default=2)
    options = parser.parse_args()
    nginx = f"http://127.0.0.1:{options.base + 6}"
    node = f"http://127.0.0.1:{options.base + 11}"
    static = f"http://127.0.0.1:{options.static_port}"
    paths = versioned(nginx, tiles(nginx))
    root = Path(tempfile.mkdtemp(prefix="twin-static-"))
    os.chmod(root, 0o755)
    (root / "tmp").mkdir()
    kept = 0
    with httpx.Client(timeout=60) as client:
        for path in paths:  # fills nginx's cache; the bodies become the files
            answer = client.get(nginx + path)
            assert answer.status_code in (200, 204), (path, answer.status_code)
            target = root / "files" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(answer.content)
            kept += answer.status_code == 200
        statuses = {client.get(nginx + p).headers.get("x-cache-status") for p in paths}
        assert statuses == {"HIT"}, statuses  # every tile now comes from nginx's cache
        for path in paths:
            client.get(node + path)  # the node's own cache, warm too
    conf = root / "nginx.conf"
    conf.write_text(STATIC_CONF.format(user="user root;" if os.geteuid() == 0 else "",
                                       root=root, port=options.static_port))
    subprocess.run(["nginx", "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")],
                   check=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(static + paths[0], timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the static nginx did not start"
                time.sleep(0.1)
        results: dict = {"cores": os.cpu_count(), "tiles": len(paths), "non_empty": kept,
                         "load_average_before": round(os.getloadavg()[0], 2), "turns": {}}
        best: dict[str, dict] = {}
        targets = (("nginx proxy_cache (versioned)", nginx), ("nginx files", static))
        for turn in range(options.turns):
            for name, target in targets:
                measured = wrk(target, paths, options.duration)
                measured["load_average"] = round(os.getloadavg()[0], 2)
                results["turns"].setdefault(name, []).append(measured)
                if measured["per_s"] > best.get(name, {"per_s": -1})["per_s"]:
                    best[name] = measured
                print(turn, name, measured, flush=True)
        measured = wrk(node, paths, options.duration)
        measured["load_average"] = round(os.getloadavg()[0], 2)
        best["node A's own cache (versioned)"] = measured
        print("node", measured, flush=True)
        results["best"] = best
        cache, files = best[targets[0][0]]["per_s"], best[targets[1][0]]["per_s"]
        results["cache_over_files"] = round(cache / files, 2)
        print(f"proxy_cache / files: {cache / files:.2f}", flush=True)
    finally:
        pid = (root / "nginx.pid").read_text().strip() if (root / "nginx.pid").exists() else ""
        if pid:
            os.kill(int(pid), 15)
            time.sleep(0.5)
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
