"""Supply chain (issue 14, defect 9): CI installs exactly the versions in
requirements/dev.lock, each with its hashes, and the lock covers every
dependency pyproject.toml names (runtime and dev)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def locked() -> dict[str, str]:
    text = (ROOT / "requirements" / "dev.lock").read_text(encoding="utf-8")
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\\n]+)", text, re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = names(project["dependencies"]) | names(project["optional-dependencies"]["dev"])
    pins = locked()
    assert wanted <= set(pins), sorted(wanted - set(pins))
    text = (ROOT / "requirements" / "dev.lock").read_text(encoding="utf-8")
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text) if "==" in b.split("\n")[0]]
    assert blocks and all("--hash=sha256:" in b for b in blocks)
    assert "file:///" not in text and "--find-links" not in text  # nothing of one machine


def test_ci_installs_from_the_lock_with_hashes() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/dev.lock" in run
    assert "--no-deps -e ." in run
    assert '".[dev]"' not in run
