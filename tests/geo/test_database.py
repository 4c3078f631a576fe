import time

import pytest
import sqlalchemy as sa

from geo.database import create_engine, ensure_postgis, parse_database_url
from geo.errors import DatabaseUnavailable, InvalidInput, PostGISMissing


def test_ensure_postgis_reports_versions(make_database):
    info = ensure_postgis(create_engine(make_database()))
    assert info.postgis_version.startswith("3.")
    assert int(info.postgres_version.split(".")[0]) >= 12


def test_ensure_postgis_creates_the_extension_when_allowed(make_database):
    engine = create_engine(make_database(postgis=False))
    ensure_postgis(engine)
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'postgis'")
            ).scalar()
            == 1
        )


def test_database_without_postgis_and_no_right_to_create_it(make_database, server_url):
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS twin_plain_user"))
        conn.execute(sa.text("CREATE ROLE twin_plain_user LOGIN NOSUPERUSER"))
    url = make_database(postgis=False, owner="twin_plain_user").set(username="twin_plain_user")
    with pytest.raises(PostGISMissing, match="has no PostGIS.*twin_plain_user.*CREATE EXTENSION"):
        ensure_postgis(create_engine(url))


def test_unreachable_database_fails_fast_with_the_address():
    engine = create_engine(parse_database_url("postgresql://someone:secret@127.0.0.1:1/nowhere"))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        ensure_postgis(engine)
    message = str(caught.value)
    assert "127.0.0.1:1/nowhere" in message and "secret" not in message
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("raw", ["mysql://root@localhost/db", "not a url at all"])
def test_a_url_that_is_not_postgresql_is_refused(raw):
    with pytest.raises(InvalidInput, match="TWIN_DATABASE_URL"):
        parse_database_url(raw)
