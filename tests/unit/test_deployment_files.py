"""docker-compose.yml and the README stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def example_env() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


def substituted(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:?message} and ${VAR}, from .env.example; a missing one fails."""
    return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: env[m.group(1)], value)


def test_compose_runs_every_component_with_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    example = example_env()
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
            monkeypatch.setenv(key, substituted(value, example))
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
        "SOAK_SECONDS",  # the fault suite's load held (T22)
        "SOAK_RATE",
        "CRASH_POINTS",
        "TEST_CHROMIUM",
    }
    unknown = {n for n in named - not_settings if n.lower() not in Settings.model_fields}
    assert unknown == set()


def test_the_image_copies_every_product_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert copied == packages


def test_compose_publishes_only_what_people_must_reach_and_has_no_default_password() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    services = yaml.safe_load(text)["services"]
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert published == {
        "rabbitmq": ["127.0.0.1:15672:15672"],
        "ingest": ["8080:8080"],
        "admin": ["127.0.0.1:8081:8081"],
    }
    assert "guest" not in text and "POSTGRES_PASSWORD: orderbus" not in text
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${")
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_every_orderbus_service_has_a_health_check_orderbus_can_answer() -> None:
    """The router and consumers by `orderbus status <component>` (a real
    subcommand), the HTTP ones by a path their app serves."""
    from orderbus.cli import build_parser
    from orderbus.runner import COMPONENTS

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    parser = build_parser()
    for name in COMPONENTS:
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", name
        if test[1] == "orderbus":
            args = parser.parse_args(test[2:])
            assert args.command == "status" and args.components == [name]
        else:
            path = "/healthz" if name == "ingest" else "/readyz"
            assert f"127.0.0.1:{8080 if name == 'ingest' else 8081}{path}" in test[-1], name


def test_the_systemd_unit_runs_each_component_with_a_real_command() -> None:
    from orderbus.cli import build_parser
    from orderbus.runner import COMPONENTS

    unit = (ROOT / "deploy" / "orderbus@.service").read_text(encoding="utf-8")
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    program, *args = start.removeprefix("ExecStart=").split()
    assert program.endswith("/bin/orderbus")
    for name in COMPONENTS:
        parsed = build_parser().parse_args([a.replace("%i", name) for a in args])
        assert (parsed.command, parsed.components) == ("run", [name])
    assert "KillSignal=SIGTERM" in unit and "ORDERBUS_CONFIG=" in unit


def test_the_grafana_dashboard_asks_only_for_metrics_orderbus_exports() -> None:
    import json
    import re

    dashboard = json.loads((ROOT / "docs/operator/grafana-dashboard.json").read_text("utf-8"))
    source = (ROOT / "admin_api" / "metrics.py").read_text(encoding="utf-8")
    exported = set(re.findall(r'"(orderbus_[a-z_]+)"', source))
    asked = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"orderbus_[a-z_]+", target["expr"])
    }
    assert asked and asked <= exported, asked - exported


def test_the_production_recipe_lists_every_node_and_both_database_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/production/stack.yml: three RabbitMQ nodes clustered by name,
    PostgreSQL's primary waiting for its standby, and every orderbus process
    given all three nodes (its own first) and both database servers; only
    the ingest is published."""
    recipe = ROOT / "deploy" / "production"
    stack = yaml.safe_load((recipe / "stack.yml").read_text(encoding="utf-8"))
    services = stack["services"]
    conf = (recipe / "rabbitmq.conf").read_text(encoding="utf-8")
    assert all(f"rabbit@mq{n}" in conf for n in (1, 2, 3))
    assert "synchronous_standby_names=standby1" in services["db1"]["command"]
    assert "application_name=standby1" in (recipe / "postgres-standby-start.sh").read_text()
    lines = (recipe / ".env.example").read_text(encoding="utf-8").splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    preferred = set()
    for name, service in services.items():
        if "ORDERBUS_QUORUM_QUEUES" not in service.get("environment", {}):
            continue
        env = {k: substituted(str(v), example) for k, v in service["environment"].items()}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.quorum_queues, name
        nodes = re.findall(r"@(mq\d):5672", settings.broker_url)
        if name != "migrate":
            assert sorted(nodes) == ["mq1", "mq2", "mq3"], name
            preferred.add((service["command"][1], nodes[0]))
        assert "host=db1:5432&host=db2:5432" in settings.database_url
        assert "target_session_attrs=read-write" in settings.database_url
        published = service.get("ports", [])
        assert not published or (name.startswith("ingest") and published[0]["target"] == 8080)
    # the two of each component prefer different nodes
    for component in ("ingest", "router", "consumers"):
        assert len({node for c, node in preferred if c == component}) == 2, component
