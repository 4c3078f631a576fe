"""Resident requests (Open311 GeoReport v2): requests, reporters' contacts, supporters, history.

The services catalogue is a constant in code (geo/requests.py). Reporters' names, phones and
e-mails live in a table of their own that only admin answers read, never in ``service_requests``.

Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "service_requests",
        # Drawn from the asset sequence: an overdue request's alert names it by asset_id, and
        # alert joins elsewhere match on asset_id alone, so the ids must not collide with assets.
        ddl.asset_key(),
        sa.Column("token", sa.Text, nullable=False, unique=True),
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        ddl.json_object("attributes"),
        sa.Column("address_string", sa.Text),
        sa.Column("media_url", sa.Text),
        ddl.geometry("POINT", nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("status_notes", sa.Text),
        # Triage: big / small / private matter, where the answer came from, and who fixes it.
        sa.Column("matter", sa.Text, nullable=False),
        sa.Column("matter_source", sa.Text, nullable=False),
        sa.Column("matter_confidence", sa.Float),
        sa.Column("responsible_party", sa.Text, nullable=False),
        sa.Column("responsible_kind", sa.Text, nullable=False),
        sa.Column("compound_id", sa.BigInteger),
        sa.Column("duplicate_of", sa.BigInteger,
                  sa.ForeignKey("service_requests.id", ondelete="SET NULL")),
        sa.Column("joined_alert_id", sa.BigInteger,
                  sa.ForeignKey("alerts.id", ondelete="SET NULL")),
        sa.Column("observation_layer", sa.Text),
        sa.Column("observation_id", sa.BigInteger),
        sa.Column("overdue_alert_id", sa.BigInteger,
                  sa.ForeignKey("alerts.id", ondelete="SET NULL")),
        sa.Column("api_key_name", sa.Text, nullable=False),
        # sha256 of key + service + place + description + attributes: repeated posts.
        sa.Column("fingerprint", sa.Text, nullable=False),
        ddl.stamp("requested_at"),
        ddl.stamp("updated_at"),
        sa.Column("expected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_service_requests_status"),
        sa.CheckConstraint("matter IN ('big', 'small', 'private')",
                           name="ck_service_requests_matter"),
        sa.CheckConstraint("matter_source IN ('service', 'attributes', 'classifier', 'staff')",
                           name="ck_service_requests_matter_source"),
        sa.CheckConstraint("description IS NULL OR char_length(description) <= 4000",
                           name="ck_service_requests_description_length"),
    )
    ddl.gist_index("service_requests")
    op.create_index("ix_service_requests_status_expected", "service_requests",
                    ["status", "expected_at"])
    op.create_index("ix_service_requests_requested", "service_requests", ["requested_at"])
    op.create_index("ix_service_requests_code", "service_requests", ["service_code", "status"])
    op.create_index("ix_service_requests_duplicate_of", "service_requests", ["duplicate_of"])
    op.create_index("ix_service_requests_fingerprint", "service_requests",
                    ["fingerprint", "requested_at"])
    op.create_index("ix_service_requests_key_time", "service_requests",
                    ["api_key_name", "requested_at"])

    # Personal data apart: one row per request that gave any, read only for admins.
    op.create_table(
        "service_request_contacts",
        sa.Column("request_id", sa.BigInteger,
                  sa.ForeignKey("service_requests.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("first_name", sa.Text),
        sa.Column("last_name", sa.Text),
        sa.Column("phone", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("device_id", sa.Text),
        sa.Column("account_id", sa.Text),
    )

    # +1 links: a later report of the same matter supports the first request or an alert.
    op.create_table(
        "service_request_supporters",
        ddl.identity_key(),
        sa.Column("request_id", sa.BigInteger,
                  sa.ForeignKey("service_requests.id", ondelete="CASCADE")),
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id", ondelete="CASCADE")),
        sa.Column("supporter_id", sa.BigInteger,
                  sa.ForeignKey("service_requests.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        ddl.stamp("created_at"),
        sa.CheckConstraint("(request_id IS NULL) <> (alert_id IS NULL)",
                           name="ck_service_request_supporters_one_target"),
    )
    op.create_index("ix_service_request_supporters_request", "service_request_supporters",
                    ["request_id"])
    op.create_index("ix_service_request_supporters_alert", "service_request_supporters",
                    ["alert_id"])

    op.create_table(
        "service_request_events",
        ddl.identity_key(),
        sa.Column("request_id", sa.BigInteger,
                  sa.ForeignKey("service_requests.id", ondelete="CASCADE"), nullable=False),
        ddl.clock_stamp("at"),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),  # status, classification, overdue
        sa.Column("from_value", sa.Text),
        sa.Column("to_value", sa.Text),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_service_request_events_request", "service_request_events",
                    ["request_id", "at"])


def downgrade() -> None:
    op.drop_table("service_request_events")
    op.drop_table("service_request_supporters")
    op.drop_table("service_request_contacts")
    op.drop_table("service_requests")
