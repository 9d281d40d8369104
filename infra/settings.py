"""Configuration, read from the environment (prefix ``ORDERBUS_``) when asked for.

Nothing here runs at import time: call :func:`load_settings` in the composition
root and pass the object down.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from infra.setting_specs import (
    AlertSettings,
    ChannelSpec,
    DigestSettings,
    DuplicateSuspicion,
    HoldRulesSpec,
    LegacySpec,
    LookupSettings,
    NotifySpec,
    PollerSpec,
    SkuMappingSettings,
    StockSettings,
    TrackingSettings,
    known_zone,
)


def default_data_dir() -> Path:
    """The per-user folder of the embedded default: $XDG_DATA_HOME/orderbus,
    else ~/.local/share/orderbus (on Windows %LOCALAPPDATA%\\orderbus)."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orderbus"


def config_file() -> Path | None:
    """The TOML settings file: ``ORDERBUS_CONFIG``, else ``orderbus.toml``
    in the current folder when there is one."""
    given = os.environ.get("ORDERBUS_CONFIG")
    if given:
        return Path(given)
    here = Path("orderbus.toml")
    return here if here.is_file() else None


def embedded_urls(folder: Path) -> tuple[str, str]:
    """(broker URL, database URL) of the embedded default in ``folder``."""
    where = folder.expanduser().resolve()
    return f"sqla+sqlite:///{where}/broker.db", f"sqlite:///{where}/orderbus.db"


TARGETS = ("warehouse", "finance", "notification")
# Targets that exist only when configured: write-back of shipments to the
# channel (ORDERBUS_WRITEBACK) and notifications to the customer (ORDERBUS_NOTIFY).
WRITEBACK_TARGET = "channel"
CUSTOMER_TARGET = "customer"


MIN_SECRET_LENGTH = 16


def weak_secrets(where: str, secrets: list[str]) -> None:
    """ValueError when a signing secret is empty or short: anyone could sign
    with an empty key, and a short one is guessed from one captured request."""
    for secret in secrets:
        if len(secret.strip()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"{where}: a secret is empty or shorter than {MIN_SECRET_LENGTH} characters, "
                "so anyone could sign requests with it; use the platform's secret or a long "
                "random one (python3 -c 'import secrets; print(secrets.token_hex(16))')"
            )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERBUS_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Where settings come from, the first that has one winning: given in
        code; the environment; ``.env`` in the current folder; the TOML file
        (``ORDERBUS_CONFIG``, else ``orderbus.toml`` in the current folder);
        the defaults (docs/reference/configuration.md)."""
        dotenv = DotEnvSettingsSource(settings_cls, env_file=Path(".env"), env_prefix="ORDERBUS_")
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return init_settings, env_settings, dotenv, toml

    # Where things live. The defaults are the embedded mode: one SQLite file for
    # orderbus's tables and one for kombu's SQL transport. Production uses
    # amqp://... and postgresql+psycopg://...
    config: str = Field(
        default="",
        description="a TOML file of settings (names without the prefix, in lower case); empty: "
        "`orderbus.toml` in the current folder when there is one. Read from the environment "
        "only (not from `.env` or the file itself); the environment and `.env` come first",
    )
    data_dir: str = Field(
        default="",
        description=(
            "the embedded default's folder (orderbus's SQLite file and the broker's): the same "
            "for every command, from whatever folder it is run; empty: $XDG_DATA_HOME/orderbus, "
            "else ~/.local/share/orderbus (Windows: %LOCALAPPDATA%\\orderbus)"
        ),
    )
    broker_url: str = Field(
        default="",
        description=(
            "`amqp://...` in production; empty: kombu's SQL transport on SQLite in "
            "`ORDERBUS_DATA_DIR` (the embedded default); `memory://` in tests"
        ),
    )
    database_url: str = Field(
        default="",
        description=(
            "`postgresql+psycopg://...` in production; empty: SQLite in `ORDERBUS_DATA_DIR` "
            "(the embedded default)"
        ),
    )
    namespace: str = Field(
        default="orderbus",
        pattern=r"^[a-z][a-z0-9_.-]{0,40}$",
        description="Prefix of every exchange and queue name.",
    )

    # Broker behaviour.
    quorum_queues: bool = Field(
        default=True,
        description="quorum queues on RabbitMQ (classic queues on the embedded broker)",
    )
    delivery_limit: int = Field(default=5, ge=1, description="Broker redeliveries before DLX")
    transient_retry_window: float = Field(
        default=60.0,
        ge=0,
        description="seconds a delivery is retried in place while the database is down",
    )
    prefetch: int = Field(
        default=100, ge=1, le=1000, description="unacknowledged messages per consumer"
    )
    batch_size: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="messages a component takes at once (one transaction); at most prefetch",
    )
    embedded_idle_poll: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="the embedded broker: seconds between polls of a consumer that got nothing for "
        "5 s (a publish of the same process wakes it at once; 0: poll every 50 ms always)",
    )
    batch_linger_ms: float = Field(
        default=5.0,
        ge=0,
        le=100,
        description="ms to wait for the next message of a batch (up to 4x in all); "
        "bigger batches cost less CPU per message at moderate rates",
    )
    heartbeat: int = Field(default=30, ge=0, description="AMQP heartbeat, seconds")
    connect_timeout: float = Field(
        default=5.0, description="seconds to wait for the broker when connecting"
    )
    confirm_timeout: float = Field(
        default=10.0, description="seconds to wait for the broker to confirm a publish"
    )
    ingest_confirm_timeout: float = Field(
        default=2.0,
        gt=0,
        description="seconds the ingest waits for the broker (to connect, to confirm) before it "
        "answers 503 with Retry-After; then, for a second, it answers 503 at once (a platform "
        "gives up on a webhook after about 5 s: Shopify)",
    )

    duplicate_suspicion: DuplicateSuspicion = Field(
        default_factory=DuplicateSuspicion,
        description=(
            "when a new order is held as a suspected duplicate (on by default: phone, items, "
            "total; 24 h; across channels)"
        ),
    )

    # Ingest (webhook connectors).
    ingest_host: str = Field(
        default="127.0.0.1", description="address the webhook endpoint listens on"
    )
    ingest_port: int = Field(default=8080, description="port the webhook endpoint listens on")
    channel_secrets: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            'JSON: {"channel": ["current-secret", "previous-secret"]}; each secret at least '
            "16 characters (an empty or short one is refused at start-up)"
        ),
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
    shipment_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "secrets the warehouse signs POST /shipments with (as a channel's webhook): one, "
            "or a JSON list; each at least 16 characters"
        ),
    )
    signature_tolerance: int = Field(default=300, ge=1, description="seconds")
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="largest webhook body, bytes"
    )
    rejection_spool: str = Field(
        default="",
        description="file where the ingest keeps the records of refused requests while the "
        "database is away, written to rejected_requests when it answers again (empty: "
        "orderbus-<namespace>-rejections.jsonl in the system's temporary folder)",
    )
    body_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="seconds a request's body may take to come whole; a body shorter than its "
        "Content-Length, or trickling, is answered 400 (incomplete_body) then, and recorded",
    )

    # Consumers: the existing systems' endpoints.
    warehouse_url: str | None = Field(
        default=None,
        description=(
            "the warehouse system's endpoint (required by `run consumers` unless the target "
            "has an adapter)"
        ),
    )
    finance_url: str | None = Field(
        default=None,
        description=(
            "the finance system's endpoint (required by `run consumers` unless the target has"
            " an adapter)"
        ),
    )
    notification_url: str | None = Field(
        default=None,
        description=(
            "the notification system's endpoint (required by `run consumers` unless the "
            "target has an adapter)"
        ),
    )
    targets: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='JSON: {"finance": {"adapter": "jiandaoyun", ...}} (targets/adapters/)',
    )
    writeback: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='JSON: {"channel": {"kind": "shopify", ...}}: shipments written back '
        "to the channel (targets/writeback.py)",
    )
    notify: NotifySpec | None = Field(
        default=None, description="customer notifications (targets/notify/)"
    )
    http_timeout: float = Field(default=5.0, description="seconds per delivery request")
    delivery_attempts: int = Field(
        default=4, ge=1, le=10, description="tries per delivery before dead-lettering"
    )
    retry_initial_wait: float = Field(
        default=0.5, description="first wait between delivery tries, seconds (doubling)"
    )
    retry_max_wait: float = Field(
        default=4.0, description="longest wait between delivery tries, seconds"
    )

    # Router's outbox relay.
    relay_batch: int = Field(
        default=100, ge=1, description="outbox rows the relay publishes per pass"
    )
    relay_interval: float = Field(
        default=0.2, gt=0, description="seconds between the relay's idle passes"
    )

    # Admin API.
    admin_host: str = Field(default="127.0.0.1", description="address the admin API listens on")
    admin_port: int = Field(default=8081, description="port the admin API listens on")
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="0: the metrics only at the admin API's /metrics, with a viewer key; else "
        "also on this port without a key, served by the admin component (nothing else there)",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="address the key-less metrics port listens on"
    )
    admin_key: str = Field(
        default="",
        description="the key the command line's `dead-letters` and `holds` commands act with "
        "(else their `--key`): a token of ORDERBUS_ADMIN_TOKENS or a key of `orderbus keys "
        "create`; its role and name are the API's, in the audit log too",
    )
    admin_tokens: dict[str, str] = Field(
        default_factory=dict, description='JSON: {"operator-name": "token"}'
    )
    hold_rules: HoldRulesSpec = Field(
        default_factory=HoldRulesSpec,
        description=(
            "which new orders wait for approval: `amount_above`, `second_approval_above` (by "
            "currency), `incomplete_address`, `first_order`"
        ),
    )
    alerts: AlertSettings | None = Field(
        default=None, description="alert rules and their webhook (admin_api/alerts.py)"
    )
    stock: StockSettings = Field(
        default_factory=StockSettings,
        description="stock levels from the warehouse back to each channel (POST /stock)",
    )
    tracking: TrackingSettings = Field(
        default_factory=TrackingSettings,
        description="carriers' tracking events to the door (a push, or a poll)",
    )
    lookup: LookupSettings = Field(
        default_factory=LookupSettings,
        description="the customers' own order lookup on the ingest process (/track)",
    )
    sku_mapping: SkuMappingSettings = Field(
        default_factory=SkuMappingSettings,
        description="which systems get SKUs mapped to their codes, and which channels must map",
    )
    digest: DigestSettings | None = Field(
        default=None,
        description="a daily digest of yesterday's orders to the team's chat robot (console)",
    )
    # Read by the command before the settings (infra/logs.py); here to be validated.
    raw_retention_days: float = Field(
        default=90,
        gt=0,
        description="days the platforms' own orders (the webhook bodies, 原始单) are kept",
    )
    history_retention_days: float | None = Field(
        default=None,
        ge=7,
        description="days the history rows (arrivals, outbox, inbox) are kept; older ones are "
        "deleted in batches after each day's reconciliation is kept (empty: kept for ever)",
    )
    rejected_retention_days: float = Field(
        default=30,
        gt=0,
        description="days the records of refused requests are kept, then deleted in batches",
    )
    console_session_hours: float = Field(
        default=8,
        gt=0,
        le=24 * 30,
        description="hours a console login lasts (then the key is asked for again)",
    )
    console_timezone: str = Field(
        default="Asia/Shanghai",
        description="the console's time zone until a person picks another on the start page",
    )
    console_dashboard_refresh_seconds: int = Field(
        default=10, ge=2, le=3600, description="how often the console's dashboard refreshes itself"
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "`text`, or `json`: one JSON object per line (ts, level, logger, component, "
            "message, and order_number, channel, message_id, correlation_id when the line is "
            "about a message); either way phone numbers and e-mails are masked"
        ),
    )

    @field_validator("console_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @field_validator("shipment_secrets", mode="before")
    @classmethod
    def _secret_as_list(cls, value: object) -> object:
        # ORDERBUS_SHIPMENT_SECRETS=one-secret, or a JSON list of them
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [text]
        return value

    @field_validator("shipment_secrets")
    @classmethod
    def _strong_shipment_secrets(cls, value: list[str]) -> list[str]:
        weak_secrets("ORDERBUS_SHIPMENT_SECRETS", value)
        return value

    @field_validator("channel_secrets")
    @classmethod
    def _strong_channel_secrets(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for channel, secrets in value.items():
            if not secrets:
                raise ValueError(f"ORDERBUS_CHANNEL_SECRETS[{channel!r}] names no secret")
            weak_secrets(f"ORDERBUS_CHANNEL_SECRETS[{channel!r}]", secrets)
        return value

    @field_validator("channel_secrets", mode="before")
    @classmethod
    def _secrets_as_lists(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _embedded_in_the_data_dir(self) -> Settings:
        broker, database = embedded_urls(self.data_folder)
        self.broker_url = self.broker_url or broker
        self.database_url = self.database_url or database
        return self

    @property
    def data_folder(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    @model_validator(mode="after")
    def _names_are_valid(self) -> Settings:
        # Which connectors exist is the connectors' business: the composition
        # root checks the channels against their registry (connectors/registry.py).
        for name in [*self.legacy_inbound, *self.pollers]:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,40}", name):
                raise ValueError(f"channel {name!r}: lower-case letters, digits, - and _")
        for target in self.targets:
            if target not in TARGETS:
                raise ValueError(f"ORDERBUS_TARGETS: {target!r} is not one of {', '.join(TARGETS)}")
        return self

    def rejection_spool_path(self) -> Path:
        if self.rejection_spool:
            return Path(self.rejection_spool)
        return Path(tempfile.gettempdir()) / f"orderbus-{self.namespace}-rejections.jsonl"

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
