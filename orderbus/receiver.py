"""A stand-in for the existing systems: a small HTTP server that records every
delivery. ``orderbus demo`` uses it, and so do the tests.

Every request is kept (``requests``); ``effects(target)`` counts distinct
``Idempotency-Key`` values, i.e. what a system that honours the key would have
applied. ``respond`` decides the status code, so a test can make a system fail
and recover.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    target: str
    idempotency_key: str
    body: dict[str, Any]
    document: str = ""  # X-Orderbus-Document: an after-sale's intercept, reversal...
    after_sale: str = ""  # X-Orderbus-After-Sale: which one


# Given the target and the order, the status to answer (and optionally a JSON body).
Responder = Callable[[str, dict[str, Any]], "int | tuple[int, dict[str, Any]]"]


def always_ok(_target: str, _body: dict[str, Any]) -> int:
    return 200


class RecordingSink:
    def __init__(self, respond: Responder = always_ok, host: str = "127.0.0.1") -> None:
        self.respond = respond
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                target = self.path.strip("/").split("/")[0]
                try:
                    if len(raw) < length:
                        raise ValueError("truncated body")  # the sender died mid-request
                    body = json.loads(raw)
                except ValueError:
                    # Like a real system: a body it cannot read has no effect.
                    answer: int | tuple[int, dict[str, Any]] = (400, {"error": "unreadable body"})
                    body = {}
                else:
                    answer = sink.respond(target, body)
                status, reply = (
                    answer if isinstance(answer, tuple) else (answer, {"status": answer})
                )
                if status < 300:
                    with sink._lock:
                        sink.requests.append(
                            Received(
                                target,
                                self.headers.get("Idempotency-Key", ""),
                                body,
                                self.headers.get("X-Orderbus-Document", ""),
                                self.headers.get("X-Orderbus-After-Sale", ""),
                            )
                        )
                payload = json.dumps(reply, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender is gone; what it sent has been recorded

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, target: str) -> str:
        return f"{self.base_url}/{target}"

    def start(self) -> RecordingSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, target: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.target == target]

    def effects(self, target: str) -> dict[str, int]:
        """How many successful deliveries each idempotency key got."""
        counts: dict[str, int] = {}
        for r in self.received(target):
            counts[r.idempotency_key] = counts.get(r.idempotency_key, 0) + 1
        return counts
