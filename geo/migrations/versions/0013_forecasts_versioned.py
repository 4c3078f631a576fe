"""Forecasts as a published layer: predictions get a layer version and change triggers.

The ``forecasts`` layer (geo/layers.py) reads ``predictions``; its tiles' ETags and the OGC
extents cache need the table's version bumped on every scoring run, as for the other layers.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013"
down_revision = "0012"

_EVENTS = (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))


def upgrade() -> None:
    op.execute("INSERT INTO layer_versions (layer) VALUES ('predictions') "
               "ON CONFLICT (layer) DO NOTHING")
    for event, transition in _EVENTS:
        op.execute(
            f"CREATE TRIGGER predictions_{event.lower()}_changed AFTER {event} ON predictions "
            f"REFERENCING {transition} TABLE AS changed_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION twin_layer_changed()"
        )


def downgrade() -> None:
    for event, _ in _EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS predictions_{event.lower()}_changed ON predictions")
    op.execute("DELETE FROM layer_versions WHERE layer = 'predictions'")
