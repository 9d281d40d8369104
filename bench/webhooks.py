"""The channels' side when orders arrive as signed HTTP webhooks: a few
threads, each with one keep-alive connection, post the workload's orders to
orderbus's ingest (``POST /ingest/<channel>``, signed as the generic channel
is), at a pace or flat out, and keep each 202's time.

A 503 (the broker could not confirm) is sent again after a short pause, as a
platform would; each is counted.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from connectors.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SECRET = "bench-webhook-secret-0123456789abcdef"  # noqa: S105 - the benchmark's own channel


@dataclass
class WebhookSender:
    host: str
    port: int
    orders: Sequence[tuple[str, bytes]]  # (channel, body)
    rate: float | None = None  # requests/s; None: flat out
    threads: int = 8
    answer_ms: list[float] = field(default_factory=list)  # each 202, in ms
    retried: int = 0
    error: BaseException | None = None

    def run(self) -> WebhookSender:
        started = time.perf_counter()
        lock = threading.Lock()
        cursor = iter(range(len(self.orders)))

        def worker() -> None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                while True:
                    with lock:
                        n = next(cursor, None)
                    if n is None:
                        return
                    if self.rate:
                        time.sleep(max(0.0, started + n / self.rate - time.perf_counter()))
                    took = self._post(conn, *self.orders[n])
                    with lock:
                        self.answer_ms.append(took)
            except BaseException as exc:
                self.error = exc
            finally:
                conn.close()

        workers = [threading.Thread(target=worker, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if self.error is not None:
            raise self.error
        return self

    def _post(self, conn: http.client.HTTPConnection, channel: str, body: bytes) -> float:
        for _ in range(100):
            headers = signed_headers(SECRET, body)
            began = time.perf_counter()
            conn.request("POST", f"/ingest/{channel}", body, headers)
            answer = conn.getresponse()
            answer.read()
            took = (time.perf_counter() - began) * 1000
            if answer.status == 202:
                return took
            if answer.status != 503:
                raise RuntimeError(f"ingest answered {answer.status} for a {channel} order")
            self.retried += 1
            time.sleep(0.2)
        raise RuntimeError("the ingest kept answering 503")


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """A generic channel's signed request's headers, stamped now."""
    stamp = int(time.time())
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, stamp, body),
    }
