"""Crossing dates with an interval: the earliest and latest days until the threshold.

``days_to_threshold`` says when a street's median forecast crosses its threshold. The 80 %
interval's bounds cross it too, the pessimistic one first: ``crossing_earliest_days`` and
``crossing_latest_days`` (NULL: not within the look-ahead, or never) carry that interval
beside the forecast that made it.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


# A split run's parts stage their forecasts before publishing them (migration 0015).
TABLES = ("predictions", "staged_predictions")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("crossing_earliest_days", sa.Integer))
        op.add_column(table, sa.Column("crossing_latest_days", sa.Integer))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "crossing_latest_days")
        op.drop_column(table, "crossing_earliest_days")
