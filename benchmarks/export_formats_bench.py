"""Export formats side by side: time to write (the twin) and to read back whole (GDAL's ogrinfo).

    .venv/bin/python benchmarks/export_formats_bench.py            # scale 10
    .venv/bin/python benchmarks/export_formats_bench.py --quick    # the scale-1 sample

One embedded PostGIS cluster in a temporary TWIN_HOME, destroyed at the end, holding
``generate(out, seed=7, scale=S, months=3)`` loaded with ``ingest.sample.load_sample``. For
``manholes`` and ``streets`` and every format of ``service.export_formats.FORMATS``: the median of
``--repeat`` runs of ``export_formats.write_export`` (database to file), the file's size, and the
median time of ``ogrinfo -ro -al -q`` reading every feature of it (the system's GDAL, the
reader QGIS uses; GeoParquet is skipped where that GDAL has no Parquet driver).

Raw figures go to ``benchmarks/results/export_formats.json`` (``.quick.json`` with --quick).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness import embedded_cluster, load_generated_sample, sample_parser  # noqa: E402
from benchmarks.harness import median_time as _median_time  # noqa: E402
from service import export_formats  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
LAYERS = ("manholes", "streets")


def median_time(fn, repeat: int) -> float:
    return round(_median_time(fn, repeat), 4)


def main() -> None:
    args = sample_parser(__doc__.splitlines()[0]).parse_args()
    scale = 1 if args.quick else 10
    drivers = subprocess.run(["ogrinfo", "--formats"], capture_output=True, text=True).stdout
    gdal = subprocess.run(["ogrinfo", "--version"], capture_output=True, text=True).stdout
    results: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "scale": scale, "repeat": args.repeat, "gdal": gdal.strip(),
                     "load_average_at_start": os.getloadavg(), "layers": {}}
    with embedded_cluster("twin-export-bench-") as (home, cluster):
        engine = load_generated_sample(
            cluster, args.data_dir / f"sample-districts-s{scale}-m3", scale=scale)
        for layer_id in LAYERS:
            query = export_formats.export_query(export_formats.find_layer(layer_id))
            per_format = results["layers"][layer_id] = {}
            for fmt in export_formats.FORMATS.values():
                out = home / "out"
                if out.exists():
                    shutil.rmtree(out)
                out.mkdir()
                written = export_formats.write_export(engine, query, fmt, out)  # untimed, warms

                def write(fmt=fmt, query=query) -> None:
                    scratch = Path(tempfile.mkdtemp(dir=home))
                    export_formats.write_export(engine, query, fmt, scratch)
                    shutil.rmtree(scratch)

                entry = {"features": written.features, "bytes": written.path.stat().st_size,
                         "write_s": median_time(write, args.repeat)}
                source = str(written.path)
                if fmt.suffix == "shp.zip":
                    source = f"/vsizip/{written.path}"
                if fmt.suffix != "parquet" or "Parquet" in drivers:
                    entry["gdal_read_s"] = median_time(lambda source=source: subprocess.run(
                        ["ogrinfo", "-ro", "-al", "-q", source], check=True,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), args.repeat)
                per_format[fmt.suffix] = entry
                print(f"{layer_id} {fmt.suffix}: {entry}", flush=True)
        engine.dispose()
    RESULTS_DIR.mkdir(exist_ok=True)
    out_file = RESULTS_DIR / ("export_formats.quick.json" if args.quick
                              else "export_formats.json")
    out_file.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out_file}")


if __name__ == "__main__":
    main()
