"""Operations loop: the job queue (procrastinate), rule evaluation on new readings, work records,
assignment and photos of alerts, and evidence that reopens settled alerts.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.dialects.postgresql import JSONB

from geo.migrations import ddl

revision = "0008"
down_revision = "0007"

# procrastinate's own objects (its schema.sql of the pinned version, see pyproject.toml): the
# downgrade drops exactly these. A newer procrastinate brings migration files of its own, to be
# applied by a later twin migration.
PROCRASTINATE_TABLES = ("procrastinate_events", "procrastinate_periodic_defers",
                        "procrastinate_jobs", "procrastinate_workers")
PROCRASTINATE_TYPES = ("procrastinate_job_to_defer_v1", "procrastinate_job_event_type",
                       "procrastinate_job_status")


def upgrade() -> None:
    # The schema is several statements with dollar-quoted bodies: psycopg runs them as one
    # simple query when no parameters are given, so they go to the driver (in this
    # migration's transaction) as written.
    op.get_bind().connection.driver_connection.execute(SchemaManager.get_schema())

    # Assets with new readings, waiting for rule evaluation. Written in the same transaction as
    # the readings (so no commit is missed) and drained by the 'evaluate_rules' job; one row per
    # asset however many readings arrive before the job runs.
    op.create_table(
        "rule_queue",
        sa.Column("asset_id", sa.BigInteger, primary_key=True),
        ddl.clock_stamp("noted_at"),
    )

    # What raised (or reopened) an alert and when that evidence was observed: a settled alert
    # is raised again only on evidence newer than its settling.
    op.add_column("alerts", sa.Column("evidence_at", sa.DateTime(timezone=True)))
    op.add_column("alerts", sa.Column("assignee", sa.Text))
    op.add_column("alerts", sa.Column("due_on", sa.Date))
    op.create_index("ix_alerts_asset_kind_closed", "alerts",
                    ["asset_layer", "asset_id", "kind", sa.text("closed_at DESC")])
    op.add_column("alert_events", sa.Column("evidence", JSONB))

    op.create_table(
        "work_records",
        ddl.identity_key(),
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id", ondelete="SET NULL")),
        sa.Column("asset_layer", sa.Text, nullable=False),
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_by", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("recorded_by", sa.Text, nullable=False),
        ddl.stamp("recorded_at"),
    )
    op.create_index("ix_work_records_asset", "work_records",
                    ["asset_layer", "asset_id", sa.text("done_at DESC")])
    op.create_index("ix_work_records_alert", "work_records", ["alert_id"])

    op.create_table(
        "photos",
        ddl.identity_key(),
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id", ondelete="CASCADE")),
        sa.Column("work_record_id", sa.BigInteger,
                  sa.ForeignKey("work_records.id", ondelete="CASCADE")),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        # Relative to the photo directory; the file name is the checksum, never the client's.
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("uploaded_by", sa.Text, nullable=False),
        ddl.stamp("uploaded_at"),
        sa.CheckConstraint("alert_id IS NOT NULL OR work_record_id IS NOT NULL",
                           name="ck_photos_attached"),
    )
    op.create_index("ix_photos_alert", "photos", ["alert_id"])

    # A pile cleared by a crew: its sightings are closed from then on.
    op.add_column("debris_piles", sa.Column("cleared_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("debris_piles", "cleared_at")
    op.drop_table("photos")
    op.drop_table("work_records")
    op.drop_column("alert_events", "evidence")
    op.drop_index("ix_alerts_asset_kind_closed", table_name="alerts")
    for column in ("due_on", "assignee", "evidence_at"):
        op.drop_column("alerts", column)
    op.drop_table("rule_queue")
    op.execute(f"DROP TABLE {', '.join(PROCRASTINATE_TABLES)} CASCADE")
    # Its functions, whatever their signatures: every one is named procrastinate_*.
    op.execute("""
        DO $$
        DECLARE f regprocedure;
        BEGIN
            FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
            LOOP
                EXECUTE 'DROP FUNCTION ' || f || ' CASCADE';
            END LOOP;
        END $$
    """)
    op.execute(f"DROP TYPE {', '.join(PROCRASTINATE_TYPES)} CASCADE")
