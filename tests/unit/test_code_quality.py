"""The code stays ruff- and mypy-clean (strict), and only one module imports kombu."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("canonical", "connectors", "router", "targets", "admin_api", "infra", "orderbus")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    pytest.importorskip("ruff")
    result = run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy")
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_bus_imports_kombu_or_pickle() -> None:
    kombu_importers, amqp_importers = [], []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^\s*(from|import)\s+kombu\b", text, re.MULTILINE):
                kombu_importers.append(path.relative_to(ROOT).as_posix())
            if re.search(r"^\s*(from|import)\s+amqp\b", text, re.MULTILINE):
                amqp_importers.append(path.relative_to(ROOT).as_posix())
            assert not re.search(r"^\s*(from|import)\s+pickle\b", text, re.MULTILINE), path
    assert sorted(kombu_importers) == [
        "infra/bus/__init__.py",
        "infra/bus/consumer.py",
        "infra/bus/publisher.py",
        "infra/bus/transport.py",
    ]
    # kombu's driver: its TCP transport, a message's properties, a delivery's frames
    assert sorted(amqp_importers) == [
        "infra/bus/deliveries.py",
        "infra/bus/properties.py",
        "infra/bus/transport.py",
    ]
