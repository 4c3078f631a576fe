"""What the benchmarks share: a throw-away embedded PostGIS holding a generated sample, and timing.

A benchmark script puts the repository on ``sys.path`` and then imports from here::

    REPO = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(REPO))
    from benchmarks.harness import embedded_cluster, load_generated_sample, median_time
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import migrate
from geo.cluster import EmbeddedCluster
from geo.database import create_engine
from ingest.sample import load_sample
from sample_data.generate import generate


def sample_parser(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark on a generated sample: ``--quick`` (scale 1, else 10),
    ``--repeat`` timed runs, and ``--data-dir`` where generated samples are kept."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()))
    return parser


def run_times(fn: Callable[[], object], repeat: int, *, warm: bool = False) -> list[float]:
    """Seconds taken by each of ``repeat`` calls of ``fn``.

    With ``warm``, one untimed call first (it fills buffers, caches and lazy imports).
    """
    if warm:
        fn()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return runs


def median_time(fn: Callable[[], object], repeat: int, *, warm: bool = False) -> float:
    """The median of :func:`run_times`."""
    return statistics.median(run_times(fn, repeat, warm=warm))


@contextmanager
def embedded_cluster(prefix: str) -> Iterator[tuple[Path, EmbeddedCluster]]:
    """A started embedded cluster in a new temporary TWIN_HOME, destroyed with it at the end."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    try:
        cluster.start()
        yield home, cluster
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def generated_sample(sample: Path, *, scale: float, months: int = 3, seed: int = 7) -> Path:
    """``sample``, holding ``generate(sample, seed, scale, months)``: made unless already there."""
    if not (sample / "manifest.json").exists():
        generate(sample, seed=seed, scale=scale, months=months)
    return sample


def load_generated_sample(cluster: EmbeddedCluster, sample: Path, *, scale: float,
                          months: int = 3, seed: int = 7) -> Engine:
    """An engine on ``cluster`` holding ``generate(sample, seed, scale, months)``, analysed.

    The generated files are kept in ``sample`` and reused when they are already there.
    """
    generated_sample(sample, scale=scale, months=months, seed=seed)
    engine = create_engine(cluster.url)
    migrate.upgrade(engine)
    load_sample(engine, sample)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    return engine
