"""Consuming: manual acks, batches handed to a worker thread while the
connection's thread keeps the heartbeats, outcomes mapped to ack, requeue
or dead letter (see infra/bus/__init__.py)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Consumer

from canonical.envelope import H_CHANNEL, H_DETAIL, H_ORDER_NUMBER, H_REASON, H_SOURCE_QUEUE
from canonical.errors import (
    MalformedMessage,
    PermanentError,
    TransientError,
)
from infra.bus.activity import ACTIVITY
from infra.bus.deliveries import DeliveryReader, Received
from infra.logs import about
from infra.messages import (
    CONTENT_TYPE,
    H_CORRELATION,
    H_DELIVERIES,
    H_EXCEPTION,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_ROUTING_KEY,
    BatchHandler,
    Delivery,
    OutgoingMessage,
    Results,
    message_key,
)
from infra.os_threads import name_this_thread

if TYPE_CHECKING:
    from infra.bus import Bus

log = logging.getLogger(__name__)
# an idle consumer's poll of the embedded broker: one look at its queues
IDLE_POLL = 0.001
TAG_PREFIX = "orderbus-{queue}-"  # a consumer's tag: the prefix, then kombu's count


class Settle(Protocol):
    """How a delivery is settled: kombu's ``Message``, or a :class:`Receipt`."""

    def ack(self, multiple: bool = False) -> None: ...

    def requeue(self) -> None: ...


@dataclass(slots=True)
class Receipt:
    """A delivery read by :class:`~infra.bus.deliveries.DeliveryReader`,
    settled on its channel as kombu's ``Message`` would."""

    channel: Any
    delivery_tag: int

    def ack(self, multiple: bool = False) -> None:
        self.channel.basic_ack(self.delivery_tag, multiple=multiple)

    def requeue(self) -> None:
        self.channel.basic_reject(self.delivery_tag, requeue=True)


class ConsumerLoop:
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
        # The handler's thread carries the consuming component's OS name (the
        # runner names that thread ob-<component>), so its CPU counts there.
        # Its Python name is the component's too, so a log line it writes
        # names the component (the JSON logs' "component").
        owner = threading.current_thread().name

        def as_owner() -> None:
            name_this_thread(f"ob-{owner}")
            threading.current_thread().name = owner

        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"handler-{queues[0]}", initializer=as_owner
        )
        self._conn: Connection | None = None
        self._waiting: list[tuple[Settle, Delivery]] = []

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
            # AMQP: deliveries read from their frames (infra/bus/deliveries.py),
            # from before the first basic.consume: one may come at once
            reader = self._reader(conn, channel).install() if self.bus.is_amqp else None
            drain = reader.drain if reader is not None else conn.drain_events
            consumers = []
            for name in self.queues:
                consumer = Consumer(
                    channel,
                    queues=[self.bus._queues[name]],
                    on_message=self._make_callback(name),
                    accept=[CONTENT_TYPE],
                    auto_declare=False,
                    tag_prefix=TAG_PREFIX.format(queue=name),
                )
                consumer.qos(prefetch_count=self.prefetch, apply_global=False)
                consumer.consume()
                consumers.append(consumer)
            if ready is not None:
                ready.set()
            log.info("consuming %s", ", ".join(self.queues))
            last_check = last_message = time.monotonic()
            options = self.bus.options
            while not stop.is_set():
                idle = not self.bus.is_amqp and time.monotonic() - last_message > options.idle_after
                seen = ACTIVITY.count
                try:
                    drain(timeout=IDLE_POLL if idle else 1)
                except TimeoutError:
                    if idle:
                        ACTIVITY.wait_after(seen, options.idle_polling_interval)
                if self._waiting:
                    last_message = time.monotonic()
                    self._gather(drain)
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

    def _gather(self, drain: Callable[..., Any]) -> None:
        """Take what else has arrived, up to a batch, lingering briefly."""
        deadline = time.monotonic() + self.bus.options.batch_linger * 4
        while len(self._waiting) < self.batch and time.monotonic() < deadline:
            try:
                drain(timeout=self.bus.options.batch_linger)
            except TimeoutError:
                break

    def _make_callback(self, queue: str) -> Callable[[Message], None]:
        def on_message(message: Message) -> None:
            props = message.properties or {}
            info = message.delivery_info or {}
            body = message.body
            if isinstance(body, str):
                body = body.encode("utf-8", errors="surrogateescape")
            delivery = self._delivery(
                queue,
                props,
                body,
                exchange=info.get("exchange") or "",
                routing_key=info.get("routing_key") or "",
                redelivered=bool(info.get("redelivered")),
                content_type=props.get("content_type") or message.content_type,
                headers=message.headers or {},
            )
            self._waiting.append((message, delivery))

        return on_message

    def _reader(self, conn: Connection, channel: Any) -> DeliveryReader:
        """The connection's frames read by :class:`DeliveryReader`: each
        delivery waits as a :class:`Receipt`, with the queue its consumer
        tag names (a tag of no consumer here goes back, as py-amqp does)."""
        queues = {TAG_PREFIX.format(queue=name): name for name in self.queues}

        def on_delivery(received: Received) -> None:
            queue = queues.get(received.consumer_tag.rpartition("-")[0] + "-")
            receipt = Receipt(channel, received.delivery_tag)
            if queue is None:
                log.warning(
                    "a delivery for consumer tag %r, which is none of ours: returned to its queue",
                    received.consumer_tag,
                )
                receipt.requeue()
                return
            props = received.properties
            delivery = self._delivery(
                queue,
                props,
                received.body,
                exchange=received.exchange,
                routing_key=received.routing_key,
                redelivered=received.redelivered,
                content_type=props.get("content_type"),
                headers=props.get("application_headers") or {},
            )
            if received.problem is not None:
                self._unreadable(receipt, delivery, received.problem)
                return
            self._waiting.append((receipt, delivery))

        return DeliveryReader(conn.connection, channel.channel_id, on_delivery)

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

    def _delivery(
        self,
        queue: str,
        props: dict[str, Any],
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        redelivered: bool,
        content_type: str | None,
        headers: dict[str, Any],
    ) -> Delivery:
        headers = dict(headers)
        key = message_key(props.get("message_id"), body)
        return Delivery(
            queue=queue,
            body=body,
            message_id=props.get("message_id"),
            correlation_id=props.get("correlation_id"),
            headers=headers,
            exchange=exchange,
            routing_key=routing_key,
            redelivered=redelivered,
            content_type=content_type,
            deliveries=self._deliveries(key, headers),
        )

    def _unreadable(self, receipt: Receipt, delivery: Delivery, problem: str) -> None:
        """A delivery whose properties cannot be read is a dead letter at once,
        with its body and the reason: no handler could tell what it is. On a
        dead-letter queue, which has nowhere further to send it, it goes to
        the handler like the others, the reason in its headers (recorded)."""
        error = MalformedMessage(f"message on {delivery.queue}: {problem}")
        if delivery.queue in self.bus.topology.dead_letter_queues:
            headers = {**delivery.headers, H_REASON: error.reason, H_DETAIL: error.detail}
            self._waiting.append((receipt, replace(delivery, headers=headers)))
            return
        self._dead_letter(receipt, delivery, error.reason, error.detail, error)

    def _process(self, batch: list[tuple[Settle, Delivery]]) -> None:
        """Handle a batch, then settle each message: ack, dead-letter or requeue."""
        results = self._call_with_retries([delivery for _, delivery in batch])
        if self._acks_many() and all(result is None for result in results):
            # All handled: one ack frame for the batch (every earlier message
            # of this channel is settled already; the batch is in tag order).
            for _, delivery in batch:
                self._seen.pop(delivery.body_key(), None)
            batch[-1][0].ack(multiple=True)
            return
        requeue: list[tuple[Settle, Delivery, BaseException]] = []
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
                extra=_about(delivery),
            )
        self._pause(wait)
        for message, _, _ in requeue:
            message.requeue()

    def _acks_many(self) -> bool:
        """AMQP acks many messages in one frame; kombu's virtual transports
        (memory, SQL) take ``multiple`` but ack only the one message."""
        conn = self._conn
        return conn is not None and getattr(conn.transport, "driver_type", "") == "amqp"

    def _dead_letter(
        self, message: Settle, delivery: Delivery, reason: str, detail: str, exc: BaseException
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
            "%s: dead-lettered %s: %s: %s",
            delivery.queue,
            delivery.message_id,
            reason,
            detail,
            extra=_about(delivery),
        )
        self._seen.pop(delivery.body_key(), None)
        message.ack()


def _about(delivery: Delivery) -> dict[str, str]:
    """The order and message a delivery's log line is about (its headers)."""
    number = delivery.headers.get(H_ORDER_NUMBER)
    channel = delivery.headers.get(H_CHANNEL)
    return about(
        order_number=number if isinstance(number, str) else None,
        channel=channel if isinstance(channel, str) else None,
        message_id=delivery.message_id,
        correlation_id=delivery.correlation_id,
    )
