"""Forecasts as a published layer: predictions get a layer version and change triggers.

The ``forecasts`` layer (geo/layers.py) reads ``predictions``; its tiles' ETags and the OGC
extents cache need the table's version bumped on every scoring run, as for the other layers.

Create Date: 2026-12-07
"""

from alembic import op

from geo.migrations import ddl

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.execute("INSERT INTO layer_versions (layer) VALUES ('predictions') "
               "ON CONFLICT (layer) DO NOTHING")
    ddl.watch_changes("predictions")


def downgrade() -> None:
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS predictions_{event}_changed ON predictions")
    op.execute("DELETE FROM layer_versions WHERE layer = 'predictions'")
