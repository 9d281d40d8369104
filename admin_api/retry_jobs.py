"""Retrying many dead letters in the background, at a pace the receiving
system can take.

A job is started with a filter (queue, reason, channel, business cause) and a
rate: it counts the open dead letters it will touch first (and keeps their
ids, so the count is what it does), then the admin component's worker retries
them one by one, at most ``rate`` a second, each in its own transaction. A
dead letter that is no longer open when its turn comes is skipped. Progress,
and the dead letters of the same filter that failed *since the job started*
(the cause may not be fixed after all), are read with ``GET /retry-jobs/{id}``.
A job can be cancelled; it survives a restart of the admin component.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from admin_api import causes, deadletters
from infra.audit import audit
from infra.database import translate_db_errors
from infra.tables import dead_letters, retry_jobs

log = logging.getLogger(__name__)


def _conditions(f: dict[str, Any]) -> list[Any]:
    c = dead_letters.c
    conditions = []
    for name in ("queue", "reason", "channel"):
        if f.get(name):
            conditions.append(getattr(c, name) == f[name])
    return conditions


def matching_open(conn: Connection, f: dict[str, Any]) -> list[int]:
    c = dead_letters.c
    rows = conn.execute(
        select(c.id, c.reason, c.detail).where(c.status == "open", *_conditions(f)).order_by(c.id)
    )
    cause = f.get("cause")
    return [r.id for r in rows if not cause or causes.cause_of(r.reason, r.detail) == cause]


def start(conn: Connection, f: dict[str, Any], rate: float, note: str | None, by: str) -> int:
    ids = matching_open(conn, f)
    inserted = conn.execute(
        insert(retry_jobs).values(
            filter=f,
            ids=ids,
            rate=rate,
            status="running" if ids else "done",
            done=0,
            skipped=0,
            note=note,
            created_by=by,
            started_at=datetime.now(UTC),
            finished_at=None if ids else datetime.now(UTC),
        )
    ).inserted_primary_key
    job_id = int(inserted[0]) if inserted else 0
    audit(conn, by, "retry_job.start", "retry_job", str(job_id), {"filter": f, "count": len(ids)})
    return job_id


def progress(conn: Connection, job_id: int) -> dict[str, Any] | None:
    job = conn.execute(select(retry_jobs).where(retry_jobs.c.id == job_id)).mappings().first()
    if job is None:
        return None
    started = job["started_at"]
    new_failures = conn.scalar(
        select(func.count())
        .select_from(dead_letters)
        .where(dead_letters.c.first_failed_at > started, *_conditions(job["filter"]))
    )
    total = len(job["ids"])
    return {
        "id": job["id"],
        "status": job["status"],
        "filter": job["filter"],
        "rate": job["rate"],
        "total": total,
        "done": job["done"],
        "skipped": job["skipped"],
        "remaining": total - job["done"] - job["skipped"],
        "new_failures_since_start": int(new_failures or 0),
        "warning": (
            f"{new_failures} new dead letter(s) of this filter since the job started: "
            "the cause may not be fixed"
            if new_failures
            else None
        ),
        "started_at": started.isoformat(),
        "finished_at": job["finished_at"].isoformat() if job["finished_at"] else None,
        "created_by": job["created_by"],
    }


def cancel(conn: Connection, job_id: int, by: str) -> bool:
    changed = conn.execute(
        update(retry_jobs)
        .where(retry_jobs.c.id == job_id, retry_jobs.c.status == "running")
        .values(status="cancelled", finished_at=datetime.now(UTC))
    ).rowcount
    if changed:
        audit(
            conn,
            by,
            "retry_job.cancel",
            "retry_job",
            str(job_id),
            {"before": {"status": "running"}, "after": {"status": "cancelled"}},
        )
    return bool(changed)


class RetryJobWorker:
    def __init__(self, engine: Engine, sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.sleep = sleep

    def step(self) -> float | None:
        """Retry the next dead letter of the oldest running job; how long to wait
        before the next (None: no job is running)."""
        with translate_db_errors(), self.engine.begin() as conn:
            job = conn.execute(
                select(retry_jobs)
                .where(retry_jobs.c.status == "running")
                .order_by(retry_jobs.c.id)
                .limit(1)
                .with_for_update()
            ).first()
            if job is None:
                return None
            position = job.done + job.skipped
            ids = list(job.ids)
            values: dict[str, Any] = {}
            if position < len(ids):
                try:
                    deadletters.retry(conn, ids[position], job.created_by, job.note)
                    values["done"] = job.done + 1
                except (KeyError, deadletters.DeadLetterStateError):
                    values["skipped"] = job.skipped + 1  # retried or discarded meanwhile
            if position + 1 >= len(ids):
                values.update(status="done", finished_at=datetime.now(UTC))
            conn.execute(update(retry_jobs).where(retry_jobs.c.id == job.id).values(**values))
            return 1.0 / float(job.rate)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                wait = self.step()
            except Exception:  # logged; the job resumes at the next step
                log.exception("retry job step failed")
                wait = 5.0
            stop.wait(1.0 if wait is None else wait)
