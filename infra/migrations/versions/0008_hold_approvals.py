"""holds for approval: a hold need not be a suspected duplicate, and may need
two approvals (the first approver is kept)

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.alter_column("suspected_of", existing_type=sa.String(32), nullable=True)
        batch.add_column(
            sa.Column("approvals_needed", sa.Integer(), nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("approved_by", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("approved_by")
        batch.drop_column("approvals_needed")
        batch.alter_column("suspected_of", existing_type=sa.String(32), nullable=False)
