"""Service: API keys with roles, and alerts with their history.

Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl

revision = "0003"
down_revision = "0002"

ALERT_STATUSES = ("open", "acknowledged", "in_progress", "resolved", "dismissed")
# Tables whose changes the service must learn of at once (tile caches, ETags, alert streams).
# Readings are left to their writers (geo.store.touch_layer): a trigger keeping a copy of
# every row of a million-row load doubled its cost.
WATCHED = ("streets", "manholes", "parking", "compounds", "road_damage", "debris_piles",
           "alerts")
VERSIONED = (*WATCHED, "readings")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        ddl.identity_key(sa.Integer),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("role", sa.Text, nullable=False),
        # Only a hash is kept; the key itself is shown once, when it is made.
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("key_prefix", sa.Text, nullable=False),
        ddl.stamp("created_at"),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN ('viewer', 'crew', 'planner', 'admin')",
                           name="ck_api_keys_role"),
    )
    op.create_table(
        "alerts",
        ddl.identity_key(),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("asset_layer", sa.Text),
        sa.Column("asset_id", sa.BigInteger),
        sa.Column("reason", sa.Text, nullable=False),
        ddl.json_object("details"),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        ddl.stamp("opened_at"),
        ddl.stamp("updated_at"),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        ddl.geometry(nullable=False),
        sa.CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')",
                           name="ck_alerts_severity"),
        sa.CheckConstraint(f"status IN {ALERT_STATUSES}", name="ck_alerts_status"),
    )
    ddl.gist_index("alerts")
    op.create_index("ix_alerts_status_updated", "alerts", ["status", "updated_at"])
    # One open alert per asset and kind: "open" here is any state before resolved/dismissed.
    op.create_index(
        "uq_alerts_one_active_per_asset_kind", "alerts", ["asset_layer", "asset_id", "kind"],
        unique=True, postgresql_where=sa.text("status NOT IN ('resolved', 'dismissed')"),
    )
    op.create_table(
        "alert_events",
        ddl.identity_key(),
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id", ondelete="CASCADE"),
                  nullable=False),
        ddl.clock_stamp("at"),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_alert_events_alert_id", "alert_events", ["alert_id", "at"])

    # A version per layer, bumped by any statement that changes a row of it, by whatever
    # process: ETags come from it, and a NOTIFY tells every service worker to drop its tiles.
    op.create_table(
        "layer_versions",
        sa.Column("layer", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        ddl.stamp("changed_at"),
    )
    op.execute(
        "INSERT INTO layer_versions (layer) VALUES "
        + ", ".join(f"('{table}')" for table in VERSIONED)
    )
    op.execute("""
        CREATE FUNCTION twin_touch_layer(changed text) RETURNS void LANGUAGE sql AS $$
            UPDATE layer_versions SET version = version + 1, changed_at = now()
            WHERE layer = changed;
            SELECT pg_notify('twin_layer_changed', changed);
        $$
    """)
    op.execute("""
        CREATE FUNCTION twin_layer_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM changed_rows) THEN
                PERFORM twin_touch_layer(TG_TABLE_NAME);
            END IF;
            RETURN NULL;
        END $$
    """)
    for table in WATCHED:
        ddl.watch_changes(table)


def downgrade() -> None:
    for table in WATCHED:
        ddl.unwatch_changes(table)
    op.execute("DROP FUNCTION twin_layer_changed()")
    op.execute("DROP FUNCTION twin_touch_layer(text)")
    op.drop_table("layer_versions")
    op.drop_table("alert_events")
    op.drop_table("alerts")
    op.drop_table("api_keys")
