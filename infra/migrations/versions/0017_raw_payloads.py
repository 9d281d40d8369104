"""raw_payloads: the platform's own order (the webhook body) beside ours

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "raw_payloads",
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_encoding", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_raw_payloads")),
    )
    op.create_index("ix_raw_payloads_channel_received", "raw_payloads", ["channel", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_payloads_channel_received", table_name="raw_payloads")
    op.drop_table("raw_payloads")
