"""The layers hold: import-linter's contracts (pyproject.toml, docs/architecture.md)
pass, they say what the architecture says, and the distribution installs only
the product's packages (no bench, no tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = (".git", ".*venv*", "build", "*.egg-info", "__pycache__", "orderbus-data", "site")
PRODUCT = {
    "orderbus",
    "console",
    "admin_api",
    "connectors",
    "router",
    "targets",
    "infra",
    "canonical",
}


def contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def test_the_import_contracts_hold() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout, result.stdout[-4000:]


def test_the_contracts_say_what_the_architecture_says() -> None:
    """Weakening a contract (a layer dropped, a part allowed to see another)
    fails here, not silently."""
    found = contracts()
    assert found["layers"]["layers"] == [
        "orderbus",
        "console",
        "admin_api",
        "connectors | router | targets",  # independent of one another
        "infra",
        "canonical",
    ]
    no_parts = found["admin-api-reaches-no-part-but-the-router"]
    assert set(no_parts["source_modules"]) == {"admin_api", "console"}
    assert set(no_parts["forbidden_modules"]) == {"connectors", "targets"}
    assert {"sqlalchemy", "httpx", "fastapi", "kombu"} <= set(
        found["canonical-is-pure"]["forbidden_modules"]
    )
    only_bus = found["only-the-bus-imports-kombu"]
    assert set(only_bus["source_modules"]) == PRODUCT
    assert only_bus["ignore_imports"] == [
        "infra.bus -> kombu", "infra.bus.** -> kombu",
        "infra.bus.transport -> amqp", "infra.bus.properties -> amqp",
        "infra.bus.deliveries -> amqp",
    ]  # fmt: skip


def test_every_product_package_is_under_a_contract() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == PRODUCT


def test_the_wheel_installs_only_the_product_packages(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves a build/ folder where it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("orderbus-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == PRODUCT
    assert "infra/migrations/versions/0001_initial_schema.py" in names
