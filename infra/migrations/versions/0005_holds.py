"""holds: orders held for a person as suspected cross-channel duplicates

orders gains the fingerprint a duplicate would share, when it was placed, and
its hold status; holds records each hold and its decision.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("hold_status", sa.String(16), nullable=True))
        batch.create_index("ix_orders_fingerprint", ["fingerprint"])
    op.create_table(
        "holds",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("order_number", sa.String(32), nullable=False),
        sa.Column("suspected_of", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("order_id", name=op.f("uq_holds_order_id")),
    )
    op.create_index("ix_holds_status", "holds", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_holds_status", table_name="holds")
    op.drop_table("holds")
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_fingerprint")
        batch.drop_column("hold_status")
        batch.drop_column("placed_at")
        batch.drop_column("fingerprint")
