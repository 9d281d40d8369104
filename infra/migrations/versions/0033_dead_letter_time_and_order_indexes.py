"""dead_letters indexed by their first failure's time and by their order:
the alert on a channel's refusals and the dashboard read a window of dead
letters by time, an order's timeline its own dead letters; both read every
dead letter ever recorded before (issue 19: they grew with the history)

Revision ID: 0033
Revises: 0032
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_dead_letters_first_failed_at", "dead_letters", ["first_failed_at"])
    op.create_index("ix_dead_letters_order_number", "dead_letters", ["order_number"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_order_number", table_name="dead_letters")
    op.drop_index("ix_dead_letters_first_failed_at", table_name="dead_letters")
