"""metric_counts: what each process counted (infra/counters.py), so a
metrics scrape no longer counts every arrival and delivery; started from the
rows already there

Revision ID: 0028
Revises: 0027
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
INSTANCE = "before-0028"


def upgrade() -> None:
    op.create_table(
        "metric_counts",
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("labels", sa.String(400), nullable=False),
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "labels", "instance", name=op.f("pk_metric_counts")),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    sep = "chr(31)" if postgres else "char(31)"
    if postgres:
        seconds = "GREATEST(extract(epoch FROM (i.delivered_at - a.received_at)), 0)"
    else:
        seconds = "MAX((julianday(i.delivered_at) - julianday(a.received_at)) * 86400.0, 0)"
    joined = (
        "FROM inbox i JOIN orders o ON o.order_number = i.order_number "
        "JOIN arrivals a ON a.order_id = o.id AND a.order_version = i.order_version "
        "AND a.outcome IN ('new', 'update') GROUP BY i.consumer"
    )
    parts = [(str(b), f"sum(CASE WHEN {seconds} <= {b} THEN 1 ELSE 0 END)") for b in BUCKETS]
    parts += [("+Inf", "count(*)"), ("sum", f"sum({seconds})")]
    # Built from this file's constants only: nothing from outside reaches them.
    statements = [
        f"SELECT 'arrivals', channel || {sep} || outcome, '{INSTANCE}', count(*) "  # noqa: S608
        "FROM arrivals GROUP BY channel, outcome",
        *(
            f"SELECT 'delivery_latency', i.consumer || {sep} || '{bucket}', '{INSTANCE}', "
            f"{value} {joined}"
            for bucket, value in parts
        ),
    ]
    for select in statements:
        op.execute("INSERT INTO metric_counts (metric, labels, instance, value) " + select)


def downgrade() -> None:
    op.drop_table("metric_counts")
