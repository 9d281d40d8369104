"""dead_letters.cause: each dead letter's business cause, kept when it is
recorded, so the exceptions page counts them by cause in SQL (indexed with
the status); rows from before stay empty and are classified when read

Revision ID: 0032
Revises: 0031
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("cause", sa.String(32), nullable=True))
    op.create_index("ix_dead_letters_status_cause", "dead_letters", ["status", "cause"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_status_cause", table_name="dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("cause")
