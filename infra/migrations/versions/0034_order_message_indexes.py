"""outbox and inbox indexed by (order number, message id) instead of the
order number alone: a day's reconciliation reads each order's message ids
from the index alone, without a read of each row (issue 19: the rows of
the outbox carry the order's body, a page read an order at 1,000,000
orders); an order's timeline uses the same index by its first column

Revision ID: 0034
Revises: 0033
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("outbox", "inbox"):
        op.create_index(f"ix_{table}_order_message", table, ["order_number", "message_id"])
        op.drop_index(f"ix_{table}_order_number", table_name=table)


def downgrade() -> None:
    for table in ("outbox", "inbox"):
        op.create_index(f"ix_{table}_order_number", table, ["order_number"])
        op.drop_index(f"ix_{table}_order_message", table_name=table)
