"""Configuration, read from the environment (prefix ``ORDERBUS_``) when asked for.

Nothing here runs at import time: call :func:`load_settings` in the composition
root and pass the object down.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.alerts import AlertSettings

EMBEDDED_DATABASE_URL = "sqlite:///orderbus-data/orderbus.db"
EMBEDDED_BROKER_URL = "sqla+sqlite:///orderbus-data/broker.db"
TARGETS = ("warehouse", "finance", "notification")
# Targets that exist only when configured: write-back of shipments to the
# channel (ORDERBUS_WRITEBACK) and notifications to the customer (ORDERBUS_NOTIFY).
WRITEBACK_TARGET = "channel"
CUSTOMER_TARGET = "customer"


# Connectors whose push names orders without carrying them: the ingest queues
# the references and fetches each order from the platform's API.
FETCHING_CONNECTORS = frozenset({"douyin"})


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

    def account(self) -> Any:
        """The pull connector's account settings, validated by its own model."""
        from connectors.registry import PULL_CONNECTORS  # the settings module stays light

        pull = PULL_CONNECTORS[self.connector]
        return pull.account.model_validate((self.model_extra or {}).get(pull.settings_key))

    @model_validator(mode="after")
    def _connector_settings(self) -> PollerSpec:
        from connectors.registry import PULL_CONNECTORS

        extra = set(self.model_extra or {})
        if self.connector == "mapping":
            if not (self.url and self.items):
                raise ValueError("a mapped poller needs url and items")
            if extra:
                raise ValueError(f"unknown settings {', '.join(sorted(extra))}")
            return self
        pull = PULL_CONNECTORS.get(self.connector)
        if pull is None:
            known = ", ".join(["mapping", *sorted(PULL_CONNECTORS)])
            raise ValueError(f"no pull connector {self.connector!r} (known: {known})")
        if pull.settings_key not in extra:
            raise ValueError(f"the {pull.name} poller needs its {pull.settings_key} settings")
        if extra - {pull.settings_key}:
            raise ValueError(f"unknown settings {', '.join(sorted(extra - {pull.settings_key}))}")
        self.account()  # raises, naming the field, if the account settings are wrong
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
    """Customer notifications (router/notify/)."""

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERBUS_", extra="ignore")

    # Where things live. The defaults are the embedded mode: one SQLite file for
    # orderbus's tables and one for kombu's SQL transport. Production uses
    # amqp://... and postgresql+psycopg://...
    broker_url: str = EMBEDDED_BROKER_URL
    database_url: str = EMBEDDED_DATABASE_URL
    namespace: str = Field(
        default="orderbus",
        pattern=r"^[a-z][a-z0-9_.-]{0,40}$",
        description="Prefix of every exchange and queue name.",
    )

    # Broker behaviour.
    quorum_queues: bool = True
    delivery_limit: int = Field(default=5, ge=1, description="Broker redeliveries before DLX")
    transient_retry_window: float = Field(
        default=60.0,
        ge=0,
        description="seconds a delivery is retried in place while the database is down",
    )
    prefetch: int = Field(default=100, ge=1, le=1000)
    batch_size: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="messages a component takes at once (one transaction); at most prefetch",
    )
    batch_linger_ms: float = Field(
        default=5.0,
        ge=0,
        le=100,
        description="ms to wait for the next message of a batch (up to 4x in all); "
        "bigger batches cost less CPU per message at moderate rates",
    )
    heartbeat: int = Field(default=30, ge=0)
    connect_timeout: float = 5.0
    confirm_timeout: float = 10.0

    duplicate_suspicion: DuplicateSuspicion = Field(default_factory=DuplicateSuspicion)

    # Ingest (webhook connectors).
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    channel_secrets: dict[str, list[str]] = Field(
        default_factory=dict,
        description='JSON: {"channel": ["current-secret", "previous-secret"]}',
    )
    channels: dict[str, ChannelSpec] = Field(
        default_factory=dict,
        description='JSON: {"channel": {"connector": "shopify", "shop": "acme.myshopify.com"}}',
    )
    legacy_inbound: dict[str, LegacySpec] = Field(
        default_factory=dict,
        description='JSON: {"channel": {"mapping_file": "/etc/orderbus/erp.json"}}',
    )
    pollers: dict[str, PollerSpec] = Field(
        default_factory=dict,
        description='JSON: {"channel": {"url": "...", "items": "$.orders", "mapping_file": "..."}}',
    )
    shipment_secrets: list[str] = Field(
        default_factory=list,
        description="secrets the warehouse signs POST /shipments with (as a channel's webhook)",
    )
    signature_tolerance: int = Field(default=300, ge=1, description="seconds")
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)

    # Consumers: the existing systems' endpoints.
    warehouse_url: str | None = None
    finance_url: str | None = None
    notification_url: str | None = None
    targets: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='JSON: {"finance": {"adapter": "jiandaoyun", ...}} (router/adapters/)',
    )
    writeback: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='JSON: {"channel": {"kind": "shopify", ...}}: shipments written back '
        "to the channel (router/writeback.py)",
    )
    notify: NotifySpec | None = Field(
        default=None, description="customer notifications (router/notify/)"
    )
    http_timeout: float = 5.0
    delivery_attempts: int = Field(default=4, ge=1, le=10)
    retry_initial_wait: float = 0.5
    retry_max_wait: float = 4.0

    # Router's outbox relay.
    relay_batch: int = Field(default=100, ge=1)
    relay_interval: float = Field(default=0.2, gt=0)

    # Admin API.
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    admin_tokens: dict[str, str] = Field(
        default_factory=dict, description='JSON: {"operator-name": "token"}'
    )
    hold_rules: HoldRulesSpec = Field(default_factory=HoldRulesSpec)
    alerts: AlertSettings | None = Field(
        default=None, description="alert rules and their webhook (router/alerts.py)"
    )
    # Read by the command before the settings (router/logs.py); here to be validated.
    log_format: Literal["text", "json"] = "text"

    @field_validator("shipment_secrets", mode="before")
    @classmethod
    def _secret_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) and not value.startswith("[") else value

    @field_validator("channel_secrets", mode="before")
    @classmethod
    def _secrets_as_lists(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _channels_are_known(self) -> Settings:
        from connectors.registry import CONNECTORS  # the settings module stays light

        for name in [*self.legacy_inbound, *self.pollers]:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,40}", name):
                raise ValueError(f"channel {name!r}: lower-case letters, digits, - and _")
        for target in self.targets:
            if target not in TARGETS:
                raise ValueError(f"ORDERBUS_TARGETS: {target!r} is not one of {', '.join(TARGETS)}")
        for name, spec in self.channels.items():
            if spec.connector not in CONNECTORS:
                raise ValueError(
                    f"channel {name!r}: no connector {spec.connector!r} "
                    f"(known: {', '.join(sorted(CONNECTORS))})"
                )
        return self

    def fetching_channels(self) -> list[str]:
        """Channels whose orders are fetched from the platform's API after a push
        (Douyin) or a message (Taobao TMC) named them."""
        pushed = [
            n
            for n, spec in self.channels.items()
            if spec.connector in FETCHING_CONNECTORS or spec.youzan is not None
        ]
        from connectors.registry import PULL_CONNECTORS

        pulled = [
            n
            for n, spec in self.pollers.items()
            if spec.connector in PULL_CONNECTORS and PULL_CONNECTORS[spec.connector].fetches
        ]
        return sorted({*pushed, *pulled})

    def active_targets(self) -> tuple[str, ...]:
        """The systems orders go to: the three, and those configured."""
        optional = []
        if self.writeback:
            optional.append(WRITEBACK_TARGET)
        if self.notify is not None:
            optional.append(CUSTOMER_TARGET)
        return (*TARGETS, *optional)

    def target_url(self, target: str) -> str | None:
        """The endpoint a target's canonical JSON is POSTed to (without an adapter)."""
        return {
            "warehouse": self.warehouse_url,
            "finance": self.finance_url,
            "notification": self.notification_url,
        }.get(target)

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
