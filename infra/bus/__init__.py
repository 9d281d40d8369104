"""The message bus: the only package of orderbus that imports kombu
(``Bus`` here, ``publisher.py``, ``consumer.py``, ``transport.py``: py-amqp's
socket read and written a chunk at a time, ``properties.py``: a message's
properties encoded for the wire; the messages themselves,
without kombu, are in infra/messages.py).

Policies:
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

import logging
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from canonical.errors import (
    BrokerUnavailable,
)
from infra.bus.consumer import ConsumerLoop
from infra.bus.publisher import Publisher
from infra.bus.transport import AmqpTransport
from infra.messages import (
    BatchHandler,
)
from infra.topology import Topology

__all__ = ["Bus", "BusOptions", "Publisher"]

log = logging.getLogger(__name__)


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
    # virtual transports: a consumer that got nothing for idle_after seconds
    # polls every idle_polling_interval, woken at once by this process's
    # publishes (infra/bus/activity.py)
    idle_after: float = 5.0
    idle_polling_interval: float = 2.0
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

    def connect(
        self, *, confirm_each: bool = True, connect_timeout: float | None = None
    ) -> Connection:
        """Open a connection and declare the whole topology on it.

        With ``confirm_each`` (the default) every publish on the connection
        waits for its confirm; the :class:`Publisher` turns that off because
        it selects confirms itself and waits for a whole batch.
        """
        timeout = connect_timeout or self.options.connect_timeout
        if self.is_amqp:
            conn = Connection(
                self.url,
                # py-amqp's, reading a chunk at a time (amqps:// keeps kombu's:
                # given a class, kombu no longer reads TLS from the scheme)
                transport=None if self.url.startswith("amqps://") else AmqpTransport,
                heartbeat=self.options.heartbeat,
                connect_timeout=timeout,
                transport_options={"confirm_publish": confirm_each},
            )
        else:
            _make_sqlite_folder(self.url)
            conn = Connection(self.url)
            conn.transport.polling_interval = self.options.polling_interval
        try:
            # one retry at once (kombu waits 2 s before it by default): the
            # callers have their own backoff, and the ingest must fail fast
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout
            )
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

    def publisher(
        self,
        *,
        confirm_timeout: float | None = None,
        connect_timeout: float | None = None,
        fail_fast: float = 0.0,
    ) -> Publisher:
        """A publisher with confirms; the ingest's waits less and, for
        ``fail_fast`` seconds after the broker could not be reached, answers
        at once that it is unavailable (a platform gives up on a webhook after
        a few seconds)."""
        return Publisher(
            self,
            confirm_timeout=confirm_timeout,
            connect_timeout=connect_timeout,
            fail_fast=fail_fast,
        )

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

    def queue_consumers(self, names: Iterable[str]) -> list[tuple[str, int]]:
        """Consumers attached to each queue (the broker's count), on one connection."""
        conn = self.connect()
        try:
            found = []
            for name in names:
                if name not in self._queues:
                    continue
                _, _, consumers = self._queues[name](conn.default_channel).queue_declare(
                    passive=True
                )
                found.append((name, int(consumers)))
            return found
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
        worker = ConsumerLoop(self, names, handler, prefetch, batch)
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


def _make_sqlite_folder(url: str) -> None:
    """kombu's SQL transport on SQLite opens its file but not its folder."""
    prefix = "sqla+sqlite:///"
    if url.startswith(prefix) and url != prefix:
        Path(url[len(prefix) :].split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
