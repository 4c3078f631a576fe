"""CQL2-filtered OGC API items of the twin against TiPg's own CQL2 filter, same table and filter.

    .venv/bin/python benchmarks/filter_bench.py            # scale-10 sample (a few minutes)
    .venv/bin/python benchmarks/filter_bench.py --quick    # scale-1 sample: a smoke check

The set-up is benchmarks/tiles_bench.py's (its helpers are imported): one embedded PostGIS
cluster in a temporary TWIN_HOME holding the generated sample, the twin under uvicorn
(``service.asgi:create``, 1 worker) and TiPg from its own virtualenv (``/tmp/tipg-venv``),
both on the same socket. Each filter is asked of both as ``items?limit=1000`` with
``filter-lang=cql2-text``: ``/ogc/collections/{layer}/items`` on the twin,
``/collections/public.{table}/items`` on TiPg, over columns the table itself holds (the twin's
layers add computed columns, e.g. the manholes' active alerts, which it computes too). Both
answers are checked to hold the same ids before timing. Timing: ``ROUNDS`` rounds alternated
between the servers, each ``--requests`` requests at 4 concurrent keep-alive connections
(tiles_bench's Python client); the median round is kept.

Raw figures go to ``benchmarks/results/filter.json`` (``filter.quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from tiles_bench import (  # noqa: E402
    SEED,
    TIPG_VENV,
    Server,
    ensure_tipg,
    load,
    log,
    uptime,
)

from geo import migrate  # noqa: E402
from geo.cluster import EmbeddedCluster  # noqa: E402
from geo.database import create_engine  # noqa: E402
from ingest.sample import load_sample  # noqa: E402
from sample_data.generate import generate  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
ROUNDS = 3
CLIENTS = 4
# (name, layer/table, CQL2 text over the table's own columns)
FILTERS = (
    ("numeric+text", "manholes", "depth_m > 1.5 AND kind IN ('sewer', 'storm')"),
    ("like", "streets", "name LIKE 'B%' OR road_class = 'residential'"),
    ("spatial", "manholes", None),  # S_INTERSECTS with the south-west quarter of the extent
)


def _ids(body: bytes) -> list:
    collection = json.loads(body)
    return sorted(f["id"] if isinstance(f["id"], int) else int(f["id"])
                  for f in collection["features"])


def main() -> int:
    """Run the comparison and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scale-1 sample")
    parser.add_argument("--requests", type=int, default=40, help="requests per round")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/twin-filter-bench-data"),
                        help="where the generated sample is cached between runs")
    args = parser.parse_args()
    scale = 1 if args.quick else 10
    began = time.monotonic()
    results: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "scale": scale, "months": 3, "rounds": ROUNDS, "clients": CLIENTS,
                     "requests_per_round": args.requests, "uptime_at_start": uptime(),
                     "filters": {}}
    results["tipg_version"] = ensure_tipg()
    home = Path(tempfile.mkdtemp(prefix="twin-filter-bench-"))
    cluster = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    servers: list[Server] = []
    try:
        cluster.start()
        sample = args.data_dir / f"sample-s{scale}-m3"
        if not (sample / "manifest.json").exists():
            generate(sample, seed=SEED, scale=scale, months=3)
        engine = create_engine(cluster.url)
        migrate.upgrade(engine)
        load_sample(engine, sample)
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
            results["rows"] = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                               for t in ("streets", "manholes")}
            w, s, e, n = conn.execute(sa.text(
                "SELECT ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM "
                "(SELECT ST_Extent(geom) AS x FROM manholes) q")).one()
        engine.dispose()
        log(f"sample loaded: {results['rows']}")
        spatial = (f"S_INTERSECTS(geom, POLYGON(({w} {s}, {(w + e) / 2} {s}, "
                   f"{(w + e) / 2} {(s + n) / 2}, {w} {(s + n) / 2}, {w} {s})))")
        socket_dir = str(cluster.socket_dir)
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TWIN_", "TIPG_", "PG"))}
        log_dir = home / "logs"
        log_dir.mkdir()
        twin = Server("twin", [str(REPO / ".venv" / "bin" / "uvicorn"), "--factory",
                               "service.asgi:create", "--workers", "1"],
                      {**base_env, "TWIN_DATABASE_URL":
                       f"postgresql://twin@/twin?host={socket_dir}"}, "/healthz", log_dir)
        servers.append(twin)
        tipg = Server("tipg", [str(TIPG_VENV / "bin" / "uvicorn"), "tipg.main:app",
                               "--workers", "1"],
                      {**base_env, "DATABASE_URL":
                       f"postgresql://twin@{quote(socket_dir, safe='')}/twin",
                       "TIPG_DB_SCHEMAS": '["public"]'}, "/healthz", log_dir)
        servers.append(tipg)
        for name, layer, text in FILTERS:
            text = text or spatial
            query = urlencode({"filter": text, "filter-lang": "cql2-text", "limit": 1000})
            # The twin's geometry queryable is "geometry" (and "geom"); TiPg's is the column.
            paths = {"twin": f"/ogc/collections/{layer}/items?{query}",
                     "tipg": f"/collections/public.{layer}/items?{query}"}
            answers = {server.name: server.get(paths[server.name]) for server in (twin, tipg)}
            for server_name, (status, body) in answers.items():
                if status != 200:
                    raise RuntimeError(f"{server_name} answered {status} to {name}: "
                                       f"{body[:300]!r}")
            same = _ids(answers["twin"][1]) == _ids(answers["tipg"][1])
            log(f"{name}: {len(_ids(answers['twin'][1]))} features, same ids: {same}")
            rounds: dict = {"twin": [], "tipg": []}
            for server in (twin, tipg):  # warm
                load(server.port, [paths[server.name]] * CLIENTS, clients=CLIENTS)
            for _ in range(ROUNDS):
                for server in (tipg, twin):
                    rounds[server.name].append(load(
                        server.port, [paths[server.name]] * args.requests, clients=CLIENTS))
            medians = {k: sorted(v, key=lambda r: r["per_s"])[len(v) // 2]
                       for k, v in rounds.items()}
            results["filters"][name] = {
                "layer": layer, "filter": text, "features": len(_ids(answers["twin"][1])),
                "same_ids": same, "paths": paths,
                "twin": {**medians["twin"], "rounds_per_s": [r["per_s"] for r in rounds["twin"]]},
                "tipg": {**medians["tipg"], "rounds_per_s": [r["per_s"] for r in rounds["tipg"]]},
                "twin_over_tipg": round(medians["twin"]["per_s"] / medians["tipg"]["per_s"], 2),
            }
            log(f"  twin {medians['twin']['per_s']} req/s (p50 {medians['twin']['p50_ms']} ms), "
                f"TiPg {medians['tipg']['per_s']} req/s (p50 {medians['tipg']['p50_ms']} ms): "
                f"{results['filters'][name]['twin_over_tipg']}x")
    finally:
        for server in servers:
            server.stop()
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)
    results["total_s"] = round(time.monotonic() - began, 1)
    results["uptime_at_end"] = uptime()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / ("filter.quick.json" if args.quick else "filter.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
