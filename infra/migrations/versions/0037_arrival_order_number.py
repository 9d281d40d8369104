"""arrivals carry their order's number: a day's reconciliation reads the
day's orders from their arrivals alone, not a page of the orders table an
order (issue 19: a fourth of the pages a day read from the disk at
1,000,000 orders); older arrivals have none and are read with their order

Revision ID: 0037
Revises: 0036
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("arrivals", sa.Column("order_number", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("arrivals", "order_number")
