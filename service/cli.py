"""The `order-bridge` command (also `python -m service`).

Subcommands: `translate` (one webhook body → the Sendcloud order JSON). `serve`,
`send-sample` and `check-config` arrive with the HTTP service.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from adapters import ADAPTERS, DEFAULT_CURRENCIES, TranslationError, get_adapter
from adapters.sendcloud import ENCODER

__all__ = ["main"]


def _currencies(value: str) -> frozenset[str]:
    codes = frozenset(code.strip().upper() for code in value.split(",") if code.strip())
    if not codes or any(len(code) != 3 or not code.isalpha() or not code.isascii() for code in codes):
        raise argparse.ArgumentTypeError("expected comma-separated ISO 4217 codes, e.g. EUR,GBP,USD")
    return codes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="order-bridge", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)

    translate = commands.add_parser("translate", help="print the Sendcloud order for one webhook body")
    translate.add_argument("--platform", required=True, choices=sorted(ADAPTERS))
    translate.add_argument("--integration-id", required=True, type=int, help="Sendcloud integration id")
    translate.add_argument(
        "--currencies",
        type=_currencies,
        default=DEFAULT_CURRENCIES,
        help="currencies Sendcloud accepts (default: %(default)s)",
    )
    translate.add_argument("file", type=Path, help="the webhook body, as the shop sends it ('-' for stdin)")
    return parser


def _translate(args: argparse.Namespace) -> int:
    body = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    adapter = get_adapter(args.platform, args.currencies)
    try:
        order = adapter.translate(body, args.integration_id)
    except TranslationError as exc:
        error = msgspec.json.encode({"error": str(exc.reason), "detail": exc.detail})
        sys.stderr.write(error.decode() + "\n")
        return 1
    sys.stdout.write(msgspec.json.format(ENCODER.encode(order), indent=2).decode() + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "translate":
        return _translate(args)
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover - argparse rejects others
