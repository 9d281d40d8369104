"""Each running component's sign of life (``component_heartbeats``): the
daemon beats for its components every ``INTERVAL`` seconds, with the process
(host:pid) and the queues each consumes, and removes its rows when it stops.
Readiness and the metrics read them: a component none of whose processes beat
within ``STALE_AFTER`` is down (a process killed leaves its row to go stale;
rows a day old are purged)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select

from infra.database import dialect_insert, translate_db_errors
from infra.tables import component_heartbeats

INTERVAL = 10.0
STALE_AFTER = timedelta(seconds=3 * INTERVAL)
PURGE_AFTER = timedelta(days=1)


def this_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def beat(
    engine: Engine, instance: str, queues_of: dict[str, list[str]], started_at: datetime
) -> None:
    """One beat for each component of this process (its queues)."""
    now = datetime.now(UTC)
    with translate_db_errors(), engine.begin() as conn:
        for component, queues in queues_of.items():
            upsert = dialect_insert(conn, component_heartbeats).values(
                component=component, instance=instance, queues=queues,
                started_at=started_at, beat_at=now,
            )  # fmt: skip
            conn.execute(
                upsert.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=["component", "instance"],
                    set_={"beat_at": now, "queues": queues},
                )
            )
        conn.execute(
            delete(component_heartbeats).where(component_heartbeats.c.beat_at < now - PURGE_AFTER)
        )


def stopped(engine: Engine, instance: str, components: Iterable[str]) -> None:
    """A clean stop: this process's rows go (it is not down, it is gone)."""
    c = component_heartbeats.c
    with translate_db_errors(), engine.begin() as conn:
        conn.execute(
            delete(component_heartbeats).where(
                c.instance == instance, c.component.in_(list(components))
            )
        )


@dataclass(frozen=True)
class ComponentState:
    component: str
    live_instances: int
    last_beat_seconds: float
    queues: tuple[str, ...]

    @property
    def up(self) -> bool:
        return self.live_instances > 0


def states(conn: Connection, now: datetime | None = None) -> list[ComponentState]:
    """Each component that beat in the last day: how many of its processes
    are live, how long since the last beat, the queues they consume."""
    now = now or datetime.now(UTC)
    c = component_heartbeats.c
    rows = conn.execute(select(c.component, c.queues, c.beat_at)).all()
    found: dict[str, list[tuple[list[str], datetime]]] = {}
    for component, queues, beat_at in rows:
        at = beat_at if beat_at.tzinfo else beat_at.replace(tzinfo=UTC)
        found.setdefault(component, []).append((list(queues or []), at))
    result = []
    for component, beats in sorted(found.items()):
        live = [(q, at) for q, at in beats if now - at <= STALE_AFTER]
        newest = max(at for _, at in beats)
        queues = sorted({name for q, _ in (live or beats) for name in q})
        result.append(
            ComponentState(
                component, len(live), round((now - newest).total_seconds(), 1), tuple(queues)
            )
        )
    return result
