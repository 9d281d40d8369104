"""holds.cause: why an order waits (NULL: for approval; sku_not_mapped: for a mapping)

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("cause", sa.String(40), nullable=True))
    op.create_index("ix_holds_cause", "holds", ["cause", "status"])


def downgrade() -> None:
    op.drop_index("ix_holds_cause", table_name="holds")
    op.drop_column("holds", "cause")
