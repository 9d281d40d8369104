"""``python -m bench.idle``: what ``orderbus run`` costs doing nothing on the
embedded default (SQLite and kombu's SQL transport), and how soon an order is
delivered after a quiet spell, with the consumers polling every 50 ms always
(``ORDERBUS_EMBEDDED_IDLE_POLL=0``) and as by default (an idle consumer polls
every 2 s and a publish of the process wakes it at once).

Each mode: a fresh data folder, ``orderbus run`` (every component, one
process) with the benchmark's sink as the three systems; ``--settle`` seconds,
then the process's CPU over ``--seconds`` as % of one core (from /proc, by
thread); then ``--orders`` signed webhooks, each after 8 s of quiet, and the
time from sending each to the warehouse's receiving it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.pipeline import CLOCK_TICKS, _free_port, _thread_ticks, _wait_for_port
from bench.webhooks import SECRET
from connectors.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from infra.settings import TARGETS

MODES = (("polling every 50 ms", "0"), ("default: idle polling, woken by publishes", None))


def _order(n: int) -> bytes:
    return json.dumps(
        {
            "channel": "web-shop", "shop": "main", "external_id": f"IDLE-{n}", "status": "paid",
            "version": 1, "currency": "CNY",
            "customer": {"name": "李四", "phone": "13912345678"},
            "shipping_address": {"country": "CN", "province": "广东省", "city": "深圳市",
                                 "district": "南山区", "street": "科技园南路 1 号"},
            "items": [{"sku": "SKU-A", "name": "A", "quantity": 1, "unit_price": "10.00"}],
            "shipping_fee": "0.00", "total": "10.00",
            "placed_at": "2026-11-11T00:00:01+08:00",
        },
        ensure_ascii=False,
    ).encode("utf-8")  # fmt: skip


def _delivered(sink_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/counts", timeout=5) as answer:
        return int(json.loads(answer.read()).get("/warehouse", 0))


def _post(port: int, body: bytes) -> None:
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(SECRET, timestamp, body),
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/ingest/web-shop", body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 202:
            raise RuntimeError(f"the ingest answered {answer.status}")
    finally:
        conn.close()


def run_mode(
    idle_poll: str | None, settle: float, seconds: float, orders: int
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="orderbus-idle-") as folder:
        sink_port, ingest_port, admin_port = _free_port(), _free_port(), _free_port()
        sink = subprocess.Popen([sys.executable, "-m", "bench.sink", str(sink_port)])
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBUS_")}
        env.update(
            ORDERBUS_DATA_DIR=folder,
            ORDERBUS_INGEST_PORT=str(ingest_port),
            ORDERBUS_ADMIN_PORT=str(admin_port),
            ORDERBUS_CHANNEL_SECRETS=json.dumps({"web-shop": [SECRET]}),
            **{f"ORDERBUS_{t.upper()}_URL": f"http://127.0.0.1:{sink_port}/{t}" for t in TARGETS},
        )
        if idle_poll is not None:
            env["ORDERBUS_EMBEDDED_IDLE_POLL"] = idle_poll
        log = open(Path(folder) / "orderbus.log", "w")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "orderbus.cli", "--log-level", "WARNING", "run"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_for_port(ingest_port)
            _wait_for_port(sink_port)
            time.sleep(settle)
            before = _thread_ticks(daemon.pid)
            time.sleep(seconds)
            after = _thread_ticks(daemon.pid)
            spent = {k: (after.get(k, 0) - before.get(k, 0)) / CLOCK_TICKS for k in after}
            took: list[float] = []
            for n in range(orders):
                time.sleep(8)  # quiet: every consumer has gone idle
                count = _delivered(sink_port)
                started = time.perf_counter()
                _post(ingest_port, _order(n))
                while _delivered(sink_port) == count:
                    if time.perf_counter() - started > 60:
                        raise RuntimeError("an order was not delivered within 60 s")
                    time.sleep(0.005)
                took.append((time.perf_counter() - started) * 1000)
        finally:
            daemon.terminate()
            daemon.wait(30)
            sink.terminate()
            sink.wait(10)
            log.close()
    busiest = sorted(spent.items(), key=lambda kv: -kv[1])[:6]
    return {
        "idle_cpu_percent_of_a_core": round(100 * sum(spent.values()) / seconds, 2),
        "by_thread_percent": {k: round(100 * v / seconds, 2) for k, v in busiest},
        "delivery_after_quiet_ms": {
            "p50": round(statistics.median(took), 1) if took else None,
            "max": round(max(took), 1) if took else None,
            "each": [round(t, 1) for t in took],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--orders", type=int, default=10)
    args = parser.parse_args(argv)
    for name, idle_poll in MODES:
        figures = run_mode(idle_poll, args.settle, args.seconds, args.orders)
        print(f"{name}: {json.dumps(figures, ensure_ascii=False)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
