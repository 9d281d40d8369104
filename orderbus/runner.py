"""Run orderbus components as threads of one daemon process.

``orderbus run`` runs them all; ``orderbus run router consumers`` a subset, so
a deployment can scale each part as its own process. SIGTERM or SIGINT stops
taking new work, lets each component finish the message in hand, and exits
within ``shutdown_timeout`` seconds.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import uvicorn

from connectors.registry import fetching_channels
from infra import heartbeats
from infra.messages import BatchHandler, one_at_a_time
from infra.os_threads import name_this_thread
from infra.topology import SHIPMENTS_ROLE, STOCK_ROLE, fetch_role, legacy_role
from orderbus.bootstrap import ConfigurationError, Orderbus

log = logging.getLogger(__name__)

# each component and what it does, in a line (``orderbus run --help``)
DESCRIPTIONS = {
    "router": "dedups, validates, holds and fans out each order; its relay publishes the outbox",
    "consumers": "deliver to the warehouse, finance and notification systems; record dead letters",
    "ingest": "HTTP for the platforms' webhooks, pollers, file and queue inputs, tracking, stock",
    "admin": "the admin API and the console; alerts, retry jobs, retention",
}
COMPONENTS = tuple(DESCRIPTIONS)


def server_config(asgi: Any, host: str, port: int) -> uvicorn.Config:
    """How an HTTP component is served: httptools parses the requests and
    uvloop runs the event loop where they are installed (they are orderbus's
    dependencies; uvloop not on Windows), else h11 and asyncio's loop. With
    them the ingest spends about a sixth less CPU on a webhook (the h11
    parser and asyncio's Python loop were a quarter of it)."""
    return uvicorn.Config(
        asgi, host=host, port=port, log_level="warning", lifespan="off", http="auto", loop="auto"
    )


@dataclass
class Daemon:
    app: Orderbus
    components: tuple[str, ...] = COMPONENTS
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    servers: list[uvicorn.Server] = field(default_factory=list)
    ready: dict[str, threading.Event] = field(default_factory=dict)
    crashed: list[str] = field(default_factory=list)
    listening: list[str] = field(default_factory=list)  # "name URL (what is there)"
    # each component of this process and the queues it consumes (its heartbeat)
    queues_of: dict[str, list[str]] = field(default_factory=dict)
    _building: str = ""
    _heartbeat: threading.Thread | None = None

    def _thread(self, name: str, target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        def run() -> None:
            name_this_thread(f"ob-{name}")
            try:
                target(*args, **kwargs)
            except Exception:
                log.exception("component %s crashed; stopping the daemon", name)
                self.crashed.append(name)
                self.stop.set()

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)

    def _serve(self, name: str, asgi: Any, host: str, port: int, what: str) -> None:
        """An HTTP component; ``what``: what a person finds there (logged at start)."""
        server = uvicorn.Server(server_config(asgi, host, port))
        self.servers.append(server)
        shown = f"[{host}]" if ":" in host else host
        self.listening.append(f"{name} http://{shown}:{port}/ ({what})")
        self._thread(name, server.run)

    def _consume(
        self,
        name: str,
        queues: list[str],
        handler: BatchHandler,
        rehearse: Callable[[], None] | None = None,
    ) -> None:
        """A consuming component; ``rehearse``: what it does once before its
        first message (a rolled-back rehearsal of its work, no effect), so
        that the first batches after a start are not the slow ones."""
        self.queues_of.setdefault(self._building, []).extend(queues)
        ready = self.ready.setdefault(name, threading.Event())

        def consume(stop: threading.Event) -> None:
            if rehearse is not None:
                rehearse()
            self.app.bus.consume(queues, handler, stop, ready=ready)

        self._thread(name, consume, self.stop)

    def build(self) -> None:
        unknown = set(self.components) - set(COMPONENTS)
        if unknown:
            raise ConfigurationError(
                f"unknown component(s) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(COMPONENTS)}"
            )
        app, topo, settings = self.app, self.app.topology, self.app.settings
        if "router" in self.components:
            self._building = "router"
            self.queues_of.setdefault("router", [])
            relay = app.relay()
            router = app.router(on_commit=relay.wake)
            self._consume("router", [topo.router_queue], router.handle_batch, router.rehearse)
            self._thread("relay", relay.run, self.stop, settings.relay_interval)
            delays = app.delay_watch(on_commit=relay.wake)
            if delays is not None:
                self._thread("delay-watch", delays.run, self.stop)
            stalls = app.parcel_watch(on_commit=relay.wake)
            if stalls is not None:
                self._thread("stall-watch", stalls.run, self.stop)
        if "consumers" in self.components:
            self._building = "consumers"
            self.queues_of.setdefault("consumers", [])
            for target in settings.active_targets():
                consumer = app.delivery_consumer(target)
                queue = topo.queue_for(target).name
                self._consume(target, [queue], consumer.handle_batch, consumer.rehearse)
            self._consume(
                "dead-letters", list(topo.dead_letter_queues), one_at_a_time(app.recorder().handle)
            )
            pusher = app.stock_pusher()
            if pusher is not None:
                self._thread("stock-push", pusher.run, self.stop)
        if {"router", "consumers"} & set(self.components):
            self._thread("counters", app.counters().run, self.stop)
        if "ingest" in self.components:
            self._building = "ingest"
            self.queues_of.setdefault("ingest", [])
            ingest = app.ingest_app(batched_raw=True)
            what = "webhooks: POST /ingest/{channel}"
            if settings.lookup.enabled:
                what += "; customers' order lookup: /track"
            self._serve("ingest", ingest, settings.ingest_host, settings.ingest_port, what)
            self._thread("raw-keeper", app.raw_keeper().run, self.stop)
            spool = app.rejection_spool()
            self._thread("rejection-spool", lambda stop: spool.run(app.engine, stop), self.stop)
            for channel in sorted(settings.legacy_inbound):
                inbound = app.legacy_inbound(channel)
                queue = topo.queue_for(legacy_role(channel)).name
                self._consume(f"legacy-{channel}", [queue], inbound.handle_batch)
            for channel in fetching_channels(settings):
                fetcher = app.order_fetch(channel)
                queue = topo.queue_for(fetch_role(channel)).name
                self._consume(f"fetch-{channel}", [queue], fetcher.handle_batch)
            for channel in sorted(settings.pollers):
                self._thread(f"poll-{channel}", app.poller(channel).run, self.stop)
            tracking = app.tracking_poll()
            if tracking is not None:
                self._thread("tracking-poll", tracking.run, self.stop)
            stock_poll = app.stock_poll()
            if stock_poll is not None:
                self._thread("stock-poll", stock_poll.run, self.stop)
            if settings.stock.channels:
                stock = topo.queue_for(STOCK_ROLE).name
                self._consume("stock", [stock], app.stock_intake().handle_batch)
            shipments = topo.queue_for(SHIPMENTS_ROLE).name
            self._consume("shipments", [shipments], app.shipment_intake().handle_batch)
        if "admin" in self.components:
            self._building = "admin"
            self.queues_of.setdefault("admin", [])
            if not settings.admin_tokens:
                log.warning(
                    "ORDERBUS_ADMIN_TOKENS is empty: only keys made with `orderbus keys create` "
                    "are accepted by the admin API"
                )
            what = "console: /console; API docs: /docs"
            admin = app.admin_app()
            self._serve("admin", admin, settings.admin_host, settings.admin_port, what)
            if settings.metrics_port:
                metrics = app.metrics_app(admin)
                where = (settings.metrics_host, settings.metrics_port)
                self._serve("metrics", metrics, *where, "Prometheus: /metrics, no key")
            if settings.alerts is not None:
                self._thread("alerts", app.alert_evaluator().run, self.stop)
            self._thread("retry-jobs", app.retry_job_worker().run, self.stop)
            self._thread("retention", app.rejected_retention().run, self.stop)
            history = app.history_retention()
            if history is not None:
                self._thread("history-retention", history.run, self.stop)
            if settings.digest is not None:
                self._thread("digest", app.daily_digest().run, self.stop)

    def start(self) -> None:
        if not self.threads:
            self.build()
        for thread in self.threads:
            thread.start()
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heartbeat.start()
        log.info("orderbus started: %s", ", ".join(self.components))
        for line in self.listening:
            log.info("listening: %s", line)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        for event in self.ready.values():
            if not event.wait(max(0.0, deadline - time.monotonic())):
                return False
        while not self._ready_now():  # the events are set: what is left is the servers
            if time.monotonic() > deadline or self.stop.is_set():
                return False
            time.sleep(0.05)
        return True

    def _ready_now(self) -> bool:
        return all(e.is_set() for e in self.ready.values()) and all(s.started for s in self.servers)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop every component; True when all finished within ``timeout``."""
        self.stop.set()
        for server in self.servers:
            server.should_exit = True
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._heartbeat is not None:
            self._heartbeat.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            log.error("still running after %.0fs: %s", timeout, ", ".join(alive))
        self.app.close()
        return not alive

    def _beat(self) -> None:
        """This process's components' heartbeat (infra/heartbeats.py) until
        it stops; then its rows go (a killed process's rows go stale)."""
        name_this_thread("ob-heartbeat")
        instance, started = heartbeats.this_instance(), datetime.now(UTC)
        while not self.stop.is_set():
            try:
                heartbeats.beat(self.app.engine, instance, self.queues_of, started)
            except Exception as exc:  # the database away: the next beat tries again
                log.warning("heartbeat not recorded (%s)", exc)
            self.stop.wait(heartbeats.INTERVAL)
        try:
            heartbeats.stopped(self.app.engine, instance, self.queues_of)
        except Exception as exc:
            log.warning("heartbeat rows not removed (%s); they go stale", exc)

    def run_forever(self, shutdown_timeout: float = 30.0) -> int:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        started = time.monotonic()
        set_aside = False
        while not self.stop.wait(0.5):
            if not set_aside and (self._ready_now() or time.monotonic() - started > 30.0):
                set_aside_what_start_made()
                set_aside = True
        clean = self.shutdown(shutdown_timeout)
        return 0 if clean and not self.crashed else 1


def set_aside_what_start_made() -> None:
    """Keep Python's collector from walking, again and again, the objects
    made to start (modules, settings, mappings, rehearsals): they live as
    long as the process. A full collection walked ~100,000 of them, a pause
    of 45-70 ms of whatever the process was doing (issue 19: measured in a
    day's reconciliation); later objects are collected as before."""
    gc.collect()
    gc.freeze()
