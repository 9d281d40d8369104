"""docker-compose.yml and the README stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_every_component_with_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"rabbitmq", "postgres", "migrate", "router", "consumers", "ingest", "admin"} <= set(
        services
    )
    assert "management" in services["rabbitmq"]["image"]
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["migrate"] == ["db", "upgrade"]
    for component in ("router", "consumers", "ingest", "admin"):
        assert commands[component] == ["run", component]
        env = services[component]["environment"]
        for key in env:
            field = key.removeprefix("ORDERBUS_").lower()
            assert key.startswith("ORDERBUS_") and field in Settings.model_fields, key
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # parsed as orderbus parses its environment
        assert settings.broker_url.startswith("amqp://") and not settings.embedded_broker


def test_the_docs_name_only_real_settings() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    named = {
        n for page in pages for n in re.findall(r"ORDERBUS_([A-Z_]+)", page.read_text("utf-8"))
    }
    not_settings = {
        "REQUIRE_SERVICES",
        "TEST_AMQP_URL",
        "TEST_DATABASE_URL",
        "FAULTS",
        "FAULT_ORDERS",
        "FAULT_REPORT",
        "CRASH_POINTS",
    }
    unknown = {n for n in named - not_settings if n.lower() not in Settings.model_fields}
    assert unknown == set()


def test_the_image_copies_every_product_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert copied == packages
