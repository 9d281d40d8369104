"""The embedded broker's consumers go quiet when idle (issue 20: `orderbus
run` on the embedded default used a third of a core doing nothing): an idle
consumer polls rarely, and a publish of the same process wakes it at once.
On kombu's SQL transport on SQLite, as the embedded default runs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from infra.bus import Bus, BusOptions
from infra.bus.activity import ACTIVITY
from infra.messages import Delivery, OutgoingMessage
from infra.settings import Settings
from infra.topology import build_topology

handled_by: list[str] = []  # the handler's thread names: the component's, for the logs


def started(bus: Bus, got: list[tuple[float, Delivery]]) -> threading.Event:
    stop, ready = threading.Event(), threading.Event()

    def handle(batch: list[Delivery]) -> list[BaseException | None]:
        got.extend((time.monotonic(), d) for d in batch)
        handled_by.append(threading.current_thread().name)
        return [None] * len(batch)

    queue = bus.topology.queue_for("router").name
    threading.Thread(
        target=bus.consume,
        args=([queue], handle, stop),
        kwargs={"ready": ready},
        daemon=True,
        name="router",  # as the runner names a component's thread
    ).start()
    assert ready.wait(10)
    return stop


def message(n: int) -> OutgoingMessage:
    return OutgoingMessage(
        exchange="t.orders", routing_key="ingest.web-shop", body=b"{}",
        message_id=f"m-{n}", headers={}, correlation_id=None,
    )  # fmt: skip


def idle_consumer(
    folder: Path, poll: float
) -> tuple[Bus, list[tuple[float, Delivery]], threading.Event]:
    """A consumer of the embedded broker in ``folder``, idle by now (polling
    every ``poll`` s): its bus, what it got (when), and its stop."""
    settings = Settings(namespace="t", data_dir=str(folder))
    options = BusOptions(idle_after=0.2, idle_polling_interval=poll)
    bus = Bus(settings.broker_url, build_topology(settings), options)
    got: list[tuple[float, Delivery]] = []
    stop = started(bus, got)
    time.sleep(1.0)
    return bus, got, stop


def test_an_idle_consumer_is_woken_by_a_publish_of_its_process(tmp_path: Path) -> None:
    bus, got, stop = idle_consumer(tmp_path, poll=30.0)  # would poll again only in 30 s
    try:
        publisher = bus.publisher()
        sent = time.monotonic()
        publisher.publish(message(1))
        deadline = sent + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [d.message_id for _, d in got] == ["m-1"]
        assert got[0][0] - sent < 5  # woken, not the 30 s poll
        assert handled_by[-1] == "router"  # the handler's log lines name the component
        publisher.close()
    finally:
        stop.set()


PUBLISH_ELSEWHERE = """
import sys
from infra.bus import Bus
from infra.settings import Settings
from infra.topology import build_topology
from tests.unit.test_embedded_idle import message
settings = Settings(namespace="t", data_dir=sys.argv[1])
publisher = Bus(settings.broker_url, build_topology(settings)).publisher()
publisher.publish(message(2))
publisher.close()
"""


def test_a_publish_from_another_process_is_taken_at_the_next_idle_poll(tmp_path: Path) -> None:
    """Another process's publish (``orderbus import``) cannot wake this one:
    the idle consumer finds it at its next poll (1 s here)."""
    _, got, stop = idle_consumer(tmp_path, poll=1.0)
    try:
        seen = ACTIVITY.count
        subprocess.run(
            [sys.executable, "-c", PUBLISH_ELSEWHERE, str(tmp_path)], check=True, timeout=60
        )
        published = time.monotonic()
        assert ACTIVITY.count == seen  # nothing here was told
        while not got and time.monotonic() < published + 10:
            time.sleep(0.01)
        assert [d.message_id for _, d in got] == ["m-2"]
        assert got[0][0] - published < 5
    finally:
        stop.set()
