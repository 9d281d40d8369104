"""a day's figures from indexes: orders by (creation, channel), deliveries
by (time, system, latency), so the dashboard counts a day's orders by hour
and channel, and its deliveries and their latencies, without reading the
rows (issue 19: a day's first load read 10,000 orders and 30,000 inbox
rows); a phone-tail lookup reads only its channel's orders of the window

Revision ID: 0036
Revises: 0035
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_created_at_channel", "orders", ["created_at", "channel"])
    op.drop_index("ix_orders_created_at", table_name="orders")
    op.create_index(
        "ix_inbox_delivered_at_consumer_latency",
        "inbox",
        ["delivered_at", "consumer", "latency_ms"],
    )
    op.drop_index("ix_inbox_delivered_at", table_name="inbox")


def downgrade() -> None:
    op.create_index("ix_inbox_delivered_at", "inbox", ["delivered_at"])
    op.drop_index("ix_inbox_delivered_at_consumer_latency", table_name="inbox")
    op.create_index("ix_orders_created_at", "orders", ["created_at"])
    op.drop_index("ix_orders_created_at_channel", table_name="orders")
