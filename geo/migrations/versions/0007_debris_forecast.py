"""Debris forecasts: the probability that a pile has been cleared by the target date.

A pile's forecast is two facts that do not collapse into one number: the volume it will have
if it is still there (``value``, with its interval in ``lower``/``upper``), and the chance it
has been cleared by then (``p_cleared``). Other targets leave ``p_cleared`` NULL.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column("predictions", sa.Column("p_cleared", sa.Float))
    op.create_check_constraint("ck_predictions_p_cleared", "predictions",
                               "p_cleared IS NULL OR (p_cleared >= 0 AND p_cleared <= 1)")


def downgrade() -> None:
    op.drop_constraint("ck_predictions_p_cleared", "predictions", type_="check")
    op.drop_column("predictions", "p_cleared")
