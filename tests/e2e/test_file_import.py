"""``orderbus import`` as a user runs it: a till's GBK export with two bad
rows, then the same file again, through the router to the three systems."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Downstream
from tests.e2e.process import OrderbusProcess, orderbus, orderbus_env
from tests.e2e.test_end_to_end import wait_for
from tests.unit.test_file_import import GOOD_AND_BAD

pytestmark = pytest.mark.e2e


def test_a_gbk_export_imports_its_good_rows_once(
    amqp_url: str, postgres_url: str, namespace: str, downstream: Downstream, tmp_path: Path
) -> None:
    export = tmp_path / "门店导出.csv"
    export.write_bytes(("\r\n".join(GOOD_AND_BAD) + "\r\n").encode("gbk"))
    env = orderbus_env(
        broker_url=amqp_url,
        database_url=postgres_url,
        namespace=namespace,
        warehouse_url=downstream.sink.url("warehouse"),
        finance_url=downstream.sink.url("finance"),
        notification_url=downstream.sink.url("notification"),
    )
    first = orderbus("import", str(export), "--channel", "store-hz01", env=env)
    assert first.returncode == 1, first.stdout + first.stderr  # some rows bad, the rest imported
    assert "4 published, 2 bad rows" in first.stdout
    assert "row 4: invalid_quantity" in first.stdout and "row 7: missing_sku" in first.stdout

    proc = OrderbusProcess(env, ["router", "consumers"], tmp_path / "orderbus.log").start()
    try:
        sink = downstream.sink
        wait_for(
            lambda: len(sink.received("finance")) == 4 and len(sink.received("warehouse")) == 3,
            what="the four good orders delivered",
        )
        again = orderbus("import", str(export), "--channel", "store-hz01", env=env)
        assert again.returncode == 1 and "4 published" in again.stdout
        time.sleep(3.0)  # what a second effect would need to arrive
        for target in ("warehouse", "finance", "notification"):
            assert set(sink.effects(target).values()) == {1}, (target, sink.effects(target))
        assert sorted(r.body["external_id"] for r in sink.received("warehouse")) == [
            "POS-1001",
            "POS-1002",
            "POS-1004",
        ]
    finally:
        code, _ = proc.terminate()
    assert code == 0, proc.output()
