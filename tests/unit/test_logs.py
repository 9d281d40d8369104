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
