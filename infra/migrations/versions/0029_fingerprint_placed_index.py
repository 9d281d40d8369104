"""orders (fingerprint, placed_at): the router reads a new order's
lookalikes within the suspicion window by this index, however many orders
share the fingerprint (a store's placeholder phone, a frequent buyer)

Revision ID: 0029
Revises: 0028
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_fingerprint_placed_at", "orders", ["fingerprint", "placed_at"])
    op.drop_index("ix_orders_fingerprint", table_name="orders")


def downgrade() -> None:
    op.create_index("ix_orders_fingerprint", "orders", ["fingerprint"])
    op.drop_index("ix_orders_fingerprint_placed_at", table_name="orders")
