"""Defect 8 of the security review, the poller: the generic poller followed an
absolute ``next`` URL from the platform's answer and sent its credentials
there. A next page on another scheme, host or port is refused and never
requested; a relative one stays on the API's own origin."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from connectors.base import ConnectorError
from connectors.poller import PollSpec, RestPoller, same_origin
from infra.database import upgrade
from tests.unit.test_poller import MAPPING, Broker, remote_order

API = "https://api.example.com/v1/orders"


def poller(engine: Engine, answer: httpx.MockTransport) -> RestPoller:
    upgrade(str(engine.url))
    spec = PollSpec(
        url=API,
        items="$.data.orders",
        next_path="$.next",
        headers={"Authorization": "Bearer the-shops-api-key"},
        start="2026-11-11T00:00:00+00:00",
    )
    return RestPoller(
        "api-shop",
        spec,
        MAPPING,
        engine,
        httpx.Client(transport=answer, headers=spec.headers),
        Broker(),
        lambda reason, detail, item: None,
        sleep=lambda _s: None,
        clock=lambda: 0.0,
    )


@pytest.mark.parametrize(
    "next_page",
    [
        "https://evil.example/collect",
        "http://api.example.com/v1/orders?page=2",  # another scheme
        "https://api.example.com:8443/v1/orders",  # another port
        "//evil.example/collect",  # scheme-relative
        "https://api.example.com@evil.example/",  # userinfo trick
    ],
)
def test_a_next_page_elsewhere_is_refused_and_never_requested(
    sqlite_engine: Engine, next_page: str
) -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = {
            "data": {"orders": [remote_order(1, "2026-11-11T01:00:00+00:00")]},
            "next": next_page,
        }
        return httpx.Response(200, json=body)

    with pytest.raises(ConnectorError, match="not followed") as refused:
        poller(sqlite_engine, httpx.MockTransport(api)).poll_once()
    assert refused.value.reason == "cross_origin_next"
    assert [r.url.host for r in seen] == ["api.example.com"]  # only the first page


def test_a_relative_next_page_stays_on_the_api() -> None:
    assert same_origin(API, "?cursor=abc") == "https://api.example.com/v1/orders?cursor=abc"
    assert same_origin(API, "/v1/orders?page=2") == "https://api.example.com/v1/orders?page=2"
    assert same_origin(API, "https://API.example.com/v1/orders?page=3").endswith("page=3")
