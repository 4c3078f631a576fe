"""Houses: what loading them, tiling them (with their open matters) and the 3D file cost.

    .venv/bin/python benchmarks/buildings_bench.py               # scale 10 (a small town)
    .venv/bin/python benchmarks/buildings_bench.py --scale 1     # the committed sample's size

An embedded PostGIS cluster (``geo.cluster.EmbeddedCluster``) in a temporary TWIN_HOME, destroyed
at the end. The sample is generated (``generate(out, seed=7, scale, months=1)``) and only its
asset layers are loaded through the real ingest (``ingest_file``): streets, manholes, parking,
compounds, then buildings (timed: validation, COPY, upsert and the link of each house to its
compound by place). Then, to give the counts something to count, one active alert at every
tenth house and one at every fortieth manhole (inserted by SQL).

Measured, each tile rendered by ``geo.tiles.render_tile`` on one connection (no HTTP, no
cache), every z16 tile holding a house, in three passes after one untimed warm-up pass:

1. ``buildings`` with all its properties (the lateral counts of requests and alerts within
   ~10 m of each footprint, and the compound join);
2. ``buildings`` with only what the 3D view draws without its popup (``drawn_height_m``,
   ``compound_type``, ``open_matters``: the counts still run);
3. ``buildings`` with ``floors`` and ``height_m`` only (no counts: the peer);
4. ``compounds`` over the same tiles (the polygon layer the twin had before).

And ``render_3d(engine, inline=True)`` (the file ``twin map --kind 3d`` writes): time and size.
Raw figures go to ``benchmarks/results/buildings.s<scale>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import morecantile
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geo import migrate, tiles  # noqa: E402
from geo.cluster import EmbeddedCluster  # noqa: E402
from geo.database import create_engine  # noqa: E402
from ingest.pipeline import ingest_file  # noqa: E402
from sample_data.generate import generate  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")
LAYERS = ("streets", "manholes", "parking", "compounds", "buildings")
PASSES = {
    "buildings_all": ("buildings", None),
    "buildings_3d": ("buildings", ("drawn_height_m", "compound_type", "open_matters")),
    "buildings_no_counts": ("buildings", ("floors", "height_m")),
    "compounds": ("compounds", None),
}


def _tiles(engine, z: int) -> list[morecantile.Tile]:
    with engine.connect() as conn:
        points = conn.execute(sa.text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM buildings) q"
        )).all()
    return sorted({TMS.tile(x, y, z) for x, y in points})


def _pass(engine, layer_id: str, properties, found: list) -> dict:
    from geo.layers import LAYERS as REGISTRY

    names = properties or REGISTRY[layer_id].property_names
    times, size = [], 0
    with engine.connect() as conn:
        for t in found:
            request = tiles.TileRequest(layer_id, t.z, t.x, t.y, properties=tuple(names))
            started = time.perf_counter()
            body = tiles.render_tile(conn, request)
            times.append((time.perf_counter() - started) * 1000)
            size += len(body)
    times.sort()
    return {"tiles": len(times), "median_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "total_s": round(sum(times) / 1000, 2), "bytes": size}


def main() -> int:
    """Run the benchmark and write its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--zoom", type=int, default=16)
    args = parser.parse_args()
    results: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                     "load_avg_start": os.getloadavg(), "scale": args.scale, "zoom": args.zoom}
    home = Path(tempfile.mkdtemp(prefix="twin-buildings-bench-"))
    cluster = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    try:
        cluster.start()
        sample = home / "sample"
        generate(sample, seed=7, scale=args.scale, months=1)
        engine = create_engine(cluster.url)
        migrate.upgrade(engine)
        loads = {}
        for layer in LAYERS:
            report = ingest_file(engine, layer, sample / "neighbourhood.gpkg", layer_name=layer,
                                 source="sample", rejects_path=home / f"{layer}.rejects.csv")
            loads[layer] = {"rows": report.rows_new, "rejected": report.rows_rejected,
                            "seconds": report.duration_s,
                            "rows_per_s": round(report.rows_new / report.duration_s)}
        results["loads"] = loads
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO alerts (kind, severity, asset_layer, asset_id, reason, geom) "
                "SELECT 'bench', 'medium', 'buildings', id, 'benchmark', ST_PointOnSurface(geom) "
                "FROM buildings WHERE id % 10 = 0 UNION ALL "
                "SELECT 'bench', 'low', 'manholes', id, 'benchmark', geom FROM manholes "
                "WHERE id % 40 = 0"))
            conn.execute(sa.text("ANALYZE"))
            results["rows"] = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                               for t in (*LAYERS, "alerts")}
        found = _tiles(engine, args.zoom)
        for layer_id, properties in PASSES.values():  # warm PostgreSQL's buffers alike
            _pass(engine, layer_id, properties, found)
        results["tiles"] = {name: _pass(engine, layer_id, properties, found)
                            for name, (layer_id, properties) in PASSES.items()}
        from service.map_pages import render_3d

        started = time.perf_counter()
        page = render_3d(engine, inline=True)
        results["file_3d"] = {"seconds": round(time.perf_counter() - started, 2),
                              "megabytes": round(len(page.encode()) / 1e6, 2)}
        results["load_avg_end"] = os.getloadavg()
        engine.dispose()
    finally:
        cluster.destroy()
    out = REPO / "benchmarks" / "results" / f"buildings.s{args.scale:g}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
