"""stock_levels (each SKU's available units, as of when) and stock_pushes
(each channel listing's quantity to send, and what was sent)

Revision ID: 0023
Revises: 0022
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stock_levels",
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("available", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_stock_levels")),
    )
    op.create_table(
        "stock_pushes",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("platform_sku", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pushed_quantity", sa.Integer(), nullable=True),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("channel", "platform_sku", name=op.f("pk_stock_pushes")),
    )


def downgrade() -> None:
    op.drop_table("stock_pushes")
    op.drop_table("stock_levels")
