"""orders.customer_key: who the customer is (their phone, else email), hashed,
so the approval rules can tell a first order from a new customer

Revision ID: 0011
Revises: 0010
"""

import hashlib
import json
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(body: str) -> str | None:
    # The same rule as router/approval.py customer_key, frozen here.
    try:
        customer = json.loads(body).get("customer") or {}
    except ValueError:
        return None
    digits = re.sub(r"\D", "", customer.get("phone") or "")
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if digits:
        return hashlib.sha256(f"phone:{digits}".encode()).hexdigest()
    email = (customer.get("email") or "").strip().lower()
    return hashlib.sha256(f"email:{email}".encode()).hexdigest() if email else None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("customer_key", sa.String(64), nullable=True))
        batch.create_index("ix_orders_customer_key", ["customer_key"])
    conn = op.get_bind()
    orders = sa.table("orders", sa.column("id"), sa.column("body"), sa.column("customer_key"))
    rows = conn.execute(sa.select(orders.c.id, orders.c.body)).all()
    for row in rows:
        key = _key(row.body)
        if key is not None:
            conn.execute(orders.update().where(orders.c.id == row.id).values(customer_key=key))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_customer_key")
        batch.drop_column("customer_key")
