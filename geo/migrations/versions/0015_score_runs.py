"""Scoring runs split into parts: any number of workers share one run, published whole.

A run (``score_runs``) fixes once what every part uses: the model version, the as-of, the
horizons and the threshold. Its parts (``score_parts``) are fixed lists of streets (a district,
several small districts, or a slice of a large one), chosen when the run is planned so that a
street added meanwhile cannot move between parts.

A part writes its forecasts into ``staged_predictions``, deleting what an earlier attempt of
the same part left, in one transaction with marking the part done: a worker killed mid-part
leaves nothing, and the retried part writes each forecast once (the primary key refuses a
second copy). Only when every part is done are the staged rows moved into ``predictions`` in
one transaction: the ``forecasts`` layer, its version (migration 0013) and alerts never see
half a run.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from geo.migrations import ddl

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.create_table(
        "score_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("metric", sa.Text),
        sa.Column("model_version", sa.Text,
                  sa.ForeignKey("models.version", ondelete="CASCADE"), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizons", ARRAY(sa.Integer), nullable=False),
        sa.Column("threshold", sa.Float),
        sa.Column("parts", sa.Integer, nullable=False),
        ddl.stamp("created_at"),
        # Set once, in the transaction that moves the staged forecasts into predictions.
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("rows", sa.Integer),
    )
    op.create_table(
        "score_parts",
        sa.Column("run_id", sa.Text, sa.ForeignKey("score_runs.run_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        # The district the part's streets lie in (NULL: none, or several small ones).
        sa.Column("district_id", sa.BigInteger),
        sa.Column("asset_ids", ARRAY(sa.BigInteger), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.Column("rows", sa.Integer),
        sa.Column("scored_by", sa.Text),  # the worker's name, for operators
    )
    op.create_table(
        "staged_predictions",
        sa.Column("run_id", sa.Text, sa.ForeignKey("score_runs.run_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("asset_layer", sa.Text, nullable=False),
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("metric_id", sa.SmallInteger, nullable=False),
        *ddl.forecast_columns(),
        sa.Column("p_cleared", sa.Float),
        ddl.geometry(),
        # Each forecast once per run, whichever part or attempt wrote it.
        sa.PrimaryKeyConstraint("run_id", "asset_layer", "asset_id", "metric_id",
                                "horizon_days", name="pk_staged_predictions"),
    )


def downgrade() -> None:
    op.drop_table("staged_predictions")
    op.drop_table("score_parts")
    op.drop_table("score_runs")
