"""Columns, indexes and triggers that several migrations declare alike.

Applied migrations call these functions, so what a function emits is history: its output must
never change (no name, type, default, nullability or order of what it makes). A new need gets a
new function; an existing one is not edited to serve it.
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

SRID = 4326

# One statement trigger per event: a trigger with a transition table takes one event only.
_CHANGE_EVENTS = (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))


def identity_key(type_: type[sa.types.TypeEngine] = sa.BigInteger) -> sa.Column:
    """``id``, a primary key the database numbers (an identity column)."""
    return sa.Column("id", type_, sa.Identity(), primary_key=True)


def asset_key() -> sa.Column:
    """``id`` drawn from the one asset sequence (0001), so that an id names one asset.

    Readings, alerts and requests name an asset by its id alone, whatever its table.
    """
    return sa.Column("id", sa.BigInteger, primary_key=True,
                     server_default=sa.text("nextval('asset_id_seq')"))


def stamp(name: str) -> sa.Column:
    """A ``timestamptz NOT NULL`` set to ``now()`` (the transaction's start) when written."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False,
                     server_default=sa.func.now())


def clock_stamp(name: str) -> sa.Column:
    """A ``timestamptz NOT NULL`` set to ``clock_timestamp()`` when written.

    The moment itself rather than the transaction's start: the events one transaction writes
    keep their order.
    """
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False,
                     server_default=sa.func.clock_timestamp())


def json_object(name: str) -> sa.Column:
    """A ``jsonb NOT NULL`` column that is an empty object unless given."""
    return sa.Column(name, JSONB, nullable=False, server_default=sa.text("'{}'::jsonb"))


def geometry(kind: str = "GEOMETRY", *, nullable: bool = True) -> sa.Column:
    """``geom`` in WGS 84; its GiST index is made apart (:func:`gist_index`), by name."""
    return sa.Column("geom", Geometry(kind, srid=SRID, spatial_index=False), nullable=nullable)


def gist_index(table: str) -> None:
    """The spatial index ``ix_<table>_geom`` on ``table.geom``."""
    op.create_index(f"ix_{table}_geom", table, ["geom"], postgresql_using="gist")


def feature_columns(kind: str = "GEOMETRY") -> list[sa.Column]:
    """A located feature's free properties, geometry (required) and when it was written."""
    return [json_object("properties"), geometry(kind, nullable=False),
            stamp("created_at"), stamp("updated_at")]


def forecast_columns() -> list[sa.Column]:
    """What one forecast says: as of when, for which day, the median and its interval.

    ``days_to_threshold``: days from as_of until the median forecast crosses the alert
    threshold (NULL: not within the look-ahead).
    """
    return [
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("target_date", sa.Date, nullable=False),
        sa.Column("horizon_days", sa.Integer, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("lower", sa.Float),
        sa.Column("upper", sa.Float),
        sa.Column("days_to_threshold", sa.Integer),
    ]


def watch_changes(table: str) -> None:
    """Bump ``table``'s layer version (0003's ``twin_layer_changed()``) on every change.

    Statement triggers with a transition table: a statement that changes no row (an idempotent
    re-ingest) bumps nothing. The table needs its row in ``layer_versions``.
    """
    for event, transition in _CHANGE_EVENTS:
        op.execute(
            f"CREATE TRIGGER {table}_{event.lower()}_changed AFTER {event} ON {table} "
            f"REFERENCING {transition} TABLE AS changed_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION twin_layer_changed()"
        )


def unwatch_changes(table: str) -> None:
    """Drop the triggers :func:`watch_changes` made."""
    for event, _ in _CHANGE_EVENTS:
        op.execute(f"DROP TRIGGER {table}_{event.lower()}_changed ON {table}")


def watch_layer(table: str) -> None:
    """Give ``table`` a layer version and bump it on every change (:func:`watch_changes`)."""
    op.execute(f"INSERT INTO layer_versions (layer) VALUES ('{table}')")
    watch_changes(table)


def locate_in_districts(table: str) -> None:
    """Add ``district_id``, indexed and set by 0009's ``twin_locate_district()`` trigger.

    The finest district containing the row's point on surface, set when the row is written or
    its geometry moves.
    """
    op.add_column(table, sa.Column("district_id", sa.BigInteger))
    op.create_index(f"ix_{table}_district_id", table, ["district_id"])
    op.execute(f"CREATE TRIGGER {table}_locate_district BEFORE INSERT OR UPDATE OF geom "
               f"ON {table} FOR EACH ROW EXECUTE FUNCTION twin_locate_district()")
