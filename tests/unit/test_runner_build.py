"""What ``orderbus run`` builds from the settings (threads not started)."""

from __future__ import annotations

import pytest

from connectors.registry import check_poller
from infra.setting_specs import LegacySpec
from infra.settings import Settings
from orderbus.bootstrap import ConfigurationError, bootstrap
from orderbus.runner import Daemon, server_config
from tests.unit.test_mapping import ERP_MAPPING


def settings(sqlite_url: str, mapping: dict[str, object]) -> Settings:
    return Settings(
        broker_url="memory://",
        database_url=sqlite_url,
        legacy_inbound={"erp": LegacySpec(mapping=mapping)},
        ingest_port=0,
    )


def test_ingest_consumes_each_legacy_channel(sqlite_url: str) -> None:
    daemon = Daemon(bootstrap(settings(sqlite_url, ERP_MAPPING)), ("ingest",))
    daemon.build()
    assert sorted(t.name for t in daemon.threads) == [
        "ingest",
        "legacy-erp",
        "raw-keeper",
        "rejection-spool",
        "shipments",
    ]


def test_a_wrong_legacy_mapping_stops_the_daemon_at_start(sqlite_url: str) -> None:
    daemon = Daemon(bootstrap(settings(sqlite_url, {**ERP_MAPPING, "colour": "$.c"})), ("ingest",))
    with pytest.raises(ConfigurationError, match="legacy channel 'erp': mapping: unknown fields"):
        daemon.build()


def test_a_legacy_channel_needs_exactly_one_mapping() -> None:
    with pytest.raises(ValueError, match="mapping or mapping_file"):
        LegacySpec()


def test_ingest_polls_each_polled_channel(sqlite_url: str) -> None:
    from infra.setting_specs import PollerSpec

    mapping = {k: v for k, v in ERP_MAPPING.items()}
    app = bootstrap(
        Settings(
            broker_url="memory://",
            database_url=sqlite_url,
            pollers={
                "api-shop": PollerSpec(url="http://x/orders", items="$.orders", mapping=mapping)
            },
        )
    )
    daemon = Daemon(app, ("ingest",))
    daemon.build()
    assert sorted(t.name for t in daemon.threads) == [
        "ingest",
        "poll-api-shop",
        "raw-keeper",
        "rejection-spool",
        "shipments",
    ]


def test_an_amazon_channel_is_polled_by_its_own_module(sqlite_url: str) -> None:
    from connectors.amazon_sp import AmazonOrdersPoller
    from infra.setting_specs import PollerSpec

    account = {
        "marketplace_ids": ["ATVPDKIKX0DER"],
        "refresh_token": "r",
        "client_id": "c",
        "client_secret": "s",
    }
    app = bootstrap(
        Settings(
            broker_url="memory://",
            database_url=sqlite_url,
            pollers={"amazon-us": PollerSpec(connector="amazon-sp-api", amazon=account)},
        )
    )
    poller = app.poller("amazon-us")
    assert isinstance(poller, AmazonOrdersPoller)
    assert poller.spec.url == "https://sellingpartnerapi-na.amazon.com/orders/v0/orders"
    with pytest.raises(ValueError, match="needs its amazon settings"):
        check_poller(PollerSpec(connector="amazon-sp-api"))
    with pytest.raises(ValueError, match="needs url and items"):
        PollerSpec(mapping={"external_id": "$.id"})


def test_ingest_runs_a_fetch_worker_for_each_douyin_channel(sqlite_url: str) -> None:
    from infra.setting_specs import ChannelSpec, DouyinSpec

    app = bootstrap(
        Settings(
            broker_url="memory://",
            database_url=sqlite_url,
            ingest_port=0,
            channel_secrets={"dy": ["doudian-app-secret"], "web": ["web-shop-signing-secret"]},
            channels={
                "dy": ChannelSpec(connector="douyin", app_key="k", douyin=DouyinSpec(shop_id="1")),
                "web": ChannelSpec(),
            },
        )
    )
    assert [q.name for q in app.topology.queues if q.role == "fetch:dy"] == ["orderbus.fetch.dy"]
    daemon = Daemon(app, ("ingest",))
    daemon.build()
    assert sorted(t.name for t in daemon.threads) == [
        "fetch-dy",
        "ingest",
        "raw-keeper",
        "rejection-spool",
        "shipments",
    ]
    with pytest.raises(ValueError, match=r"needs app_key and douyin\.shop_id"):
        ChannelSpec(connector="douyin", app_key="k")


def test_a_poller_names_a_known_connector_and_only_its_own_settings() -> None:
    from connectors.registry import check_poller
    from infra.setting_specs import PollerSpec

    with pytest.raises(ValueError, match="no pull connector 'shopee'"):
        check_poller(PollerSpec(connector="shopee", shopee={}))
    with pytest.raises(ValueError, match="unknown settings taobao"):
        check_poller(PollerSpec(connector="jd", jd={}, taobao={}))
    with pytest.raises(ValueError, match="access_token"):  # the account model names the field
        check_poller(
            PollerSpec(connector="jd", jd={"app_key": "k", "app_secret": "s", "shop": "x"})
        )
    with pytest.raises(ValueError, match="unknown settings amazon"):
        PollerSpec(url="http://x/orders", items="$.orders", mapping={"a": "$.b"}, amazon={})


def test_bootstrap_refuses_a_poller_its_connector_does_not_accept(sqlite_url: str) -> None:
    from infra.setting_specs import PollerSpec

    with pytest.raises(ConfigurationError, match=r"(?s)ORDERBUS_POLLERS\['jd-1'\].*access_token"):
        bootstrap(
            Settings(
                broker_url="memory://",
                database_url=sqlite_url,
                pollers={"jd-1": PollerSpec(connector="jd", jd={"app_key": "k"})},
            )
        )


def test_the_admin_component_runs_the_alert_rules_when_configured(sqlite_url: str) -> None:
    from infra.setting_specs import AlertSettings

    rules = AlertSettings.model_validate({"silence": {"channels": {"web-shop": 3600}}})
    app = bootstrap(
        Settings(broker_url="memory://", database_url=sqlite_url, admin_port=0, alerts=rules)
    )
    daemon = Daemon(app, ("admin",))
    daemon.build()
    assert sorted(t.name for t in daemon.threads) == ["admin", "alerts", "retention", "retry-jobs"]


def test_http_components_are_served_by_httptools_on_uvloop() -> None:
    config = server_config(object(), "127.0.0.1", 0)
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    assert config.get_loop_factory().__module__ == "uvloop"


def test_a_started_process_sets_aside_what_its_start_made(sqlite_url: str) -> None:
    """Once its components are ready, ``orderbus run`` freezes the objects its
    start made, so a full collection no longer walks them (a 45-70 ms pause);
    a SIGTERM still stops it."""
    import gc
    import threading
    import time

    app = bootstrap(Settings(broker_url="memory://", database_url=sqlite_url, admin_port=0))
    daemon = Daemon(app, ("admin",))
    frozen_before = gc.get_freeze_count()

    def stop_once_set_aside() -> None:
        deadline = time.monotonic() + 40
        while gc.get_freeze_count() == frozen_before and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.stop.set()

    watcher = threading.Thread(target=stop_once_set_aside)
    watcher.start()
    try:
        assert daemon.run_forever(shutdown_timeout=10) == 0
        watcher.join()
        assert gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()
