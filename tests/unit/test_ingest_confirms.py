"""The ingest's requests share the publisher's batches (connectors/ingest_http.py
ConfirmGroups): each request returns once its own message is confirmed, with
its own message's error, and a cancelled request still waits for its result."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from canonical.errors import BrokerUnavailable, PublishNotConfirmed
from connectors.ingest_http import ConfirmGroups
from infra.messages import OutgoingMessage

T = TypeVar("T")


class SlowBroker:
    """Confirms a batch after 30 ms; nacks the message "bad"; down when told."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.confirming = threading.Event()

    def publish_many(self, messages: list[OutgoingMessage]) -> list[Exception | None]:
        self.batches.append([m.message_id for m in messages])
        self.confirming.set()
        time.sleep(0.03)
        if self.down:
            raise OSError("connection refused")
        return [
            PublishNotConfirmed("nacked", reason="nacked") if m.message_id == "bad" else None
            for m in messages
        ]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())`` on a thread of its own: a test before this one
    may leave an event loop running on the main thread (the browser tests)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: asyncio.run(main())).result(timeout=30)


def message(mid: str) -> OutgoingMessage:
    return OutgoingMessage("t.orders", "ingest.web", b"{}", mid)


async def outcome(groups: ConfirmGroups, mid: str) -> str:
    try:
        await groups.publish(message(mid))
    except Exception as exc:
        return type(exc).__name__
    return "confirmed"


def test_concurrent_requests_share_batches_and_each_gets_its_own_result() -> None:
    broker = SlowBroker()
    groups = ConfirmGroups(broker)  # type: ignore[arg-type]

    async def many() -> list[str]:
        ids = [f"m-{n}" for n in range(30)] + ["bad"]
        return await asyncio.gather(*(outcome(groups, mid) for mid in ids))

    results = run(many)
    assert results == ["confirmed"] * 30 + ["PublishNotConfirmed"]
    assert sorted(m for batch in broker.batches for m in batch) == sorted(
        [f"m-{n}" for n in range(30)] + ["bad"]
    )  # each published once
    assert len(broker.batches) < 31  # shared: one confirm wait for many requests


def test_a_broker_that_fails_fails_every_waiting_request_and_the_next_ones_go_on() -> None:
    broker = SlowBroker()
    groups = ConfirmGroups(broker)  # type: ignore[arg-type]
    broker.down = True

    async def down_then_up() -> tuple[list[str], str]:
        failed = await asyncio.gather(*(outcome(groups, f"m-{n}") for n in range(5)))
        broker.down = False
        return failed, await outcome(groups, "after")

    failed, after = run(down_then_up)
    assert failed == ["OSError"] * 5 and after == "confirmed"


def test_a_cancelled_request_waits_for_its_message_before_it_stops() -> None:
    broker = SlowBroker()
    groups = ConfirmGroups(broker)  # type: ignore[arg-type]

    async def cancel_midway() -> float:
        task = asyncio.create_task(groups.publish(message("m-1")))
        await asyncio.get_running_loop().run_in_executor(None, broker.confirming.wait, 5)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    waited = run(cancel_midway)
    assert waited > 0.01  # it stopped only once the broker had answered
    assert broker.batches == [["m-1"]]


def test_broker_unavailable_is_the_requests_error_as_the_publisher_gives_it() -> None:
    class Down:
        def publish_many(self, messages: list[OutgoingMessage]) -> list[Exception | None]:
            return [BrokerUnavailable("broker unavailable: refused")] * len(messages)

    groups = ConfirmGroups(Down())  # type: ignore[arg-type]
    assert run(lambda: outcome(groups, "m-1")) == "BrokerUnavailable"
