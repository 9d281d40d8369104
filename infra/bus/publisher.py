"""Publishing with confirms: one connection, every publish mandatory, a
batch streamed and its confirms awaited at once (see infra/bus/__init__.py)."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kombu.connection import Connection
from kombu.messaging import Producer

from canonical.errors import (
    BrokerUnavailable,
    PublishNotConfirmed,
)
from infra.bus.activity import ACTIVITY
from infra.bus.properties import basic_publish
from infra.messages import (
    CONTENT_TYPE,
    OutgoingMessage,
)

if TYPE_CHECKING:
    from infra.bus import Bus

log = logging.getLogger(__name__)


class Publisher:
    """Publishes with confirms and mandatory routing on a connection of its own.

    :meth:`publish_many` streams a batch and then waits for the broker's
    confirms of all of it (one round trip per batch instead of per message);
    :meth:`publish` is a batch of one. Thread-safe (one lock); reconnects
    lazily after any failure.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        confirm_timeout: float | None = None,
        connect_timeout: float | None = None,
        fail_fast: float = 0.0,
    ) -> None:
        self._bus = bus
        self.confirm_timeout = confirm_timeout or bus.options.confirm_timeout
        self.connect_timeout = connect_timeout
        # after the broker could not be reached: until when publishing fails at once
        self.fail_fast = fail_fast
        self._down_until = 0.0
        self._down_because: Exception | None = None
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._confirms: _Confirms | None = None
        self._last_used = time.monotonic()
        # publish(): callers waiting to share the next batch, and whether one
        # of them is publishing now.
        self._group = threading.Condition()
        self._queued: list[_Slot] = []
        self._leading = False

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._conn = self._bus.connect(confirm_each=False, connect_timeout=self.connect_timeout)
            channel = self._conn.channel()
            if self._bus.is_amqp:
                self._confirms = _Confirms(channel)
                self._producer = Producer(channel, on_return=self._confirms.on_return)
            else:
                self._producer = Producer(channel)
        return self._producer

    def connect(self) -> None:
        """Open the connection and its channel now rather than at the first
        publish (a start's first batch then does not wait for them). Raises
        what connecting raised; the next publish connects again."""
        with self._lock:
            try:
                self._ensure()
            except Exception:
                self._reset()
                raise
            self._last_used = time.monotonic()

    def _reset(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # noqa: S110 - the connection is already broken
                pass
        self._conn = None
        self._producer = None
        self._confirms = None

    def publish(self, message: OutgoingMessage) -> None:
        """Return once the broker confirmed the message as routed and stored.

        Calls from several threads at once (the ingest's request handlers)
        share batches: while one thread publishes and waits for confirms, the
        others queue up, and the next of them publishes all that queued in
        one batch. Each caller still returns only after its own confirm.
        """
        slot = _Slot(message)
        with self._group:
            self._queued.append(slot)
            while not slot.done:
                if self._leading:
                    self._group.wait()
                    continue
                self._leading = True
                batch, self._queued = self._queued, []
                self._group.release()
                try:
                    results: list[Exception | None] = self.publish_many([s.message for s in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                finally:
                    self._group.acquire()
                    self._leading = False
                for queued, result in zip(batch, results, strict=True):
                    queued.error, queued.done = result, True
                self._group.notify_all()
        if slot.error is not None:
            raise slot.error

    def publish_many(self, messages: list[OutgoingMessage]) -> list[Exception | None]:
        """Publish a batch; for each message, None once the broker confirmed
        it as routed and stored, else the error (PublishNotConfirmed with
        reason "unroutable", "nacked" or "timeout", or BrokerUnavailable)."""
        results: list[Exception | None] = [None] * len(messages)
        pending: list[int] = []
        for index, message in enumerate(messages):
            if not self._bus.is_amqp and not self._bus.topology.route(
                message.exchange, message.routing_key
            ):
                # Virtual transports have no mandatory flag: check routing from
                # the declared topology instead of letting the message vanish.
                results[index] = _unroutable(message)
            else:
                pending.append(index)
        if not pending:
            return results
        if self.fail_fast and time.monotonic() < self._down_until:
            down = BrokerUnavailable(f"broker unavailable (a moment ago: {self._down_because!r})")
            for index in pending:
                results[index] = down
            return results
        with self._lock:
            heartbeat = self._bus.options.heartbeat
            if self._producer is not None and heartbeat and self._bus.is_amqp:
                if time.monotonic() - self._last_used > heartbeat:
                    # Nobody serviced this connection's heartbeats while it was
                    # idle: the broker has probably closed it. Start afresh.
                    self._reset()
            for attempt in (1, 2):
                try:
                    outcome = self._publish_batch([messages[i] for i in pending])
                except Exception as exc:
                    self._reset()
                    if attempt == 2:
                        down = BrokerUnavailable(f"broker unavailable: {exc!r}")
                        down.__cause__ = exc
                        for index in pending:
                            results[index] = down
                        self._down_until = time.monotonic() + self.fail_fast
                        self._down_because = exc
                        break
                    # A connection-level failure: the batch once more on a fresh
                    # connection. Should a first copy have reached the broker
                    # after all, the second is a duplicate that dedup absorbs.
                    log.info("publisher: %r; retrying on a new connection", exc)
                    continue
                for index, result in zip(pending, outcome, strict=True):
                    results[index] = result
                if any(isinstance(e, PublishNotConfirmed) for e in outcome):
                    # Unroutable (redeclare the topology next time), nacked or
                    # unconfirmed: start the next batch on a fresh channel.
                    self._reset()
                break
            self._last_used = time.monotonic()
        return results

    def _publish_batch(self, messages: list[OutgoingMessage]) -> list[Exception | None]:
        producer = self._ensure()
        timeout = self.confirm_timeout
        confirms = self._confirms
        if confirms is not None:
            confirms.start(len(messages))
        with _writes_held(self._conn, timeout):
            self._send_each(producer, messages, timeout)
        if confirms is None:  # a virtual transport stores on publish
            ACTIVITY.published()  # wake this process's idle consumers
            return [None] * len(messages)
        assert self._conn is not None
        return confirms.wait(self._conn, messages, timeout)

    def _send_each(
        self, producer: Producer, messages: list[OutgoingMessage], timeout: float
    ) -> None:
        if self._confirms is not None:  # AMQP: straight to the channel (properties.py)
            channel = producer.channel
            for message in messages:
                basic_publish(
                    channel,
                    message.body,
                    {
                        "content_type": CONTENT_TYPE,
                        "content_encoding": "utf-8",
                        "application_headers": message.headers,
                        "delivery_mode": 2,
                        "message_id": message.message_id,
                        "correlation_id": message.correlation_id or message.message_id,
                    },
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    mandatory=True,
                    timeout=timeout,
                )
            return
        for message in messages:
            producer.publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                headers=message.headers,
                message_id=message.message_id,
                correlation_id=message.correlation_id or message.message_id,
                delivery_mode=2,
                mandatory=True,
                retry=False,
                timeout=timeout,
            )

    def close(self) -> None:
        with self._lock:
            self._reset()


def _writes_held(conn: Connection | None, timeout: float) -> AbstractContextManager[None]:
    """A batch's frames sent together (infra/bus/transport.py), where the
    connection's transport can; elsewhere each as it comes."""
    transport = getattr(conn.connection, "transport", None) if conn is not None else None
    held = getattr(transport, "writes_held", None)
    return held(timeout) if held is not None else nullcontext()


@dataclass
class _Slot:
    message: OutgoingMessage
    done: bool = False
    error: Exception | None = None


class _Confirms:
    """Publisher confirms on one channel: which of the messages published since
    :meth:`start` the broker acked, nacked or returned as unroutable."""

    def __init__(self, channel: Any) -> None:
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._next_tag = 1  # the broker numbers confirms per channel, from 1
        self._first = 1
        self._count = 0
        self._acked: set[int] = set()
        self._nacked: set[int] = set()
        self._returned: set[str] = set()

    def start(self, count: int) -> None:
        self._first = self._next_tag
        self._next_tag += count
        self._count = count
        self._acked.clear()
        self._nacked.clear()
        self._returned.clear()

    def _mark(self, into: set[int], tag: int, multiple: bool) -> None:
        if multiple:
            into.update(range(self._first, min(tag, self._next_tag - 1) + 1))
        else:
            into.add(tag)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._mark(self._acked, tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._mark(self._nacked, tag, multiple)

    def on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        props = getattr(message, "properties", {}) or {}
        mid = props.get("message_id")
        log.error(
            "broker returned unroutable message %s (%s %s): %s", mid, exchange, routing_key, exc
        )
        if mid:
            self._returned.add(mid)

    def _settled(self) -> int:
        return len(self._acked | self._nacked)

    def wait(
        self, conn: Connection, messages: list[OutgoingMessage], timeout: float
    ) -> list[Exception | None]:
        deadline = time.monotonic() + timeout
        while self._settled() < self._count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                conn.drain_events(timeout=min(left, 1.0))
            except TimeoutError:
                continue
        results: list[Exception | None] = []
        for offset, message in enumerate(messages):
            tag = self._first + offset
            if message.message_id in self._returned:
                results.append(_unroutable(message))
            elif tag in self._nacked:
                results.append(
                    PublishNotConfirmed(f"broker nacked {message.message_id}", reason="nacked")
                )
            elif tag not in self._acked:
                results.append(
                    PublishNotConfirmed(
                        f"no confirm for {message.message_id} within {timeout}s", reason="timeout"
                    )
                )
            else:
                results.append(None)
        return results


def _unroutable(message: OutgoingMessage) -> PublishNotConfirmed:
    return PublishNotConfirmed(
        f"unroutable: no queue bound for {message.exchange}/{message.routing_key}",
        reason="unroutable",
    )
