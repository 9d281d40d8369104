"""Logging: one line per record, as text or as JSON (``ORDERBUS_LOG_FORMAT``),
with phone numbers and emails masked in every line either way."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from canonical.envelope import Envelope
from infra.masking import mask_text

TEXT = "%(asctime)s %(levelname)-7s %(threadName)-12s %(name)s: %(message)s"
# What one line may say at most: text from outside (a channel name in a URL, a
# body in an error) can be any length, and a line is written holding the
# handler's lock. An address cut at the edge is masked before the cut.
MAX_LINE = 4000
MASK_MARGIN = 400


def bounded(text: str) -> str:
    """``text`` masked and cut to :data:`MAX_LINE` characters, saying how much
    was left out; the work is bounded whatever the length of ``text``."""
    if len(text) <= MAX_LINE:
        return mask_text(text)
    masked = mask_text(text[: MAX_LINE + MASK_MARGIN])[:MAX_LINE]
    return f"{masked}... ({len(text) - MAX_LINE} more characters not logged)"


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return bounded(super().format(record))


# What a line may say about the message it is about, as fields of its own in
# JSON (``about(...)``), so logs can be searched by order, not only read.
FIELDS = ("order_number", "channel", "message_id", "correlation_id")


def about(
    *,
    order_number: str | None = None,
    channel: str | None = None,
    message_id: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, str]:
    """``extra=`` for a log call: the order and message a line is about."""
    given = {
        "order_number": order_number,
        "channel": channel,
        "message_id": message_id,
        "correlation_id": correlation_id,
    }
    return {k: str(v)[:200] for k, v in given.items() if v}


def about_envelope(envelope: Envelope, **given: str | None) -> dict[str, str]:
    """``about(...)`` from a message's envelope (``given`` overrides a field)."""
    fields: dict[str, str | None] = {
        "order_number": envelope.order_number,
        "channel": envelope.channel,
        "message_id": envelope.message_id,
        "correlation_id": envelope.correlation_id,
    }
    return about(**(fields | given))


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "component", "message"[, "order_number",
    "channel", "message_id", "correlation_id"][, "exception"]}`` per line
    (``component``: the thread's component, ``router``, ``warehouse``…)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "component": record.threadName,
            "message": bounded(record.getMessage()),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value:
                line[name] = bounded(str(value))
        if record.exc_info:
            line["exception"] = bounded(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else MaskingFormatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # a line per migration applied at each start: shown when asked (DEBUG)
    quiet = root.level > logging.DEBUG
    logging.getLogger("alembic").setLevel(logging.WARNING if quiet else logging.NOTSET)
