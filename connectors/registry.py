"""Which connector reads which channel.

Adding a platform is one module, its fixtures (``connectors/fixtures/<name>/``)
and one line here: in :data:`CONNECTORS` for a platform that pushes (webhooks),
in :data:`PULL_CONNECTORS` for one orderbus asks (``ORDERBUS_POLLERS``). The
contract tests find it there by themselves. A channel whose configuration
names no connector uses the generic signed JSON one.
"""

from __future__ import annotations

from connectors.amazon_sp import AmazonPull
from connectors.base import WebhookConnector
from connectors.douyin import DouyinConnector
from connectors.generic_json import GenericJsonConnector
from connectors.jd import JdPull
from connectors.pinduoduo import PinduoduoPull
from connectors.pull import PullConnector
from connectors.shopify import ShopifyConnector
from connectors.taobao import TaobaoPull
from connectors.woocommerce import WooCommerceConnector
from connectors.youzan import YouzanConnector

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
