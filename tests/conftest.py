"""Fixtures: a real PostGIS for the whole session, and a fresh database per test module.

By default the tests run their own embedded cluster (the product's default path) in a
temporary TWIN_HOME. With TWIN_TEST_DATABASE_URL set to a superuser URL of an external
PostGIS server, fresh databases are made there instead.

Migrating and loading the sample through the real ingest take seconds each, and most modules
need one or the other. Both are done once per session into template databases, and each
module gets a copy of its own (``CREATE DATABASE ... TEMPLATE``: a file copy on the server,
so the module's database is exactly what the migration or the load left). The load itself is
tested on a database of its own in tests/ingest/test_sample_load.py.
"""

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from geo import migrate
from geo.cluster import EmbeddedCluster
from geo.database import create_engine, parse_database_url
from ingest.sample import load_sample
from sample_data import SAMPLE_DIR

# The hooks that skip or fail tests needing a missing program (GDAL, Mosquitto, Chromium).
from tests.tools import pytest_configure, pytest_runtest_setup  # noqa: F401


def pytest_xdist_auto_num_workers(config) -> int:
    """How many workers ``-n auto`` (pyproject's default) starts: one more than the CPUs.

    Much of the suite waits (on subprocesses, browsers, brokers, the database), so one worker
    per CPU leaves CPUs idle; a third worker on this 2-CPU machine is measured in
    docs/benchmarks.md ("Test suite"). PYTEST_XDIST_AUTO_NUM_WORKERS overrides it.
    """
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if chosen:
        return int(chosen)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) + 1


def pytest_collection_modifyitems(config, items):
    """Put the modules holding a test marked ``slow`` first, each module's tests in order.

    The suite runs a module at a time on each of several workers (pyproject's
    ``--dist loadfile``), handing out modules in this order: a slow module handed out last
    would keep one worker busy long after the others are done; handed out first, it runs
    beside the quick ones. The order within a module is kept, and the sort is the same in
    every worker (xdist requires an identical collection).
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: otherwise collection order


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[EmbeddedCluster]:
    home = tmp_path_factory.mktemp("twin-home")
    embedded = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    embedded.start()
    # The tests' own throw-away cluster need not survive a power cut: without waiting for the
    # disk on every commit, checkpoint and database copy, the suite runs much faster. A killed
    # server still recovers from its WAL (the tests that stop it are unaffected).
    admin = create_engine(embedded.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
            conn.execute(sa.text(f"ALTER SYSTEM SET {setting}"))
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    admin.dispose()
    yield embedded
    embedded.destroy()


@pytest.fixture(scope="session")
def server_url(cluster) -> URL:
    """A superuser URL on the server the tests use, at its maintenance database."""
    external = os.environ.get("TWIN_TEST_DATABASE_URL")
    url = parse_database_url(external) if external else cluster.url
    return url.set(database="postgres")


@pytest.fixture(scope="session")
def make_database(server_url) -> Iterator[Callable[..., URL]]:
    """Create fresh databases (with PostGIS unless asked not to); all are gone at the end.

    ``template`` names a database to copy instead (it must have no open connection).
    """
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    made = []

    def make(*, postgis: bool = True, owner: str | None = None,
             template: str | None = None) -> URL:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            owned = f' OWNER "{owner}"' if owner else ""
            copied = f' TEMPLATE "{template}"' if template else ""
            for attempt in range(20):
                try:
                    conn.execute(sa.text(f"CREATE DATABASE {name}{owned}{copied}"))
                    break
                except sa.exc.OperationalError as error:
                    # A template no test uses can still have a session: autovacuum's worker,
                    # drawn by a load just made, or a connection closing. The copy then fails
                    # ("being accessed by other users"): end those sessions and try again.
                    if not template or "accessed by other users" not in str(error) or \
                            attempt == 19:
                        raise
                    conn.execute(sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :t AND pid <> pg_backend_pid()"), {"t": template})
                    time.sleep(0.2)
        made.append(name)
        url = server_url.set(database=name)
        if postgis and not template:
            with create_engine(url).begin() as conn:
                conn.execute(sa.text("CREATE EXTENSION postgis"))
        return url

    yield make
    # On the embedded cluster they go with the cluster; dropping each one first cost a minute.
    if os.environ.get("TWIN_TEST_DATABASE_URL"):
        with admin.connect() as conn:
            for name in made:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="session")
def migrated_template(make_database) -> str:
    """The name of a migrated, empty twin database that no one connects to: copy it."""
    url = make_database()
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url.database


@pytest.fixture(scope="session")
def sample_template(make_database, migrated_template) -> str:
    """The name of a migrated database holding the committed sample, loaded through the ingest."""
    url = make_database(template=migrated_template)
    engine = create_engine(url)
    load_sample(engine, SAMPLE_DIR)
    engine.dispose()
    return url.database


@pytest.fixture(scope="module")
def engine(make_database, migrated_template) -> Iterator[Engine]:
    """A migrated, empty twin database of the module's own."""
    engine = create_engine(make_database(template=migrated_template))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sample_engine(make_database, sample_template) -> Iterator[Engine]:
    """A migrated twin database of the module's own with the committed sample loaded."""
    engine = create_engine(make_database(template=sample_template))
    yield engine
    engine.dispose()
