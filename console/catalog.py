"""The console's message catalogs: which texts the code and templates ask to
translate, and ``python -m console.catalog`` to bring the .po files up to
date with them (new texts added untranslated, texts no longer used
dropped, translations kept).

A text is asked for by ``_("...")`` (or ``viewer._("...")``) where it is
shown, or marked with ``N_("...")`` where a table of words defines it.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from console.i18n import LANGUAGES, catalog_path

HERE = Path(__file__).parent
TEMPLATE_TEXT = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
MARKERS = frozenset({"_", "N_"})


def _python_texts(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else ""
        )
        first = node.args[0]
        if name in MARKERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value


def _template_texts(path: Path) -> Iterator[str]:
    for match in TEMPLATE_TEXT.finditer(path.read_text(encoding="utf-8")):
        yield match[1] if match[1] is not None else match[2]


def wanted_texts() -> dict[str, set[str]]:
    """Each text asked for, and the files that ask for it."""
    found: dict[str, set[str]] = {}
    for path in sorted(HERE.rglob("*.py")):
        for text in _python_texts(path):
            found.setdefault(text, set()).add(str(path.relative_to(HERE)))
    for path in sorted((HERE / "templates").glob("*.html")):
        for text in _template_texts(path):
            found.setdefault(text, set()).add(str(path.relative_to(HERE)))
    return found


def update(language: str) -> tuple[int, int]:
    """Bring one language's catalog up to date: (added, untranslated)."""
    path = catalog_path(language)
    old = {}
    if path.exists():
        with path.open("rb") as handle:
            old = {m.id: m.string for m in read_po(handle) if m.id}
    catalog = Catalog(locale=LANGUAGES[language], project="orderbus console", domain="console")
    added = untranslated = 0
    for text, where in sorted(wanted_texts().items()):
        string = old.get(text, "")
        added += text not in old
        untranslated += not string
        catalog.add(text, string, locations=[(w, 0) for w in sorted(where)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, width=100, omit_header=False, include_lineno=False)
    return added, untranslated


def main() -> int:
    for language in LANGUAGES:
        added, untranslated = update(language)
        if language == "en":  # the message ids are the English texts
            print(f"{language}: {added} new texts (the English is the text itself)")
        else:
            print(f"{language}: {added} new texts, {untranslated} without a translation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
