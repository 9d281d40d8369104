"""carrier_codes: one carrier, each system's code for it

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carrier_codes",
        sa.Column("carrier", sa.String(100), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("carrier", "system", name=op.f("pk_carrier_codes")),
    )


def downgrade() -> None:
    op.drop_table("carrier_codes")
