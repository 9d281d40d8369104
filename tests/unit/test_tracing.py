"""One trace of one order (issue 20): the webhook's span, the router's span
as its child, and each consumer's delivery as a child of the router's, the
context carried in the messages' ``traceparent`` header; checked with the
OpenTelemetry SDK's in-memory exporter. Without a traceparent (or with a
malformed one) nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, select

from canonical.envelope import Envelope
from connectors.ingest_app import IngestDeps, create_ingest_app
from infra.messages import Delivery
from infra.settings import Settings
from infra.tables import outbox
from infra.topology import build_topology
from infra.transports import HttpxTransport
from router.service import RouterService
from targets.consumers import DeliveryConsumer
from targets.delivery import HttpDelivery, RetryPolicy
from tests.factories import FakePublisher, body_of, delivery_from_outbox, order_dict, signed_headers

SECRET = "s3cret-for-the-tests"
EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    from infra import tracing

    monkeypatch.setattr(tracing, "_CHECKED", tracing._Checked())  # asked again at once
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def test_one_trace_from_the_webhook_to_each_systems_delivery(
    sqlite_engine: Engine, spans: InMemorySpanExporter
) -> None:
    settings = Settings(channel_secrets={"web-shop": [SECRET]}, namespace="t")
    topology = build_topology(settings)
    publisher = FakePublisher()
    deps = IngestDeps(settings, sqlite_engine, publisher, topology)  # type: ignore[arg-type]
    body = body_of(order_dict(external_id="TRACE-1"))
    with TestClient(create_ingest_app(deps)) as client:
        answer = client.post("/ingest/web-shop", content=body, headers=signed_headers(SECRET, body))
    assert answer.status_code == 202
    (message,) = publisher.published
    assert "traceparent" in message.headers
    RouterService(sqlite_engine, topology).handle(
        Delivery(
            queue="t.router", body=message.body, message_id=message.message_id,
            correlation_id=message.correlation_id, headers=message.headers,
            exchange="t.orders", routing_key=message.routing_key, redelivered=False,
            content_type="application/json", deliveries=1,
        )
    )  # fmt: skip
    with sqlite_engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(outbox)).mappings()]
    client_ok = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    for row in rows:
        target = row["message_id"].rsplit("-", 1)[1]
        sender = HttpDelivery(target, f"http://{target}.test/", HttpxTransport(client_ok),
                              RetryPolicy(1, 0, 0))  # fmt: skip
        DeliveryConsumer(target, sqlite_engine, sender).handle(
            delivery_from_outbox(row, f"t.{target}")
        )
    finished = {s.name: s for s in spans.get_finished_spans()}
    ingest, route = finished["ingest"], finished["route"]
    delivered = [s for name, s in finished.items() if name.startswith("deliver ")]
    assert sorted(s.name for s in delivered) == [
        "deliver finance",
        "deliver notification",
        "deliver warehouse",
    ]
    trace_id = ingest.context.trace_id
    assert all(s.context.trace_id == trace_id for s in (route, *delivered))
    assert route.parent is not None and route.parent.span_id == ingest.context.span_id
    assert all(s.parent is not None and s.parent.span_id == route.context.span_id
               for s in delivered)  # fmt: skip
    assert route.attributes is not None and route.attributes["channel"] == "web-shop"


def test_a_delivery_the_system_refuses_is_a_failed_span(
    sqlite_engine: Engine, spans: InMemorySpanExporter
) -> None:
    RouterService(sqlite_engine, build_topology(Settings(namespace="t"))).handle(
        Delivery(
            queue="t.router", body=body_of(order_dict(external_id="TRACE-2")),
            message_id="m-trace-2", correlation_id="m-trace-2",
            headers={**Envelope.new("web-shop", "m-trace-2").headers(),
                     "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            exchange="t.orders", routing_key="ingest.web-shop", redelivered=False,
            content_type="application/json", deliveries=1,
        )
    )  # fmt: skip
    with sqlite_engine.connect() as conn:
        row = dict(conn.execute(select(outbox).where(outbox.c.message_id.like("%-warehouse")))
                   .mappings().one())  # fmt: skip
    refusing = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(422)))
    sender = HttpDelivery("warehouse", "http://warehouse.test/", HttpxTransport(refusing),
                          RetryPolicy(1, 0, 0))  # fmt: skip
    consumer = DeliveryConsumer("warehouse", sqlite_engine, sender)
    [refused] = consumer.handle_batch([delivery_from_outbox(row, "t.warehouse")])
    assert refused is not None
    [delivery] = [s for s in spans.get_finished_spans() if s.name == "deliver warehouse"]
    assert delivery.status.status_code == trace.StatusCode.ERROR
    assert delivery.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_a_malformed_traceparent_is_dropped_not_an_error() -> None:
    headers: dict[str, Any] = {"x-orderbus-channel": "web-shop", "traceparent": "00-zz"}
    assert Envelope.from_message("m-1", None, headers).traceparent is None


def test_without_a_provider_no_span_is_made_and_the_traceparent_goes_on(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package installed but no provider set (OpenTelemetry's stand-in):
    nothing is made for each message, and the router's messages carry the
    traceparent they came with, for a process further on that traces."""
    from infra import tracing

    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    monkeypatch.setattr(tracing, "_CHECKED", tracing._Checked())
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert tracing.open_span("route", parent) is None
    with tracing.span("ingest") as traceparent:
        assert traceparent is None and tracing.current_traceparent() is None
    RouterService(sqlite_engine, build_topology(Settings(namespace="t"))).handle(
        Delivery(
            queue="t.router", body=body_of(order_dict(external_id="TRACE-3")),
            message_id="m-trace-3", correlation_id="m-trace-3",
            headers={**Envelope.new("web-shop", "m-trace-3").headers(), "traceparent": parent},
            exchange="t.orders", routing_key="ingest.web-shop", redelivered=False,
            content_type="application/json", deliveries=1,
        )
    )  # fmt: skip
    with sqlite_engine.connect() as conn:
        carried = conn.execute(select(outbox.c.headers)).scalars().all()
    assert len(carried) == 3 and all(h["traceparent"] == parent for h in carried)
