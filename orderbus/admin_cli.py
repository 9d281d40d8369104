"""``orderbus dead-letters …`` and ``orderbus holds …``: the admin API's
dead-letter and hold actions for operators who only have a shell.

Each command is one request to the admin API built in this process (nothing
needs to listen), with the key given (``--key`` or ``ORDERBUS_ADMIN_KEY``):
the same roles, masking, checks and audit log entries as over HTTP, because it
is the same code answering."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from infra.settings import load_settings


def _request(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> int:
    from fastapi.testclient import TestClient

    from orderbus.bootstrap import bootstrap

    settings = load_settings()
    key = args.key or settings.admin_key
    if not key:
        print(
            "orderbus: give an admin key: --key, or ORDERBUS_ADMIN_KEY "
            "(a token of ORDERBUS_ADMIN_TOKENS, or one made with `orderbus keys create`)",
            file=sys.stderr,
        )
        return 2
    app = bootstrap(settings)
    with TestClient(app.admin_app(), base_url="http://cli") as client:
        answer = client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs)
    if answer.status_code == 204:
        print("done")
        return 0
    try:
        shown: Any = answer.json()
    except ValueError:
        shown = answer.text
    text = json.dumps(shown, ensure_ascii=False, indent=2, default=str)
    if answer.is_success:
        print(text)
        return 0
    detail = shown.get("detail", shown) if isinstance(shown, dict) else shown
    print(f"orderbus: {answer.status_code}: {detail}", file=sys.stderr)
    return 1


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
    held = sub.add_parser("holds", help="list, release or reject held orders")
    held_sub = held.add_subparsers(dest="action", required=True)
    listed = held_sub.add_parser("list", help="the newest first")
    listed.add_argument("--status", default="open", choices=["open", "released", "rejected"])
    listed.add_argument("--limit", type=int, default=20)
    for action in ("release", "reject"):
        one = held_sub.add_parser(action, help=f"{action} one (an operator; audited)")
        one.add_argument("id", type=int)
        one.add_argument("--note", required=action == "reject", help="why (kept in the audit log)")
    for commands in (letters_sub, held_sub):
        for leaf in commands.choices.values():
            leaf.add_argument("--key", help="the admin key to act with (else ORDERBUS_ADMIN_KEY)")
    letters.set_defaults(func=dead_letters)
    held.set_defaults(func=holds)
