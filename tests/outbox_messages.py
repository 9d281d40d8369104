"""What the tests of the delivery side share: an orderbus on SQLite and the
in-memory broker with quick retries, and the router's outbox rows as the
deliveries a consumer would receive."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Engine, select

from infra.messages import Delivery
from infra.settings import Settings
from infra.tables import outbox
from orderbus.bootstrap import Orderbus, bootstrap


def quick_app(sqlite_url: str, **settings: Any) -> Orderbus:
    """orderbus on ``sqlite_url`` and ``memory://``, retrying in milliseconds."""
    return bootstrap(
        Settings(
            broker_url="memory://",
            database_url=sqlite_url,
            namespace="t",
            delivery_attempts=4,
            retry_initial_wait=0.001,
            retry_max_wait=0.002,
            **settings,
        )
    )


def outbox_deliveries(engine: Engine, where: ColumnElement[bool]) -> list[Delivery]:
    """The outbox rows matching ``where``, in order, as a consumer receives them."""
    with engine.connect() as conn:
        rows = conn.execute(select(outbox).where(where).order_by(outbox.c.id)).all()
    return [
        Delivery(
            queue=f"t.{row.routing_key.rsplit('.', 1)[-1]}",
            body=row.body.encode(),
            message_id=row.message_id,
            correlation_id=row.correlation_id,
            headers=dict(row.headers),
            exchange="t.orders",
            routing_key=row.routing_key,
            redelivered=False,
            content_type="application/json",
            deliveries=1,
        )
        for row in rows
    ]
