"""`order-bridge admin …`: the admin API from a terminal, as tables (DESIGN §9).

Exit status, for scripts: 0 done; 1 not found, or a replay that failed again; 2 usage (bad
arguments, a 400); 3 the listener could not be reached, refused the token, or could not act now
(503).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["add_parser", "run"]

DEFAULT_URL = "http://127.0.0.1:9090"
OK, NOT_DONE, USAGE, UNREACHABLE = 0, 1, 2, 3


def add_parser(commands: Any) -> None:
    """The `admin` command and its subcommands, on the CLI's subparsers."""
    admin = commands.add_parser("admin", help="the admin API: lanes, dead letters, replay, an order's history")
    admin.add_argument("--url", help=f"the admin listener (default: $ORDER_BRIDGE_ADMIN_URL or {DEFAULT_URL})")
    admin.add_argument(
        "--token", help="admin token (default: $ORDER_BRIDGE_ADMIN_TOKEN; prefer it: a flag shows in `ps`)"
    )
    sub = admin.add_subparsers(dest="admin_command", required=True)
    sub.add_parser("lanes", help="every lane: pending, in flight, next flush, paused")
    letters = sub.add_parser("dead-letters", help="dead letters, oldest first")
    letters.add_argument("--integration-id", type=int)
    letters.add_argument("--reason")
    letters.add_argument("--limit", type=int, default=100)
    replay = sub.add_parser("replay", help="replay one dead letter (ID), or every one with --reason")
    replay.add_argument("id", nargs="?", type=int)
    replay.add_argument("--reason")
    replay.add_argument("--integration-id", type=int)
    discard = sub.add_parser("discard", help="discard one dead letter for good")
    discard.add_argument("id", type=int)
    for action in ("pause", "resume", "flush"):
        lane = sub.add_parser(action, help=f"{action} one lane")
        lane.add_argument("integration_id", type=int)
    order = sub.add_parser("order", help="an order's history, by its id or number")
    order.add_argument("integration_id", type=int)
    order.add_argument("order")


class _Failed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header], *[["—" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells) + "\n"


def _call(client: httpx.Client, method: str, path: str, **options: Any) -> Any:
    try:
        response = client.request(method, path, **options)
    except httpx.HTTPError as exc:
        raise _Failed(UNREACHABLE, f"cannot reach the admin listener at {client.base_url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 401:
        raise _Failed(UNREACHABLE, "the admin listener refused the token (--token or $ORDER_BRIDGE_ADMIN_TOKEN)")
    if response.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else None
        code = {400: USAGE, 404: NOT_DONE, 409: NOT_DONE}.get(response.status_code, UNREACHABLE)
        raise _Failed(code, f"{response.status_code}: {detail or response.reason_phrase}")
    return body


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}s"


def _lanes(client: httpx.Client, args: argparse.Namespace) -> int:
    lanes = _call(client, "GET", "/api/lanes")["lanes"]
    rows = [
        (
            x["integration_id"],
            x["platform"],
            x["pending"],
            x["in_flight"],
            _seconds(x["oldest_age_seconds"]),
            f"{x['next_flush']} in {_seconds(x['next_flush_in_seconds'])}"
            if x["next_flush_in_seconds"]
            else x["next_flush"],
            x["attempts"],
            "paused" if x["paused"] else "running",
        )
        for x in lanes
    ]
    header = ("INTEGRATION", "PLATFORM", "PENDING", "IN FLIGHT", "OLDEST", "NEXT FLUSH", "ATTEMPTS", "STATE")
    sys.stdout.write(_table(rows, header))
    return OK


def _dead_letters(client: httpx.Client, args: argparse.Namespace) -> int:
    params = {"limit": str(args.limit)}
    if args.integration_id is not None:
        params["integration_id"] = str(args.integration_id)
    if args.reason:
        params["reason"] = args.reason
    page = _call(client, "GET", "/api/dead-letters", params=params)
    rows = [
        (x["id"], x["at"][:19], x["integration_id"], x["order_id"], x["order_number"], x["reason"], x["attempts"])
        for x in page["dead_letters"]
    ]
    sys.stdout.write(_table(rows, ("ID", "AT (UTC)", "INTEGRATION", "ORDER", "NUMBER", "REASON", "ATTEMPTS")))
    if page["next_cursor"]:
        sys.stdout.write(f"(more: the oldest {len(rows)} shown)\n")
    return OK


def _replay(client: httpx.Client, args: argparse.Namespace) -> int:
    if (args.id is None) == (args.reason is None and args.integration_id is None):
        raise _Failed(USAGE, "replay takes a dead letter's ID, or --reason R (and/or --integration-id N)")
    if args.id is not None:
        result = _call(client, "POST", f"/api/dead-letters/{args.id}/replay")
        if result["status"] == "failed":
            sys.stdout.write(f"dead letter {args.id}: failed again ({result['reason']}: {result['detail']})\n")
            return NOT_DONE
        sys.stdout.write(f"dead letter {args.id}: order {result['order_id']} {result['status']}\n")
        return OK
    wanted = {"reason": args.reason, "integration_id": args.integration_id}
    report = _call(client, "POST", "/api/dead-letters/replay", json={k: v for k, v in wanted.items() if v is not None})
    counts = ("buffered", "coalesced", "stale", "failed", "not_replayable")
    sys.stdout.write(_table([(report["matched"], *(report[c] for c in counts))], ("MATCHED", *map(str.upper, counts))))
    if report["stopped"]:
        sys.stdout.write(f"stopped early: {report['stopped']} (the rest are still dead letters)\n")
    return NOT_DONE if report["failed"] or report["stopped"] else OK


def _discard(client: httpx.Client, args: argparse.Namespace) -> int:
    _call(client, "DELETE", f"/api/dead-letters/{args.id}")
    sys.stdout.write(f"dead letter {args.id}: discarded\n")
    return OK


def _lane_action(client: httpx.Client, args: argparse.Namespace) -> int:
    lane = _call(client, "POST", f"/api/lanes/{args.integration_id}/{args.admin_command}")
    state = "paused" if lane["paused"] else "running"
    sys.stdout.write(f"lane {lane['integration_id']}: {state}, {lane['pending']} pending\n")
    return OK


def _order(client: httpx.Client, args: argparse.Namespace) -> int:
    record = _call(client, "GET", f"/api/orders/{args.integration_id}/{quote(args.order, safe='')}")
    facts = ("outcome", "topic", "delivery_id", "batch_id", "attempt", "sendcloud_id", "reason", "pointer", "detail")
    rows = [
        (s["at"][:23], s["event"], " ".join(f"{k}={s[k]}" for k in facts if s.get(k) is not None))
        for s in record["history"]
    ]
    sys.stdout.write(f"order {', '.join(record['order_ids'])} in integration {record['integration_id']}\n")
    sys.stdout.write(_table(rows, ("AT (UTC)", "EVENT", "DETAILS")))
    return OK


_ACTIONS = {
    "lanes": _lanes,
    "dead-letters": _dead_letters,
    "replay": _replay,
    "discard": _discard,
    "pause": _lane_action,
    "resume": _lane_action,
    "flush": _lane_action,
    "order": _order,
}


def run(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("ORDER_BRIDGE_ADMIN_URL") or DEFAULT_URL
    token = args.token or os.environ.get("ORDER_BRIDGE_ADMIN_TOKEN")
    if not token:
        sys.stderr.write("order-bridge: no admin token: pass --token or set ORDER_BRIDGE_ADMIN_TOKEN\n")
        return USAGE
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        try:
            return _ACTIONS[args.admin_command](client, args)
        except _Failed as exc:
            sys.stderr.write(f"order-bridge: {exc}\n")
            return exc.code
