"""Which connector reads which channel.

Adding a platform is one module, its fixtures (``connectors/fixtures/<name>/``)
and one line here: in :data:`CONNECTORS` for a platform that pushes (webhooks),
in :data:`PULL_CONNECTORS` for one orderbus asks (``ORDERBUS_POLLERS``). The
contract tests find it there by themselves. A channel whose configuration
names no connector uses the generic signed JSON one.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.amazon_sp import AmazonPull
from connectors.base import ChannelConfig, WebhookConnector
from connectors.douyin import DouyinConnector, douyin_orders
from connectors.generic_json import GenericJsonConnector
from connectors.jd import JdPull
from connectors.order_fetch import OrderSource
from connectors.pinduoduo import PinduoduoPull
from connectors.pull import PullConnector
from connectors.shopify import ShopifyConnector
from connectors.taobao import TaobaoPull
from connectors.woocommerce import WooCommerceConnector
from connectors.youzan import YouzanConnector, youzan_orders
from infra.setting_specs import PollerSpec
from infra.settings import Settings

CONNECTORS: dict[str, WebhookConnector] = {
    connector.name: connector
    for connector in (
        GenericJsonConnector(),
        ShopifyConnector(),
        WooCommerceConnector(),
        DouyinConnector(),
        YouzanConnector(),
    )
}


PULL_CONNECTORS: dict[str, PullConnector] = {
    connector.name: connector
    for connector in (
        AmazonPull(),
        JdPull(),
        PinduoduoPull(),
        TaobaoPull(),
    )
}


def connector_for(kind: str | None) -> WebhookConnector:
    return CONNECTORS[kind or GenericJsonConnector.name]


# Connectors whose push names orders without carrying them: the ingest queues
# the references and fetches each order from the platform's API.
FETCHING_CONNECTORS = frozenset({"douyin"})


def pull_account(spec: PollerSpec) -> Any:
    """A pull connector's account settings, validated by its own model."""
    pull = PULL_CONNECTORS[spec.connector]
    return pull.account.model_validate((spec.model_extra or {}).get(pull.settings_key))


def check_poller(spec: PollerSpec) -> None:
    """ValueError, naming the setting, when a poller names no known connector or
    its account settings are wrong (a mapped poller checks itself)."""
    if spec.connector == "mapping":
        return
    pull = PULL_CONNECTORS.get(spec.connector)
    if pull is None:
        known = ", ".join(["mapping", *sorted(PULL_CONNECTORS)])
        raise ValueError(f"no pull connector {spec.connector!r} (known: {known})")
    extra = set(spec.model_extra or {})
    if pull.settings_key not in extra:
        raise ValueError(f"the {pull.name} poller needs its {pull.settings_key} settings")
    if extra - {pull.settings_key}:
        raise ValueError(f"unknown settings {', '.join(sorted(extra - {pull.settings_key}))}")
    pull_account(spec)  # raises, naming the field, if the account settings are wrong


def check_settings(settings: Settings) -> None:
    """ValueError naming the channel when its connector is unknown or its
    connector's own settings are wrong; the composition root calls it."""
    for name, spec in settings.channels.items():
        if spec.connector not in CONNECTORS:
            raise ValueError(
                f"channel {name!r}: no connector {spec.connector!r} "
                f"(known: {', '.join(sorted(CONNECTORS))})"
            )
    for name, poller in settings.pollers.items():
        try:
            check_poller(poller)
        except ValueError as exc:
            raise ValueError(f"ORDERBUS_POLLERS[{name!r}]: {exc}") from exc


def fetching_channels(settings: Settings) -> list[str]:
    """Channels whose orders are fetched from the platform's API after a push
    (Douyin, Youzan with API settings) or a message (Taobao TMC) named them."""
    pushed = [
        n
        for n, spec in settings.channels.items()
        if spec.connector in FETCHING_CONNECTORS or spec.youzan is not None
    ]
    pulled = [
        n
        for n, spec in settings.pollers.items()
        if spec.connector in PULL_CONNECTORS and PULL_CONNECTORS[spec.connector].fetches
    ]
    return sorted({*pushed, *pulled})


def channel_config_of(settings: Settings, channel: str) -> ChannelConfig:
    spec = settings.channels.get(channel)
    return ChannelConfig(
        name=channel,
        connector=spec.connector if spec else "generic-json",
        secrets=tuple(settings.channel_secrets.get(channel, ())),
        shop=spec.shop if spec else None,
        app_key=spec.app_key if spec else None,
        fetch=channel in fetching_channels(settings),
    )


def order_source_for(settings: Settings, channel: str, client: httpx.Client) -> OrderSource:
    """Where the fetch worker of ``channel`` gets the orders its messages name:
    the pull connector's API (Taobao), or the platform's API client of a push
    that only names its orders (Douyin; Youzan with API settings)."""
    poll = settings.pollers.get(channel)
    if poll is not None and poll.connector != "mapping":
        return PULL_CONNECTORS[poll.connector].order_source(pull_account(poll), channel, client)
    spec = settings.channels.get(channel)
    config = channel_config_of(settings, channel)
    if spec is not None and spec.youzan is not None:
        return youzan_orders(config, spec.youzan, client)
    return douyin_orders(config, spec.douyin if spec else None, client)
