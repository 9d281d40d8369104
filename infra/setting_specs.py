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

    shop_id: str = Field(
        min_length=1, max_length=40, description="the Douyin shop's id, for its access token"
    )
    endpoint: str = Field(
        default="https://openapi-fxg.jinritemai.com", description="Doudian's open API"
    )


class YouzanSpec(BaseModel):
    """The Youzan open API a Youzan channel fetches a trade from when a push
    carries only its new status (connectors/youzan.py)."""

    model_config = ConfigDict(extra="forbid")

    grant_id: str = Field(min_length=1, max_length=40, description="the shop's kdt_id")
    endpoint: str = Field(default="https://open.youzanyun.com", description="Youzan's open API")


class ChannelSpec(BaseModel):
    """How a channel's requests are read (its secrets are in ``channel_secrets``)."""

    model_config = ConfigDict(extra="forbid")

    connector: str = Field(
        default="generic-json",
        description="which connector reads the channel's requests (connectors/registry.py)",
    )
    shop: str | None = Field(
        default=None,
        max_length=200,
        description="the shop its orders belong to (default: what the request names, else default)",
    )
    # Our app's id on the platform, where its signature covers it (Youzan
    # client_id, Douyin app_key); a request naming another app is refused.
    app_key: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "our app's id on the platform where its signature covers it (Youzan client_id, "
            "Douyin app_key); a request naming another app is refused"
        ),
    )
    douyin: DouyinSpec | None = Field(
        default=None, description="a Douyin channel's Doudian API settings"
    )
    youzan: YouzanSpec | None = Field(
        default=None,
        description="a Youzan channel's API settings, to fetch trades a push does not carry",
    )

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

    mapping: dict[str, Any] | None = Field(
        default=None, description="the field mapping, inline (connectors/mapping.py)"
    )
    mapping_file: str | None = Field(default=None, description="the field mapping, in a JSON file")

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

    connector: str = Field(
        default="mapping",
        description="mapping (a REST API read by a field mapping) or a pull connector's name",
    )
    url: str | None = Field(default=None, description="the order list's URL (mapped pollers)")
    items: str | None = Field(
        default=None, description='where the orders are in a response, e.g. "$.data.orders"'
    )
    since_param: str = Field(
        default="updated_after", description="the query parameter that says since when"
    )
    page_param: str | None = Field(
        default="page", description="the query parameter of the page number (none: no pages)"
    )
    next_path: str | None = Field(
        default=None,
        description="where the next page's URL is in a response, instead of page numbers",
    )
    params: dict[str, str] = Field(default_factory=dict, description="more query parameters")
    headers: dict[str, str] = Field(
        default_factory=dict, description="request headers (an API key...)"
    )
    interval: float = Field(default=60.0, gt=0, description="seconds between polls")
    min_request_interval: float = Field(
        default=1.0,
        ge=0,
        description="seconds between two requests at least (the API's rate limit)",
    )
    overlap: float = Field(
        default=300.0,
        ge=0,
        description="seconds each poll reads again before the cursor (late-indexed orders)",
    )
    start: str = Field(
        default="1970-01-01T00:00:00+00:00", description="where the first poll starts, ISO 8601"
    )

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

    enabled: bool = Field(default=True, description="hold suspected duplicates for a person")
    by: list[SuspicionField] = Field(
        default_factory=lambda: list(DEFAULT_SUSPICION_FIELDS),
        min_length=1,
        description="the fields two orders share to be suspected duplicates",
    )
    window_hours: float = Field(
        default=24.0, gt=0, description="placed at most this many hours apart"
    )
    across_channels_only: bool = Field(
        default=True, description="only orders from two different channels"
    )


class HoldRulesSpec(BaseModel):
    """``ORDERBUS_HOLD_RULES``: which new orders wait for approval (router/approval.py)."""

    model_config = ConfigDict(extra="forbid")

    amount_above: dict[str, Decimal] = Field(
        default_factory=dict, description='currency -> threshold, e.g. {"CNY": "5000.00"}'
    )
    second_approval_above: dict[str, Decimal] = Field(
        default_factory=dict,
        description="currency -> threshold above which two different people must approve",
    )
    incomplete_address: bool = Field(
        default=False, description="hold orders whose address lacks province, city or street"
    )
    first_order: bool = Field(default=False, description="hold a new customer's first order")

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
    """Customer e-mail by SMTP."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="the SMTP server")
    port: int = Field(default=25, description="its port")
    sender: str = Field(description="From:, e.g. 'Acme 客服 <service@acme.cn>'")
    username: str | None = Field(default=None, description="login, if the server wants one")
    password: str | None = Field(default=None, description="its password")
    starttls: bool = Field(default=False, description="STARTTLS after connecting")
    ssl: bool = Field(default=False, description="TLS from the start (port 465)")
    timeout: float = Field(default=10.0, description="seconds")
    plaintext_login: bool = Field(
        default=False,
        description="allow a login without TLS (only for a relay on the same machine)",
    )

    @model_validator(mode="after")
    def _login_over_tls(self) -> EmailSpec:
        if self.username and not (self.starttls or self.ssl or self.plaintext_login):
            raise ValueError(
                "email: a login without TLS sends the password in the clear; set starttls "
                "(port 587) or ssl (port 465), or plaintext_login for a relay on this machine"
            )
        return self


class WebhookSpec(BaseModel):
    """A service messages are POSTed to (a chat robot, an SMS gateway)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="where messages are POSTed")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers")


class NotifySpec(BaseModel):
    """Customer notifications (targets/notify/)."""

    model_config = ConfigDict(extra="forbid")

    events: list[str] = Field(
        default_factory=lambda: [
            "paid", "shipped", "cancelled", "refunded", "delay", "parcel_problem",
        ],
        description="order statuses, 'delay' and 'parcel_problem' (a parcel the carrier "
        "reports a problem with, or says nothing of for stall_after_hours), that the customer "
        "is told of",
    )  # fmt: skip
    language: Literal["auto", "zh", "en"] = Field(
        default="auto", description="auto: Chinese for addresses in CN, else English"
    )
    templates_dir: str | None = Field(
        default=None, description="a directory of <event>.<language>.txt templates to use first"
    )
    shop_name: str = Field(default="orderbus", description="the shop's name in the messages")
    email: EmailSpec | None = Field(default=None, description="e-mail by SMTP")
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
    stall_after_hours: float = Field(
        default=72,
        gt=0,
        description="a shipped parcel the carrier has said nothing of for this long: tell the "
        "customer (once, as for a carrier's exception)",
    )
    delay_horizon_days: float = Field(
        default=7,
        gt=0,
        description="only orders that became late within this many days get a delay notice",
    )

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        known = {
            "created", "paid", "shipped", "delivered", "cancelled", "refunded", "delay",
            "parcel_problem",
        }  # fmt: skip
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown events {sorted(unknown)}; known: {sorted(known)}")
        return value


class Silence(BaseModel):
    """Alert when a channel sends no order for longer than its limit."""

    model_config = ConfigDict(extra="forbid")
    channels: dict[str, float] = Field(description="channel -> seconds it may stay silent")


class RejectRate(BaseModel):
    """Alert when too large a share of a window's inputs is refused."""

    model_config = ConfigDict(extra="forbid")
    window: float = Field(default=900, gt=0, description="seconds looked back")
    threshold: float = Field(
        default=0.2, gt=0, le=1, description="the share of refused inputs that raises the alert"
    )
    min_count: int = Field(
        default=20, ge=1, description="inputs in the window before the rule judges"
    )


class UndeliveredPaid(BaseModel):
    """Alert when a paid order has not reached the warehouse in time."""

    model_config = ConfigDict(extra="forbid")
    after: float = Field(
        default=1800, gt=0, description="seconds a paid order may go without reaching the warehouse"
    )
    within_days: float = Field(
        default=7,
        gt=0,
        description="how far back orders are looked at (older ones are the daily "
        "reconciliation's): the check reads only these, however long the history",
    )


class DeadLetterGrowth(BaseModel):
    """Alert when open dead letters are more than allowed."""

    model_config = ConfigDict(extra="forbid")
    open_above: int = Field(default=0, ge=0, description="open dead letters allowed")


class ParcelProblems(BaseModel):
    """Alert when shipped parcels are in trouble: the carrier reports an
    exception, or has said nothing for ``stalled_hours``."""

    model_config = ConfigDict(extra="forbid")
    above: int = Field(default=0, ge=0, description="parcels in trouble allowed")
    stalled_hours: float = Field(
        default=72, gt=0, description="a shipped parcel without news this long is in trouble"
    )


class OutboxLag(BaseModel):
    """Alert when the outbox is not published in time."""

    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(
        default=300, gt=0, description="age of the oldest unpublished outbox row allowed"
    )


class QueueDepth(BaseModel):
    """Alert when a queue holds more messages than allowed."""

    model_config = ConfigDict(extra="forbid")
    above: int = Field(default=10000, ge=0, description="messages waiting in one queue")


class Credentials(BaseModel):
    """Alert before a platform's or system's credentials expire."""

    model_config = ConfigDict(extra="forbid")
    expires: dict[str, datetime] = Field(description="credential name -> when it expires")
    warn_days: float = Field(
        default=7, ge=0, description="days before expiry that the alert starts"
    )


class ChatRobot(BaseModel):
    """A group chat's robot that is told of each incident (WeCom, DingTalk, Feishu)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["wecom", "dingtalk", "feishu"] = Field(
        description="wecom (企业微信), dingtalk (钉钉) or feishu (飞书)"
    )
    url: str = Field(description="the robot's webhook address, as the chat app shows it")
    secret: str = Field(
        default="",
        description="DingTalk's 加签 secret (SEC…) or Feishu's 签名校验 secret, when the robot "
        "has one; WeCom's key is in its URL",
    )
    language: Literal["zh", "en"] = Field(default="zh", description="the messages' language")


class AlertSettings(BaseModel):
    """``ORDERBUS_ALERTS``: where alerts go, how often the rules run, and the rules."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = Field(
        default=None,
        description="where incidents are POSTed (one message when each starts and resolves)",
    )
    chat: list[ChatRobot] = Field(
        default_factory=list,
        description="group chat robots told of each incident, in Chinese by default",
    )
    interval: float = Field(default=60, gt=0, description="seconds between two checks of the rules")
    silence: Silence | None = Field(
        default=None, description="a channel with no order for too long"
    )
    reject_rate: RejectRate | None = Field(default=None, description="too many refused inputs")
    undelivered_paid: UndeliveredPaid | None = Field(
        default=None, description="a paid order not at the warehouse in time"
    )
    dead_letters: DeadLetterGrowth | None = Field(default=None, description="open dead letters")
    parcel_problems: ParcelProblems | None = Field(
        default=None, description="shipped parcels with an exception, or without news"
    )
    outbox_lag: OutboxLag | None = Field(
        default=None, description="the outbox not published in time"
    )
    queue_depth: QueueDepth | None = Field(default=None, description="a queue not drained")
    credentials: Credentials | None = Field(default=None, description="credentials about to expire")


def known_zone(value: str) -> str:
    """``value`` if it names a time zone (Asia/Shanghai); else a ValueError."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(value)
    except (ValueError, LookupError):
        raise ValueError(f"no time zone {value!r} (for example Asia/Shanghai)") from None
    return value


class DigestSettings(BaseModel):
    """``ORDERBUS_DIGEST``: yesterday's numbers, once a day, to the team's chat
    robot (console/digest.py)."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str = Field(
        description="the chat robot's webhook (WeCom, DingTalk, Feishu, or any)"
    )
    format: Literal["wecom", "dingtalk", "feishu", "json"] = Field(
        default="wecom",
        description="the robot's message format: WeCom or DingTalk markdown, Feishu text, or JSON",
    )
    at: str = Field(
        default="09:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="local time (HH:MM) after which the day's digest is sent",
    )
    timezone: str = Field(default="Asia/Shanghai", description="the zone of `at` and of the days")
    language: Literal["zh-CN", "en"] = Field(default="zh-CN", description="the digest's language")
    console_url: str | None = Field(
        default=None, description="the console's address, linked at the end of the digest"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)


class SkuMappingSettings(BaseModel):
    """``ORDERBUS_SKU_MAPPING``: where the mapping tables apply (the tables
    themselves are edited in the admin API and the console)."""

    model_config = ConfigDict(extra="forbid")

    targets: list[str] = Field(
        default_factory=lambda: ["warehouse", "finance"],
        description="the systems that receive our codes instead of the channels' SKUs",
    )
    required: list[str] = Field(
        default_factory=list,
        description=(
            "channels (or `*`) whose every SKU needs a mapping: a new order with an unmapped "
            "SKU is held (cause `sku_not_mapped`, naming it) before the `targets` hear of it, "
            "and released by `POST /mappings/retry-passing` once mapped; a later revision of "
            "an order they already have becomes a `sku_not_mapped` dead letter instead"
        ),
    )


class LookupSettings(BaseModel):
    """``ORDERBUS_LOOKUP``: the customers' own order lookup on the ingest
    process (``/track``: order number + the phone's last 4 digits)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve /track and /track.json")
    per_client: int = Field(
        default=30, ge=1, le=10_000, description="lookups one client address may make per window"
    )
    failures_per_order: int = Field(
        default=5,
        ge=1,
        le=100,
        description="wrong phone tails one order number may get per window before it is locked",
    )
    window_minutes: int = Field(default=60, ge=1, le=1440, description="the counting window")
    answer_ms: int = Field(
        default=300,
        ge=0,
        le=5000,
        description="every answer takes at least this long, found or not (a wrong number and a "
        "wrong tail cannot be told apart by time)",
    )


class Kuaidi100Spec(BaseModel):
    """快递100 (api.kuaidi100.com): its subscription push, and its query API
    for carriers without push."""

    model_config = ConfigDict(extra="forbid")

    salt: str = Field(
        min_length=1,
        description="the salt given when subscribing: the push's sign is upper(md5(param + salt))",
    )
    customer: str | None = Field(default=None, description="the account's customer id (query)")
    key: str | None = Field(default=None, description="the account's key (query)")
    query_url: str = Field(
        default="https://poll.kuaidi100.com/poll/query.do", description="the real-time query API"
    )
    poll_carriers: list[str] = Field(
        default_factory=list,
        description="carrier codes (kuaidi100's, e.g. 'jd') whose parcels are polled instead of "
        "pushed",
    )
    poll_interval: float = Field(default=1800, gt=0, description="seconds between polls")


class TrackingSettings(BaseModel):
    """``ORDERBUS_TRACKING``: carriers' tracking events to the door."""

    model_config = ConfigDict(extra="forbid")

    kuaidi100: Kuaidi100Spec | None = Field(
        default=None, description="快递100: POST /tracking/kuaidi100 (its push), and its query"
    )


class StockChannelSpec(BaseModel):
    """Where one channel's available quantities go, and how much of the stock it gets."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["http", "shopify", "taobao", "jd", "pinduoduo", "douyin", "youzan"] = Field(
        default="http",
        description="http: POST {sku, quantity, as_of} as JSON to url (a shop's own stock API, "
        "or a middleware's); shopify: the GraphQL Admin API's inventorySetQuantities at "
        "location_id (the variant found by its SKU); taobao, jd, pinduoduo, douyin, youzan: "
        "the platform's item stock API with account (the listing is the platform's "
        "'<item id>:<sku id>', or the item id alone; JD's the sku id)",
    )
    account: dict[str, str] | None = Field(
        default=None,
        description="taobao/jd/pinduoduo/douyin/youzan: the API access, as the channel's "
        "write-back takes it (taobao: app_key, app_secret, session; jd: app_key, app_secret, "
        "access_token; pinduoduo: client_id, client_secret, access_token; douyin: app_key, "
        "app_secret, shop_id; youzan: client_id, client_secret, grant_id; each: endpoint)",
    )
    url: str | None = Field(default=None, description="http: where the quantities are sent")
    token: str | None = Field(default=None, description="http: sent as Authorization: Bearer")
    shop_url: str | None = Field(default=None, description="shopify: https://<shop>.myshopify.com")
    access_token: str | None = Field(default=None, description="shopify: the Admin API token")
    api_version: str = Field(
        default="2026-10", pattern=r"^\d{4}-(01|04|07|10)$", description="shopify: API version"
    )
    location_id: str | None = Field(
        default=None, description="shopify: the location's id (gid://shopify/Location/…)"
    )
    ratio: float = Field(
        default=1.0, gt=0, le=1, description="the share of the available stock this channel sells"
    )
    safety: int = Field(default=0, ge=0, description="units held back from this channel")
    rate: float = Field(default=5.0, ge=0, description="requests per second (0: no limit)")

    @model_validator(mode="after")
    def _where(self) -> StockChannelSpec:
        needed = {
            "http": ["url"],
            "shopify": ["shop_url", "access_token", "location_id"],
        }.get(self.kind, ["account"])
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"a {self.kind} stock channel needs {', '.join(missing)}")
        return self


class StockPollSpec(BaseModel):
    """A poll of an ERP's or a warehouse's stock query (HTTP, JSON answer)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, description="the stock query's URL")
    method: Literal["GET", "POST"] = Field(default="GET", description="GET or POST (a JSON body)")
    body: dict[str, Any] | None = Field(default=None, description="POST: the JSON body sent")
    headers: dict[str, str] = Field(
        default_factory=dict, description="headers sent (an Authorization: Bearer key...)"
    )
    items: str = Field(
        min_length=1, description="dotted path to the list of levels in the answer, e.g. data"
    )
    sku: str = Field(min_length=1, description="dotted path to our SKU in a level")
    available: str = Field(min_length=1, description="dotted path to the units that can be sold")
    page_field: str | None = Field(
        default=None,
        description="POST paging: the body field that asks for the levels after a given one "
        "(Jiandaoyun: data_id)",
    )
    page_from: str | None = Field(
        default=None, description="the level's field whose value page_field asks after (_id)"
    )
    page_size: int = Field(default=100, ge=1, le=10_000, description="a full page: ask for more")
    max_pages: int = Field(default=100, ge=1, le=10_000, description="pages read a poll at most")
    interval: float = Field(default=300.0, ge=5, description="seconds between two polls")


class StockSettings(BaseModel):
    """``ORDERBUS_STOCK``: stock levels back to the channels (targets/stock_push.py)."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[str, StockChannelSpec] = Field(
        default_factory=dict, description="channel -> where and how much"
    )
    interval: float = Field(
        default=5.0, gt=0, description="seconds between pushes: a burst becomes its latest level"
    )
    poll: StockPollSpec | None = Field(
        default=None,
        description="a poll of the ERP's stock query (run by the ingest), besides POST /stock "
        "and the stock queue",
    )
