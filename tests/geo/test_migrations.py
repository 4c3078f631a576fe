import psycopg
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
