"""Defect 1 of the security review: masking took time quadratic in the text
(the e-mail pattern), in the log formatter, holding the handler's lock, on the
ingest's event loop; one unsigned request with a long channel name stalled
the webhook server. Masking must be linear and what is logged bounded.

The assertions are on work done (characters looked at), never on wall time.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from connectors.ingest_app import IngestDeps, create_ingest_app
from infra import masking
from infra.logs import MAX_LINE, JsonFormatter, MaskingFormatter
from infra.settings import Settings
from infra.topology import build_topology
from tests.factories import FakePublisher
from tests.security.conftest import MaskingWork

# Texts that made the old pattern try every start position to the end.
HOSTILE: dict[str, Callable[[int], str]] = {
    "local characters, no @": lambda n: "a" * n,
    "local characters, then @": lambda n: "a" * n + "@",
    "many @ with long locals": lambda n: ("b" * 70 + "@") * (n // 71),
    "a long dotted domain": lambda n: "x@" + "a." * (n // 2),
    "at signs only": lambda n: "@" * n,
    "addresses back to back": lambda n: "u@example.cn " * (n // 13),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_masking_e_mails_is_linear_in_the_text(name: str) -> None:
    make = HOSTILE[name]
    small, large = make(20_000), make(40_000)
    _, work_small = masking.mask_emails(small)
    _, work_large = masking.mask_emails(large)
    # every character is looked at a bounded number of times ...
    assert work_large <= 330 * max(len(large), 1)
    # ... so twice the text is about twice the work, not four times
    assert work_large <= 2.2 * work_small + 1_000


def test_masking_still_masks() -> None:
    text = "call 13912345678 or write to Alice.Smith+orders@mail.example.co.uk, x@y.cn."
    masked = masking.mask_text(text)
    assert "13912345678" not in masked and "139****5678" in masked
    assert "Alice.Smith" not in masked and "A***@mail.example.co.uk" in masked
    assert "x***@y.cn" in masked
    assert (
        masking.mask_text("not an address: a@b, @@@, p@q.r5") == "not an address: a@b, @@@, p@q.r5"
    )


def test_a_deeply_nested_body_is_masked_as_text_not_a_crash() -> None:
    body = "[" * 100_000 + '"13912345678"' + "]" * 100_000
    assert "13912345678" not in masking.mask_body(body)


@pytest.mark.parametrize("formatter", [MaskingFormatter("%(message)s"), JsonFormatter()])
def test_a_log_line_is_bounded_and_masked(formatter: logging.Formatter) -> None:
    record = logging.LogRecord(
        "t", logging.WARNING, __file__, 1, "x" * 1_000_000 + " 13912345678", None, None
    )
    record.msg = "13912345678 " + "a" * 1_000_000
    line = formatter.format(record)
    assert len(line) < MAX_LINE + 200
    assert "13912345678" not in line and "more characters not logged" in line


@pytest.fixture
def ingest(sqlite_engine: Engine) -> Iterator[TestClient]:
    settings = Settings(channel_secrets={"web-shop": ["a-long-enough-secret"]}, namespace="t")
    deps = IngestDeps(settings, sqlite_engine, FakePublisher(), build_topology(settings))  # type: ignore[arg-type]
    with TestClient(create_ingest_app(deps)) as client:
        yield client


def test_an_unsigned_request_with_a_long_channel_name_costs_linear_work(
    ingest: TestClient, masking_work: MaskingWork, log_lines: io.StringIO
) -> None:
    """The request that stalled ingest: 15,000 characters of channel name."""
    response = ingest.post(f"/ingest/{'a' * 15_000}", content=b"{}")
    assert response.status_code == 404
    lines = log_lines.getvalue().splitlines()
    assert lines and all(len(line) < MAX_LINE + 200 for line in lines)
    assert masking_work and masking_work.linear()
    assert sum(size for size, _ in masking_work) < 10 * (MAX_LINE + 400)


def test_a_youzan_push_with_a_huge_client_id_costs_linear_work(
    sqlite_engine: Engine, masking_work: MaskingWork
) -> None:
    """The other request that stalled ingest: Youzan's client_id, checked
    before the signature, 1 MiB long."""
    from infra.setting_specs import ChannelSpec

    settings = Settings(
        channel_secrets={"yz": ["a-long-enough-client-secret"]},
        channels={"yz": ChannelSpec(connector="youzan", app_key="the-app")},
        namespace="t",
    )
    deps = IngestDeps(settings, sqlite_engine, FakePublisher(), build_topology(settings))  # type: ignore[arg-type]
    body = json.dumps({"client_id": "a" * 1_000_000, "msg": "x", "sign": "y", "type": "trade_X"})
    with TestClient(create_ingest_app(deps)) as client:
        answer = client.post(
            "/ingest/yz", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 401
    assert masking_work.linear()
