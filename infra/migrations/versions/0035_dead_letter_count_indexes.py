"""dead_letters counted from indexes: the exceptions page's causes with
their counts and latest failure from (status, cause, last failure), the
metrics' count by (queue, reason, status), each without reading the rows
(which carry the message's body: a page read every five dead letters,
issue 19)

Revision ID: 0035
Revises: 0034
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_dead_letters_status_cause_last",
        "dead_letters",
        ["status", "cause", "last_failed_at"],
    )
    op.drop_index("ix_dead_letters_status_cause", table_name="dead_letters")
    op.create_index(
        "ix_dead_letters_queue_reason_status", "dead_letters", ["queue", "reason", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_queue_reason_status", table_name="dead_letters")
    op.create_index("ix_dead_letters_status_cause", "dead_letters", ["status", "cause"])
    op.drop_index("ix_dead_letters_status_cause_last", table_name="dead_letters")
