"""Plain pika clients for the benchmark: the broker's own limit, and the
connectors' side of the pipeline (publishing inputs as fast as confirms allow).

They use pika, not orderbus's bus, so the broker's limit is measured without
orderbus's code in the way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pika
from pika.adapters.select_connection import SelectConnection
from pika.channel import Channel
from pika.frame import Method
from pika.spec import Basic, BasicProperties


@dataclass(frozen=True)
class Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, object]


class StreamingPublisher:
    """Publishes persistent messages with up to ``window`` unconfirmed at a
    time; returns when the broker has confirmed every one.

    ``stamp`` may rewrite a message's headers just before it is sent (the
    benchmark stamps the ingest time there). ``rate`` (messages/s) paces it.
    """

    def __init__(
        self,
        url: str,
        messages: Sequence[Outgoing],
        window: int = 1000,
        rate: float | None = None,
        stamp: Callable[[dict[str, object]], dict[str, object]] | None = None,
    ) -> None:
        self.url = url
        self.messages = messages
        self.window = window
        self.rate = rate
        self.stamp = stamp
        self.sent = 0
        self.confirmed = 0
        self.nacked = 0
        self.started = 0.0
        self.finished = 0.0
        self._channel: Channel | None = None
        self._conn: SelectConnection | None = None
        self.error: BaseException | None = None
        self._timer = False

    def run(self) -> StreamingPublisher:
        params = pika.URLParameters(self.url)
        self._conn = SelectConnection(
            params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_error,
            on_close_callback=lambda _c, _r: self._conn.ioloop.stop() if self._conn else None,
        )
        self._conn.ioloop.start()
        if self.error is not None:
            raise self.error
        return self

    def _on_error(self, _conn: object, error: BaseException) -> None:
        self.error = error
        assert self._conn is not None
        self._conn.ioloop.stop()

    def _on_open(self, conn: SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Channel) -> None:
        self._channel = channel
        channel.confirm_delivery(self._on_confirm)
        self.started = time.perf_counter()
        self._pump()

    def _on_confirm(self, frame: Method) -> None:
        method = frame.method
        acked = isinstance(method, Basic.Ack)
        first = self.confirmed + self.nacked + 1
        last = method.delivery_tag if method.multiple else first
        count = max(0, last - first + 1) if method.multiple else 1
        if acked:
            self.confirmed += count
        else:
            self.nacked += count
        if self.confirmed + self.nacked >= len(self.messages):
            self.finished = time.perf_counter()
            assert self._conn is not None
            self._conn.close()
            return
        self._pump()

    def _timed_pump(self) -> None:
        self._timer = False
        self._pump()

    def _pump(self) -> None:
        assert self._channel is not None and self._conn is not None
        while (
            self.sent < len(self.messages)
            and self.sent - self.confirmed - self.nacked < self.window
        ):
            if self.rate:
                due = self.started + self.sent / self.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    if not self._timer:  # one timer at a time, however many confirms
                        self._timer = True
                        self._conn.ioloop.call_later(delay, self._timed_pump)
                    return
            m = self.messages[self.sent]
            headers = self.stamp(m.headers) if self.stamp else m.headers
            self._channel.basic_publish(
                m.exchange,
                m.routing_key,
                m.body,
                BasicProperties(
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    message_id=m.message_id,
                    correlation_id=m.message_id,
                    headers=headers,
                ),
            )
            self.sent += 1


class CountingConsumer:
    """Consumes a queue with manual acks, one ack per message, until ``expected``."""

    def __init__(self, url: str, queue: str, expected: int, prefetch: int = 500) -> None:
        self.url = url
        self.queue = queue
        self.expected = expected
        self.prefetch = prefetch
        self.count = 0
        self.finished = 0.0
        self.ready = threading.Event()

    def run(self, timeout: float) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = conn.channel()
        channel.basic_qos(prefetch_count=self.prefetch)

        def on_message(
            ch: pika.adapters.blocking_connection.BlockingChannel,
            method: Basic.Deliver,
            _props: BasicProperties,
            _body: bytes,
        ) -> None:
            ch.basic_ack(method.delivery_tag)
            self.count += 1
            if self.count >= self.expected:
                self.finished = time.perf_counter()

        channel.basic_consume(self.queue, on_message)
        self.ready.set()
        deadline = time.monotonic() + timeout
        while self.count < self.expected and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        conn.close()


def broker_limit(url: str, messages: int, body: bytes, quorum: bool = True) -> float:
    """Messages/s through one durable queue: persistent, confirmed, acked one by one."""
    queue = f"bench.limit.{time.time_ns()}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    arguments = {"x-queue-type": "quorum"} if quorum else {}
    channel.queue_declare(queue, durable=True, arguments=arguments)
    conn.close()
    try:
        consumer = CountingConsumer(url, queue, messages)
        thread = threading.Thread(target=consumer.run, args=(600,), daemon=True)
        thread.start()
        consumer.ready.wait(30)
        outgoing = [Outgoing("", queue, body, f"limit-{i}", {}) for i in range(messages)]
        publisher = StreamingPublisher(url, outgoing).run()
        thread.join(600)
        if consumer.count < messages:
            raise RuntimeError(f"broker limit: only {consumer.count}/{messages} consumed")
        return messages / (consumer.finished - publisher.started)
    finally:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        conn.channel().queue_delete(queue)
        conn.close()
