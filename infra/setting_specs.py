"""The parts of the settings, one model each: channels, pollers, legacy
inbound, duplicate suspicion, hold rules, customer notifications and alert
rules. :mod:`infra.settings` puts them together; the composition root hands
each part to the component that needs it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class DouyinSpec(BaseModel):
    """The Doudian open API a Douyin channel's orders are fetched from."""

    model_config = ConfigDict(extra="forbid")

    shop_id: str = Field(min_length=1, max_length=40)
    endpoint: str = "https://openapi-fxg.jinritemai.com"


class YouzanSpec(BaseModel):
    """The Youzan open API a Youzan channel fetches a trade from when a push
    carries only its new status (connectors/youzan.py)."""

    model_config = ConfigDict(extra="forbid")

    grant_id: str = Field(min_length=1, max_length=40, description="the shop's kdt_id")
    endpoint: str = "https://open.youzanyun.com"


class ChannelSpec(BaseModel):
    """How a channel's requests are read (its secrets are in ``channel_secrets``)."""

    model_config = ConfigDict(extra="forbid")

    connector: str = "generic-json"
    shop: str | None = Field(default=None, max_length=200)
    # Our app's id on the platform, where its signature covers it (Youzan
    # client_id, Douyin app_key); a request naming another app is refused.
    app_key: str | None = Field(default=None, max_length=200)
    douyin: DouyinSpec | None = None
    youzan: YouzanSpec | None = None

    @model_validator(mode="after")
    def _connector_settings(self) -> ChannelSpec:
        if self.connector == "douyin" and (self.douyin is None or not self.app_key):
            raise ValueError("a douyin channel needs app_key and douyin.shop_id")
        if self.youzan is not None and (self.connector != "youzan" or not self.app_key):
            raise ValueError("youzan API settings need a youzan channel with its app_key")
        return self


class _Mapped(BaseModel):
    """A source read through a field mapping (connectors/mapping.py), inline or in a file."""

    model_config = ConfigDict(extra="forbid")

    mapping: dict[str, Any] | None = None
    mapping_file: str | None = None

    def _needs_mapping(self) -> bool:
        return True

    @model_validator(mode="after")
    def _one_mapping(self) -> _Mapped:
        given = (self.mapping is not None) + (self.mapping_file is not None)
        if given > 1 or (given == 0 and self._needs_mapping()):
            raise ValueError("give mapping or mapping_file (one of them)")
        return self


class LegacySpec(_Mapped):
    """An existing system publishing its own JSON orders on AMQP, and how to read them."""


class PollerSpec(_Mapped):
    """A channel polled over REST (connectors/poller.py), and how to read it:
    with a field mapping, or with a platform's own module (a pull connector in
    connectors/registry.py), whose account settings sit under its key (e.g.
    ``"amazon": {...}`` for ``"connector": "amazon-sp-api"``)."""

    model_config = ConfigDict(extra="allow")

    connector: str = "mapping"
    url: str | None = None
    items: str | None = Field(
        default=None, description='where the orders are in a response, e.g. "$.data.orders"'
    )
    since_param: str = "updated_after"
    page_param: str | None = "page"
    next_path: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    interval: float = Field(default=60.0, gt=0)
    min_request_interval: float = Field(default=1.0, ge=0)
    overlap: float = Field(default=300.0, ge=0)
    start: str = "1970-01-01T00:00:00+00:00"

    def _needs_mapping(self) -> bool:
        return self.connector == "mapping"

    @model_validator(mode="after")
    def _mapped_poller(self) -> PollerSpec:
        if self.connector == "mapping":
            if not (self.url and self.items):
                raise ValueError("a mapped poller needs url and items")
            if self.model_extra:
                raise ValueError(f"unknown settings {', '.join(sorted(self.model_extra))}")
        return self


SuspicionField = Literal["phone", "email", "items", "total", "address"]
DEFAULT_SUSPICION_FIELDS: tuple[SuspicionField, ...] = ("phone", "items", "total")


class DuplicateSuspicion(BaseModel):
    """When a new order is held as a suspected duplicate (router/suspicion.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    by: list[SuspicionField] = Field(
        default_factory=lambda: list(DEFAULT_SUSPICION_FIELDS), min_length=1
    )
    window_hours: float = Field(default=24.0, gt=0)
    across_channels_only: bool = True


class HoldRulesSpec(BaseModel):
    """``ORDERBUS_HOLD_RULES``: which new orders wait for approval (router/approval.py)."""

    model_config = ConfigDict(extra="forbid")

    amount_above: dict[str, Decimal] = Field(
        default_factory=dict, description='currency -> threshold, e.g. {"CNY": "5000.00"}'
    )
    second_approval_above: dict[str, Decimal] = Field(default_factory=dict)
    incomplete_address: bool = False
    first_order: bool = False

    @model_validator(mode="after")
    def _second_above_first(self) -> HoldRulesSpec:
        for currency, second in self.second_approval_above.items():
            first = self.amount_above.get(currency)
            if first is None or second < first:
                raise ValueError(
                    f"second_approval_above {currency} needs an amount_above at or below it"
                )
        return self


class EmailSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = 25
    sender: str = Field(description="From:, e.g. 'Acme 客服 <service@acme.cn>'")
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 10.0


class WebhookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    headers: dict[str, str] = Field(default_factory=dict)


class NotifySpec(BaseModel):
    """Customer notifications (targets/notify/)."""

    model_config = ConfigDict(extra="forbid")

    events: list[str] = Field(
        default_factory=lambda: ["paid", "shipped", "cancelled", "refunded", "delay"],
        description="order statuses, and 'delay', that the customer is told of",
    )
    language: Literal["auto", "zh", "en"] = Field(
        default="auto", description="auto: Chinese for addresses in CN, else English"
    )
    templates_dir: str | None = Field(
        default=None, description="a directory of <event>.<language>.txt templates to use first"
    )
    shop_name: str = "orderbus"
    email: EmailSpec | None = None
    wechat_work: WebhookSpec | None = Field(
        default=None, description="a WeChat Work group robot (qyapi.weixin.qq.com .../send?key=)"
    )
    sms: WebhookSpec | None = Field(
        default=None, description="a generic SMS gateway: POST {phone, text, event, order_number}"
    )
    delay_after_hours: float = Field(
        default=48, gt=0, description="a paid order not shipped after this long: tell the customer"
    )
    delay_check_interval: float = Field(default=60.0, gt=0, description="seconds")
    delay_horizon_days: float = Field(
        default=7,
        gt=0,
        description="only orders that became late within this many days get a delay notice",
    )

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        known = {"created", "paid", "shipped", "delivered", "cancelled", "refunded", "delay"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown events {sorted(unknown)}; known: {sorted(known)}")
        return value


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: dict[str, float] = Field(description="channel -> seconds it may stay silent")


class RejectRate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: float = Field(default=900, gt=0)
    threshold: float = Field(default=0.2, gt=0, le=1)
    min_count: int = Field(default=20, ge=1)


class UndeliveredPaid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: float = Field(default=1800, gt=0)


class DeadLetterGrowth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    open_above: int = Field(default=0, ge=0)


class OutboxLag(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=300, gt=0)


class QueueDepth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    above: int = Field(default=10000, ge=0, description="messages waiting in one queue")


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires: dict[str, datetime]
    warn_days: float = Field(default=7, ge=0)


class AlertSettings(BaseModel):
    """``ORDERBUS_ALERTS``: where alerts go, how often the rules run, and the rules."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = None
    interval: float = Field(default=60, gt=0)
    silence: Silence | None = None
    reject_rate: RejectRate | None = None
    undelivered_paid: UndeliveredPaid | None = None
    dead_letters: DeadLetterGrowth | None = None
    outbox_lag: OutboxLag | None = None
    queue_depth: QueueDepth | None = None
    credentials: Credentials | None = None
