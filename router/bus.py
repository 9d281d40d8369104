"""The message bus: the only module of orderbus that imports kombu.

Policies (see ../shared/notes/reliability.md):
- publishing has its own connection, publisher confirms are always on, with a
  bounded confirm timeout, and every publish is ``mandatory``: an unroutable
  message raises :class:`PublishNotConfirmed` instead of vanishing;
- every connection declares the whole topology first (kombu's virtual
  transports keep bindings per connection);
- consumers ack manually, with a per-consumer prefetch, and never auto-ack;
  heartbeats are serviced from the drain loop;
- handlers run on a worker thread while the connection's thread keeps sending
  heartbeats, so a slow downstream cannot get the connection closed under us;
- a handler's outcome maps to broker actions: success -> ack; a
  :class:`PermanentError` -> copy to the dead-letter exchange with its reason,
  then ack; a transient error or a bug -> requeue after a backoff, and once a
  message has been delivered ``delivery_limit`` times, dead-letter it;
- an ack is never retried on another channel: after a reconnect the broker
  redelivers and the handlers' idempotency absorbs the duplicate.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import random
import socket
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from canonical.envelope import H_DETAIL, H_REASON, H_SOURCE_QUEUE, HEADER_PREFIX
from canonical.errors import (
    BrokerUnavailable,
    PermanentError,
    PublishNotConfirmed,
    TransientError,
)
from router.topology import Topology

log = logging.getLogger(__name__)

H_ORIGINAL_EXCHANGE = HEADER_PREFIX + "original-exchange"
H_ORIGINAL_ROUTING_KEY = HEADER_PREFIX + "original-routing-key"
H_EXCEPTION = HEADER_PREFIX + "exception"
H_DELIVERIES = HEADER_PREFIX + "deliveries"
H_CORRELATION = HEADER_PREFIX + "correlation-id"

CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class OutgoingMessage:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A received message, as handlers see it: raw bytes, never decoded by kombu."""

    queue: str
    body: bytes
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    exchange: str
    routing_key: str
    redelivered: bool
    content_type: str | None
    deliveries: int

    def body_key(self) -> str:
        return message_key(self.message_id, self.body)


Handler = Callable[[Delivery], None]


def message_key(message_id: str | None, body: bytes) -> str:
    """A message's identity: its id, or for a sender that set none, its body's hash."""
    return message_id or "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass
class BusOptions:
    heartbeat: int = 30
    connect_timeout: float = 5.0
    confirm_timeout: float = 10.0
    prefetch: int = 50
    delivery_limit: int = 5
    polling_interval: float = 0.05  # virtual transports only
    reconnect_max_wait: float = 15.0
    transient_retry_window: float = 60.0


class Bus:
    def __init__(self, url: str, topology: Topology, options: BusOptions | None = None) -> None:
        self.url = url
        self.topology = topology
        self.options = options or BusOptions()
        self._exchange = Exchange(topology.exchange, type="topic", durable=True)
        self._dlx = Exchange(topology.dead_letter_exchange, type="direct", durable=True)
        self._queues: dict[str, Queue] = {}
        for spec in topology.queues:
            main = Queue(
                spec.name,
                durable=True,
                queue_arguments=topology.queue_arguments(spec),
                bindings=[],
            )
            self._queues[spec.name] = main
            self._queues[spec.dead_letter_queue] = Queue(
                spec.dead_letter_queue,
                exchange=self._dlx,
                routing_key=spec.name,
                durable=True,
                queue_arguments=topology.dead_letter_queue_arguments(),
            )

    # -- connections -------------------------------------------------------
    @property
    def is_amqp(self) -> bool:
        return self.url.startswith(("amqp://", "amqps://", "pyamqp://"))

    def connect(self) -> Connection:
        """Open a connection and declare the whole topology on it."""
        if self.is_amqp:
            conn = Connection(
                self.url,
                heartbeat=self.options.heartbeat,
                connect_timeout=self.options.connect_timeout,
                transport_options={"confirm_publish": True},
            )
        else:
            conn = Connection(self.url)
            conn.transport.polling_interval = self.options.polling_interval
        try:
            conn.ensure_connection(max_retries=1, timeout=self.options.connect_timeout)
            self.declare(conn)
        except Exception:
            conn.release()
            raise
        return conn

    def declare(self, conn: Connection) -> None:
        channel = conn.default_channel
        self._exchange(channel).declare()
        self._dlx(channel).declare()
        for spec in self.topology.queues:
            queue = self._queues[spec.name](channel)
            queue.declare()
            for key in spec.bindings:
                queue.bind_to(exchange=self._exchange, routing_key=key)
            self._queues[spec.dead_letter_queue](channel).declare()

    def check(self) -> None:
        """Connect, declare, disconnect: raises BrokerUnavailable when the broker is down."""
        try:
            self.connect().release()
        except Exception as exc:
            raise BrokerUnavailable(f"broker unavailable: {exc}") from exc

    def publisher(self) -> Publisher:
        return Publisher(self)

    def queue_depth(self, name: str) -> int:
        conn = self.connect()
        try:
            _, count, _ = self._queues[name](conn.default_channel).queue_declare(passive=True)
            return int(count)
        finally:
            conn.release()

    # -- consuming ---------------------------------------------------------
    def consume(
        self,
        queues: Iterable[str],
        handler: Handler,
        stop: threading.Event,
        *,
        ready: threading.Event | None = None,
        prefetch: int | None = None,
    ) -> None:
        """Consume until ``stop`` is set, reconnecting with capped backoff."""
        names = list(queues)
        worker = _ConsumerLoop(self, names, handler, prefetch or self.options.prefetch)
        failures = 0
        while not stop.is_set():
            try:
                worker.run(stop, ready)
                failures = 0
            except Exception as exc:
                if ready is not None:
                    ready.clear()
                failures += 1
                wait = min(self.options.reconnect_max_wait, 0.5 * 2 ** min(failures, 6))
                wait *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
                log.warning(
                    "consumer of %s lost its broker connection (%s); reconnecting in %.1fs",
                    ",".join(names),
                    exc,
                    wait,
                )
                stop.wait(wait)
        worker.close()


class Publisher:
    """Publishes with confirms and mandatory routing on a connection of its own.

    Thread-safe (one lock); reconnects lazily after any failure.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._returned: set[str] = set()
        self._last_used = time.monotonic()

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        props = getattr(message, "properties", {}) or {}
        mid = props.get("message_id")
        log.error(
            "broker returned unroutable message %s (%s %s): %s", mid, exchange, routing_key, exc
        )
        if mid:
            self._returned.add(mid)

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._conn = self._bus.connect()
            if self._bus.is_amqp:
                self._producer = Producer(self._conn.default_channel, on_return=self._on_return)
            else:
                self._producer = Producer(self._conn.default_channel)
        return self._producer

    def _reset(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # noqa: S110 - the connection is already broken
                pass
        self._conn = None
        self._producer = None

    def publish(self, message: OutgoingMessage) -> None:
        """Return once the broker confirmed the message as routed and stored."""
        if not self._bus.is_amqp and not self._bus.topology.route(
            message.exchange, message.routing_key
        ):
            # Virtual transports have no mandatory flag: check routing from the
            # declared topology instead of letting the message vanish.
            raise PublishNotConfirmed(
                f"unroutable: no queue bound for {message.exchange}/{message.routing_key}",
                reason="unroutable",
            )
        with self._lock:
            heartbeat = self._bus.options.heartbeat
            if self._producer is not None and heartbeat and self._bus.is_amqp:
                if time.monotonic() - self._last_used > heartbeat:
                    # Nobody serviced this connection's heartbeats while it was
                    # idle: the broker has probably closed it. Start afresh.
                    self._reset()
            for attempt in (1, 2):
                try:
                    self._publish_once(message)
                    break
                except Exception as exc:
                    self._reset()
                    if _is_nack(exc):
                        raise PublishNotConfirmed(f"broker nacked {message.message_id}") from exc
                    if isinstance(exc, socket.timeout | TimeoutError):
                        raise PublishNotConfirmed(
                            f"no confirm for {message.message_id} within "
                            f"{self._bus.options.confirm_timeout}s"
                        ) from exc
                    if attempt == 2:
                        raise BrokerUnavailable(f"broker unavailable: {exc!r}") from exc
                    # A connection-level failure: once more on a fresh connection.
                    # Should the first copy have reached the broker after all,
                    # the second is a duplicate that dedup downstream absorbs.
                    log.info("publisher: %r; retrying on a new connection", exc)
            self._last_used = time.monotonic()
            if message.message_id in self._returned:
                self._returned.discard(message.message_id)
                self._reset()  # redeclare the topology on the next publish
                raise PublishNotConfirmed(
                    f"unroutable: no queue bound for {message.exchange}/{message.routing_key}",
                    reason="unroutable",
                )

    def _publish_once(self, message: OutgoingMessage) -> None:
        producer = self._ensure()
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
            timeout=self._bus.options.confirm_timeout,
            confirm_timeout=self._bus.options.confirm_timeout,
        )

    def close(self) -> None:
        with self._lock:
            self._reset()


def _is_nack(exc: Exception) -> bool:
    return type(exc).__name__ == "MessageNacked"


class _ConsumerLoop:
    def __init__(self, bus: Bus, queues: list[str], handler: Handler, prefetch: int) -> None:
        self.bus = bus
        self.queues = queues
        self.handler = handler
        self.prefetch = prefetch
        self.dead_letters = bus.publisher()
        # Deliveries seen by this process, for transports without x-delivery-count.
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"handler-{queues[0]}"
        )
        self._conn: Connection | None = None

    def close(self) -> None:
        self.dead_letters.close()
        self._worker.shutdown(wait=True)

    def _call_with_retries(self, delivery: Delivery) -> None:
        """Retry transient failures in place, holding the delivery, for up to
        ``transient_retry_window`` seconds (capped backoff, heartbeats still
        sent). A database that is down for 30 s then costs time, not a
        delivery attempt: the message is neither requeued nor dead-lettered.
        """
        window = self.bus.options.transient_retry_window
        deadline = time.monotonic() + window
        wait = 0.25
        while True:
            try:
                self._call_handler(delivery)
                return
            except TransientError as exc:
                if time.monotonic() + wait > deadline:
                    raise
                log.warning(
                    "%s: %s failed transiently (%s); retrying in %.1fs",
                    delivery.queue,
                    delivery.message_id,
                    exc,
                    wait,
                )
                self._pause(wait)
                wait = min(wait * 2, 5.0)

    def _pause(self, seconds: float) -> None:
        """Sleep while keeping the connection's heartbeats going."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
            if self._conn is not None and self.bus.is_amqp and self.bus.options.heartbeat:
                self._conn.connection.send_heartbeat()

    def _call_handler(self, delivery: Delivery) -> None:
        """Run the handler on the worker thread; keep the connection alive meanwhile.

        py-amqp is not thread-safe, so only this (the connection's) thread
        touches the connection: it sends a heartbeat frame every third of the
        heartbeat interval until the handler is done.
        """
        future = self._worker.submit(self.handler, delivery)
        heartbeat = self.bus.options.heartbeat if self.bus.is_amqp else 0
        interval = max(0.5, heartbeat / 3) if heartbeat else None
        while True:
            done, _ = concurrent.futures.wait([future], timeout=interval)
            if done:
                future.result()  # re-raises the handler's exception
                return
            if self._conn is not None:
                self._conn.connection.send_heartbeat()

    def run(self, stop: threading.Event, ready: threading.Event | None) -> None:
        conn = self.bus.connect()
        self._conn = conn
        try:
            channel = conn.channel()
            consumers = []
            for name in self.queues:
                consumer = Consumer(
                    channel,
                    queues=[self.bus._queues[name]],
                    on_message=self._make_callback(name),
                    accept=[CONTENT_TYPE],
                    auto_declare=False,
                    tag_prefix=f"orderbus-{name}-",
                )
                consumer.qos(prefetch_count=self.prefetch, apply_global=False)
                consumer.consume()
                consumers.append(consumer)
            if ready is not None:
                ready.set()
            log.info("consuming %s", ", ".join(self.queues))
            last_check = time.monotonic()
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
                if time.monotonic() - last_check >= 1.0:
                    conn.heartbeat_check()
                    last_check = time.monotonic()
            # Graceful stop: cancel, so nothing more arrives; unacked messages
            # (none, we handle one at a time) would return to the queue on close.
            for consumer in consumers:
                try:
                    consumer.cancel()
                except Exception:  # noqa: S110 - closing anyway
                    pass
        finally:
            if ready is not None:
                ready.clear()
            self._conn = None
            conn.release()

    def _make_callback(self, queue: str) -> Callable[[Message], None]:
        def on_message(message: Message) -> None:
            self._on_message(queue, message)

        return on_message

    def _deliveries(self, key: str, headers: dict[str, Any]) -> int:
        """How many times this message has been delivered, this time included."""
        count = self._seen.get(key, 0) + 1
        self._seen[key] = count
        self._seen.move_to_end(key)
        while len(self._seen) > 50_000:
            self._seen.popitem(last=False)
        broker_count = headers.get("x-delivery-count")
        if isinstance(broker_count, int):
            count = max(count, broker_count + 1)
        return count

    def _on_message(self, queue: str, message: Message) -> None:
        props = message.properties or {}
        info = message.delivery_info or {}
        body = message.body
        if isinstance(body, str):
            body = body.encode("utf-8", errors="surrogateescape")
        headers = dict(message.headers or {})
        key = message_key(props.get("message_id"), body)
        delivery = Delivery(
            queue=queue,
            body=body,
            message_id=props.get("message_id"),
            correlation_id=props.get("correlation_id"),
            headers=headers,
            exchange=info.get("exchange") or "",
            routing_key=info.get("routing_key") or "",
            redelivered=bool(info.get("redelivered")),
            content_type=props.get("content_type") or message.content_type,
            deliveries=self._deliveries(key, headers),
        )
        try:
            self._call_with_retries(delivery)
        except PermanentError as exc:
            self._dead_letter(message, delivery, exc.reason, exc.detail, exc)
            return
        except Exception as exc:
            reason = getattr(exc, "reason", "handler_error")
            dead_letter_queue = queue in self.bus.topology.dead_letter_queues
            if delivery.deliveries >= self.bus.options.delivery_limit and not dead_letter_queue:
                detail = f"gave up after {delivery.deliveries} deliveries: {exc}"
                self._dead_letter(message, delivery, reason, detail, exc)
                return
            # A dead-letter queue has nowhere further to go: it waits for the
            # database with a capped backoff instead of dropping anything.
            wait = min(10.0, 0.25 * 2 ** min(delivery.deliveries, 8))
            log.warning(
                "%s: message %s failed (%s), delivery %d/%d; requeue in %.1fs",
                queue,
                delivery.message_id,
                exc,
                delivery.deliveries,
                self.bus.options.delivery_limit,
                wait,
            )
            self._pause(wait)
            message.requeue()
            return
        self._seen.pop(key, None)
        message.ack()

    def _dead_letter(
        self, message: Message, delivery: Delivery, reason: str, detail: str, exc: BaseException
    ) -> None:
        headers = dict(delivery.headers)
        headers.update(
            {
                H_REASON: reason,
                H_DETAIL: detail[:4000],
                H_EXCEPTION: "".join(traceback.format_exception_only(exc)).strip()[:4000],
                H_SOURCE_QUEUE: delivery.queue,
                H_ORIGINAL_EXCHANGE: delivery.exchange,
                H_ORIGINAL_ROUTING_KEY: delivery.routing_key,
                H_DELIVERIES: delivery.deliveries,
                H_CORRELATION: delivery.correlation_id or delivery.body_key(),
            }
        )
        spec = self.bus.topology.queue_named(delivery.queue)
        outgoing = OutgoingMessage(
            exchange=self.bus.topology.dead_letter_exchange,
            routing_key=spec.name,
            body=delivery.body,
            message_id=delivery.body_key(),
            headers=headers,
            correlation_id=delivery.correlation_id,
        )
        try:
            self.dead_letters.publish(outgoing)
        except Exception as pub_exc:
            log.error(
                "%s: could not dead-letter %s (%s); requeueing it",
                delivery.queue,
                delivery.message_id,
                pub_exc,
            )
            time.sleep(1.0)
            message.requeue()
            return
        log.warning(
            "%s: dead-lettered %s: %s: %s", delivery.queue, delivery.message_id, reason, detail
        )
        self._seen.pop(delivery.body_key(), None)
        message.ack()
