"""The settings reference page (docs/reference/settings.md), made from the
Settings model itself so it cannot drift: every setting, its environment
variable, type, default and description, the fields of each setting that is
a JSON object, and the options of each pull connector, target adapter and
channel write-back. ``python -m orderbus.settings_reference`` prints it;
tests/unit/test_docs.py fails when the committed page differs."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from connectors.registry import PULL_CONNECTORS
from connectors.writeback import WRITEBACKS
from infra.settings import Settings
from targets.adapters.registry import ADAPTERS

HEADER = """# Settings reference

<!-- Made by `python -m orderbus.settings_reference > docs/reference/settings.md`;
     a test fails when this page and the Settings model differ. -->

Every setting comes from, the first that has it winning: the environment (prefix
`ORDERBUS_`), a `.env` file in the current folder, a TOML file (`ORDERBUS_CONFIG`,
else `orderbus.toml` in the current folder), the default below ([how to write
them](configuration.md)). In the environment and `.env`, a setting that is a
list or an object is given as JSON, for example
`ORDERBUS_CHANNEL_SECRETS='{"web-shop": ["a-long-random-secret"]}'`; in TOML as
TOML. `orderbus config check` prints what orderbus reads.

"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(see below)"
    if value is None:
        return "none"
    return f"`{json.dumps(value, default=str, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


def _table(fields: dict[str, FieldInfo], name_of: Any) -> list[str]:
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for name, field in fields.items():
        rows.append(
            f"| `{name_of(name)}` | {_cell(_type_name(field.annotation))} | "
            f"{_cell(_default(field))} | {_cell(field.description or '')} |"
        )
    return rows


def documented_models() -> list[tuple[str, type[BaseModel]]]:
    """Every model a setting is made of, however deep, with where it is first
    found (e.g. ``ORDERBUS_NOTIFY.email``), in the order of the settings."""
    found: list[tuple[str, type[BaseModel]]] = []
    seen: set[type[BaseModel]] = set()

    def visit(where: str, model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            for inner in _models_in(field.annotation):
                if inner not in seen:
                    seen.add(inner)
                    found.append((f"{where}.{name}", inner))
                    visit(f"{where}.{name}", inner)

    for name, field in Settings.model_fields.items():
        for model in _models_in(field.annotation):
            if model not in seen:
                seen.add(model)
                found.append((f"ORDERBUS_{name.upper()}", model))
                visit(f"ORDERBUS_{name.upper()}", model)
    return found


def plugged_models() -> list[tuple[str, type[BaseModel]]]:
    """The options of what the settings name by kind: each pull connector's
    account, each target adapter's and each channel write-back's options."""
    found: list[tuple[str, type[BaseModel]]] = [
        (f"ORDERBUS_POLLERS[channel].{pull.settings_key} (connector {name})", pull.account)
        for name, pull in sorted(PULL_CONNECTORS.items())
    ]
    found += [
        (f"ORDERBUS_TARGETS[consumer] (adapter {name})", model)
        for name, (model, _) in sorted(ADAPTERS.items())
    ]
    found += [
        (f"ORDERBUS_WRITEBACK[channel] (kind {name})", model)
        for name, (model, _) in sorted(WRITEBACKS.items())
    ]
    return found


def render() -> str:
    lines = [HEADER.rstrip("\n"), ""]
    lines += _table(Settings.model_fields, lambda n: f"ORDERBUS_{n.upper()}")
    for where, model in [*documented_models(), *plugged_models()]:
        lines += ["", f"## `{where}`: {model.__name__}", ""]
        doc = (model.__doc__ or "").strip()
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += _table(model.model_fields, lambda n: n)
    return "\n".join(lines) + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
