"""``orderbus dead-letters …``, ``orderbus holds …`` and ``orderbus orders
replay``: the admin API's dead-letter, hold and replay actions for operators
who only have a shell.

Each command asks the admin API built in this process (nothing needs to
listen), with the key given (``--key`` or ``ORDERBUS_ADMIN_KEY``): the same
roles, masking, checks and audit log entries as over HTTP, because it is the
same code answering. The long ones (retrying a group of dead letters,
replaying a channel's stored bodies) show a progress bar on standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from infra.settings import load_settings
from orderbus.progress import ProgressBar

REPLAY_PAGE = 50


class Refused(Exception):
    """The admin API said no (its status and detail), or there is no key to
    ask it with (status 2, the command line's fault)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}" if status != 2 else str(detail))
        self.status = status


Ask = Callable[..., Any]


@contextmanager
def _admin(args: argparse.Namespace) -> Iterator[tuple[Ask, Any]]:
    """``ask(method, path, **request)`` → the answer's JSON (None for 204),
    Refused otherwise; and the bootstrapped app (for its engine)."""
    from fastapi.testclient import TestClient

    from orderbus.bootstrap import bootstrap

    settings = load_settings()
    key = args.key or settings.admin_key
    if not key:
        raise Refused(
            2,
            "give an admin key: --key, or ORDERBUS_ADMIN_KEY "
            "(a token of ORDERBUS_ADMIN_TOKENS, or one made with `orderbus keys create`)",
        )
    app = bootstrap(settings)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with TestClient(app.admin_app(), base_url="http://cli") as client:

            def ask(method: str, path: str, **kwargs: Any) -> Any:
                answer = client.request(method, path, headers=headers, **kwargs)
                if answer.status_code == 204:
                    return None
                try:
                    shown: Any = answer.json()
                except ValueError:
                    shown = answer.text
                if not answer.is_success:
                    detail = shown.get("detail", shown) if isinstance(shown, dict) else shown
                    raise Refused(answer.status_code, detail)
                return shown

            yield ask, app
    finally:
        app.close()


def _show(shown: Any) -> None:
    print("done" if shown is None else json.dumps(shown, ensure_ascii=False, indent=2, default=str))


def _run(args: argparse.Namespace, work: Callable[[Ask, Any], Any]) -> int:
    try:
        with _admin(args) as (ask, app):
            _show(work(ask, app))
    except Refused as exc:
        print(f"orderbus: {exc}", file=sys.stderr)
        return 2 if exc.status == 2 else 1
    return 0


def _request(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> int:
    return _run(args, lambda ask, _app: ask(method, path, **kwargs))


def dead_letters(args: argparse.Namespace) -> int:
    if args.action == "list":
        params = {"status": args.status, "limit": args.limit}
        if args.reason:
            params["reason"] = args.reason
        return _request(args, "GET", "/dead-letters", params=params)
    if args.action == "show":
        return _request(args, "GET", f"/dead-letters/{args.id}")
    if args.action == "retry":
        return _request(args, "POST", f"/dead-letters/{args.id}/retry", json={"note": args.note})
    return _request(args, "POST", f"/dead-letters/{args.id}/discard", json={"note": args.note})


def retry_all(args: argparse.Namespace) -> int:
    """Retry every open dead letter of a filter as one retry job, at the
    job's rate, following it with a progress bar until it is done."""
    chosen = {k: getattr(args, k) for k in ("cause", "reason", "channel", "queue")}
    request = {**{k: v for k, v in chosen.items() if v}, "rate": args.rate, "note": args.note}

    def work(ask: Ask, app: Any) -> Any:
        if args.dry_run:
            return ask("POST", "/retry-jobs", json={**request, "dry_run": True})
        job = ask("POST", "/retry-jobs", json=request)
        return follow_job(ask, app.engine, job)

    return _run(args, work)


def follow_job(ask: Ask, engine: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Step the retry jobs in this process (the admin component's worker may
    step them too: each step locks its job) until this one ends."""
    from admin_api.retry_jobs import RetryJobWorker

    worker = RetryJobWorker(engine)
    bar = ProgressBar("retried", job["total"])
    try:
        while job["status"] == "running":
            wait = worker.step()
            job = ask("GET", f"/retry-jobs/{job['id']}")
            bar.update(job["done"] + job["skipped"])
            time.sleep(1.0 if wait is None else wait)
        bar.update(job["done"] + job["skipped"])
    finally:
        bar.close()
    return job


def replay(args: argparse.Namespace) -> int:
    """Read a channel's newest stored bodies again, a page at a time, and
    say which orders would read differently now (publishes nothing)."""

    def work(ask: Ask, _app: Any) -> Any:
        bar = ProgressBar("read again", args.limit)
        found: list[dict[str, Any]] = []
        try:
            while len(found) < args.limit:
                size = min(REPLAY_PAGE, args.limit - len(found))
                params = {"channel": args.channel, "limit": size, "offset": len(found)}
                if args.target:
                    params["target"] = args.target
                page = ask("POST", "/orders/replay", params=params)
                found.extend(page)
                if len(page) < size:
                    bar.ended_at(len(found))  # the channel has no more stored
                    break
                bar.update(len(found))
        finally:
            bar.close()
        changed = [r for r in found if r["changed"] or not r["readable"]]
        return {"read": len(found), "would_differ": len(changed), "orders": changed}

    return _run(args, work)


def holds(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _request(args, "GET", "/holds", params={"status": args.status, "limit": args.limit})
    body = {"note": args.note}
    return _request(args, "POST", f"/holds/{args.id}/{args.action}", json=body)


def add_commands(sub: Any) -> None:
    letters = sub.add_parser("dead-letters", help="list, show, retry or discard dead letters")
    letters_sub = letters.add_subparsers(dest="action", required=True)
    listed = letters_sub.add_parser("list", help="the newest first (viewers see them masked)")
    listed.add_argument("--status", default="open", choices=["open", "retried", "discarded"])
    listed.add_argument("--reason")
    listed.add_argument("--limit", type=int, default=20)
    letters_sub.add_parser("show", help="one, with its body").add_argument("id", type=int)
    for action, needs_note in (("retry", False), ("discard", True)):
        one = letters_sub.add_parser(action, help=f"{action} one (an operator; audited)")
        one.add_argument("id", type=int)
        one.add_argument("--note", required=needs_note, help="why (kept in the audit log)")
    many = letters_sub.add_parser(
        "retry-all",
        help="retry every open one of a cause, reason, channel or queue, paced, with a "
        "progress bar (an operator; audited)",
    )
    many.add_argument(
        "--cause", help="a business cause (see `dead-letters list`), e.g. sku_not_mapped"
    )
    many.add_argument("--reason")
    many.add_argument("--channel")
    many.add_argument("--queue")
    many.add_argument("--rate", type=float, default=5.0, help="retries a second at most (5)")
    many.add_argument("--note", help="why (kept in the audit log)")
    many.add_argument("--dry-run", action="store_true", help="only say how many it would retry")
    held = sub.add_parser("holds", help="list, release or reject held orders")
    held_sub = held.add_subparsers(dest="action", required=True)
    listed = held_sub.add_parser("list", help="the newest first")
    listed.add_argument("--status", default="open", choices=["open", "released", "rejected"])
    listed.add_argument("--limit", type=int, default=20)
    for action in ("release", "reject"):
        one = held_sub.add_parser(action, help=f"{action} one (an operator; audited)")
        one.add_argument("id", type=int)
        one.add_argument("--note", required=action == "reject", help="why (kept in the audit log)")
    orders = sub.add_parser("orders", help="the channels' stored orders")
    orders_sub = orders.add_subparsers(dest="action", required=True)
    again = orders_sub.add_parser(
        "replay",
        help="read a channel's newest stored bodies again with today's connector and say "
        "which orders would differ (publishes nothing; an operator)",
    )
    again.add_argument("--channel", required=True)
    again.add_argument("--limit", type=int, default=500, help="how many of the newest (500)")
    again.add_argument("--target", help="also map each order for this system")
    again.set_defaults(func=replay)
    for commands in (letters_sub, held_sub, orders_sub):
        for leaf in commands.choices.values():
            leaf.add_argument("--key", help="the admin key to act with (else ORDERBUS_ADMIN_KEY)")
    letters.set_defaults(func=dead_letters)
    many.set_defaults(func=retry_all)
    held.set_defaults(func=holds)
