"""Which connector reads which channel.

Adding a platform is one module, its fixtures (``connectors/fixtures/<name>/``)
and one line here; the contract tests find it through :data:`CONNECTORS`. A
channel whose configuration names no connector uses the generic signed JSON one.
"""

from __future__ import annotations

from connectors.base import WebhookConnector
from connectors.douyin import DouyinConnector
from connectors.generic_json import GenericJsonConnector
from connectors.shopify import ShopifyConnector
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


def connector_for(kind: str | None) -> WebhookConnector:
    return CONNECTORS[kind or GenericJsonConnector.name]
