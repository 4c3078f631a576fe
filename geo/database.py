"""Engines for the twin's database: an external PostGIS, or the embedded cluster by default."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, ProgrammingError

from geo.cluster import EmbeddedCluster
from geo.errors import DatabaseUnavailable, InvalidInput, PostGISMissing
from geo.i18n import _
from geo.settings import DatabaseSettings

CONNECT_TIMEOUT_S = 5


def parse_database_url(raw: str, setting: str = "TWIN_DATABASE_URL") -> URL:
    """Parse a PostgreSQL URL given by the user (in ``setting``), using the psycopg 3 driver.

    Raises
    ------
    InvalidInput
        When the text is not a PostgreSQL URL.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        raise InvalidInput(_(
            "{setting} holds something that is not a database URL; expected something like "
            "postgresql://user:password@host:5432/dbname.", setting=setting
        )) from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise InvalidInput(_(
            "{setting} names a '{backend}' database; twin needs PostgreSQL with PostGIS "
            "(postgresql://...).", setting=setting, backend=url.get_backend_name()
        ))
    return url.set(drivername="postgresql+psycopg")


def conninfo_of(url: URL) -> str:
    """A libpq connection string for a SQLAlchemy URL (host may be a socket directory)."""
    params = {k: v for k, v in url.query.items() if isinstance(v, str)}
    return make_conninfo(
        "", host=params.pop("host", url.host), port=url.port, dbname=url.database,
        user=url.username, password=url.password, **params,
    )


def describe(url: URL) -> str:
    """Show a URL without its password, for messages and logs."""
    return url.render_as_string(hide_password=True)


def resolve_database_url(settings: DatabaseSettings) -> URL:
    """Return the URL of the twin's database, starting the embedded cluster if it is the one."""
    if settings.database_url:
        return parse_database_url(settings.database_url)
    cluster = EmbeddedCluster(settings.home, settings.cluster_user)
    cluster.start()
    return cluster.url


def create_engine(url: URL, **kwargs) -> Engine:
    """Create an engine that gives up on an unreachable server within a few seconds."""
    options = {"pool_pre_ping": True, "pool_size": 8, "max_overflow": 2, **kwargs}
    # A pool that keeps what it opens: with the default 5 + 10 overflow, a burst of requests
    # opened (and closed) a server backend for most of them.
    return sa.create_engine(
        url,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "twin"},
        **options,
    )


@dataclass(frozen=True)
class ServerInfo:
    """Versions of the server and of PostGIS, as ``twin db status`` shows them."""

    postgres_version: str
    postgis_version: str


def ensure_postgis(engine: Engine) -> ServerInfo:
    """Check the database can be reached and has PostGIS, creating the extension if allowed.

    Raises
    ------
    DatabaseUnavailable
        When the server cannot be reached.
    PostGISMissing
        When PostGIS is not installed on the server or the user may not create it.
    """
    where = describe(engine.url)
    try:
        with engine.connect() as conn:
            postgres_version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            installed = conn.execute(
                sa.text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            ).scalar()
            if installed is None:
                available = conn.execute(
                    sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
                ).scalar()
                if available is None:
                    raise PostGISMissing(_(
                        "The database {where} has no PostGIS: its server lacks the extension; "
                        "install it there (Debian/Ubuntu: "
                        "`apt-get install postgresql-{major}-postgis-3`).",
                        where=where, major=postgres_version.split(".")[0]
                    ))
                try:
                    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
                    conn.commit()
                except ProgrammingError:
                    raise PostGISMissing(_(
                        "The database {where} has no PostGIS and user '{user}' may not create "
                        "it: ask its owner to run `CREATE EXTENSION postgis;` in that database.",
                        where=where, user=engine.url.username
                    )) from None
            postgis_version = conn.execute(sa.text("SELECT postgis_lib_version()")).scalar_one()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(_("Cannot connect to the database {where}: {reason}",
                                    where=where, reason=reason)) from None
    except DBAPIError as exc:  # anything else the server refuses, said in its own words
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(_("The database {where} refused twin: {reason}",
                                    where=where, reason=reason)) from None
    return ServerInfo(postgres_version=postgres_version, postgis_version=postgis_version)


def ping(engine: Engine) -> None:
    """Run the cheapest query; raises the driver's error when the database is not reachable."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def connect(settings: DatabaseSettings) -> Engine:
    """Return an engine on the twin's database, checked for PostGIS (the usual way in)."""
    engine = create_engine(resolve_database_url(settings))
    ensure_postgis(engine)
    return engine
