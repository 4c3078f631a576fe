"""Responsible parties in the reader's language.

A request's responsible party was stored as English text only. It is now also kept as a
message (``geo.i18n.deferred``: a msgid and its values, such as the compound's or
sub-district's name), rendered per reader in Chinese or English. ``responsible_party`` keeps
the English text: the council's list groups by it and older rows have nothing else.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.add_column("service_requests", sa.Column("responsible_party_message", JSONB))


def downgrade() -> None:
    op.drop_column("service_requests", "responsible_party_message")
