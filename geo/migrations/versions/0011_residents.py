"""Residents in the loop: channels and departments of requests, photos, the outbox, webhooks.

- ``service_requests`` gains the trade that acts on it (``department``), the channel it came by
  (open311, report, chat) and, for chat-group reports, the group it came from.
- ``service_request_photos``: residents' photos from ``/report`` and chat intake.
- ``request_outbox``: every status change and staff reply, written in the transaction that made
  it, so a change is never lost between the database and the receivers.
- ``webhook_subscriptions`` and ``webhook_deliveries``: who receives the outbox, and how far each
  receiver is (delivered, attempts, next attempt): delivery state lives in the database, so a
  receiver that is away for an hour, or a worker that restarts, loses nothing.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from geo.migrations import ddl

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.add_column("service_requests", sa.Column("department", sa.Text))
    op.add_column("service_requests", sa.Column("channel", sa.Text, nullable=False,
                                                server_default="open311"))
    op.add_column("service_requests", sa.Column("chat_group_id", sa.Text))
    op.create_check_constraint("ck_service_requests_channel", "service_requests",
                               "channel IN ('open311', 'report', 'chat')")
    op.create_index("ix_service_requests_compound_matter", "service_requests",
                    ["compound_id", "matter", "status"])

    op.create_table(
        "service_request_photos",
        ddl.identity_key(),
        sa.Column("request_id", sa.BigInteger,
                  sa.ForeignKey("service_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        ddl.stamp("created_at"),
    )
    op.create_index("ix_service_request_photos_request", "service_request_photos",
                    ["request_id"])

    op.create_table(
        "request_outbox",
        ddl.identity_key(),
        sa.Column("request_id", sa.BigInteger,
                  sa.ForeignKey("service_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),  # status, reply
        sa.Column("payload", JSONB, nullable=False),
        ddl.clock_stamp("created_at"),
        sa.CheckConstraint("kind IN ('status', 'reply')", name="ck_request_outbox_kind"),
    )
    op.create_index("ix_request_outbox_request", "request_outbox", ["request_id", "id"])

    op.create_table(
        "webhook_subscriptions",
        ddl.identity_key(),
        sa.Column("url", sa.Text, nullable=False),
        # The HMAC key the receiver checks signatures with (it must be readable to sign).
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_by", sa.Text, nullable=False),
        ddl.stamp("created_at"),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("outbox_id", sa.BigInteger,
                  sa.ForeignKey("request_outbox.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subscription_id", sa.BigInteger,
                  sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("request_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        ddl.stamp("next_attempt_at"),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("subscription_id", "outbox_id"),
        sa.CheckConstraint("status IN ('pending', 'delivered')",
                           name="ck_webhook_deliveries_status"),
    )
    op.create_index("ix_webhook_deliveries_pending", "webhook_deliveries",
                    ["next_attempt_at"], postgresql_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("request_outbox")
    op.drop_table("service_request_photos")
    op.drop_index("ix_service_requests_compound_matter", "service_requests")
    op.drop_constraint("ck_service_requests_channel", "service_requests")
    op.drop_column("service_requests", "chat_group_id")
    op.drop_column("service_requests", "channel")
    op.drop_column("service_requests", "department")
