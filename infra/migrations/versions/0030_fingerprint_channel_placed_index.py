"""orders (fingerprint, channel, placed_at): the router reads, for each
channel a fingerprint has been seen on, only its latest few lookalikes within
the suspicion window, however many orders share the fingerprint within it
(a store's placeholder phone entering hundreds of the same order a day)

Revision ID: 0030
Revises: 0029
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_fingerprint_channel_placed_at",
        "orders",
        ["fingerprint", "channel", "placed_at"],
    )
    op.drop_index("ix_orders_fingerprint_placed_at", table_name="orders")


def downgrade() -> None:
    op.create_index("ix_orders_fingerprint_placed_at", "orders", ["fingerprint", "placed_at"])
    op.drop_index("ix_orders_fingerprint_channel_placed_at", table_name="orders")
