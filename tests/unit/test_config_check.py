"""Settings people can write (issue 20): a TOML file and ``.env`` beside the
environment in one precedence, and ``orderbus config check``: the effective
settings with secrets masked, or one line per problem and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import Settings
from orderbus import cli

SECRET = "abcdefabcdefabcdefabcdef"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ORDERBUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_environment_then_dotenv_then_toml_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orderbus.toml").write_text(
        'warehouse_url = "http://wms.from-toml/orders"\n'
        'finance_url = "http://erp.from-toml/orders"\n'
        'notification_url = "http://notify.from-toml/messages"\n'
        "[channel_secrets]\n"
        f'web-shop = ["{SECRET}"]\n',
        encoding="utf-8",
    )
    (tmp_path / ".env").write_text(
        "ORDERBUS_FINANCE_URL=http://erp.from-dotenv/orders\n"
        "ORDERBUS_NOTIFICATION_URL=http://notify.from-dotenv/messages\n"
        "POSTGRES_PASSWORD=not-ours\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ORDERBUS_NOTIFICATION_URL", "http://notify.from-env/messages")
    settings = Settings()
    assert settings.warehouse_url == "http://wms.from-toml/orders"
    assert settings.finance_url == "http://erp.from-dotenv/orders"
    assert settings.notification_url == "http://notify.from-env/messages"
    assert settings.channel_secrets == {"web-shop": [SECRET]}
    assert settings.namespace == "orderbus"  # the default


def test_the_toml_file_can_be_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "etc" / "shop.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text('namespace = "shop1"\n', encoding="utf-8")
    monkeypatch.setenv("ORDERBUS_CONFIG", str(elsewhere))
    assert Settings().namespace == "shop1"


def test_a_single_quoted_json_value_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERBUS_CHANNEL_SECRETS", "{'web-shop': ['x']}")
    assert cli.main(["db", "current"]) == 2
    told = capsys.readouterr().err.strip().splitlines()
    assert told == [
        "orderbus: ORDERBUS_CHANNEL_SECRETS is not JSON: Expecting property name enclosed in "
        'double quotes at character 2 (JSON wants double quotes: \'{"key": "value"}\')'
    ]
    assert cli.main(["config", "check"]) == 2
    assert "ORDERBUS_CHANNEL_SECRETS is not JSON" in capsys.readouterr().err


def test_check_prints_the_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERBUS_BROKER_URL", "amqp://shop:s3cret-pw@mq.internal:5672//")
    monkeypatch.setenv("ORDERBUS_CHANNEL_SECRETS", f'{{"web-shop": ["{SECRET}"]}}')
    monkeypatch.setenv("ORDERBUS_ADMIN_TOKENS", '{"ops": "a-long-random-admin-token"}')
    assert cli.main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert 'ORDERBUS_BROKER_URL="amqp://shop:***@mq.internal:5672//"' in out
    assert 'ORDERBUS_CHANNEL_SECRETS={"web-shop": "***"}' in out
    assert SECRET not in out and "s3cret-pw" not in out and "a-long-random-admin-token" not in out
    assert 'ORDERBUS_NAMESPACE="orderbus"' in out


def test_check_names_a_setting_that_does_not_exist_and_the_nearest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERBUS_WAREHOSE_URL", "http://wms.internal/orders")
    monkeypatch.setenv("ORDERBUS_TEST_AMQP_URL", "amqp://x")  # the tests' own: not flagged
    assert cli.main(["config", "check"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "orderbus: ORDERBUS_WAREHOSE_URL is not a setting of orderbus; "
        "did you mean ORDERBUS_WAREHOUSE_URL?"
    ]


def test_nested_settings_are_written_as_toml_tables(tmp_path: Path) -> None:
    (tmp_path / "orderbus.toml").write_text(
        "[alerts]\n"
        "dead_letters = { open_above = 10 }\n"
        "chat = [\n"
        '  { kind = "wecom", url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k" },\n'
        "]\n",
        encoding="utf-8",
    )
    alerts = Settings().alerts
    assert alerts is not None and alerts.dead_letters is not None
    assert alerts.dead_letters.open_above == 10
    assert [robot.kind for robot in alerts.chat] == ["wecom"]


def test_a_named_config_file_that_is_missing_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERBUS_CONFIG", str(tmp_path / "nowhere.toml"))
    assert cli.main(["config", "check"]) == 2
    assert "nowhere.toml', which is not a file" in capsys.readouterr().err
