"""`order-bridge serve` as a real process: graceful shutdown, the sandbox newcomers start with
`make run`, and logs that carry no personal data or secrets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from service.fake_sendcloud import Account, FakeSendcloud
from service.fake_sendcloud import create_app as create_fake
from tests.conftest import INTEGRATIONS, PUBLIC_KEY, SECRET_KEY, SECRETS, ServiceProcess, free_port, service_toml
from tests.helpers import shopify_headers, wait_for, woocommerce_headers

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY = json.loads((ROOT / "adapters" / "samples" / "shopify.json").read_bytes())


def start_service(tmp_path: Path, sendcloud_url: str, **sections: dict[str, object]) -> ServiceProcess:
    config = tmp_path / "config.toml"
    sections.setdefault("logging", {"level": "INFO"})
    config.write_text(service_toml(sendcloud_url, **sections))
    service = ServiceProcess(config, free_port())
    service.wait_ready()
    return service


def test_sigterm_flushes_every_buffered_order_before_exit(tmp_path: Path, serve: Any) -> None:
    """SIGTERM with 50 orders held by a long debounce: all reach Sendcloud before the process exits."""
    fake = FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))})
    fake_server = serve(create_fake(fake))
    service = start_service(
        tmp_path, fake_server.url + "/api/v3", buffer={"debounce_seconds": 60.0, "max_wait_seconds": 120.0}
    )
    ids = [str(70_000 + n) for n in range(150)]
    with httpx.Client(base_url=service.url) as client:
        for order_id in ids:
            body = json.dumps({**SHOPIFY, "id": int(order_id)}).encode()
            headers = shopify_headers(SECRETS["shopify"], body)
            assert client.post("/webhooks/shopify/7", content=body, headers=headers).json() == {"status": "accepted"}
    # The first 100 filled a batch and left at once; the debounce holds the other 50.
    wait_for(lambda: [r.order_count for r in fake.requests] == [100])
    # uvicorn re-raises the signal once it has shut down gracefully, so the exit status is SIGTERM's.
    assert service.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert all(fake.order(7, order_id) is not None for order_id in ids)
    assert [r.order_count for r in fake.requests] == [100, 50]
    events = [e["event"] for e in service.events()]
    assert "shutdown.begin" in events and "shutdown.flushed" in events and "service.stopped" in events
    assert events.index("shutdown.begin") < events.index("shutdown.flushed") < events.index("service.stopped")


def test_ctrl_c_flushes_and_exits_130_without_a_traceback(tmp_path: Path, serve: Any) -> None:
    """SIGINT (Ctrl-C on `make run`) is a graceful stop too: the held order goes, then the
    process exits 130 with no traceback."""
    fake = FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))})
    fake_server = serve(create_fake(fake))
    service = start_service(
        tmp_path, fake_server.url + "/api/v3", buffer={"debounce_seconds": 60.0, "max_wait_seconds": 120.0}
    )
    body = json.dumps({**SHOPIFY, "id": 71_000}).encode()
    answer = httpx.post(
        service.url + "/webhooks/shopify/7", content=body, headers=shopify_headers(SECRETS["shopify"], body)
    )
    assert answer.json() == {"status": "accepted"}
    assert service.stop(signal.SIGINT) == 130
    assert fake.order(7, "71000") is not None
    output = b"".join(service.lines).decode()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_sandbox_config_and_send_sample_show_an_order_accepted(tmp_path: Path) -> None:
    """`make run`'s config needs no credentials; `send-sample` gets an order to `order.accepted`;
    the admin listener is on, with a token made up at start and printed (not logged)."""
    port, admin_port = free_port(), free_port()
    service = ServiceProcess(ROOT / "examples" / "sandbox.toml", port, admin_port=admin_port)
    try:
        service.wait_ready()
        printed = [line for line in service.lines if line.startswith(b"order-bridge: admin console on ")]
        assert len(printed) == 1, service.lines
        url, token = printed[0].decode().split()[4], printed[0].decode().split()[-1]
        assert url == f"http://127.0.0.1:{admin_port}/" and len(token) >= 16
        assert httpx.get(url + "api/lanes").status_code == 401
        assert httpx.get(url + "api/lanes", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert all(token not in json.dumps(e) for e in service.events() if e.get("event") != "<not json>")
        for platform, integration in (("shopify", 1), ("woocommerce", 2)):
            sent = subprocess.run(
                [sys.executable, "-m", "service", "send-sample", "--platform", platform,
                 f"http://127.0.0.1:{port}/webhooks/{platform}/{integration}"],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert b'"accepted"' in sent.stdout
        wait_for(lambda: sum(e["event"] == "order.accepted" for e in service.events()) == 2, timeout=15)
        listed = httpx.get(f"http://127.0.0.1:{port}/sandbox/api/v3/orders", auth=("sandbox", "sandbox")).json()
        assert len(listed["data"]) == 2
    finally:
        service.stop(signal.SIGTERM)


def _personal_values() -> set[str]:
    """E-mails, phones, names and street lines found in the fixtures (what must never be logged)."""
    keys = {"email", "phone", "first_name", "last_name", "address1", "address_1", "address2", "company", "name", "zip",
            "postcode", "city"}  # fmt: skip
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key in keys and len(value) >= 5 and not value.startswith("#"):
            found.add(value)

    for path in (FIXTURES / "shopify").glob("*.json"):
        data = json.loads(path.read_bytes())
        for section in ("shipping_address", "billing_address", "customer"):
            walk(data.get(section) or data.get("order", {}).get(section))
        for key in ("email", "phone", "contact_email"):
            if isinstance(data.get(key), str) and len(data[key]) >= 5:
                found.add(data[key])
    for path in (FIXTURES / "woocommerce").glob("*.json"):
        data = json.loads(path.read_bytes())
        walk(data.get("shipping"))
        walk(data.get("billing"))
    assert len(found) > 40  # the fixtures really carry personal data to look for
    return found


def test_logs_carry_no_personal_data_and_no_secret(tmp_path: Path, serve: Any) -> None:
    """Every fixture through the real process, at DEBUG: no e-mail, phone, name, street or secret in any line."""
    fake = FakeSendcloud(accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))})
    fake_server = serve(create_fake(fake))
    service = start_service(tmp_path, fake_server.url + "/api/v3", logging={"level": "DEBUG"})
    with httpx.Client(base_url=service.url) as client:
        for path in sorted((FIXTURES / "shopify").glob("*.json")):
            body = path.read_bytes()
            headers = shopify_headers(SECRETS["shopify"], body, topic="orders/updated")
            client.post("/webhooks/shopify/7", content=body, headers=headers)
        for path in sorted((FIXTURES / "woocommerce").glob("*.json")):
            body = path.read_bytes()
            headers = woocommerce_headers(SECRETS["woocommerce"], body, topic="order.updated")
            client.post("/webhooks/woocommerce/8", content=body, headers=headers)
        client.post("/webhooks/shopify/7", content=b"{}", headers={"X-Shopify-Hmac-Sha256": "forged"})
    wait_for(lambda: any(e["event"] == "order.accepted" for e in service.events()), timeout=15)
    assert service.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    output = b"".join(service.lines).decode()
    assert "order.buffered" in output and "order.dead_lettered" in output
    assert all(e["event"] != "<not json>" for e in service.events())
    secrets = [SECRET_KEY, *SECRETS.values()]
    leaked = [value for value in [*_personal_values(), *secrets] if value in output]
    assert not leaked, leaked[:5]
