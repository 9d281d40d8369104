from __future__ import annotations

import httpx
import pytest

from canonical.errors import DeliveryRejected
from infra.transports import HttpxTransport
from targets.delivery import GaveUp, HttpDelivery, RetryPolicy

FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.002)


def delivery(handler: object, policy: RetryPolicy = FAST) -> HttpDelivery:
    client = httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return HttpDelivery("warehouse", "http://wms.test/orders", HttpxTransport(client), policy)


def test_success_sends_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201)

    sent = delivery(handler).send(b"{}", {"Idempotency-Key": "m-1"})
    assert sent.status_code == 201 and sent.attempts == 1
    assert seen[0].headers["Idempotency-Key"] == "m-1"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_status_is_retried_then_succeeds(status: int) -> None:
    answers = iter([status, status, 200])
    sent = delivery(lambda r: httpx.Response(next(answers))).send(b"{}", {})
    assert sent.attempts == 3


def test_connection_errors_are_retried_then_given_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(GaveUp) as info:
        delivery(handler).send(b"{}", {})
    assert len(calls) == 3
    assert info.value.reason == "endpoint_unavailable"
    assert "gave up after 3 attempts" in info.value.detail


def test_4xx_is_rejected_at_once_with_the_response() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(422, json={"error": "unknown SKU X-1"})

    with pytest.raises(DeliveryRejected) as info:
        delivery(handler).send(b"{}", {})
    assert len(calls) == 1
    assert info.value.status_code == 422
    assert "unknown SKU X-1" in info.value.response_body
