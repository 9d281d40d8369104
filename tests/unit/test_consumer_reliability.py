"""A consumer's reliability at the edges. One that dies in the middle of a
batch repeats at most the one delivery whose answer it had not recorded: each
delivery's inbox row is committed as soon as its answer is known, before the
next send (the fault runs on 84d73a3 counted a whole batch sent again after
each crash). ``X-Orderbus-Attempt`` counts the tries of a send, and goes on
counting after a redelivery or a retry from the dead letters (84d73a3 always
sent 1)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import Engine, func, select

from canonical.envelope import H_ORDER_NUMBER
from canonical.errors import MalformedMessage
from infra.messages import Delivery
from infra.settings import Settings
from infra.tables import inbox, outbox
from infra.topology import build_topology
from router.service import RouterService
from targets.consumers import DeliveryConsumer, parse_outgoing
from tests.factories import delivery_for, order
from tests.outbox_messages import outbox_deliveries, quick_app


class Crash(BaseException):
    """The process dies here (kill -9): nothing after it runs."""


class Finance:
    """A system that keeps every request it got; told to, the process
    sending dies on the Nth request, after the system took it (its answer
    never reached us)."""

    def __init__(self) -> None:
        self.got: Counter[str] = Counter()
        self.die_on: int | None = None
        self.attempts: list[str] = []  # X-Orderbus-Attempt of each request
        self.down = 0  # answer this many requests with 503

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request.headers["X-Orderbus-Attempt"])
        if self.down > 0:
            self.down -= 1
            return httpx.Response(503)
        self.got[request.headers["Idempotency-Key"]] += 1
        if self.die_on is not None and sum(self.got.values()) == self.die_on:
            raise Crash
        return httpx.Response(200)


def _batch(engine: Engine, count: int) -> list[Delivery]:
    router = RouterService(engine, build_topology(Settings(namespace="t")))
    for n in range(count):
        router.handle(delivery_for(order(external_id=f"C-{n}"), message_id=f"m-{n}"))
    return outbox_deliveries(engine, outbox.c.message_id.like("%-finance"))


def test_a_crash_mid_batch_repeats_at_most_one_delivery(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    batch = _batch(sqlite_engine, 5)
    finance = Finance()
    finance.die_on = 4  # the process dies as the fourth order's answer comes back

    def consumer() -> DeliveryConsumer:
        app = quick_app(sqlite_url, finance_url="http://finance.test/orders")
        return app.delivery_consumer("finance", transport=httpx.MockTransport(finance))

    with pytest.raises(Crash):
        consumer().handle_batch(batch)
    with sqlite_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(inbox)) == 3  # recorded at once
    finance.die_on = None
    assert consumer().handle_batch(batch) == [None] * 5  # the broker's redelivery
    repeats = sum(n - 1 for n in finance.got.values())
    assert len(finance.got) == 5 and repeats == 1  # only the one in flight at the crash


def _consumer(sqlite_url: str, finance: Finance) -> DeliveryConsumer:
    app = quick_app(sqlite_url, finance_url="http://finance.test/orders")  # 4 tries a round
    return app.delivery_consumer("finance", transport=httpx.MockTransport(finance))


def test_the_attempt_header_counts_the_tries_of_a_send(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    [message] = _batch(sqlite_engine, 1)
    finance = Finance()
    finance.down = 2
    _consumer(sqlite_url, finance).handle(message)
    assert finance.attempts == ["1", "2", "3"]


@pytest.mark.parametrize("how", ["redelivered", "retried"])
def test_the_attempt_header_goes_on_after_a_redelivery_or_a_retry(
    sqlite_url: str, sqlite_engine: Engine, how: str
) -> None:
    [message] = _batch(sqlite_engine, 1)
    if how == "redelivered":  # the broker's redelivery after a crash
        again = replace(message, deliveries=2)
    else:  # a retry from the dead letters: the envelope's next attempt
        again = replace(message, headers={**message.headers, "x-orderbus-attempt": 2})
    finance = Finance()
    _consumer(sqlite_url, finance).handle(again)
    assert finance.attempts == ["5"]  # after the 4 tries one round may make


def test_a_timeout_is_a_dead_letter_that_says_the_system_may_have_it(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    """A system that commits after we gave up (no answer in time) is not a
    system that refused the connection: its dead letter says so, and a
    retry carries the same Idempotency-Key (84d73a3 called both
    endpoint_unavailable)."""
    from admin_api.causes import cause_of
    from console import story
    from console.i18n import gettext_for

    [message] = _batch(sqlite_engine, 1)
    keys: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        raise httpx.ReadTimeout("no answer", request=request)

    app = quick_app(sqlite_url, finance_url="http://finance.test/orders")
    consumer = app.delivery_consumer("finance", transport=httpx.MockTransport(slow))
    [error] = consumer.handle_batch([message])
    assert error is not None and getattr(error, "reason", "") == "endpoint_timeout"
    assert "no answer in time" in str(error)
    assert len(keys) == 4 and len(set(keys)) == 1  # every try: the same key
    assert cause_of("endpoint_timeout", str(error)) == "endpoint_down"
    event = {"kind": "dead_letter", "facts": {"reason": "endpoint_timeout"}, "detail": str(error)}
    said = story.sentence(gettext_for("zh-CN"), event)
    assert "可能已经收到" in said and "再重试" in said
    refused = {"kind": "dead_letter", "facts": {"reason": "endpoint_unavailable"}, "detail": "x"}
    assert "可能已经收到" not in story.sentence(gettext_for("zh-CN"), refused)


def _from_router(body: bytes, order_number: str = "OB1") -> Delivery:
    """A message as the router's outbox sends it: its envelope names the order."""
    message = delivery_for(order(), body=body)
    return replace(message, headers={**message.headers, H_ORDER_NUMBER: order_number})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed_json"),
        ("订单".encode("utf-16"), "malformed_json"),  # JSON only in UTF-8
        (b'{"order_number": NaN}', "malformed_json"),
        (b"[1, 2]", "schema_mismatch"),
        (b'{"order_number": "OB2"}', "schema_mismatch"),
    ],
)
def test_a_consumer_refuses_what_the_router_did_not_send(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as refused:
        parse_outgoing(_from_router(body))
    assert refused.value.reason == reason


def test_a_consumer_takes_what_the_router_sent() -> None:
    body = order().model_copy(update={"order_number": "OBTEST1"}).to_wire()
    assert parse_outgoing(_from_router(body, "OBTEST1")).order_number == "OBTEST1"
