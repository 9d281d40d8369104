"""The contract every webhook connector keeps, run over every registered
connector and every fixture in ``connectors/fixtures/<connector>/``.

A fixture is the platform's documented request (its provenance in ``source``):
``headers`` (besides the signature, which the test computes with the
connector's own ``sign``), ``body`` (JSON) or ``body_text``, ``expect``:
what the canonical order must carry, and for a platform that signs only part
of the body (Youzan signs ``msg``), ``forge``: a replacement inside that
part; for a platform whose push only names the order (Douyin), ``detail``:
its order API's answer; ``expect.change``: the request is an update without
the order's lines, read as a status change; ``expect.after_sale``: a refund
of an order the push does not carry. A new connector is picked up by
itself once it is registered in ``connectors.registry``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from canonical.order import CanonicalOrder, json_schema
from canonical.validation import violations
from connectors.base import ChannelConfig, ConnectorError, WebhookRequest
from connectors.registry import CONNECTORS

SECRET = "contract-test-secret"
NOW = 1_764_000_000.0
FIXTURES = Path(str(resources.files("connectors") / "fixtures"))


def fixture_paths(name: str) -> list[Path]:
    return sorted((FIXTURES / name).glob("*.json"))


CASES = [
    pytest.param(name, path, id=f"{name}/{path.stem}")
    for name in sorted(CONNECTORS)
    for path in fixture_paths(name)
]


def load(path: Path) -> tuple[dict[str, str], bytes, dict[str, Any]]:
    fixture = json.loads(path.read_text("utf-8"))
    assert fixture.get("source"), f"{path.name}: say where the fixture comes from"
    if "body_text" in fixture:
        body = fixture["body_text"].encode("utf-8")
    else:
        body = json.dumps(fixture["body"], ensure_ascii=False).encode("utf-8")
    return fixture.get("headers", {}), body, fixture["expect"]


def request_for(name: str, path: Path, secret: str = SECRET) -> tuple[WebhookRequest, bytes]:
    headers, body, _ = load(path)
    signature, body = CONNECTORS[name].sign(body, secret, NOW)
    signed = {**signature, **headers}
    return WebhookRequest({k.lower(): v for k, v in signed.items()}, body, NOW), body


def channel(name: str) -> ChannelConfig:
    return ChannelConfig(
        name="contract-" + name.replace("_", "-"),
        connector=name,
        secrets=(SECRET,),
        app_key=getattr(CONNECTORS[name], "example_app_key", None),
    )


def test_every_connector_has_fixtures() -> None:
    for name in CONNECTORS:
        assert fixture_paths(name), f"connector {name!r} has no fixtures in connectors/fixtures"


@pytest.mark.parametrize(("name", "path"), CASES)
def test_fixture_reads_as_the_platform_documents_it(name: str, path: Path) -> None:
    connector = CONNECTORS[name]
    request, _ = request_for(name, path)
    config = channel(name)
    connector.authenticate(request, config, 300)
    result = connector.read(request, config)
    _, _, expect = load(path)
    if expect.get("after_sale"):
        # An after-sale of an order the push does not carry: added to the
        # order orderbus has by the ingest.
        assert not result.arrivals and not result.references
        [refund] = result.after_sales
        sale = refund.after_sale
        assert (refund.external_id, sale.id) == (expect["external_id"], expect["id"])
        assert (sale.kind.value, sale.status.value) == (expect["kind"], expect["status"])
        assert sale.amount == Decimal(expect["amount"])
        assert [[x.sku, x.quantity, str(x.amount)] for x in sale.lines] == expect["lines"]
        return
    if expect.get("change"):
        # An update without the order's lines: a status change of the order
        # orderbus has (the ingest applies it), never a refusal.
        assert not result.arrivals and not result.references
        [change] = result.changes
        assert (change.external_id, change.status) == (expect["external_id"], expect["status"])
        assert change.amounts["total"] == Decimal(expect["total"])
        return
    if result.references:
        # The push names the order; the fixture's "detail" is the platform's
        # order API answer for it, read by the connector's read_detail.
        assert not result.arrivals
        assert len(result.references) == expect.get("count", 1)
        detail = json.loads(path.read_text("utf-8"))["detail"]
        order = connector.read_detail(detail, result.references[0], config)  # type: ignore[attr-defined]
    else:
        assert len(result.arrivals) == expect.get("count", 1)
        order = result.arrivals[0].order

    # The canonical JSON Schema accepts what the connector made.
    jsonschema.validate(json.loads(order.to_wire()), json_schema())
    assert CanonicalOrder.from_wire(order.to_wire()) == order

    assert order.channel == config.name
    assert order.external_id == expect["external_id"]
    assert order.currency == expect["currency"]
    assert order.total == Decimal(expect["total"])
    if "tax" in expect:
        assert order.tax == Decimal(expect["tax"])
    assert [[item.sku, item.quantity] for item in order.items] == expect["items"]
    if "phone" in expect:
        assert order.customer.phone == expect["phone"]
    if "email" in expect:
        assert order.customer.email == expect["email"]
    assert order.shipping_address.city == expect["city"]
    assert order.status.value == expect["status"]
    if "after_sales" in expect:  # refunds and returns read with the order
        assert [
            [s.id, s.kind.value, s.status.value, str(s.amount),
             [[x.sku, x.quantity, str(x.amount)] for x in s.lines]]
            for s in order.after_sales
        ] == expect["after_sales"]  # fmt: skip
    if "shop" in expect:
        assert order.shop == expect["shop"]
    assert order.placed_at.tzinfo is not None
    assert order.updated_at is None or order.updated_at.tzinfo is not None
    if expect.get("valid", True):
        # It would pass the router's business validation: it flows.
        assert violations(order) == []


@pytest.mark.parametrize(("name", "path"), CASES)
def test_a_forged_body_is_refused(name: str, path: Path) -> None:
    request, body = request_for(name, path)
    fixture = json.loads(path.read_text("utf-8"))
    if "forge" in fixture:  # the platform signs part of the body: change that part
        old, new = (s.encode("utf-8") for s in fixture["forge"])
        assert old in body, f"{path.name}: forge: {old!r} is not in the body"
        forged_body = body.replace(old, new, 1)
    else:
        forged_body = body + b" "  # one byte more, still JSON
    forged = WebhookRequest(request.headers, forged_body, NOW)
    with pytest.raises(ConnectorError) as caught:
        CONNECTORS[name].authenticate(forged, channel(name), 300)
    assert caught.value.status == 401


@pytest.mark.parametrize(("name", "path"), CASES)
def test_a_request_signed_with_another_secret_is_refused(name: str, path: Path) -> None:
    request, _ = request_for(name, path, secret="someone-else")
    with pytest.raises(ConnectorError) as caught:
        CONNECTORS[name].authenticate(request, channel(name), 300)
    assert caught.value.status == 401
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(("name", "path"), CASES)
def test_an_unsigned_request_is_refused(name: str, path: Path) -> None:
    headers, body, _ = load(path)
    unsigned = {k.lower(): v for k, v in {"Content-Type": "application/json", **headers}.items()}
    with pytest.raises(ConnectorError) as caught:
        CONNECTORS[name].authenticate(WebhookRequest(unsigned, body, NOW), channel(name), 300)
    assert caught.value.status == 401
    assert caught.value.reason == "missing_signature"


@pytest.mark.parametrize(("name", "path"), CASES)
def test_a_rotated_secret_is_still_accepted(name: str, path: Path) -> None:
    request, _ = request_for(name, path, secret="previous-secret")
    config = replace(channel(name), secrets=("new-secret", "previous-secret"))
    CONNECTORS[name].authenticate(request, config, 300)
