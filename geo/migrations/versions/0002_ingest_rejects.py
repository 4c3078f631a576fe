"""Ingest: rejected and repaired rows of each run, and what a run needs to be audited.

Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column(
        "ingest_runs", sa.Column("rows_repaired", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column("ingest_runs", sa.Column("mapping_path", sa.Text))
    # The server process doing the load: a run left 'running' by a process that died can be
    # told from one still at work.
    op.add_column("ingest_runs", sa.Column("backend_pid", sa.Integer))
    op.drop_constraint("ck_ingest_runs_status", "ingest_runs")
    op.create_check_constraint(
        "ck_ingest_runs_status",
        "ingest_runs",
        "status IN ('running', 'succeeded', 'failed', 'interrupted')",
    )
    op.create_table(
        "ingest_rejects",
        ddl.identity_key(),
        sa.Column(
            "run_id",
            sa.BigInteger,
            sa.ForeignKey("ingest_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("row_number", sa.BigInteger, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False, server_default="rejected"),
        sa.CheckConstraint("outcome IN ('rejected', 'repaired')", name="ck_ingest_rejects_outcome"),
    )
    op.create_index("ix_ingest_rejects_run_id", "ingest_rejects", ["run_id", "row_number"])


def downgrade() -> None:
    op.drop_table("ingest_rejects")
    op.execute("DELETE FROM ingest_runs WHERE status = 'interrupted'")
    op.drop_constraint("ck_ingest_runs_status", "ingest_runs")
    op.create_check_constraint(
        "ck_ingest_runs_status", "ingest_runs", "status IN ('running', 'succeeded', 'failed')"
    )
    op.drop_column("ingest_runs", "backend_pid")
    op.drop_column("ingest_runs", "mapping_path")
    op.drop_column("ingest_runs", "rows_repaired")
