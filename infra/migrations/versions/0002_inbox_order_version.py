"""inbox: order version and outcome, so a consumer never delivers an older
version of an order after a newer one

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_version", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=16), server_default="delivered", nullable=False)
        )
        batch_op.create_index("ix_inbox_consumer_order", ["consumer", "order_number"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_consumer_order")
        batch_op.drop_column("outcome")
        batch_op.drop_column("order_version")
