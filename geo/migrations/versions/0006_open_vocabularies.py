"""Open vocabularies and multi-part geometries; rejects that keep their row.

Class fields with an open vocabulary (``geo.vocabulary``) accept ``other`` (a city's value the
mapping did not translate, kept in ``properties``); streets accept MultiLineStrings and
compounds MultiPolygons, stored as they come (the column is a generic geometry whose kinds a
CHECK names, as parking and debris piles already were); a line of the rejects report may say
``kept, value dropped``.

Create Date: 2026-12-07
"""

from alembic import op
from sqlalchemy import text

from geo.errors import Conflict
from geo.vocabulary import FIELD_VOCABULARIES, OTHER

revision = "0006"
down_revision = "0005"

# (table, field) -> the name of its CHECK constraint; streets.road_class had none before.
CONSTRAINTS = {
    ("streets", "road_class"): "ck_streets_road_class",
    ("manholes", "kind"): "ck_manholes_kind",
    ("manholes", "cover_state"): "ck_manholes_cover_state",
    ("parking", "kind"): "ck_parking_kind",
    ("compounds", "management_type"): "ck_compounds_management_type",
    ("road_damage", "damage_class"): "ck_road_damage_class",
    ("road_damage", "severity"): "ck_road_damage_severity",
}
# table -> (the single kind its column had, the kinds it takes now)
GEOMETRIES = {
    "streets": ("LineString", ("LINESTRING", "MULTILINESTRING")),
    "compounds": ("Polygon", ("POLYGON", "MULTIPOLYGON")),
}
OUTCOMES_BEFORE = ("rejected", "repaired")
OUTCOMES = (*OUTCOMES_BEFORE, "kept, value dropped")


def _vocabularies():
    # Only the fields this migration knew: a vocabulary added later (buildings, 0010) has its
    # own migration, and its table does not exist yet here.
    return [(key, vocabulary) for key, vocabulary in FIELD_VOCABULARIES.items()
            if key in CONSTRAINTS]


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _check(table: str, field: str, values: tuple[str, ...]) -> None:
    # NULL IN (...) is NULL, which a CHECK lets through: optional fields stay optional.
    op.create_check_constraint(CONSTRAINTS[(table, field)], table, f"{field} IN {_in(values)}")


def upgrade() -> None:
    for (table, field), vocabulary in _vocabularies():
        if (table, field) != ("streets", "road_class"):
            op.drop_constraint(CONSTRAINTS[(table, field)], table)
        _check(table, field, vocabulary.allowed)
    for table, (_, kinds) in GEOMETRIES.items():
        op.execute(f"ALTER TABLE {table} ALTER COLUMN geom TYPE geometry(Geometry, 4326)")
        op.create_check_constraint(
            f"ck_{table}_geometry_type", table, f"GeometryType(geom) IN {_in(kinds)}"
        )
    op.drop_constraint("ck_ingest_rejects_outcome", "ingest_rejects")
    op.create_check_constraint(
        "ck_ingest_rejects_outcome", "ingest_rejects", f"outcome IN {_in(OUTCOMES)}"
    )


def downgrade() -> None:
    conn = op.get_bind()
    blocking = []
    for (table, field), vocabulary in _vocabularies():
        if vocabulary.open:
            n = conn.execute(text(f"SELECT count(*) FROM {table} WHERE {field} = :other"),
                             {"other": OTHER}).scalar_one()
            if n:
                blocking.append(f"{n:,} {table} with {field} '{OTHER}'")
    for table, (kind, _) in GEOMETRIES.items():
        n = conn.execute(text(f"SELECT count(*) FROM {table} WHERE GeometryType(geom) <> "
                              f"'{kind.upper()}'")).scalar_one()
        if n:
            blocking.append(f"{n:,} {table} with multi-part geometries")
    if blocking:
        # Refused rather than deleted: these rows are a city's data.
        raise Conflict(f"The schema cannot go below 0006 while the twin holds "
                       f"{' and '.join(blocking)}, which the older schema cannot store; "
                       f"remove or edit them first.")
    op.execute("DELETE FROM ingest_rejects WHERE outcome NOT IN " + _in(OUTCOMES_BEFORE))
    op.drop_constraint("ck_ingest_rejects_outcome", "ingest_rejects")
    op.create_check_constraint(
        "ck_ingest_rejects_outcome", "ingest_rejects", f"outcome IN {_in(OUTCOMES_BEFORE)}"
    )
    for table, (kind, _) in GEOMETRIES.items():
        op.drop_constraint(f"ck_{table}_geometry_type", table)
        op.execute(f"ALTER TABLE {table} ALTER COLUMN geom TYPE geometry({kind}, 4326)")
    for (table, field), vocabulary in _vocabularies():
        op.drop_constraint(CONSTRAINTS[(table, field)], table)
        if (table, field) != ("streets", "road_class"):
            _check(table, field, vocabulary.values)
