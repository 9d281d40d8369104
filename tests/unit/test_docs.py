"""The documentation stays true and whole: the site builds with no warning,
every setting is documented (the reference page is generated from the
Settings model and committed as generated), every page is in the site's
navigation, no page points outside the repository, and the README stays a
short front page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from infra.settings import Settings
from orderbus.settings_reference import documented_models, plugged_models, render

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def nav_pages(entries: list[object]) -> set[str]:
    pages: set[str] = set()
    for entry in entries:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                pages |= nav_pages(value)
            elif isinstance(value, str):
                pages.add(value)
    return pages


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "operator" / "dead-letters" / "index.html").exists()


def test_every_setting_is_documented() -> None:
    undocumented = [name for name, f in Settings.model_fields.items() if not f.description]
    for where, model in [*documented_models(), *plugged_models()]:
        assert (model.__doc__ or "").strip(), f"{where}: {model.__name__} has no docstring"
        undocumented += [f"{where}.{n}" for n, f in model.model_fields.items() if not f.description]
    assert undocumented == []
    page = (DOCS / "reference" / "settings.md").read_text(encoding="utf-8")
    assert page == render(), (
        "docs/reference/settings.md is out of date: "
        "python -m orderbus.settings_reference > docs/reference/settings.md"
    )
    for name in Settings.model_fields:
        assert f"`ORDERBUS_{name.upper()}`" in page


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    in_nav = nav_pages(config["nav"])
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert on_disk == in_nav


def test_no_page_points_outside_the_repository() -> None:
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        text = page.read_text(encoding="utf-8")
        assert "shared/notes" not in text, page
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://")):
                host = re.sub(r"^https?://([^/:]+).*", r"\1", target)
                assert host in ("127.0.0.1", "localhost"), f"{page}: {target}"
                continue
            path = target.split("#")[0]
            if not path:
                continue
            resolved = (page.parent / path).resolve()
            assert resolved.is_relative_to(ROOT), f"{page}: {target}"
            assert resolved.exists(), f"{page}: {target} does not exist"


def test_the_readme_is_a_short_front_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 10 * 1024
    assert "<!-- ci:test-command -->" in readme
    for page in ("docs/getting-started.md", "docs/operator/dead-letters.md"):
        assert f"({page})" in readme
