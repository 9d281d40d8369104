"""Log lines, as text or JSON, never carry a phone number or an email."""

from __future__ import annotations

import json
import logging

from infra.logs import JsonFormatter, MaskingFormatter


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("router", logging.WARNING, __file__, 1, message, args, None)


def test_json_lines_are_structured_and_masked() -> None:
    line = JsonFormatter().format(
        record("dead letter: customer %s (%s) unknown", "13912345678", "li.si@example.com")
    )
    data = json.loads(line)
    assert (data["level"], data["logger"]) == ("WARNING", "router")
    assert data["message"] == "dead letter: customer 139****5678 (l***@example.com) unknown"


def test_text_lines_are_masked_too() -> None:
    plain = MaskingFormatter("%(message)s").format(
        record("call %s or +8613912345678", "13912345678")
    )
    assert plain == "call 139****5678 or 139****5678"


def test_json_lines_name_the_order_and_message_they_are_about(sqlite_engine: object) -> None:
    """Routed and delivered: the router's and the consumer's JSON lines carry
    the order number, channel, message id and correlation id as fields, and
    the component (issue 20: they were buried in the text)."""
    import io

    from tests.unit.test_admin_access import route_and_deliver

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        number = route_and_deliver(sqlite_engine)  # type: ignore[arg-type]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    routed = next(x for x in lines if x["logger"] == "router.batch")
    delivered = next(
        x for x in lines if "delivered" in x["message"] and x["logger"].startswith("targets")
    )
    for line in (routed, delivered):
        assert line["order_number"] == number
        assert line["channel"] == "web-shop"
        assert line["message_id"] and line["correlation_id"] and line["component"]
    assert routed["message_id"] == "web-shop.look-1"
    assert delivered["message_id"] == f"{number}-v1-warehouse"
