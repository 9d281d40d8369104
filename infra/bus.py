"""The message bus: the only module of orderbus that imports kombu.

Policies (see ../shared/notes/reliability.md):
- publishing has its own connection, publisher confirms are always on, with a
  bounded confirm timeout, and every publish is ``mandatory``: an unroutable
  message raises :class:`PublishNotConfirmed` instead of vanishing;
- every connection declares the whole topology first (kombu's virtual
  transports keep bindings per connection);
- consumers ack manually, with a per-consumer prefetch, and never auto-ack;
  heartbeats are serviced from the drain loop;
- handlers take batches (what has arrived, up to ``batch_size`` <= prefetch),
  so they can commit a batch in one transaction; the publisher streams a
  batch and waits for all its confirms at once;
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
from infra.topology import Topology

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
# What a batch handler says about each delivery, in order: None (done: ack),
# a PermanentError (dead-letter it), or another exception (transient: retried
# in place, then requeued). Raising instead fails the whole batch.
Results = list[BaseException | None]
BatchHandler = Callable[[list[Delivery]], Results]


def one_at_a_time(handler: Handler) -> BatchHandler:
    """A batch handler that calls ``handler`` for each delivery in turn.

    After a transient failure the rest of the batch is not tried (a database
    or endpoint that is down is down for all of them): each gets the same
    error and is retried with it.
    """

    def handle(deliveries: list[Delivery]) -> Results:
        results: Results = []
        for delivery in deliveries:
            if results and isinstance(results[-1], TransientError):
                results.append(results[-1])
                continue
            try:
                handler(delivery)
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    return handle


def message_key(message_id: str | None, body: bytes) -> str:
    """A message's identity: its id, or for a sender that set none, its body's hash."""
    return message_id or "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass
class BusOptions:
    heartbeat: int = 30
    connect_timeout: float = 5.0
    confirm_timeout: float = 10.0
    prefetch: int = 100
    batch_size: int = 50
    batch_linger: float = 0.005  # how long to wait for the next message of a batch (s)
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

    def connect(self, *, confirm_each: bool = True) -> Connection:
        """Open a connection and declare the whole topology on it.

        With ``confirm_each`` (the default) every publish on the connection
        waits for its confirm; the :class:`Publisher` turns that off because
        it selects confirms itself and waits for a whole batch.
        """
        if self.is_amqp:
            conn = Connection(
                self.url,
                heartbeat=self.options.heartbeat,
                connect_timeout=self.options.connect_timeout,
                transport_options={"confirm_publish": confirm_each},
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
        return self.queue_depths([name])[0][1]

    def queue_depths(self, names: Iterable[str] | None = None) -> list[tuple[str, int]]:
        """Messages waiting in each queue (every queue of the topology by
        default), read on one connection."""
        conn = self.connect()
        try:
            depths = []
            for name in names if names is not None else list(self._queues):
                _, count, _ = self._queues[name](conn.default_channel).queue_declare(passive=True)
                depths.append((name, int(count)))
            return depths
        finally:
            conn.release()

    # -- consuming ---------------------------------------------------------
    def consume(
        self,
        queues: Iterable[str],
        handler: BatchHandler,
        stop: threading.Event,
        *,
        ready: threading.Event | None = None,
        prefetch: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        """Consume until ``stop`` is set, reconnecting with capped backoff.

        ``handler`` gets the deliveries that are waiting, up to ``batch_size``
        (at most the prefetch) at a time, so it can commit them in one
        transaction; each is acked or dead-lettered only after it returns.
        """
        names = list(queues)
        prefetch = prefetch or self.options.prefetch
        batch = max(1, min(batch_size or self.options.batch_size, prefetch))
        worker = _ConsumerLoop(self, names, handler, prefetch, batch)
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

    :meth:`publish_many` streams a batch and then waits for the broker's
    confirms of all of it (one round trip per batch instead of per message);
    :meth:`publish` is a batch of one. Thread-safe (one lock); reconnects
    lazily after any failure.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
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
            self._conn = self._bus.connect(confirm_each=False)
            channel = self._conn.channel()
            if self._bus.is_amqp:
                self._confirms = _Confirms(channel)
                self._producer = Producer(channel, on_return=self._confirms.on_return)
            else:
                self._producer = Producer(channel)
        return self._producer

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
        timeout = self._bus.options.confirm_timeout
        confirms = self._confirms
        if confirms is not None:
            confirms.start(len(messages))
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
        if confirms is None:
            return [None] * len(messages)  # a virtual transport stores on publish
        assert self._conn is not None
        return confirms.wait(self._conn, messages, timeout)

    def close(self) -> None:
        with self._lock:
            self._reset()


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


class _ConsumerLoop:
    def __init__(
        self, bus: Bus, queues: list[str], handler: BatchHandler, prefetch: int, batch: int
    ) -> None:
        self.bus = bus
        self.queues = queues
        self.handler = handler
        self.prefetch = prefetch
        self.batch = batch
        self.dead_letters = bus.publisher()
        # Deliveries seen by this process, for transports without x-delivery-count.
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"handler-{queues[0]}"
        )
        self._conn: Connection | None = None
        self._waiting: list[tuple[Message, Delivery]] = []

    def close(self) -> None:
        self.dead_letters.close()
        self._worker.shutdown(wait=True)

    # -- running the handler ----------------------------------------------
    def _call_with_retries(self, deliveries: list[Delivery]) -> Results:
        """Run the handler; retry transient failures in place, holding the
        deliveries, for up to ``transient_retry_window`` seconds (capped
        backoff, heartbeats still sent). A database that is down for 30 s then
        costs time, not a delivery attempt: nothing is requeued or
        dead-lettered. Only the deliveries that failed transiently are retried.
        """
        deadline = time.monotonic() + self.bus.options.transient_retry_window
        wait = 0.25
        results: Results = [None] * len(deliveries)
        todo = list(range(len(deliveries)))
        while True:
            batch = [deliveries[i] for i in todo]
            try:
                outcome = self._call_handler(batch)
                if len(outcome) != len(batch):
                    raise RuntimeError(
                        f"handler returned {len(outcome)} results for {len(batch)} deliveries"
                    )
            except Exception as exc:
                outcome = [exc] * len(batch)
            for index, result in zip(todo, outcome, strict=True):
                results[index] = result
            todo = [i for i in todo if isinstance(results[i], TransientError)]
            if not todo or time.monotonic() + wait > deadline:
                return results
            log.warning(
                "%s: %d message(s) failed transiently (%s); retrying in %.1fs",
                deliveries[todo[0]].queue,
                len(todo),
                results[todo[0]],
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

    def _call_handler(self, deliveries: list[Delivery]) -> Results:
        """Run the handler on the worker thread; keep the connection alive meanwhile.

        py-amqp is not thread-safe, so only this (the connection's) thread
        touches the connection: it sends a heartbeat frame every third of the
        heartbeat interval until the handler is done.
        """
        future = self._worker.submit(self.handler, deliveries)
        heartbeat = self.bus.options.heartbeat if self.bus.is_amqp else 0
        interval = max(0.5, heartbeat / 3) if heartbeat else None
        while True:
            done, _ = concurrent.futures.wait([future], timeout=interval)
            if done:
                return future.result()  # re-raises the handler's exception
            if self._conn is not None:
                self._conn.connection.send_heartbeat()

    # -- the connection's loop ---------------------------------------------
    def run(self, stop: threading.Event, ready: threading.Event | None) -> None:
        conn = self.bus.connect()
        self._conn = conn
        self._waiting = []
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
                if self._waiting:
                    self._gather(conn)
                    self._process(self._waiting)
                    self._waiting = []
                if time.monotonic() - last_check >= 1.0:
                    conn.heartbeat_check()
                    last_check = time.monotonic()
            # Graceful stop: cancel, so nothing more arrives; whatever the
            # broker sent and we did not take returns to the queue on close.
            for consumer in consumers:
                try:
                    consumer.cancel()
                except Exception:  # noqa: S110 - closing anyway
                    pass
        finally:
            if ready is not None:
                ready.clear()
            self._conn = None
            self._waiting = []
            conn.release()

    def _gather(self, conn: Connection) -> None:
        """Take what else has arrived, up to a batch, lingering briefly."""
        deadline = time.monotonic() + self.bus.options.batch_linger * 4
        while len(self._waiting) < self.batch and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=self.bus.options.batch_linger)
            except TimeoutError:
                break

    def _make_callback(self, queue: str) -> Callable[[Message], None]:
        def on_message(message: Message) -> None:
            self._waiting.append((message, self._delivery(queue, message)))

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

    def _delivery(self, queue: str, message: Message) -> Delivery:
        props = message.properties or {}
        info = message.delivery_info or {}
        body = message.body
        if isinstance(body, str):
            body = body.encode("utf-8", errors="surrogateescape")
        headers = dict(message.headers or {})
        key = message_key(props.get("message_id"), body)
        return Delivery(
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

    def _process(self, batch: list[tuple[Message, Delivery]]) -> None:
        """Handle a batch, then settle each message: ack, dead-letter or requeue."""
        results = self._call_with_retries([delivery for _, delivery in batch])
        requeue: list[tuple[Message, Delivery, BaseException]] = []
        for (message, delivery), result in zip(batch, results, strict=True):
            if result is None:
                self._seen.pop(delivery.body_key(), None)
                message.ack()
            elif isinstance(result, PermanentError):
                self._dead_letter(message, delivery, result.reason, result.detail, result)
            else:
                reason = getattr(result, "reason", "handler_error")
                dead_letter_queue = delivery.queue in self.bus.topology.dead_letter_queues
                if delivery.deliveries >= self.bus.options.delivery_limit and not dead_letter_queue:
                    detail = f"gave up after {delivery.deliveries} deliveries: {result}"
                    self._dead_letter(message, delivery, reason, detail, result)
                else:
                    requeue.append((message, delivery, result))
        if not requeue:
            return
        # A dead-letter queue has nowhere further to go: it waits for the
        # database with a capped backoff instead of dropping anything.
        fewest = min(delivery.deliveries for _, delivery, _ in requeue)
        wait = min(10.0, 0.25 * 2 ** min(fewest, 8))
        for _, delivery, error in requeue:
            log.warning(
                "%s: message %s failed (%s), delivery %d/%d; requeue in %.1fs",
                delivery.queue,
                delivery.message_id,
                error,
                delivery.deliveries,
                self.bus.options.delivery_limit,
                wait,
            )
        self._pause(wait)
        for message, _, _ in requeue:
            message.requeue()

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
