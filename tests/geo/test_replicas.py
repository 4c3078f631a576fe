"""Read routing without replicas (today's single database) and its settings and lag rule.

The routing against a real streaming replica is tested on the local cluster
(tests/test_cluster.py).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geo.errors import InvalidInput
from geo.replicas import ReadRouting, parse_replica_urls


def test_without_replicas_reads_use_the_primary_engine_itself(engine):
    routing = ReadRouting(engine, parse_replica_urls(None))
    routing.start()
    try:
        assert routing.engine is engine
        assert routing.status() == []
    finally:
        routing.stop()


def test_replica_urls_are_split_on_commas_and_spaces():
    urls = parse_replica_urls("postgresql://u@a:5432/twin, postgresql://u@b/twin\n")
    assert [(u.host, u.port, u.drivername) for u in urls] == [
        ("a", 5432, "postgresql+psycopg"), ("b", None, "postgresql+psycopg")]


def test_a_replica_url_that_is_not_postgresql_is_refused_naming_the_setting():
    with pytest.raises(InvalidInput, match="TWIN_REPLICA_URLS names a 'mysql' database"):
        parse_replica_urls("postgresql://u@a/twin,mysql://u@b/twin")


def test_lag_is_the_age_of_the_oldest_primary_position_not_yet_replayed(engine):
    routing = ReadRouting(engine, [sa.engine.make_url("postgresql://u@nowhere/twin")])
    routing._history.extend([(100.0, 1000), (101.0, 2000), (102.0, 3000)])
    assert routing.lag_of(3000, now=102.5) == 0.0   # has everything the primary had
    assert routing.lag_of(2500, now=102.5) == 0.5   # lacks what the primary had at 102
    assert routing.lag_of(999, now=102.5) == 2.5    # lacks even the oldest position
    routing.engine.dispose()


def test_an_unreachable_replica_is_out_of_rotation_and_reads_go_to_the_primary(engine):
    # A port nothing listens on: refused at once.
    url = engine.url.set(host="127.0.0.1", port=1, query={})
    routing = ReadRouting(engine, [url], check_s=0.2)
    routing.start()
    try:
        (state,) = routing.status()
        assert not state["in_rotation"] and state["reason"].startswith("unreachable")
        with routing.engine.connect() as conn:
            in_recovery = conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one()
            database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        assert (in_recovery, database) == (False, engine.url.database)
    finally:
        routing.stop()
