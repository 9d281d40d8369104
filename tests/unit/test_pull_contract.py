"""The contract every pull connector keeps, over its fixtures: what it reads
from the platform's documented answer validates against the canonical JSON
Schema and the router's validation, with timezone-aware times; a fixture with
``reads_as`` (a shape the platform documents, e.g. an order without its buyer's
data) reads as it says, refusals included.

Webhook connectors have theirs in test_connector_contract.py. A pull
connector registered in ``connectors.registry.PULL_CONNECTORS`` is picked up
by itself; every folder in ``connectors/fixtures`` must belong to a registered
connector of either kind.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from canonical.order import CanonicalOrder, json_schema
from canonical.validation import violations
from connectors.registry import CONNECTORS, PULL_CONNECTORS

FIXTURES = Path(str(resources.files("connectors") / "fixtures"))


CASES = [
    pytest.param(name, path, id=f"{name}/{path.stem}")
    for name in sorted(PULL_CONNECTORS)
    for path in sorted((FIXTURES / name).glob("*.json"))
]


def test_every_fixture_folder_is_checked_and_every_connector_has_fixtures() -> None:
    folders = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert folders == set(CONNECTORS) | set(PULL_CONNECTORS)
    for name in PULL_CONNECTORS:
        assert any((FIXTURES / name).glob("*.json")), f"pull connector {name!r} has no fixtures"


@pytest.mark.parametrize(("name", "path"), CASES)
def test_what_a_pull_connector_reads_is_a_valid_canonical_order(name: str, path: Path) -> None:
    fixture = json.loads(path.read_text("utf-8"))
    assert fixture.get("source"), f"{path.name}: say where the fixture comes from"
    orders = PULL_CONNECTORS[name].fixture_orders(fixture)
    schema = json_schema()
    for order in orders:
        jsonschema.validate(json.loads(order.to_wire()), schema)
        assert CanonicalOrder.from_wire(order.to_wire()) == order
        assert order.placed_at.tzinfo is not None
        assert order.updated_at is None or order.updated_at.tzinfo is not None
        assert order.computed_total() == order.total
    if "reads_as" in fixture:  # a shape a platform documents, and what it must read as
        _expected(orders, fixture["reads_as"])
        return
    if name == "amazon-sp-api":
        # Amazon's published examples pair a pending order with another example's
        # items, whose unit prices come out with more decimals than USD has; the
        # router would refuse it, and says why. test_amazon_sp.py checks that a
        # consistent unshipped order passes.
        assert {v.code for o in orders for v in violations(o)} <= {"too_many_decimals"}
        return
    for order in orders:
        assert violations(order) == [], order.external_id


def _expected(orders: list[CanonicalOrder], expect: dict[str, Any]) -> None:
    """Each order as the fixture's ``reads_as`` says: its country, its phone
    as the platform wrote it, and exactly the router's refusals it names."""
    assert orders
    for order in orders:
        assert order.shipping_address.country == expect["country"], order.external_id
        if "phone" in expect:
            assert order.customer.phone == expect["phone"]
        assert sorted({v.code for v in violations(order)}) == expect["violations"]
