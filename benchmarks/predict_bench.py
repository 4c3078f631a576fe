"""Speed of road-wear training and scoring.

    .venv/bin/python benchmarks/predict_bench.py                 # scale 10, 100,000 segments
    .venv/bin/python benchmarks/predict_bench.py --scale 1 --segments 10000   # a smoke check

1. A sample of ``--scale`` (seed 7, 24 months) is generated into ``--data-dir`` (cached) and
   loaded through the real ingest into the database of an embedded cluster that this script
   starts in a temporary TWIN_HOME and destroys at the end (``benchmarks/harness.py``; the
   migration, load and ANALYZE are timed together as ``load_sample_s``, apart from the rest).
2. *Train*: reading the history and surroundings from PostGIS, building the training
   examples, and fitting the model (``load_road_context`` + ``fit_road_model``), timed
   together and apart.
3. *Score*: a feature frame of ``--segments`` streets is synthesised by resampling the real
   streets' features (seeded), and ``forecast`` is timed for horizons 30, 90 and 365 days with
   days-to-threshold (the median path on a 6-point grid that holds two of the horizons): the
   median once per distinct day (6) and the two bounds per horizon (3 x 2), 12 tree-ensemble
   predictions per segment in three passes (one per model).

Results are printed as JSON (recorded by hand in ``docs/benchmarks.md``, section Predict).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness import embedded_cluster, generated_sample, load_generated_sample  # noqa: E402


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/twin-predict-bench"))
    args = parser.parse_args()

    from predict.features import load_road_context, road_features
    from predict.road import as_utc, fit_road_model, forecast

    sample_dir = generated_sample(args.data_dir / f"scale-{args.scale:g}", scale=args.scale,
                                  months=24)
    results: dict = {"scale": args.scale, "cpus": os.cpu_count(),
                     "python": platform.python_version()}
    with embedded_cluster("twin-predict-bench-") as (_home, cluster):
        t = time.perf_counter()
        engine = load_generated_sample(cluster, sample_dir, scale=args.scale, months=24)
        results["load_sample_s"] = round(time.perf_counter() - t, 1)
        with engine.connect() as conn:
            as_of = as_utc(conn.exec_driver_sql(
                "SELECT max(observed_at) FROM readings r JOIN metrics m ON m.id = r.metric_id "
                "WHERE m.name = 'pci'").scalar())
            counts = conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM streets), (SELECT count(*) FROM readings r "
                "JOIN metrics m ON m.id = r.metric_id WHERE m.name = 'pci')").one()
        results["streets"], results["pci_readings"] = int(counts[0]), int(counts[1])

        t0, c0 = time.perf_counter(), time.process_time()
        with engine.connect() as conn:
            ctx = load_road_context(conn, "pci", as_of.to_pydatetime())
        t1 = time.perf_counter()
        model = fit_road_model(ctx, as_of, random_state=0)
        t2 = time.perf_counter()
        results["train"] = {"read_s": round(t1 - t0, 2), "examples_and_fit_s": round(t2 - t1, 2),
                            "total_s": round(t2 - t0, 2),
                            "cpu_s": round(time.process_time() - c0, 2), "examples": model.rows}

        features = road_features(ctx, as_of)
        rng = np.random.default_rng(0)
        big = features.iloc[rng.integers(0, len(features), args.segments)].copy()
        big.index = pd.RangeIndex(args.segments, name="asset_id")
        noise = rng.normal(0, 0.02, args.segments)
        big["last_value"] = np.clip(big["last_value"] + noise, 0, 1)
        t3, c3 = time.perf_counter(), time.process_time()
        out = forecast(model, big, as_of, [30, 90, 365], threshold=55.0)
        t4, c4 = time.perf_counter(), time.process_time()
        # CPU seconds of this process (all its threads): unlike wall time, hardly moved by
        # other work on a shared machine; with 2 threads the wall time can be about half.
        results["score"] = {"segments": args.segments, "forecast_rows": int(len(out)),
                            "seconds": round(t4 - t3, 2), "cpu_seconds": round(c4 - c3, 2)}
        engine.dispose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
