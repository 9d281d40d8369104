"""Every text of the console goes through the catalogs: each one asked for
has its Chinese translation with the same placeholders, the catalogs hold
nothing stale, and no template writes a word outside ``_()``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from console.catalog import wanted_texts
from console.i18n import LANGUAGES, catalog_path, gettext_for, translations

TEMPLATES = Path(__file__).parents[2] / "console" / "templates"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# What a template may hold outside _(): markup, Jinja, and these marks.
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
TAG = re.compile(r"<[^>]*>", re.S)
ENTITY_OR_MARK = re.compile(r"&\w+;|[\s\d—·←→×#=+%:/().,|\-]")
# Not texts: a language's own name on its switch (shown in that language,
# whatever the page's), and the page's style class in a block.
NOT_TEXT = re.compile(r">(中文|English)<|\{% block body_class %\}\w+\{% endblock %\}")


def test_every_text_has_a_chinese_translation_with_the_same_placeholders() -> None:
    chinese = translations("zh-CN")
    missing = [t for t in wanted_texts() if not chinese.get(t)]
    assert missing == []
    wrong = [
        t
        for t in wanted_texts()
        if sorted(PLACEHOLDER.findall(t)) != sorted(PLACEHOLDER.findall(chinese[t]))
    ]
    assert wrong == []


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_the_catalogs_hold_exactly_the_texts_asked_for(language: str) -> None:
    with catalog_path(language).open("rb") as handle:
        held = {m.id for m in read_po(handle) if m.id}
    assert held == set(wanted_texts()), "run python -m console.catalog"


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda p: p.name)
def test_no_template_writes_a_word_outside_the_catalog(template: Path) -> None:
    source = NOT_TEXT.sub(
        lambda m: "><" if m[0].startswith(">") else "", template.read_text(encoding="utf-8")
    )
    text = TAG.sub(" ", JINJA.sub(" ", source))
    stray = ENTITY_OR_MARK.sub("", text)
    assert stray == "", f"{template.name}: text outside _(): {stray[:80]!r}"


def test_chinese_is_the_default_and_english_the_message_ids() -> None:
    assert gettext_for("zh-CN")("Find an order") == "订单查询"
    assert gettext_for("en")("Find an order") == "Find an order"
    assert gettext_for("zh-CN")("Order %(number)s", number="OB1") == "订单 OB1"
