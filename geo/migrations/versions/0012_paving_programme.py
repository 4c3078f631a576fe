"""Paving programme: streets scheduled for treatment, with year and treatment.

A city's programme is evidence for road-wear forecasts (a scheduled resurfacing resets the
curve in its year). ``published_on`` says since when the twin may know an entry: a backtest
as of an earlier date must not see it.

Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from geo.migrations import ddl

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.create_table(
        "paving_programme",
        ddl.identity_key(),
        sa.Column("street_id", sa.BigInteger, sa.ForeignKey("streets.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("treatment", sa.Text, nullable=False),
        sa.Column("planned_on", sa.Date),
        sa.Column("published_on", sa.Date),
        sa.Column("source", sa.Text, nullable=False),
        ddl.stamp("loaded_at"),
        sa.UniqueConstraint("street_id", "year", "treatment", "source",
                            name="uq_paving_programme_entry"),
        sa.CheckConstraint("year BETWEEN 1900 AND 2200", name="ck_paving_programme_year"),
    )
    op.create_index("ix_paving_programme_street", "paving_programme", ["street_id", "year"])


def downgrade() -> None:
    op.drop_table("paving_programme")
