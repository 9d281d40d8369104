from __future__ import annotations

import subprocess
import sys

import pytest

from infra import crashpoints


def test_inert_without_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(crashpoints.ENV, raising=False)
    crashpoints._points.cache_clear()
    crashpoints.crash_point("router.after_commit")  # returns: nothing configured
    assert crashpoints._points() == {}


def test_parses_points_and_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(crashpoints.ENV, "router.after_commit:0.5, relay.after_publish")
    crashpoints._points.cache_clear()
    try:
        assert crashpoints._points() == {"router.after_commit": 0.5, "relay.after_publish": 1.0}
    finally:
        crashpoints._points.cache_clear()


def test_a_certain_crash_point_exits_like_kill_9() -> None:
    code = "from infra.crashpoints import crash_point; crash_point('x'); print('survived')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"ORDERBUS_CRASH_POINTS": "x:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 137 and "survived" not in result.stdout
