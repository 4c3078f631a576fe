"""Districts and community grids; every located row knows its district; mixed geometry columns.

Mixed geometry columns: PostGIS's ``geometry_columns`` takes a generic column's type from the
first quoted word of a CHECK that reads ``geometrytype(...) = ...``, so the CHECKs of 0001/0006
(``GeometryType(geom) IN ('POINT', 'POLYGON', ...)``) made it report parking as POINT and
compounds as POLYGON, and ``ogrinfo PG:`` misread them. The same rule is now written through
``twin_geometry_kind_in(geom, kinds)``, which that view does not parse, so they are GEOMETRY.

A ``districts`` table holds the administrative areas (sub-district 街道, community 社区, grid
网格), each with its parent (by the file's own code, else the smallest district of a higher
level containing it). Every asset, observation, alert and resident request gets a
``district_id``: the finest district containing its point on surface, kept current by
triggers on both sides (a feature inserted or moved; districts loaded, changed or deleted).
Maintained columns rather than a spatial look-up at read time: a tile or an items page then
joins districts by primary key instead of testing a polygon per feature (measured in
docs/benchmarks.md, "Districts").

``district_of(geom)`` is the one SQL function that says which district a geometry lies in;
new located tables use it the same way (``BEFORE INSERT OR UPDATE OF geom`` trigger calling
``twin_locate_district()``).

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl
from geo.vocabulary import DISTRICT_LEVELS

revision = "0009"
down_revision = "0008"

# Every table whose rows lie somewhere and are counted, filtered or routed per district.
LOCATED = ("streets", "manholes", "parking", "compounds", "road_damage", "debris_piles",
           "alerts", "service_requests")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v + "'" for v in values) + ")"


# Generic geometry columns and the kinds their CHECK allows (0001, 0006).
MIXED = {
    "streets": ("LINESTRING", "MULTILINESTRING"),
    "parking": ("POINT", "POLYGON", "MULTIPOLYGON"),
    "compounds": ("POLYGON", "MULTIPOLYGON"),
    "debris_piles": ("POINT", "POLYGON", "MULTIPOLYGON"),
}


def _kinds(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


# Finer levels rank higher: a point in a grid lies in that grid, not only its community.
_RANK = ("CASE level " + " ".join(f"WHEN '{level}' THEN {i + 1}"
                                  for i, level in enumerate(DISTRICT_LEVELS.values)) + " END")


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION twin_geometry_kind_in(g geometry, kinds text[]) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT GeometryType(g) = ANY(kinds) $$
    """)
    for table, kinds in MIXED.items():
        op.drop_constraint(f"ck_{table}_geometry_type", table)
        op.create_check_constraint(f"ck_{table}_geometry_type", table,
                                   f"twin_geometry_kind_in(geom, {_kinds(kinds)})")
    op.create_table(
        "districts",
        ddl.identity_key(),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("name_en", sa.Text),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("parent_code", sa.Text),  # the parent's external_id, as the file gives it
        *ddl.feature_columns(),
        # Maintained by twin_districts_changed(): resolved parent and the names of the
        # community and sub-district this district is or lies in.
        sa.Column("parent_id", sa.BigInteger),
        sa.Column("community", sa.Text),
        sa.Column("sub_district", sa.Text),
        sa.Column("rank", sa.SmallInteger, sa.Computed(_RANK, persisted=True)),
        sa.CheckConstraint(f"level IN {_in(DISTRICT_LEVELS.values)}", name="ck_districts_level"),
        sa.CheckConstraint("twin_geometry_kind_in(geom, ARRAY['POLYGON', 'MULTIPOLYGON'])",
                           name="ck_districts_geometry_type"),
        sa.UniqueConstraint("source", "external_id", name="uq_districts_source_external_id"),
    )
    ddl.gist_index("districts")
    op.create_index("ix_districts_external_id", "districts", ["external_id"])

    op.execute("""
        CREATE FUNCTION district_of(g geometry) RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
        AS $$
            SELECT d.id FROM districts d
            WHERE ST_Intersects(d.geom, ST_PointOnSurface(g))
            ORDER BY d.rank DESC, ST_Area(d.geom), d.id LIMIT 1
        $$
    """)
    op.execute("COMMENT ON FUNCTION district_of(geometry) IS 'The finest district containing "
               "the point on surface of a geometry (SRID 4326), or NULL.'")
    op.execute("""
        CREATE FUNCTION twin_locate_district() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.district_id := district_of(NEW.geom);
            RETURN NEW;
        END $$
    """)
    for table in LOCATED:
        ddl.locate_in_districts(table)

    # When districts change: re-link parents (by code, else spatially), recompute the level
    # names, and re-locate the rows of every located table within the changed area. Updates
    # are guarded by IS DISTINCT FROM, so rows whose district did not change stay untouched
    # (and their layer's version is not bumped).
    relocate = "\n".join(
        f"UPDATE {t} SET district_id = n.d FROM (SELECT id, district_of(geom) AS d FROM {t} "
        f"WHERE geom && area) n WHERE {t}.id = n.id AND {t}.district_id IS DISTINCT FROM n.d;"
        for t in LOCATED)
    op.execute(f"""
        CREATE FUNCTION twin_relocate_districts(area geometry) RETURNS void LANGUAGE plpgsql
        AS $$
        BEGIN
            UPDATE districts c SET parent_id = p.pid FROM (
                SELECT c2.id, coalesce(
                    (SELECT p.id FROM districts p WHERE p.external_id = c2.parent_code
                     AND p.id <> c2.id ORDER BY (p.source = c2.source) DESC, p.id LIMIT 1),
                    (SELECT p.id FROM districts p WHERE c2.parent_code IS NULL
                     AND p.rank < c2.rank AND ST_Intersects(p.geom, ST_PointOnSurface(c2.geom))
                     ORDER BY p.rank DESC, ST_Area(p.geom), p.id LIMIT 1)) AS pid
                FROM districts c2) p
            WHERE c.id = p.id AND c.parent_id IS DISTINCT FROM p.pid;
            WITH RECURSIVE up AS (
                SELECT id AS start, parent_id, level, name, 0 AS hops FROM districts
                UNION ALL
                SELECT up.start, p.parent_id, p.level, p.name, up.hops + 1
                FROM up JOIN districts p ON p.id = up.parent_id WHERE up.hops < 8
            ), names AS (
                SELECT start,
                       (array_agg(name ORDER BY hops) FILTER (WHERE level = 'community'))[1]
                           AS community,
                       (array_agg(name ORDER BY hops) FILTER (WHERE level = 'sub_district'))[1]
                           AS sub_district
                FROM up GROUP BY start)
            UPDATE districts d SET community = names.community,
                                   sub_district = names.sub_district
            FROM names WHERE d.id = names.start
            AND (d.community, d.sub_district) IS DISTINCT FROM
                (names.community, names.sub_district);
            IF area IS NOT NULL THEN
                {relocate}
            END IF;
        END $$
    """)
    op.execute("""
        CREATE FUNCTION twin_districts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE area geometry;
        BEGIN
            -- The function's own updates of districts fire this trigger again: skip those.
            IF pg_trigger_depth() > 1 THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'UPDATE' THEN
                SELECT ST_Extent(geom)::geometry INTO area FROM (
                    SELECT geom FROM old_rows UNION ALL SELECT geom FROM new_rows) g;
            ELSIF TG_OP = 'INSERT' THEN
                SELECT ST_Extent(geom)::geometry INTO area FROM new_rows;
            ELSE
                SELECT ST_Extent(geom)::geometry INTO area FROM old_rows;
            END IF;
            IF area IS NOT NULL THEN
                PERFORM twin_relocate_districts(ST_SetSRID(area, 4326));
            END IF;
            RETURN NULL;
        END $$
    """)
    op.execute("CREATE TRIGGER districts_insert_relocate AFTER INSERT ON districts "
               "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
               "EXECUTE FUNCTION twin_districts_changed()")
    op.execute("CREATE TRIGGER districts_update_relocate AFTER UPDATE ON districts "
               "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
               "EXECUTE FUNCTION twin_districts_changed()")
    op.execute("CREATE TRIGGER districts_delete_relocate AFTER DELETE ON districts "
               "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
               "EXECUTE FUNCTION twin_districts_changed()")
    # Versioned like the other layers (tile ETags, caches): a district renamed changes the
    # `district` of every feature in it without touching their rows.
    ddl.watch_layer("districts")


def downgrade() -> None:
    for table in LOCATED:
        op.execute(f"DROP TRIGGER {table}_locate_district ON {table}")
        op.drop_index(f"ix_{table}_district_id", table_name=table)
        op.drop_column(table, "district_id")
    op.drop_table("districts")  # its triggers go with it
    op.execute("DELETE FROM layer_versions WHERE layer = 'districts'")
    op.execute("DROP FUNCTION twin_districts_changed()")
    op.execute("DROP FUNCTION twin_relocate_districts(geometry)")
    op.execute("DROP FUNCTION twin_locate_district()")
    op.execute("DROP FUNCTION district_of(geometry)")
    for table, kinds in MIXED.items():
        op.drop_constraint(f"ck_{table}_geometry_type", table)
        op.create_check_constraint(f"ck_{table}_geometry_type", table,
                                   f"GeometryType(geom) IN {_in(kinds)}")
    op.execute("DROP FUNCTION twin_geometry_kind_in(geometry, text[])")
