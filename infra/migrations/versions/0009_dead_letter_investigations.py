"""dead_letter_investigations: a cause of dead letters someone is looking into

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letter_investigations",
        sa.Column("cause", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("cause", name=op.f("pk_dead_letter_investigations")),
    )


def downgrade() -> None:
    op.drop_table("dead_letter_investigations")
