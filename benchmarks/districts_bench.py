"""What knowing each feature's district costs: maintained columns against a look-up at read time.

    .venv/bin/python benchmarks/districts_bench.py            # scale 10 (a few minutes)
    .venv/bin/python benchmarks/districts_bench.py --quick    # the scale-1 sample: a smoke check

One embedded PostGIS cluster in a temporary TWIN_HOME, destroyed at the end, holding
``generate(out, seed=7, scale=S, months=3)`` loaded with ``ingest.sample.load_sample`` (its
districts first). Measured, each the median of ``--repeat`` passes after one untimed pass
(the variants of 1 and 2 taken in turn within each pass, so a change in the machine's load
falls on all of them):

1. **tiles**: every z14 and z15 tile over the sample of ``streets`` and ``manholes`` rendered
   with ``geo.tiles.render_tile``: the layers as published (``district_id`` kept by triggers,
   names joined by primary key) against the same layers with the district looked up per
   feature at read time (``LEFT JOIN districts dx ON dx.id = district_of(t.geom)``), and
   against no district at all (the layer before migration 0009);
2. **items**: ``geo.features.features_page`` of 1,000 streets and 1,000 manholes, the same
   three ways;
3. **writes**: the row trigger's cost, ``UPDATE manholes SET geom = geom`` (every row placed
   again) with the trigger enabled and disabled;
4. **re-placing**: ``UPDATE districts SET geom = geom``, which re-places every located row.

Raw figures go to ``benchmarks/results/districts.json`` (``districts.quick.json`` with --quick).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import morecantile
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness import (  # noqa: E402
    embedded_cluster,
    load_generated_sample,
    median_time,
    sample_parser,
)
from geo import layers as layer_registry  # noqa: E402
from geo import tiles  # noqa: E402
from geo.features import FeatureQuery, features_page  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
LAYERS = ("streets", "manholes")
JOIN = " LEFT JOIN districts dx ON dx.id = t.district_id"
LOOKUP = " LEFT JOIN districts dx ON dx.id = district_of(t.geom)"
NONE = " LEFT JOIN districts dx ON FALSE"


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


def variant(how: str) -> None:
    """Make the registry's streets and manholes find their district ``how``."""
    for name in LAYERS:
        original = ORIGINAL[name]
        layer_registry.LAYERS[name] = dataclasses.replace(
            original, select=original.select.replace(JOIN, how))
    tiles._tile_statement.cache_clear()


def timed(fn, repeat: int) -> float:
    return median_time(fn, repeat, warm=True)  # the untimed call warms buffers and caches


def pick_tiles(engine, layer: str) -> list[morecantile.Tile]:
    with engine.connect() as conn:
        bounds = conn.execute(sa.text(
            f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            f"(SELECT ST_Extent(geom) AS e FROM {layer}) x")).one()
    tms = morecantile.tms.get("WebMercatorQuad")
    return list(tms.tiles(*bounds, zooms=[14, 15]))


ORIGINAL = {name: layer_registry.LAYERS[name] for name in LAYERS}


def main() -> None:
    args = sample_parser(__doc__.splitlines()[0]).parse_args()
    scale = 1 if args.quick else 10
    results: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "scale": scale, "months": 3, "repeat": args.repeat,
                     "load_average_at_start": os.getloadavg()}
    with embedded_cluster("twin-districts-bench-") as (_home, cluster):
        engine = load_generated_sample(
            cluster, args.data_dir / f"sample-districts-s{scale}-m3", scale=scale)
        with engine.connect() as conn:
            results["rows"] = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                               for t in ("districts", "streets", "manholes", "compounds",
                                         "parking", "road_damage", "debris_piles")}
        log(f"loaded {results['rows']}")

        hows = {"maintained": JOIN, "read_time": LOOKUP, "no_district": NONE}
        results["tiles_s"], results["tile_bytes"], results["items_s"] = {}, {}, {}
        for layer in LAYERS:
            chosen = pick_tiles(engine, layer)
            results.setdefault("tile_count", {})[layer] = len(chosen)
            sizes: dict[str, int] = {}

            def render(layer=layer, chosen=chosen) -> int:
                with engine.connect() as conn:
                    return sum(len(tiles.render_tile(conn, tiles.TileRequest(
                        layer, t.z, t.x, t.y, None,
                        layer_registry.LAYERS[layer].property_names, ())).body) for t in chosen)

            def page(layer=layer) -> int:
                with engine.connect() as conn:
                    return features_page(conn, layer_registry.LAYERS[layer], FeatureQuery(
                        as_of=datetime.now(UTC), limit=1000)).returned

            # Round robin over the variants, so a change of the machine's load falls on all.
            runs: dict[str, list[float]] = {f"{kind}/{name}": [] for kind in ("tiles", "items")
                                            for name in hows}
            for round_ in range(args.repeat + 1):
                for name, how in hows.items():
                    variant(how)
                    for kind, fn in (("tiles", render), ("items", page)):
                        started = time.perf_counter()
                        out = fn()
                        if round_:  # the first round is untimed: it warms the buffers
                            runs[f"{kind}/{name}"].append(time.perf_counter() - started)
                        if kind == "tiles":
                            sizes[name] = out
            for name in hows:
                results["tiles_s"][f"{layer}/{name}"] = round(
                    statistics.median(runs[f"tiles/{name}"]), 4)
                results["items_s"][f"{layer}/{name}"] = round(
                    statistics.median(runs[f"items/{name}"]), 4)
                results["tile_bytes"][f"{layer}/{name}"] = sizes[name]
                log(f"{layer} {name}: tiles {results['tiles_s'][f'{layer}/{name}']} s, "
                    f"items {results['items_s'][f'{layer}/{name}']} s")
        variant(JOIN)

        def rewrite(enabled: bool) -> None:
            with engine.begin() as conn:
                if not enabled:
                    conn.execute(sa.text(
                        "ALTER TABLE manholes DISABLE TRIGGER manholes_locate_district"))
                conn.execute(sa.text("UPDATE manholes SET geom = geom"))
                if not enabled:
                    conn.execute(sa.text(
                        "ALTER TABLE manholes ENABLE TRIGGER manholes_locate_district"))

        results["writes_s"] = {
            "manholes_update_with_trigger": round(timed(lambda: rewrite(True), args.repeat), 4),
            "manholes_update_without_trigger": round(
                timed(lambda: rewrite(False), args.repeat), 4)}
        log(f"writes {results['writes_s']}")

        def replace_all() -> None:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE districts SET geom = geom"))

        results["replace_all_districts_s"] = round(timed(replace_all, args.repeat), 4)
        log(f"re-placing every row: {results['replace_all_districts_s']} s")
        engine.dispose()
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / ("districts.quick.json" if args.quick else "districts.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
