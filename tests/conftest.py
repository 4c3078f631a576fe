"""Fixtures: a real PostGIS for the whole session, and a fresh database per test module.

By default the tests run their own embedded cluster (the product's default path) in a
temporary TWIN_HOME. With TWIN_TEST_DATABASE_URL set to a superuser URL of an external
PostGIS server, fresh databases are made there instead.
"""

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from geo import migrate
from geo.cluster import EmbeddedCluster
from geo.database import create_engine, parse_database_url


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[EmbeddedCluster]:
    home = tmp_path_factory.mktemp("twin-home")
    embedded = EmbeddedCluster(home, os.environ.get("TWIN_CLUSTER_USER", "postgres"))
    embedded.start()
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
    """Create fresh databases (with PostGIS unless asked not to); all are dropped at the end."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    made = []

    def make(*, postgis: bool = True, owner: str | None = None) -> URL:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            owned = f' OWNER "{owner}"' if owner else ""
            conn.execute(sa.text(f"CREATE DATABASE {name}{owned}"))
        made.append(name)
        url = server_url.set(database=name)
        if postgis:
            with create_engine(url).begin() as conn:
                conn.execute(sa.text("CREATE EXTENSION postgis"))
        return url

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="module")
def engine(make_database) -> Iterator[Engine]:
    """A migrated, empty twin database of the module's own."""
    engine = create_engine(make_database())
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
