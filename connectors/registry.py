"""Which connector reads which channel.

Adding a channel kind is one module plus one line here. A channel with no
entry of its own uses the generic signed JSON connector.
"""

from __future__ import annotations

from connectors.base import Connector
from connectors.generic_json import GenericJsonConnector

CONNECTORS: dict[str, Connector] = {
    GenericJsonConnector.name: GenericJsonConnector(),
}


def connector_for(kind: str | None) -> Connector:
    return CONNECTORS[kind or GenericJsonConnector.name]
