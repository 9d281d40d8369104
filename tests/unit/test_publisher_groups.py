"""Concurrent publish() calls share batches, and each caller gets its own result."""

from __future__ import annotations

import threading
import time

from canonical.errors import PublishNotConfirmed
from infra.bus import Bus, Publisher
from infra.messages import OutgoingMessage
from infra.settings import Settings
from infra.topology import build_topology


class SlowBroker(Publisher):
    """A publisher whose broker takes 20 ms per batch and refuses message "bad"."""

    def __init__(self) -> None:
        super().__init__(Bus("memory://", build_topology(Settings(namespace="g"))))
        self.batches: list[list[str]] = []

    def publish_many(self, messages: list[OutgoingMessage]) -> list[Exception | None]:
        self.batches.append([m.message_id for m in messages])
        time.sleep(0.02)
        return [
            PublishNotConfirmed("nacked", reason="nacked") if m.message_id == "bad" else None
            for m in messages
        ]


def test_concurrent_publishes_share_batches_and_keep_their_own_results() -> None:
    publisher = SlowBroker()
    ids = [f"m-{i}" for i in range(30)] + ["bad"]
    outcome: dict[str, str] = {}
    start = threading.Barrier(len(ids))

    def send(mid: str) -> None:
        start.wait()
        try:
            publisher.publish(OutgoingMessage("g.orders", "ingest.web", b"{}", mid))
            outcome[mid] = "confirmed"
        except PublishNotConfirmed as exc:
            outcome[mid] = exc.reason

    threads = [threading.Thread(target=send, args=(mid,)) for mid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outcome == {**{mid: "confirmed" for mid in ids[:-1]}, "bad": "nacked"}
    published = [mid for batch in publisher.batches for mid in batch]
    assert sorted(published) == sorted(ids)  # each exactly once
    assert len(publisher.batches) < len(ids) / 3  # shared, not one batch each
