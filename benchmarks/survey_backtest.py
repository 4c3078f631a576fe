"""Rolling-origin backtest of road wear on the generated yearly integer survey scenario.

    .venv/bin/python benchmarks/survey_backtest.py [--blocks 1500] [--seed 3] [--no-evidence]

Prints, per horizon, MAE of the model, persistence and the linear trend, the model's ratio to
persistence, 80 % interval coverage and crossings below 5 (JSON with --json). No database:
the scenario's frames go straight into a RoadContext (tests/predict/test_survey_scenario.py
checks the same backtest through the twin's ingest). ``--no-evidence`` drops the work records
and the programme, to measure what they add.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from predict.backtest import backtest_road, scenario_context
from sample_data.survey_scenario import generate_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--origins", default="2018,2019,2020,2021")
    parser.add_argument("--no-evidence", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    ctx = scenario_context(generate_scenario(n_blocks=args.blocks, seed=args.seed))
    if args.no_evidence:
        ctx.work = ctx.work.iloc[:0]
        ctx.programme = ctx.programme.iloc[:0]
    origins = [pd.Timestamp(f"{y}-10-01", tz="UTC") for y in args.origins.split(",")]
    report, _ = backtest_road(ctx, origins, [365, 730, 1095], window_days=150, threshold=5)
    report["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"{args.blocks} blocks, seed {args.seed}, origins {args.origins}, "
          f"evidence {'off' if args.no_evidence else 'on'}: {report['seconds']} s")
    for horizon, h in report["horizons"].items():
        c = h["crossings"]
        print(f"{horizon:>5} d  rows {h['rows']:>5}  MAE model {h['mae']['model']:.3f}  "
              f"persistence {h['mae']['persistence']:.3f}  trend {h['mae']['trend']:.3f}  "
              f"ratio {h['model_vs_persistence']:.3f} (by origin "
              f"{', '.join(f'{v:.2f}' for v in h['model_vs_persistence_by_origin'].values())})"
              f"  coverage {h['coverage']:.3f}  crossings P/R model "
              f"{c['model']['precision']}/{c['model']['recall']} trend "
              f"{c['linear_trend']['precision']}/{c['linear_trend']['recall']} "
              f"({c['model']['actual']})")


if __name__ == "__main__":
    main()
