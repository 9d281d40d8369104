"""orders.delay_noticed_at: the delay watch marks the order it told the
customer about, and reads only paid orders not yet marked (a partial index)

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAID_UNNOTICED = "status = 'paid' AND delay_noticed_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("delay_noticed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_orders_paid_unnoticed",
        "orders",
        ["updated_at"],
        postgresql_where=sa.text(PAID_UNNOTICED),
        sqlite_where=sa.text(PAID_UNNOTICED),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_paid_unnoticed", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("delay_noticed_at")
