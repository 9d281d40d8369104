"""inbox.latency_ms: a delivery's time from its revision's arrival, kept with
it, so the dashboard's percentiles are one read of a day's inbox rows instead
of a join of each to its order and arrival (rows from before stay without it
and are still measured by that join)

Revision ID: 0031
Revises: 0030
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("latency_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("latency_ms")
