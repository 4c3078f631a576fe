"""Houses: the ``buildings`` layer (footprint, floors, height, use, year built, households,
structure and safety grade), each linked to the compound and the district it stands in.

A building is an asset (its id comes from the one asset sequence, so an alert or a request
may name it by id); its compound is found by place when buildings or compounds are loaded
(``geo.store.assign_buildings_to_compounds``), not taken from the file.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl
from geo.vocabulary import FIELD_VOCABULARIES

revision = "0010"
down_revision = "0009"

TABLE = "buildings"
WATCHED = (TABLE, "service_requests")
VOCABULARY_CHECKS = {"use": "ck_buildings_use", "structure": "ck_buildings_structure",
                     "condition": "ck_buildings_condition"}


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        TABLE,
        ddl.asset_key(),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("use", sa.Text),
        sa.Column("floors", sa.SmallInteger),
        sa.Column("height_m", sa.Float),
        sa.Column("year_built", sa.SmallInteger),
        sa.Column("households", sa.Integer),
        sa.Column("structure", sa.Text),
        sa.Column("condition", sa.Text),
        sa.Column("compound_id", sa.BigInteger,
                  sa.ForeignKey("compounds.id", ondelete="SET NULL")),
        *ddl.feature_columns(),
        # Through 0009's function, so that geometry_columns reports GEOMETRY, not POLYGON.
        sa.CheckConstraint("twin_geometry_kind_in(geom, ARRAY['POLYGON', 'MULTIPOLYGON'])",
                           name="ck_buildings_geometry_type"),
        sa.CheckConstraint("floors IS NULL OR floors > 0", name="ck_buildings_floors"),
        sa.CheckConstraint("height_m IS NULL OR height_m > 0", name="ck_buildings_height"),
        sa.CheckConstraint("households IS NULL OR households >= 0",
                           name="ck_buildings_households"),
        sa.UniqueConstraint("source", "external_id", name="uq_buildings_source_external_id"),
    )
    for field, name in VOCABULARY_CHECKS.items():
        # NULL IN (...) is NULL, which a CHECK lets through: every one of these is optional.
        op.create_check_constraint(name, TABLE,
                                   f"{field} IN {_in(FIELD_VOCABULARIES[(TABLE, field)].allowed)}")
    ddl.gist_index(TABLE)
    op.create_index("ix_buildings_compound_id", TABLE, ["compound_id"])

    # Each house knows its district as every located row does (migration 0009): set by the
    # same trigger function when it is written or moved, and re-set when districts change.
    ddl.locate_in_districts(TABLE)
    op.execute(f"""
        CREATE FUNCTION twin_relocate_buildings() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- 0009's relocation updates districts itself (parents, names): once is enough.
            IF pg_trigger_depth() > 1 THEN
                RETURN NULL;
            END IF;
            UPDATE {TABLE} b SET district_id = n.d FROM (
                SELECT id, district_of(geom) AS d FROM {TABLE}) n
            WHERE b.id = n.id AND b.district_id IS DISTINCT FROM n.d;
            RETURN NULL;
        END $$
    """)
    for event in ("INSERT", "UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER districts_{event.lower()}_relocate_buildings AFTER {event} "
                   f"ON districts FOR EACH STATEMENT EXECUTE FUNCTION twin_relocate_buildings()")

    # Watched like the other layers (migration 0003): tiles and ETags follow their changes.
    # Residents' requests too, since a building's tile counts the open ones at it.
    for table in WATCHED:
        ddl.watch_layer(table)


def downgrade() -> None:
    ddl.unwatch_changes("service_requests")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER districts_{event}_relocate_buildings ON districts")
    op.execute("DROP FUNCTION twin_relocate_buildings()")
    op.drop_table(TABLE)  # its triggers and indexes go with it
    op.execute(f"DELETE FROM layer_versions WHERE layer IN {_in(WATCHED)}")
