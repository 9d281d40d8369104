"""rejected_requests.spool_key: a record kept in the rejection spool carries a
key, so that writing the spool twice (a crash after the commit, before the
file was emptied) records it once

Revision ID: 0025
Revises: 0024
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rejected_requests") as batch:
        batch.add_column(sa.Column("spool_key", sa.String(36), nullable=True))
        batch.create_unique_constraint("uq_rejected_requests_spool_key", ["spool_key"])


def downgrade() -> None:
    with op.batch_alter_table("rejected_requests") as batch:
        batch.drop_constraint("uq_rejected_requests_spool_key", type_="unique")
        batch.drop_column("spool_key")
