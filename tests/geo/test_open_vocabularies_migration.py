"""Migration 0006: 'other' classes and multi-part geometries, and a downgrade that loses nothing."""

import pytest
import sqlalchemy as sa

from geo import migrate
from geo.database import create_engine
from geo.errors import Conflict
from geo.vocabulary import FIELD_VOCABULARIES

MULTI = "SRID=4326;MULTILINESTRING((108.54 32.52,108.55 32.52),(108.54 32.53,108.55 32.53))"


def _insert_street(conn, external_id: str, road_class: str, wkt: str) -> None:
    conn.execute(sa.text("INSERT INTO streets (source, external_id, road_class, geom) "
                         "VALUES ('t', :id, :c, ST_GeomFromEWKT(:g))"),
                 {"id": external_id, "c": road_class, "g": wkt})


def test_other_and_multi_parts_are_stored_and_a_downgrade_refuses_to_lose_them(make_database):
    engine = create_engine(make_database())
    migrate.upgrade(engine)
    with engine.begin() as conn:
        _insert_street(conn, "m", "other", MULTI)
        conn.execute(sa.text(
            "INSERT INTO compounds (source, external_id, management_type, geom) VALUES "
            "('t', 'c', 'other', ST_GeomFromEWKT('SRID=4326;MULTIPOLYGON(((0 0,1 0,1 1,0 0)),"
            "((2 2,3 2,3 3,2 2)))'))"))
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="ck_streets_road"):
        _insert_street(conn, "x", "motorway", MULTI)
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="geometry_type"):
        _insert_street(conn, "p", "service", "SRID=4326;POINT(108.54 32.52)")
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="ck_manholes_cover"):
        conn.execute(sa.text("INSERT INTO manholes (source, external_id, kind, cover_state, geom)"
                             " VALUES ('t', 'm', 'other', 'other', "
                             "ST_GeomFromEWKT('SRID=4326;POINT(108.54 32.52)'))"))

    with pytest.raises(Conflict, match="1 streets with road_class 'other'.*multi-part"):
        migrate.downgrade(engine, "0005")
    assert migrate.current_revision(engine) == migrate.head_revision()

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM streets"))
        conn.execute(sa.text("DELETE FROM compounds"))
        _insert_street(conn, "s", "residential", "SRID=4326;LINESTRING(108.54 32.52,108.55 32.52)")
    migrate.downgrade(engine, "0005")
    with engine.connect() as conn:
        kinds = dict(conn.execute(sa.text(
            "SELECT f_table_name, type FROM geometry_columns WHERE f_table_name IN "
            "('streets', 'compounds')")).all())
        assert kinds == {"streets": "LINESTRING", "compounds": "POLYGON"}
        assert conn.execute(sa.text("SELECT count(*) FROM streets")).scalar_one() == 1
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="ck_manholes_kind"):
        conn.execute(sa.text("INSERT INTO manholes (source, external_id, kind, geom) VALUES "
                             "('t', 'm', 'other', ST_GeomFromEWKT('SRID=4326;POINT(1 1)'))"))
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_every_vocabulary_has_a_check_that_takes_exactly_its_values(make_database):
    engine = create_engine(make_database())
    migrate.upgrade(engine)
    with engine.connect() as conn:
        for (table, name), vocabulary in FIELD_VOCABULARIES.items():
            definition = conn.execute(sa.text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
                "CAST(:t AS regclass) AND contype = 'c' AND pg_get_constraintdef(oid) LIKE :f"),
                {"t": table, "f": f"%({name} = ANY%"}).scalar_one()
            for value in vocabulary.allowed:
                assert f"'{value}'" in definition
            assert definition.count("::text") == len(vocabulary.allowed)
    engine.dispose()
