"""shop_accounts and warehouse_rules: the shops' ERP accounts and where orders ship from

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "shop_accounts",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("shop", sa.String(200), nullable=False),
        sa.Column("customer", sa.String(200), nullable=True),
        sa.Column("department", sa.String(200), nullable=True),
        sa.Column("settlement_account", sa.String(200), nullable=True),
        sa.Column("warehouse", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("channel", "shop", name=op.f("pk_shop_accounts")),
    )
    op.create_table(
        "warehouse_rules",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("province", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("warehouse", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warehouse_rules")),
    )


def downgrade() -> None:
    op.drop_table("warehouse_rules")
    op.drop_table("shop_accounts")
