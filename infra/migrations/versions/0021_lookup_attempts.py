"""lookup_attempts: the customers' own lookups counted per client and per
order number in a window; orders found by their platform order number

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lookup_attempts",
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_lookup_attempts")),
    )
    op.create_index("ix_orders_external_id", "orders", ["external_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_external_id", table_name="orders")
    op.drop_table("lookup_attempts")
