"""`order-bridge translate`, run as a real process, the way a user (and `make run`) runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
SAMPLES = ROOT / "adapters" / "samples"
FIXTURES = Path(__file__).parent / "fixtures"


def _run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_translate_prints_the_sendcloud_order() -> None:
    """Both bundled samples translate to orders for the given integration, exit 0, nothing on stderr."""
    for platform in ("shopify", "woocommerce"):
        result = _run("translate", "--platform", platform, "--integration-id", "42", str(SAMPLES / f"{platform}.json"))
        assert result.returncode == 0, result.stderr
        assert result.stderr == b""
        order = json.loads(result.stdout)
        assert order["order_details"]["integration"] == {"id": 42}
        assert order["order_id"]


def test_translate_reads_stdin_and_takes_wider_currencies() -> None:
    """`-` reads the body from stdin; `--currencies` widens what Sendcloud is assumed to accept."""
    body = (FIXTURES / "shopify" / "erp_addons__order_116901_pln_pl_paid_unfulfilled.json").read_bytes()
    refused = _run("translate", "--platform", "shopify", "--integration-id", "7", "-", stdin=body)
    assert refused.returncode == 1
    assert json.loads(refused.stderr)["error"] == "unsupported_currency"
    accepted = _run(
        "translate", "--platform", "shopify", "--integration-id", "7", "--currencies", "eur,PLN", "-", stdin=body
    )
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["payment_details"]["total_price"]["currency"] == "PLN"


def test_translate_error_has_reason_and_detail_and_exit_code_1() -> None:
    """An untranslatable body prints `{"error", "detail"}` on stderr, nothing on stdout, and exits 1."""
    result = _run("translate", "--platform", "woocommerce", "--integration-id", "7", "-", stdin=b'{"id": "x"}')
    assert result.returncode == 1
    assert result.stdout == b""
    error = json.loads(result.stderr)
    assert error["error"] == "malformed_body"
    assert "$.id" in error["detail"]


def test_bad_arguments_are_usage_errors() -> None:
    """An unknown platform or a malformed currency list is refused by argparse with exit code 2."""
    assert _run("translate", "--platform", "magento", "--integration-id", "7", "-").returncode == 2
    bad = _run("translate", "--platform", "shopify", "--integration-id", "7", "--currencies", "EURO", "-")
    assert bad.returncode == 2
    assert b"ISO 4217" in bad.stderr


def test_check_config_accepts_the_example_and_names_the_broken_key(tmp_path: Path) -> None:
    """`check-config` exits 0 on the sandbox example, 1 with one line naming the key otherwise."""
    ok = _run("check-config", str(ROOT / "examples" / "sandbox.toml"))
    assert ok.returncode == 0, ok.stderr
    assert b"ok; integrations: 1 (shopify), 2 (woocommerce)" in ok.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text((ROOT / "examples" / "sandbox.toml").read_text().replace("port = 8080", 'port = "8080"'))
    result = _run("check-config", str(broken))
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1 and b"server.port" in result.stderr


def test_serve_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    """`serve` stops before listening, with one line naming the missing variable."""
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "examples" / "sandbox.toml").read_text().replace(
        '"sandbox-shopify-secret"', '"${ORDER_BRIDGE_TEST_UNSET_SECRET}"'
    ))  # fmt: skip
    result = _run("serve", "--config", str(config))
    assert result.returncode == 2
    assert b"ORDER_BRIDGE_TEST_UNSET_SECRET" in result.stderr and b"integrations[0].secrets" in result.stderr
    assert _run("serve").returncode == 2  # no config at all
