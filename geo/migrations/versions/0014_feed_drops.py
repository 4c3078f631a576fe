"""Runs and feeds: lost loads and lost sensor messages are never silent.

A run belongs to its server process while that lives; the server reuses pids, so the
process's start time is kept beside its pid (``ingest_runs.backend_start``).

A broker drops messages it cannot queue (mosquitto: ``max_queued_messages``, 1000 by default,
also in Debian's package) and says so only in its log and its ``$SYS`` counter. The watcher
reads that counter and keeps each change here: the last total per broker is the baseline the
next run compares with, since drops mostly happen while no watcher is connected.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.add_column("ingest_runs", sa.Column("backend_start", sa.DateTime(timezone=True)))
    op.create_table(
        "feed_drops",
        ddl.identity_key(),
        sa.Column("broker", sa.Text, nullable=False),  # host:port
        ddl.stamp("seen_at"),
        # The broker's counter as read (since the broker started) and what it added since
        # the previous row of the same broker: the messages known lost.
        sa.Column("dropped_total", sa.BigInteger, nullable=False),
        sa.Column("dropped_new", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("ingest_runs.id", ondelete="SET NULL")),
    )
    op.create_index("ix_feed_drops_broker_seen", "feed_drops", ["broker", sa.text("id DESC")])


def downgrade() -> None:
    op.drop_table("feed_drops")
    op.drop_column("ingest_runs", "backend_start")
