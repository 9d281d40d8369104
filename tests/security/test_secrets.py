"""Defect 2 of the security review: an empty channel secret was accepted, so
anyone could sign with the empty key and get 202. Empty or short secrets are
refused at start-up, with a message that says what to do. And (defect 8) the
documented plain form ``ORDERBUS_SHIPMENT_SECRETS=secret`` is read as one
secret instead of failing to parse."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from infra.settings import MIN_SECRET_LENGTH, Settings

WEAK = ["", " ", "short", "x" * (MIN_SECRET_LENGTH - 1)]


@pytest.mark.parametrize("secret", WEAK)
def test_a_weak_channel_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="empty or shorter than 16 characters"):
        Settings(channel_secrets={"web-shop": [secret]})
    with pytest.raises(ValidationError, match="empty or shorter than 16 characters"):
        Settings(channel_secrets={"web-shop": ["a-long-enough-secret-1", secret]})


def test_the_single_string_form_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBUS_CHANNEL_SECRETS", '{"web-shop": ""}')
    with pytest.raises(ValidationError, match="empty or shorter"):
        Settings()


def test_a_channel_without_a_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="names no secret"):
        Settings(channel_secrets={"web-shop": []})


@pytest.mark.parametrize("secret", WEAK)
def test_a_weak_shipment_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="ORDERBUS_SHIPMENT_SECRETS"):
        Settings(shipment_secrets=[secret])


def test_the_plain_shipment_secret_form_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBUS_SHIPMENT_SECRETS", "wms-signing-secret-0001")
    assert Settings().shipment_secrets == ["wms-signing-secret-0001"]
    monkeypatch.setenv(
        "ORDERBUS_SHIPMENT_SECRETS", '["wms-signing-secret-0001", "old-wms-secret-0002"]'
    )
    assert Settings().shipment_secrets == ["wms-signing-secret-0001", "old-wms-secret-0002"]


def test_orderbus_refuses_to_start_with_an_empty_secret(tmp_path: object) -> None:
    env = {
        **os.environ,
        "ORDERBUS_CHANNEL_SECRETS": '{"web-shop": [""]}',
        "ORDERBUS_DATABASE_URL": "sqlite://",
        "ORDERBUS_BROKER_URL": "memory://",
    }
    done = subprocess.run(
        [sys.executable, "-m", "orderbus", "run", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "ORDERBUS_CHANNEL_SECRETS['web-shop']" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_smtp_login_without_tls_is_refused() -> None:
    from infra.setting_specs import EmailSpec

    base = {
        "host": "smtp.example.com",
        "sender": "Acme <s@acme.cn>",
        "username": "u",
        "password": "p",
    }
    with pytest.raises(ValidationError, match="password in the clear"):
        EmailSpec.model_validate(base)
    assert EmailSpec.model_validate({**base, "starttls": True, "port": 587}).starttls
    assert EmailSpec.model_validate({**base, "ssl": True, "port": 465}).ssl
    assert EmailSpec.model_validate({**base, "host": "127.0.0.1", "plaintext_login": True})
    assert EmailSpec.model_validate({"host": "127.0.0.1", "sender": "s@acme.cn"}).username is None


def test_a_connector_setting_bootstrap_refuses_is_one_message_not_a_traceback() -> None:
    env = {
        **os.environ,
        "ORDERBUS_POLLERS": '{"jd-1": {"connector": "jd", "jd": {"app_key": "k"}}}',
        "ORDERBUS_DATABASE_URL": "sqlite://",
        "ORDERBUS_BROKER_URL": "memory://",
    }
    done = subprocess.run(
        [sys.executable, "-m", "orderbus", "run", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "ORDERBUS_POLLERS['jd-1']" in done.stderr
    assert "Traceback" not in done.stderr
