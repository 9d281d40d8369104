"""``orderbus config check``: the settings as orderbus reads them, secrets
masked, or one line per problem (a value that is not JSON, a setting that
does not exist, what the composition root refuses), and an exit status."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from infra.settings import Settings

PREFIX = "ORDERBUS_"
# read by the tests and the benchmarks, not by orderbus (docs/development.md)
NOT_SETTINGS = re.compile(r"ORDERBUS_(TEST_\w+|REQUIRE_SERVICES|FAULTS|FAULT_ORDERS|SOAK_\w+)$")
SECRET_NAME = re.compile(r"secret|token|password|passwd|key|credential", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@/\s]+)(@)")


def env_name(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def known_names() -> set[str]:
    return {env_name(name) for name in Settings.model_fields}


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """One line for each ORDERBUS_ variable that is no setting, with the
    nearest setting's name when one is close."""
    known = known_names()
    lines = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in known or NOT_SETTINGS.match(name):
            continue
        near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {near[0]}?" if near else ""
        lines.append(f"{name} is not a setting of orderbus{hint}")
    return lines


def not_json(exc: Exception, environ: Mapping[str, str]) -> str | None:
    """A value the settings could not read as JSON, said in one line: which
    setting, where in the value, and how JSON wants it."""
    found = re.search(r'field "(\w+)"', str(exc))
    if found is None:
        return None
    name = env_name(found.group(1))
    value = environ.get(name, "")
    try:
        json.loads(value)
    except json.JSONDecodeError as problem:
        quote = ' (JSON wants double quotes: \'{"key": "value"}\')' if "'" in value else ""
        return f"{name} is not JSON: {problem.msg} at character {problem.pos + 1}{quote}"
    return f"{name} could not be read: {exc}"


def masked(name: str, value: Any) -> Any:
    """A setting's value as shown: secrets hidden, a URL's password hidden."""
    if isinstance(value, str):
        if value and SECRET_NAME.search(name):
            return "***"
        return URL_PASSWORD.sub(r"\1***\3", value)
    if isinstance(value, dict):
        return {
            k: ("***" if SECRET_NAME.search(name) or SECRET_NAME.search(str(k)) else masked(k, v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return ["***" if SECRET_NAME.search(name) else masked(name, v) for v in value]
    return value


def effective(settings: Settings) -> dict[str, Any]:
    dumped = settings.model_dump(mode="json")
    return {env_name(k): masked(k, v) for k, v in dumped.items()}


def check(environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """(the effective settings, or None when they cannot be read; the problems)."""
    environ = os.environ if environ is None else environ
    problems = unknown_names(environ)
    named = environ.get("ORDERBUS_CONFIG")
    if named and not os.path.isfile(named):
        problems.append(f"ORDERBUS_CONFIG names {named!r}, which is not a file")
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            problems.append(f"{env_name(where.split('.')[0])}: {error['msg']}")
        return None, problems
    except ValueError as exc:  # a value that is not JSON (pydantic-settings' SettingsError)
        problems.append(not_json(exc, environ) or str(exc))
        return None, problems
    from connectors.registry import check_settings

    try:
        check_settings(settings)
    except ValueError as exc:
        problems.append(str(exc))
    return effective(settings), problems
