"""sku_mappings, sku_codes, mapping_state; inbox.mapping_version

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sku_mappings",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("shop", sa.String(200), nullable=False),
        sa.Column("platform_sku", sa.String(200), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sku_mappings")),
        sa.UniqueConstraint("channel", "shop", "platform_sku", name="uq_sku_mappings_key"),
    )
    op.create_table(
        "sku_codes",
        sa.Column("internal_sku", sa.String(200), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("code", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("internal_sku", "target", name=op.f("pk_sku_codes")),
    )
    op.create_table(
        "mapping_state",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_mapping_state")),
    )
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("mapping_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("mapping_version")
    op.drop_table("mapping_state")
    op.drop_table("sku_codes")
    op.drop_table("sku_mappings")
