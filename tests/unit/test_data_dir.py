"""The embedded default lives in one folder per user, the same for every
command whatever folder it is run from (issue 20: ``orderbus import`` run
elsewhere once published into a broker file no router read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import Settings


def test_every_folder_gets_the_same_embedded_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.delenv("ORDERBUS_DATA_DIR", raising=False)
    seen = set()
    for folder in ("a", "b/c"):
        (tmp_path / folder).mkdir(parents=True)
        monkeypatch.chdir(tmp_path / folder)
        settings = Settings()
        seen.add((settings.broker_url, settings.database_url))
    assert seen == {
        (
            f"sqla+sqlite:///{tmp_path}/share/orderbus/broker.db",
            f"sqlite:///{tmp_path}/share/orderbus/orderbus.db",
        )
    }


def test_a_data_dir_given_relative_is_made_absolute_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORDERBUS_DATA_DIR", "shop-data")
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path}/shop-data/orderbus.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/shop-data/broker.db"


def test_given_urls_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBUS_DATA_DIR", str(tmp_path))
    settings = Settings(broker_url="amqp://guest:guest@mq//", database_url="sqlite:///x.db")
    assert (settings.broker_url, settings.database_url) == (
        "amqp://guest:guest@mq//",
        "sqlite:///x.db",
    )


def test_the_embedded_broker_makes_its_folder(tmp_path: Path) -> None:
    from infra.bus import Bus
    from infra.topology import build_topology

    folder = tmp_path / "new" / "folder"
    settings = Settings(data_dir=str(folder), namespace="t")
    Bus(settings.broker_url, build_topology(settings)).connect().release()  # type: ignore[no-untyped-call]
    assert (folder / "broker.db").exists()
