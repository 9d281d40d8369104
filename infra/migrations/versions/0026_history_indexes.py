"""Indexes that keep the questions people and monitors ask as fast at a
million orders as at a thousand (``python -m bench.history``): the outbox
row names its order (``outbox.order_number``, filled for the rows already
there), and the times the day's views and the alert rules read by are
indexed

Revision ID: 0026
Revises: 0025
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_outbox_order_number", "outbox", ["order_number"]),
    ("ix_outbox_created_at", "outbox", ["created_at"]),
    ("ix_arrivals_received_at", "arrivals", ["received_at"]),
    ("ix_arrivals_channel_received_at", "arrivals", ["channel", "received_at"]),
    ("ix_inbox_order_number", "inbox", ["order_number"]),
    ("ix_inbox_delivered_at", "inbox", ["delivered_at"]),
    ("ix_orders_created_at", "orders", ["created_at"]),
    ("ix_orders_status", "orders", ["status"]),
)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("order_number", sa.String(32), nullable=True))
    # Every outbox message id begins with its order's number ("OB" and 16
    # characters): a revision's, a document's, a notice to the customer.
    op.execute(
        "UPDATE outbox SET order_number = substr(message_id, 1, 18) "
        "WHERE message_id LIKE 'OB%' AND length(message_id) > 18"
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("order_number")
