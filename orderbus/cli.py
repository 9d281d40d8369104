"""The ``orderbus`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import ValidationError

from infra.settings import TARGETS, Settings, load_settings
from orderbus.progress import ProgressBar

if TYPE_CHECKING:
    from orderbus.receiver import RecordingSink

log = logging.getLogger("orderbus")


def _configure_logging(level: str) -> None:
    from infra.logs import configure

    configure(level, os.environ.get("ORDERBUS_LOG_FORMAT", "text").strip().lower())


def cmd_run(args: argparse.Namespace) -> int:
    from infra.database import upgrade
    from orderbus.bootstrap import ConfigurationError, NoAddress, bootstrap
    from orderbus.runner import COMPONENTS, Daemon

    settings = load_settings()
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)  # embedded mode sets itself up
    components = tuple(args.components) or COMPONENTS
    stand_in = None
    if args.stand_in:
        settings, stand_in = with_stand_in(settings)
    daemon = Daemon(bootstrap(settings), components)
    try:
        daemon.build()
    except ConfigurationError as exc:
        print(f"orderbus: {exc}", file=sys.stderr)
        missing = without_address(settings)
        if missing and isinstance(exc, NoAddress):
            print(no_systems_yet(missing), file=sys.stderr)
        return 2
    try:
        return daemon.run_forever(args.shutdown_timeout)
    finally:
        if stand_in is not None:
            stand_in.stop()


def without_address(settings: Settings) -> list[str]:
    """The systems orderbus delivers to that have no address yet."""
    return [t for t in TARGETS if not settings.target_url(t)]


def no_systems_yet(missing: list[str]) -> str:
    """What to do when a system has no address: the settings, or the stand-in."""
    lines = ["give each system orderbus delivers to its address, for example:"]
    lines += [f"  export ORDERBUS_{t.upper()}_URL=http://{t}.internal/orders" for t in missing]
    lines.append(
        "or try it first without them: `orderbus run --stand-in` (a local receiver takes "
        "every delivery and logs it; nothing reaches a real system)"
    )
    return "\n".join(lines)


def with_stand_in(settings: Settings) -> tuple[Settings, RecordingSink]:
    """The settings with a local stand-in receiver as every system that has
    no address, and that receiver (started)."""
    from orderbus.receiver import RecordingSink

    def logged(target: str, body: dict[str, Any]) -> int:
        log.warning(
            "STAND-IN %s received order %s (%s %s): not a real system",
            target, body.get("order_number"), body.get("channel"), body.get("external_id"),
        )  # fmt: skip
        return 200

    sink = RecordingSink(respond=logged).start()
    missing = without_address(settings)
    settings = settings.model_copy(update={f"{t}_url": sink.url(t) for t in missing})
    log.warning(
        "STAND-IN receiver at %s takes what %s would get: nothing reaches a real system",
        sink.base_url, ", ".join(missing) or "no system",
    )  # fmt: skip
    return settings, sink


def cmd_db(args: argparse.Namespace) -> int:
    """``db upgrade`` or ``db downgrade`` to ``args.revision``, then where it is."""
    from infra.database import current_revision, downgrade, upgrade

    settings = load_settings()
    move = downgrade if args.db_command == "downgrade" else upgrade
    move(settings.database_url, args.revision)
    print(f"database at revision {current_revision(settings.database_url)}")
    return 0


def cmd_db_current(_args: argparse.Namespace) -> int:
    from infra.database import current_revision

    print(current_revision(load_settings().database_url))
    return 0


def cmd_db_history(_args: argparse.Namespace) -> int:
    from infra.database import migrations

    for revision, purpose in migrations():
        print(f"{revision}  {purpose}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Each component's processes from their heartbeats; exit 1 when one asked
    for (or, asked for none, any seen) has no live process."""
    from sqlalchemy.exc import DBAPIError

    from infra.database import make_engine
    from infra.heartbeats import states

    url = load_settings().database_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            seen = {s.component: s for s in states(conn)}
    except DBAPIError as exc:
        reason = str(exc.orig or exc).splitlines()[0]
        print(
            f"orderbus status: cannot read the components' heartbeats ({reason}): has orderbus "
            "run against this database? (`orderbus run`, or `orderbus db upgrade` first)",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    if not seen and not args.components:
        print("no component has run against this database yet", file=sys.stderr)
        return 1
    wanted = args.components or sorted(seen)
    down = []
    for name in wanted:
        state = seen.get(name)
        if state is None:
            print(f"{name}: no heartbeat (not started, or stopped cleanly)")
            down.append(name)
            continue
        word = "up" if state.up else "DOWN"
        queues = ", ".join(state.queues) or "-"
        print(
            f"{name}: {word}, {state.live_instances} live process(es), last beat "
            f"{state.last_beat_seconds:g} s ago; queues: {queues}"
        )
        if not state.up:
            down.append(name)
    return 1 if down or not wanted else 0


def cmd_config_check(_args: argparse.Namespace) -> int:
    from orderbus.config_check import check

    settings, problems = check()
    if settings is not None:
        for name, value in settings.items():
            print(f"{name}={json.dumps(value, ensure_ascii=False)}")
    for problem in problems:
        print(f"orderbus: {problem}", file=sys.stderr)
    return 2 if problems else 0


def cmd_schema(_args: argparse.Namespace) -> int:
    from canonical.order import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orderbus.demo import run_demo

    return run_demo(args.broker_url, args.database_url, keep_open=args.keep_open)


def cmd_sign(args: argparse.Namespace) -> int:
    from connectors.signature import sign

    body = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    timestamp = args.timestamp or int(time.time())
    signature = sign(args.secret, timestamp, body)
    if args.headers:
        print(f"X-Orderbus-Timestamp: {timestamp}\nX-Orderbus-Signature: {signature}")
    else:
        print(signature)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from connectors.file_columns import ColumnMapping, RowError
    from connectors.file_import import run_import
    from connectors.publishing import order_publisher, record_unreadable
    from infra.database import upgrade
    from infra.spreadsheets import UnreadableFile
    from orderbus.bootstrap import bootstrap

    settings = load_settings()
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)  # embedded mode sets itself up
    app = bootstrap(settings)
    publisher = app.bus.publisher()
    path = Path(args.file)

    def record(error: RowError, row: str) -> None:
        record_unreadable(
            app.engine,
            args.channel,
            error.reason,
            f"{path.name} {error}",
            row,
            {"x-orderbus-import": str(path)},
        )

    bars: list[ProgressBar] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(ProgressBar("published", total))
        bars[0].update(done)

    try:
        report = run_import(
            path,
            args.channel,
            order_publisher(publisher, app.topology, args.channel),
            record,
            mapping=ColumnMapping.load(Path(args.mapping) if args.mapping else None),
            shop=args.shop,
            encoding=args.encoding,
            sheet=args.sheet,
            progress=None if args.quiet else progress,
        )
    except UnreadableFile as exc:
        print(f"orderbus import: {exc}", file=sys.stderr)
        return 2
    finally:
        publisher.close()
        app.close()
    for bar in bars:
        bar.close()
    print(report.summary())
    if report.failure:
        return 2
    return 1 if report.errors else 0


def cmd_keys(args: argparse.Namespace) -> int:
    from admin_api import keys
    from infra.database import make_engine, upgrade

    settings = load_settings()
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            if args.keys_command == "create":
                row, key = keys.create(conn, args.name, args.role, args.by)
                print(f"{row['name']} ({row['role']}): {key}")
                print("the key is shown once; keep it somewhere safe", file=sys.stderr)
            elif args.keys_command == "revoke":
                keys.revoke(conn, args.id, args.by)
                print(f"key {args.id} revoked")
            else:
                for k in keys.listing(conn):
                    state = "revoked" if k["revoked_at"] else "active"
                    print(f"{k['id']}\t{k['name']}\t{k['role']}\t{state}\t{k['created_by']}")
    except (keys.KeyError_, LookupError) as exc:
        print(f"orderbus keys: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from datetime import date
    from pathlib import Path

    from admin_api import reconcile
    from infra.database import make_engine
    from infra.topology import build_topology

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            report = reconcile.reconcile(
                conn,
                date.fromisoformat(args.day),
                channel=args.channel,
                timezone=args.timezone,
                router_queue=build_topology(settings).router_queue,
                every_order=bool(args.csv or args.compare),  # else counts and exceptions
            )
            summary = report.as_dict()
            if args.csv:
                Path(args.csv).write_text(report.as_csv(), encoding="utf-8")
            compared = None
            if args.compare:
                if not args.channel:
                    print("orderbus reconcile: --compare needs --channel", file=sys.stderr)
                    return 2
                ids = reconcile.export_ids(Path(args.compare).read_bytes(), args.column)
                compared = reconcile.compare(report, conn, args.channel, ids)
    except (ValueError, LookupError, OverflowError, OSError) as exc:
        print(f"orderbus reconcile: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    counts = summary["counts"]
    print(
        f"{args.day} {args.channel or 'all channels'}: received {counts['received']} = "
        f"delivered {counts['delivered']} + rejected {counts['rejected']} + held "
        f"{counts['held']} + dead-lettered {counts['dead_lettered']} + in flight "
        f"{counts['in_flight']} + unexplained {counts['unexplained']}; "
        f"{summary['refused_requests']} request(s) refused at the ingest"
    )
    for entry in summary["unexplained"]:
        print(f"  unexplained: {entry['channel']} {entry['external_id']} {entry['order_number']}: "
              f"{entry['detail']}")  # fmt: skip
    if compared is not None:
        missing = ", ".join(compared["in_export_not_received"]) or "none"
        extra = ", ".join(compared["received_not_in_export"]) or "none"
        print(f"  in the export, never received: {missing}")
        print(f"  received, not in the export: {extra}")
    unbalanced = bool(summary["unexplained"]) or bool(
        compared and compared["in_export_not_received"]
    )
    return 1 if unbalanced else 0


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderbus",
        description="Every order from every channel delivered once, or accounted for.",
    )
    parser.add_argument("--log-level", help="default: INFO, and WARNING for the demo")
    parser.add_argument("--version", action="version", version=f"orderbus {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_run,
        _add_db,
        _add_config,
        _add_status,
        _add_admin_commands,
        _add_schema_and_demo,
        _add_import,
        _add_keys,
        _add_reconcile,
        _add_sign,
    ):
        add(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orderbus")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "(not installed)"


def _add_run(sub: Subcommands) -> None:
    from orderbus.runner import DESCRIPTIONS

    width = max(map(len, DESCRIPTIONS))
    run = sub.add_parser(
        "run",
        help="run the daemon (all components, or the ones named)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="components:\n"
        + "\n".join(f"  {name:<{width}}  {what}" for name, what in DESCRIPTIONS.items()),
    )
    run.add_argument(
        "components",
        nargs="*",
        type=component,
        metavar="COMPONENT",
        help="which to run in this process (default: all four, below)",
    )
    run.add_argument("--shutdown-timeout", type=float, default=30.0)
    run.add_argument(
        "--stand-in",
        action="store_true",
        help="a local receiver takes the deliveries of every system without an address "
        "(to try orderbus; logged as STAND-IN, nothing reaches a real system)",
    )
    run.set_defaults(func=cmd_run)


def _add_db(sub: Subcommands) -> None:
    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations up to REVISION (default head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db)
    current = db_sub.add_parser("current", help="the migration the database is at")
    current.set_defaults(func=cmd_db_current)
    history = db_sub.add_parser("history", help="every migration, newest first, with its purpose")
    history.set_defaults(func=cmd_db_history)
    down = db_sub.add_parser(
        "downgrade",
        help="undo migrations down to REVISION (back up first: undoing one may drop its data)",
    )
    down.add_argument("revision")
    down.set_defaults(func=cmd_db)


def _add_status(sub: Subcommands) -> None:

    status = sub.add_parser(
        "status",
        help="each component's live processes and queues (from their heartbeats); "
        "exit 1 when one is down: a health check for the router and the consumers",
    )
    status.add_argument(
        "components",
        nargs="*",
        type=component,
        metavar="COMPONENT",
        help="which to check (default: all)",
    )
    status.set_defaults(func=cmd_status)


def _add_admin_commands(sub: Subcommands) -> None:
    from orderbus.admin_cli import add_commands

    add_commands(sub)


def _add_config(sub: Subcommands) -> None:
    config = sub.add_parser("config", help="the settings orderbus reads")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check",
        help="print the effective settings (secrets masked); exit 2 with a line per problem",
    )
    check.set_defaults(func=cmd_config_check)


def _add_schema_and_demo(sub: Subcommands) -> None:
    schema = sub.add_parser("schema", help="print the canonical order's JSON Schema")
    schema.set_defaults(func=cmd_schema)
    demo = sub.add_parser("demo", help="send sample orders through an embedded orderbus")
    demo.add_argument(
        "--broker-url", help="default: kombu's SQL transport on a temporary SQLite file"
    )
    demo.add_argument("--database-url", help="default: a temporary SQLite file")
    demo.add_argument(
        "--keep-open",
        action="store_true",
        help="keep running afterwards, to look at the orders in the console (/console)",
    )
    demo.set_defaults(func=cmd_demo)


def _add_import(sub: Subcommands) -> None:
    imp = sub.add_parser(
        "import",
        help="import orders from a CSV or XLSX file (an offline store's POS export)",
        description="Good rows are published as orders; each bad row is reported with its "
        "row number and reason, and recorded. Importing the same file again has no "
        "second effect. Exit status: 0 all imported, 1 some rows bad, 2 not imported.",
    )
    imp.add_argument("file")
    imp.add_argument("--channel", required=True, help="e.g. store-sh01")
    imp.add_argument("--shop", help="the store (default: a store column, else 'default')")
    imp.add_argument("--mapping", help="JSON: columns, defaults and time zone (docs)")
    imp.add_argument("--encoding", help="default: detected (UTF-8, BOM, GBK/GB18030)")
    imp.add_argument("--sheet", help="XLSX sheet (default: the first)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_import)


def _add_keys(sub: Subcommands) -> None:
    keys = sub.add_parser("keys", help="admin API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key (printed once)")
    create.add_argument("--name", required=True, help="who or what uses it (the audit actor)")
    create.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    create.add_argument("--by", default="cli", help="who makes it (for the audit log)")
    keys_sub.add_parser("list", help="the keys, without their secrets")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", type=int)
    revoke.add_argument("--by", default="cli")
    keys.set_defaults(func=cmd_keys)


def _add_reconcile(sub: Subcommands) -> None:
    rec = sub.add_parser(
        "reconcile",
        help="where every order of a day is; exit 1 when something is unexplained",
    )
    rec.add_argument("--day", required=True, help="YYYY-MM-DD")
    rec.add_argument("--channel")
    rec.add_argument("--timezone", default="Asia/Shanghai")
    rec.add_argument("--csv", help="write one row per order to this file")
    rec.add_argument("--compare", help="the channel's own export (CSV) to compare with")
    rec.add_argument("--column", default="external_id", help="the order id column of --compare")
    rec.set_defaults(func=cmd_reconcile)


def _add_sign(sub: Subcommands) -> None:
    signer = sub.add_parser("sign", help="sign a webhook body as the generic connector expects")
    signer.add_argument("--secret", required=True)
    signer.add_argument("--timestamp", type=int)
    signer.add_argument("--headers", action="store_true", help="print both header lines")
    signer.add_argument("file", nargs="?", default="-")
    signer.set_defaults(func=cmd_sign)


def component(name: str) -> str:
    """A component's name on the command line."""
    from orderbus.runner import COMPONENTS

    if name not in COMPONENTS:
        raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(COMPONENTS)}")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(
        args.log_level or ("WARNING" if args.command in ("demo", "import") else "INFO")
    )
    try:
        result: int = args.func(args)
    except ValidationError as exc:  # the settings: say what is wrong, no traceback
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            print(f"orderbus: {where}: {error['msg']}", file=sys.stderr)
        return 2
    except ValueError as exc:  # what bootstrap finds wrong with the settings, likewise
        from pydantic_settings import SettingsError

        from orderbus.bootstrap import ConfigurationError
        from orderbus.config_check import not_json

        if isinstance(exc, SettingsError):  # a value that is not JSON: which, and where
            print(f"orderbus: {not_json(exc, os.environ) or exc}", file=sys.stderr)
            return 2
        if not isinstance(exc, ConfigurationError):
            raise
        print(f"orderbus: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped reading (`| head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return result


if __name__ == "__main__":
    sys.exit(main())
