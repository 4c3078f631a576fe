"""What speaking Chinese costs: catalogue compile, gettext, and rendering the maps in zh vs en.

    .venv/bin/python benchmarks/i18n_bench.py [--repeats 5]

No database: the maps are built from the map tests' small inputs (tests/maps/test_maps.py), so
the figures are the i18n overhead of building a page, not of reading the twin.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import run_times  # noqa: E402
from geo import i18n  # noqa: E402
from geo.i18n import _, use_locale  # noqa: E402


def _best(fn, repeats: int) -> float:
    return min(run_times(fn, repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/i18n.json")
    args = parser.parse_args()

    def compile_all() -> None:
        i18n.translations.cache_clear()
        for locale in i18n.LOCALES:
            i18n.translations(locale)

    results: dict[str, float] = {"compile_both_catalogues_s": _best(compile_all, args.repeats)}
    calls = 100_000
    for locale in ("en", "zh"):
        with use_locale(locale):
            results[f"gettext_{locale}_us_per_call"] = _best(
                lambda: [_("Crew map: open alerts") for _i in range(calls)], args.repeats
            ) / calls * 1e6

    from tests.maps.test_maps import _crew_html, _planner_html

    for locale in ("en", "zh"):
        with use_locale(locale):
            _crew_html()  # warm: imports, templates
            results[f"crew_map_{locale}_s"] = _best(_crew_html, args.repeats)
            results[f"planner_map_{locale}_s"] = _best(_planner_html, args.repeats)
    results["messages"] = len(i18n.translations("zh_Hans")._catalog)  # type: ignore[attr-defined]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for name, value in results.items():
        print(f"{name:32s} {value:.6g}")


if __name__ == "__main__":
    main()
