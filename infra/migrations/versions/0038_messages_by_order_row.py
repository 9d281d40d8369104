"""a day's messages side by side: outbox rows name their order's row
(order_id, whose values grow with time) and are indexed by it, and the
inbox is indexed by (delivery time, message id), so a day's
reconciliation reads its orders' messages and their deliveries from
neighbouring index pages instead of a page an order by the hashed number
(issue 19: a day asked for the first time read 3,500 pages at 1,000,000
orders). Outbox rows without it (older ones, a retried dead letter, a
delay notice) keep an index by number of their own. The inbox's two
indexes by order number become one (number, system, message id), so the
inbox keeps as many indexes as before. The arrivals' index by (channel,
time) also holds what each arrival made (PostgreSQL): a channel's day's
orders are read from it alone (195 pages of rows a day -> 18 of index)

Revision ID: 0038
Revises: 0037
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0038"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITHOUT_ID = sa.text("order_id IS NULL")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("outbox", sa.Column("order_id", ID, nullable=True))
    op.create_index("ix_outbox_order_id_message", "outbox", ["order_id", "message_id"])
    op.create_index(
        "ix_outbox_number_without_id",
        "outbox",
        ["order_number", "message_id"],
        postgresql_where=WITHOUT_ID,
        sqlite_where=WITHOUT_ID,
    )
    op.drop_index("ix_outbox_order_message", table_name="outbox")
    op.create_index(
        "ix_inbox_order_consumer_message", "inbox", ["order_number", "consumer", "message_id"]
    )
    op.drop_index("ix_inbox_order_message", table_name="inbox")
    op.drop_index("ix_inbox_consumer_order", table_name="inbox")
    op.create_index("ix_inbox_delivered_at_message", "inbox", ["delivered_at", "message_id"])
    op.create_index(
        "ix_arrivals_channel_received_at_order",
        "arrivals",
        ["channel", "received_at"],
        postgresql_include=["order_id", "order_number", "external_id", "outcome", "order_version"],
    )
    op.drop_index("ix_arrivals_channel_received_at", table_name="arrivals")


def downgrade() -> None:
    op.create_index("ix_arrivals_channel_received_at", "arrivals", ["channel", "received_at"])
    op.drop_index("ix_arrivals_channel_received_at_order", table_name="arrivals")
    op.drop_index("ix_inbox_delivered_at_message", table_name="inbox")
    op.create_index("ix_inbox_consumer_order", "inbox", ["consumer", "order_number"])
    op.create_index("ix_inbox_order_message", "inbox", ["order_number", "message_id"])
    op.drop_index("ix_inbox_order_consumer_message", table_name="inbox")
    op.create_index("ix_outbox_order_message", "outbox", ["order_number", "message_id"])
    op.drop_index("ix_outbox_number_without_id", table_name="outbox")
    op.drop_index("ix_outbox_order_id_message", table_name="outbox")
    op.drop_column("outbox", "order_id")
