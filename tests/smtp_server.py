"""A real SMTP server on 127.0.0.1 (aiosmtpd), keeping what it was sent."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Keeper:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_next = 0  # answer this many DATA commands with 451 (try later)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return "451 4.3.0 try again later"
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        # aiosmtpd logs from its own thread, also after a test's output is
        # closed; its lines are of no use here.
        quiet = logging.getLogger("mail.log")
        quiet.propagate = False
        if not quiet.handlers:
            quiet.addHandler(logging.NullHandler())
        self.keeper = _Keeper()
        self.port = free_port()
        self.controller = Controller(self.keeper, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self.keeper.lock:
            return list(self.keeper.messages)
