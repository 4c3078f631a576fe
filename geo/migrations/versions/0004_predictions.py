"""Predictions: a registry of versioned models and the forecasts they score.

Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from geo.migrations import ddl

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, nullable=False),  # road_wear, debris, ...
        sa.Column("metric", sa.Text),  # the condition metric a road-wear model forecasts
        ddl.stamp("trained_at"),
        # What the model saw: observations in [train_from, train_to] (train_to is the as-of).
        sa.Column("train_from", sa.DateTime(timezone=True)),
        sa.Column("train_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False, server_default="0"),
        ddl.json_object("metrics"),
        sa.Column("features", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        ddl.json_object("params"),
        ddl.json_object("library_versions"),
        # The estimator in skops format (never a bare pickle) and its checksum.
        sa.Column("skops", sa.LargeBinary, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
    )
    op.create_index("ix_models_target_metric_trained", "models",
                    ["target", "metric", sa.text("trained_at DESC")])

    op.create_table(
        "predictions",
        ddl.identity_key(),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text,
                  sa.ForeignKey("models.version", ondelete="CASCADE"), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("asset_layer", sa.Text),
        sa.Column("asset_id", sa.BigInteger),
        # What is forecast when it is not an asset: a grid cell or a debris pile's reference.
        sa.Column("subject", sa.Text),
        sa.Column("metric_id", sa.SmallInteger, sa.ForeignKey("metrics.id")),
        *ddl.forecast_columns(),
        ddl.geometry(),
        ddl.stamp("created_at"),
        sa.CheckConstraint("horizon_days > 0", name="ck_predictions_horizon_positive"),
        sa.CheckConstraint("lower IS NULL OR upper IS NULL OR lower <= upper",
                           name="ck_predictions_interval"),
    )
    # "The latest prediction per asset and horizon": one index probe per (asset, metric, horizon).
    op.create_index("ix_predictions_latest_asset", "predictions",
                    ["asset_id", "metric_id", "horizon_days", sa.text("as_of DESC"),
                     sa.text("created_at DESC")])
    op.create_index("ix_predictions_latest_subject", "predictions",
                    ["target", "subject", "horizon_days", sa.text("as_of DESC"),
                     sa.text("created_at DESC")])
    op.create_index("ix_predictions_run", "predictions", ["run_id"])
    op.create_index("ix_predictions_model_version", "predictions", ["model_version"])
    ddl.gist_index("predictions")


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("models")
