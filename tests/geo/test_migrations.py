import json
import os
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from geo import migrate
from geo.database import create_engine

TABLES = {
    "streets",
    "manholes",
    "parking",
    "compounds",
    "road_damage",
    "debris_piles",
    "metrics",
    "readings",
    "ingest_runs",
    "ingest_rejects",
    "api_keys",
    "alerts",
    "alert_events",
    "layer_versions",
    "buildings",
    "districts",
}
SPATIAL = {"streets", "manholes", "parking", "compounds", "road_damage", "debris_piles", "alerts",
           "buildings", "districts"}


def _tables(conn) -> set[str]:
    return set(
        conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            )
        ).scalars()
    ) - {"spatial_ref_sys", "alembic_version"}


def test_upgrade_creates_every_table_with_spatial_index_and_downgrade_removes_them(make_database):
    engine = create_engine(make_database())
    with engine.connect() as conn:
        assert _tables(conn) == set()

    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as conn:
        assert TABLES <= _tables(conn)  # later migrations add tables of their own
        gist = set(
            conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%USING gist (geom)%'"
                )
            ).scalars()
        )
        assert SPATIAL <= gist
        srids = dict(
            conn.execute(
                sa.text(
                    "SELECT f_table_name, srid FROM geometry_columns "
                    "WHERE f_table_schema = 'public'"
                )
            ).all()
        )
        assert all(srids[table] == 4326 for table in SPATIAL) and set(srids.values()) == {4326}
        unique = set(
            conn.execute(
                sa.text(
                    "SELECT conrelid::regclass::text FROM pg_constraint "
                    "WHERE contype = 'u' AND conname LIKE '%source_external_id'"
                )
            ).scalars()
        )
        assert unique == SPATIAL - {"alerts"}
        assert (
            conn.execute(
                sa.text(
                    "SELECT partstrat FROM pg_partitioned_table "
                    "WHERE partrelid = 'readings'::regclass"
                )
            ).scalar()
            == "r"
        )
        metrics = dict(conn.execute(sa.text("SELECT name, higher_is_better FROM metrics")).all())
        assert metrics["pci"] is True and metrics["iri_m_per_km"] is False
        assert {"tilt_deg", "cover_open", "water_level_pct", "lel_pct", "h2s_ppm"} <= set(metrics)

    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    with engine.connect() as conn:
        assert _tables(conn) == set()
        assert conn.execute(sa.text("SELECT to_regclass('assets')")).scalar() is None

    migrate.upgrade(engine)  # and back up again from base
    with engine.connect() as conn:
        assert TABLES <= _tables(conn)
    engine.dispose()


# The schema the migrations up to SNAPSHOT_REVISION build, as PostgreSQL describes it, in a
# file per PostgreSQL major version: an applied migration (and geo/migrations/ddl.py, which they
# call) must go on building exactly this. A later revision leaves it as it is; a deliberate change
# (a new procrastinate, whose schema 0008 applies) writes it anew with TWIN_WRITE_SCHEMA_SNAPSHOT=1.
SNAPSHOT_REVISION = "0017"
_OWN = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"
_IN_PUBLIC = "n.nspname = 'public' AND NOT c.relispartition AND " + _OWN.format(oid="c.oid")
_FROM_CLASS = "JOIN pg_class c ON c.oid = {rel} JOIN pg_namespace n ON n.oid = c.relnamespace"
# Every object made in the public schema, one per line; PostGIS's own objects left out, and
# readings' monthly partitions (their names depend on the day) described by their parent.
SCHEMA = f"""
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || CASE WHEN a.attidentity::text <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
FROM pg_attribute a {_FROM_CLASS.format(rel="a.attrelid")}
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE {_IN_PUBLIC} AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM pg_constraint k {_FROM_CLASS.format(rel="k.conrelid")} WHERE {_IN_PUBLIC}
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i {_FROM_CLASS.format(rel="i.indrelid")} WHERE {_IN_PUBLIC}
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
FROM pg_trigger t {_FROM_CLASS.format(rel="t.tgrelid")} WHERE {_IN_PUBLIC} AND NOT t.tgisinternal
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text || ' md5 ' || md5(pg_get_functiondef(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND {_OWN.format(oid="p.oid")}
UNION ALL
SELECT 'view ' || c.relname || ' md5 ' || md5(pg_get_viewdef(c.oid))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_IN_PUBLIC} AND c.relkind = 'v'
ORDER BY 1
"""


def _schema_and_rows(conn) -> str:
    """The schema, then the rows the migrations wrote (without their times, which vary)."""
    lines = list(conn.execute(sa.text(SCHEMA)).scalars())
    tables = conn.execute(sa.text(
        f"SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE {_IN_PUBLIC} AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version' "
        f"ORDER BY 1")).scalars().all()
    for table in tables:
        timed = conn.execute(sa.text(
            "SELECT coalesce(array_agg(attname::text), '{}') FROM pg_attribute "
            "WHERE attrelid = CAST(:t AS regclass) AND atttypid = 'timestamptz'::regtype"),
            {"t": table}).scalar_one()
        rows = conn.execute(sa.text(f"SELECT to_jsonb(t) FROM {table} t")).scalars()
        lines += sorted(f"row {table} " + json.dumps({k: v for k, v in row.items()
                                                       if k not in timed}, sort_keys=True)
                        for row in rows)
    return "\n".join(lines) + "\n"


def test_the_applied_migrations_build_the_schema_they_always_built(make_database):
    engine = create_engine(make_database())
    migrate.upgrade(engine, SNAPSHOT_REVISION)
    with engine.connect() as conn:
        major = conn.execute(sa.text("SHOW server_version_num")).scalar_one()[:2]
        built = _schema_and_rows(conn)
    engine.dispose()
    snapshot = Path(__file__).with_name(f"schema_{SNAPSHOT_REVISION}.pg{major}.txt")
    if os.environ.get("TWIN_WRITE_SCHEMA_SNAPSHOT") == "1":
        snapshot.write_text(built)
    if not snapshot.exists():
        pytest.skip(f"no schema snapshot for PostgreSQL {major}: write one with "
                    f"TWIN_WRITE_SCHEMA_SNAPSHOT=1 and commit it")
    expected, got = snapshot.read_text().splitlines(), built.splitlines()
    missing, new = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert got == expected, (f"the migrations up to {SNAPSHOT_REVISION} no longer build "
                             f"{snapshot.name}: missing {missing[:5]}, new {new[:5]}")


POINT = "ST_SetSRID(ST_Point(108.5, 32.5), 4326)"
LINE = "ST_GeomFromText('LINESTRING(108.5 32.5, 108.6 32.5)', 4326)"
TRIANGLE = "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))', 4326)"


def _insert(table: str, external_id: str, field: str, value: str, geom: str) -> str:
    """An asset of ``table`` with one class field set: only what the table requires."""
    return (f"INSERT INTO {table} (source, external_id, {field}, geom) "
            f"VALUES ('t', '{external_id}', '{value}', {geom})")


# What the schema refuses, and why: the CHECK constraint by name, or PostGIS's column type.
CHECK = psycopg.errors.CheckViolation
REFUSED = [
    (_insert("manholes", "m1", "kind", "lava", POINT), CHECK, "ck_manholes_kind"),
    (_insert("compounds", "c1", "management_type", "palace", TRIANGLE), CHECK,
     "ck_compounds_management_type"),
    (_insert("streets", "s1", "road_class", "primary", POINT), CHECK, "ck_streets_geometry_type"),
    (_insert("streets", "s2", "road_class", "runway", LINE), CHECK, "ck_streets_road_class"),
    # A line in a Point column: PostGIS's type modifier refuses it (no constraint name).
    (_insert("manholes", "m2", "kind", "sewer", LINE), psycopg.errors.InvalidParameterValue, None),
]


def test_schema_refuses_what_the_domain_does_not_allow(engine):
    with engine.connect() as conn:
        for statement, error, constraint in REFUSED:
            try:
                with conn.begin_nested():
                    conn.execute(sa.text(statement))
            except sa.exc.DBAPIError as refused:
                cause = refused.orig
                assert isinstance(cause, error), f"{statement}: {cause!r}"
                assert cause.diag.constraint_name == constraint, f"{statement}: {cause}"
                if constraint is None:
                    assert "does not match column type (Point)" in str(cause)
                continue
            raise AssertionError(f"accepted: {statement}")
        conn.rollback()
