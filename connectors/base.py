"""What a webhook connector is: a way to check a channel's request and read its orders.

A connector is one module that knows one platform's push format: which media
types it sends, how it signs a request (checked in constant time), and how its
payload maps onto :class:`~canonical.order.CanonicalOrder`. The ingest app
(:mod:`connectors.ingest_app`) does the rest for every connector alike: body
limits, recording refused requests, publishing with confirms, the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from canonical.aftersales import AfterSale
from canonical.order import CanonicalOrder


class ConnectorError(Exception):
    """A request the connector cannot turn into orders; ``status`` is the HTTP answer."""

    def __init__(
        self, status: int, reason: str, detail: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = errors or []


def unauthorized(reason: str, detail: str) -> ConnectorError:
    return ConnectorError(401, reason, detail)


def unreadable(detail: str, reason: str = "schema_mismatch") -> ConnectorError:
    """The payload is the platform's, but not what its documentation says."""
    return ConnectorError(422, reason, detail)


@dataclass(frozen=True)
class ChannelConfig:
    """One configured channel: its name (the URL's ``{channel}``), its connector,
    its secrets (current first, then the previous one while rotating), the
    shop its orders belong to (part of each order's business key), and our
    app's id on the platform where its signature names it (Youzan's
    ``client_id``, Douyin's ``app_key``)."""

    name: str
    connector: str = "generic-json"
    secrets: tuple[str, ...] = ()
    shop: str | None = None
    app_key: str | None = None
    fetch: bool = False  # orders the push only names are fetched (the channel has a fetch worker)


@dataclass(frozen=True)
class WebhookRequest:
    """What arrived: headers with lower-case names, the raw body, and when."""

    headers: Mapping[str, str]
    body: bytes
    received_at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Arrival:
    """One order read from a request, with the platform's id of this delivery
    when it has one: a redelivery carries the same id, and the router records
    a message id only once."""

    order: CanonicalOrder
    delivery_id: str | None = None


@dataclass(frozen=True)
class OrderReference:
    """An order a platform's push names but does not carry (Douyin sends ids;
    the order is fetched from its API): ``external_id`` in ``shop``, and the
    push message's id, the same on every redelivery."""

    external_id: str
    delivery_id: str
    shop: str | None = None
    version: int | None = None  # the push's revision of the order, where it has one


@dataclass(frozen=True)
class StatusChange:
    """A push that says an order's new status but not its lines (Shopify's
    orders/updated may leave them out): the ingest applies it to the order
    orderbus has, or records it when orderbus has none. ``amounts``: the
    order-level amounts it carries (``total``, ``shipping_fee``,
    ``order_discount``, ``tax``), applied where they still add up with the
    lines orderbus has."""

    external_id: str
    shop: str
    status: str
    updated_at: datetime | None
    delivery_id: str | None = None
    amounts: Mapping[str, Decimal] = field(default_factory=dict)
    currency: str | None = None


@dataclass(frozen=True)
class AfterSaleChange:
    """A push about an after-sale of an order it does not carry (Shopify's
    refunds/create): the ingest adds it to the order orderbus has, or
    records it when orderbus has none."""

    external_id: str
    shop: str
    after_sale: AfterSale
    at: datetime
    delivery_id: str | None = None


@dataclass(frozen=True)
class WebhookResult:
    """The orders in a request, or the references of orders to fetch, or
    status changes or after-sales of known orders; or none, and why (a ping,
    an event that is not about an order), which is recorded."""

    arrivals: tuple[Arrival, ...] = ()
    ignored: str | None = None
    references: tuple[OrderReference, ...] = ()
    changes: tuple[StatusChange, ...] = ()
    after_sales: tuple[AfterSaleChange, ...] = ()


class WebhookConnector(Protocol):
    name: str
    media_types: frozenset[str]  # accepted Content-Type media types (charset must be UTF-8)
    # The body a platform requires to count a push as received (answered 200),
    # or None: orderbus answers 202 with its own body.
    reply: dict[str, Any] | None

    def authenticate(self, request: WebhookRequest, channel: ChannelConfig, tolerance: int) -> None:
        """Raise ConnectorError(401, ...) unless the request is the platform's."""

    def read(self, request: WebhookRequest, channel: ChannelConfig) -> WebhookResult:
        """The orders in an authenticated request, or ConnectorError(400/422, ...)."""

    def sign(self, body: bytes, secret: str, now: float) -> tuple[dict[str, str], bytes]:
        """The headers and body the platform would send for ``body`` (for tests
        and demos): most platforms sign in a header; some (Youzan) in the body."""
