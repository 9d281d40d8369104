"""reconciled_days, reconciled_orders: the reconciliation of each day whose
history rows the retention deleted, kept entry for entry

Revision ID: 0027
Revises: 0026
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reconciled_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("refused_requests", sa.JSON(), nullable=False),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "timezone", name=op.f("pk_reconciled_days")),
    )
    op.create_table(
        "reconciled_orders",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("order_number", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciled_orders")),
    )
    op.create_index("ix_reconciled_orders_day_channel", "reconciled_orders", ["day", "channel"])
    op.create_index("ix_reconciled_orders_order_number", "reconciled_orders", ["order_number"])


def downgrade() -> None:
    op.drop_table("reconciled_orders")
    op.drop_table("reconciled_days")
