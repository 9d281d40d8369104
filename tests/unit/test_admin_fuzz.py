"""schemathesis against the admin API's own OpenAPI schema: requests generated
from it (valid and not) never get a 5xx, and without a key nothing but the
health checks answers anything but 401."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine

from admin_api.app import create_admin_app
from admin_api.auth import KeyAuth
from admin_api.deadletters import DeadLetterRecorder
from infra.settings import Settings
from infra.topology import build_topology
from tests.factories import failure_delivery

ADMIN = {"Authorization": "Bearer fuzz-admin-token"}
HEALTH = frozenset({"/healthz", "/readyz"})


def admin_schema(engine: Engine) -> Any:
    for i in range(3):  # something to find, retry and discard
        DeadLetterRecorder(engine).handle(failure_delivery(message_id=f"m-{i}"))
    app = create_admin_app(
        engine,
        KeyAuth(engine, {"fuzz": "fuzz-admin-token"}),
        build_topology(Settings(namespace="t")),
        {"database": lambda: None},
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def each_operation(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "the admin API's operations were not all found"
    return operations


def test_no_request_gets_a_server_error(sqlite_engine: Engine) -> None:
    for operation in each_operation(admin_schema(sqlite_engine)):

        @given(case=operation.as_strategy())
        @FUZZ
        def run(case: Any) -> None:
            case.call_and_validate(headers=ADMIN, checks=[not_a_server_error])

        run()


def test_without_a_key_only_health_answers(sqlite_engine: Engine) -> None:
    for operation in each_operation(admin_schema(sqlite_engine)):

        @given(case=operation.as_strategy())
        @FUZZ
        def run(case: Any) -> None:
            response = case.call(headers={})
            if case.path in HEALTH:
                assert response.status_code in (200, 503)
            else:
                assert response.status_code == 401, (case.method, case.formatted_path)

        run()
