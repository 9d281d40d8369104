"""orders: the parcel's tracking number, state and last carrier update, and
when its customer was told of a problem with it (once)

Revision ID: 0022
Revises: 0021
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("tracking_number", sa.String(40), nullable=True))
    op.add_column("orders", sa.Column("parcel_state", sa.String(20), nullable=True))
    op.add_column(
        "orders", sa.Column("parcel_updated_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "orders", sa.Column("parcel_noticed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_orders_tracking_number", "orders", ["tracking_number"])


def downgrade() -> None:
    op.drop_index("ix_orders_tracking_number", table_name="orders")
    for column in ("parcel_noticed_at", "parcel_updated_at", "parcel_state", "tracking_number"):
        op.drop_column("orders", column)
