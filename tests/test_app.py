"""Every answer of the HTTP contract (DESIGN §3), over real HTTP against the running service.

Each bad input is checked for its exact status and body, and for losing nothing that was
already accepted: orders accepted before it still reach the fake Sendcloud.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import helpers
from tests.conftest import SECRETS, ledger_from_metrics
from tests.helpers import signature, wait_for

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY = (ROOT / "adapters" / "samples" / "shopify.json").read_bytes()
WOO = (ROOT / "adapters" / "samples" / "woocommerce.json").read_bytes()


def shopify_headers(body: bytes, *, topic: str = "orders/create", delivery: str | None = None) -> dict[str, str]:
    return helpers.shopify_headers(SECRETS["shopify"], body, topic=topic, delivery=delivery)


def woo_headers(body: bytes, *, topic: str = "order.created", delivery: str | None = None) -> dict[str, str]:
    return helpers.woocommerce_headers(SECRETS["woocommerce"], body, topic=topic, delivery=delivery)


def post(url: str, body: bytes, headers: dict[str, str], path: str = "/webhooks/shopify/7") -> httpx.Response:
    return httpx.post(url + path, content=body, headers=headers, timeout=10)


def shopify_order_id() -> str:
    return str(json.loads(SHOPIFY)["id"])


def error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    return response.status_code, body["error"]


@pytest.fixture
def running(stack: Any) -> Any:
    """A stack that already accepted one Shopify order (the order every bad request must not lose)."""
    started = stack()
    answer = post(started.url, SHOPIFY, shopify_headers(SHOPIFY))
    assert (answer.status_code, answer.json()) == (200, {"status": "accepted"})
    return started


def assert_first_order_arrives(stack: Any) -> None:
    """The order accepted before the bad input still reaches Sendcloud, and the ledger balances."""
    wait_for(lambda: stack.fake.order(7, shopify_order_id()) is not None)
    ledger_from_metrics(stack.url)


def test_signed_shopify_and_woocommerce_orders_are_accepted_and_reach_sendcloud(running: Any) -> None:
    """200 accepted within milliseconds; the order reaches the fake after the debounce."""
    answer = post(running.url, WOO, woo_headers(WOO), "/webhooks/woocommerce/8")
    assert (answer.status_code, answer.json()) == (200, {"status": "accepted"})
    assert_first_order_arrives(running)
    wait_for(lambda: running.fake.order(8, "727") is not None)


def test_duplicate_delivery(running: Any) -> None:
    """The same delivery id again is answered `duplicate` and sends nothing more."""
    body = json.dumps({**json.loads(SHOPIFY), "updated_at": "2030-01-01T00:00:00+00:00"}).encode()
    headers = shopify_headers(body, delivery="dup-1")
    assert post(running.url, body, headers).json() == {"status": "accepted"}
    answer = post(running.url, body, headers)
    assert (answer.status_code, answer.json()) == (200, {"status": "duplicate"})
    assert_first_order_arrives(running)


@pytest.mark.parametrize("topic", ["orders/edited", "orders/delete", "customers/create"])
def test_topics_that_are_not_orders_are_ignored(running: Any, topic: str) -> None:
    """Topics off the allow-list are answered 200 `ignored`, never 400 (the shop would retry)."""
    answer = post(running.url, b'{"id": 1}', shopify_headers(b'{"id": 1}', topic=topic))
    assert (answer.status_code, answer.json()) == (200, {"status": "ignored", "reason": "topic"})
    assert_first_order_arrives(running)


def test_nothing_to_ship_is_ignored(running: Any) -> None:
    """An order whose lines need no shipping is answered `ignored` and never sent."""
    body = (FIXTURES / "shopify" / "order_bridge__gbp_digital_only_no_shippable_items.json").read_bytes()
    answer = post(running.url, body, shopify_headers(body))
    assert answer.json() == {"status": "ignored", "reason": "no_shippable_items"}
    assert_first_order_arrives(running)


def test_unsupported_currency_is_dead_lettered(running: Any) -> None:
    """An order no currency can carry is answered `dead_lettered` (no retry) and kept with its reason."""
    body = (FIXTURES / "shopify" / "erp_addons__order_116901_pln_pl_paid_unfulfilled.json").read_bytes()
    answer = post(running.url, body, shopify_headers(body))
    assert (answer.status_code, answer.json()) == (200, {"status": "dead_lettered"})
    letters = running.call(running.state.store.dead_letters())
    assert [(d.reason, d.integration_id) for d in letters] == [("unsupported_currency", 7)]
    assert_first_order_arrives(running)


def test_malformed_body_is_400_with_a_reason(running: Any) -> None:
    """A signed JSON body that is not an order gets 400 `malformed_body` naming the field."""
    body = b'{"id": "not-a-number", "line_items": []}'
    answer = post(running.url, body, shopify_headers(body))
    assert error(answer) == (400, "malformed_body")
    assert "$.id" in answer.json()["detail"]
    assert_first_order_arrives(running)


def test_missing_topic_is_400(running: Any) -> None:
    """A signed delivery without its topic header is refused loudly, not silently ignored."""
    headers = shopify_headers(SHOPIFY)
    del headers["X-Shopify-Topic"]
    assert error(post(running.url, SHOPIFY, headers)) == (400, "missing_topic")


@pytest.mark.parametrize("damage", ["missing", "wrong_secret", "changed_body"])
def test_bad_signature_is_401(running: Any, damage: str) -> None:
    """A missing header, a wrong secret or a changed body gets 401."""
    headers = shopify_headers(SHOPIFY)
    body = SHOPIFY
    if damage == "missing":
        del headers["X-Shopify-Hmac-Sha256"]
    elif damage == "wrong_secret":
        headers["X-Shopify-Hmac-Sha256"] = signature("not-the-secret", SHOPIFY)
    else:
        body = SHOPIFY.replace(b"#1047", b"#9047")
        assert body != SHOPIFY
    assert error(post(running.url, body, headers)) == (401, "invalid_signature")
    assert_first_order_arrives(running)


@pytest.mark.parametrize(
    "path", ["/webhooks/shopify/999", "/webhooks/woocommerce/7", "/webhooks/shopify/abc", "/webhooks/magento/7"]
)
def test_unknown_integration_or_wrong_platform_is_404(running: Any, path: str) -> None:
    """An integration that is not configured, or not for that platform, gets 404."""
    assert error(post(running.url, SHOPIFY, shopify_headers(SHOPIFY), path)) == (404, "unknown_integration")


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send `request` (the connection stays open, so a body it leaves unfinished stays pending)
    and read the answer's status and JSON body. An answer that needs more of the body than was
    sent never comes: the read times out after 5 s and fails the test."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise AssertionError("no answer in 5 s: the server waits for a body that never comes") from None
            assert data, "connection closed without an answer"
            received += data
        header_block, _, rest = received.partition(b"\r\n\r\n")
        status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (h.partition(": ") for h in header_lines) if k.lower() == "content-length")
        while len(rest) < length:
            data = sock.recv(65536)
            assert data, "connection closed inside the answer"
            rest += data
    return int(status_line.split()[1]), json.loads(rest[:length])


def test_body_over_the_limit_is_413_without_reading_it_whole(stack: Any) -> None:
    """Over max_body_bytes: 413 from Content-Length alone with none of the body sent, and from a
    chunked body once the bytes read pass the limit, with the rest of it never sent."""
    limit = 10_000
    started = stack(server={"max_body_bytes": limit})
    head = "POST /webhooks/shopify/7 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in shopify_headers(SHOPIFY).items())

    # A declared length 100 times the limit and no body at all: the answer cannot wait for it.
    status, body = raw_exchange(started.url, f"{head}Content-Length: {100 * limit}\r\n\r\n".encode())
    assert (status, body["error"]) == (413, "payload_too_large")

    # Chunked, no length: 11 chunks of 1 000 bytes (the limit + 1 000) and no final chunk, so
    # the body never ends: a server that reads it whole before checking never answers.
    chunks = (b"3e8\r\n" + b"a" * 1000 + b"\r\n") * (limit // 1000 + 1)
    status, body = raw_exchange(started.url, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks)
    assert (status, body["error"]) == (413, "payload_too_large")

    # A body of exactly the limit is read, and answered on its merits (not an order here).
    exact = b"[" + b" " * (limit - 2) + b"]"
    assert error(post(started.url, exact, shopify_headers(exact))) == (400, "malformed_body")
    assert post(started.url, SHOPIFY, shopify_headers(SHOPIFY)).json() == {"status": "accepted"}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"order=1", "application/x-www-form-urlencoded"), (b"hello", "text/plain"), (b"<order/>", None)],
)
def test_non_json_is_415(running: Any, body: bytes, content_type: str | None) -> None:
    """A body that is not JSON (by Content-Type, or by its first byte when there is none) gets 415."""
    headers = shopify_headers(body)
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    assert error(post(running.url, body, headers)) == (415, "unsupported_media_type")


def test_woocommerce_creation_ping_is_200_before_any_signature_check(running: Any) -> None:
    """WooCommerce's unsigned, form-encoded `webhook_id=N` ping must get exactly 200."""
    answer = httpx.post(
        running.url + "/webhooks/woocommerce/8",
        content=b"webhook_id=35",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (answer.status_code, answer.json()) == (200, {"status": "ignored", "reason": "ping"})


def test_full_buffer_is_503_with_retry_after_and_keeps_what_it_has(stack: Any) -> None:
    """Past max_pending a webhook gets 503 + Retry-After; the orders already buffered are all sent."""
    started = stack(buffer={"max_pending": 2, "debounce_seconds": 0.5, "max_wait_seconds": 1.0})
    ids = []
    for n in range(2):
        body = json.dumps({**json.loads(SHOPIFY), "id": n + 1}).encode()
        ids.append(str(n + 1))
        assert post(started.url, body, shopify_headers(body)).json() == {"status": "accepted"}
    answer = post(started.url, SHOPIFY, shopify_headers(SHOPIFY))
    assert error(answer) == (503, "buffer_full")
    assert int(answer.headers["Retry-After"]) > 0
    wait_for(lambda: all(started.fake.order(7, order_id) for order_id in ids))
    assert post(started.url, SHOPIFY, shopify_headers(SHOPIFY)).json() == {"status": "accepted"}


def test_a_repeat_under_a_new_delivery_id_is_stale(running: Any) -> None:
    """The same order content again under another delivery id is a repeat: `ignored`, reason `stale`."""
    answer = post(running.url, SHOPIFY, shopify_headers(SHOPIFY))
    assert (answer.status_code, answer.json()) == (200, {"status": "ignored", "reason": "stale"})
    assert_first_order_arrives(running)


def test_shutting_down_is_503_and_not_ready(running: Any) -> None:
    """From the start of shutdown, readiness fails and webhooks get 503 + Retry-After."""
    assert httpx.get(running.url + "/readyz").status_code == 200
    running.state.begin_shutdown()
    ready = httpx.get(running.url + "/readyz")
    assert (ready.status_code, ready.json()["reasons"]) == (503, ["shutting_down"])
    answer = post(running.url, WOO, woo_headers(WOO), "/webhooks/woocommerce/8")
    assert error(answer) == (503, "shutting_down")
    assert "Retry-After" in answer.headers
    assert httpx.get(running.url + "/healthz").json() == {"status": "ok"}
    assert_first_order_arrives(running)


#: DESIGN §7's metrics as the doc spells them (prefix `order_bridge_` left off), with their types.
DESIGNED_METRICS = {
    "webhooks_total{platform,outcome}": "counter",
    "webhook_duration_seconds": "histogram",
    "orders_pending": "gauge",
    "oldest_pending_age_seconds": "gauge",
    "batches_total{outcome}": "counter",
    "batch_size": "histogram",
    "sendcloud_requests_total{status}": "counter",
    "sendcloud_request_duration_seconds": "histogram",
    "orders_accepted_total": "counter",
    "orders_dead_lettered_total{reason}": "counter",
    "order_end_to_end_seconds": "histogram",
    "dead_letters_stored": "gauge",
    "dead_letters_resolved_total{how}": "counter",
    "order_versions_total{fate}": "counter",
    "store_write_seconds": "histogram",
    "flusher": "gauge",
}
_DESIGN_METRIC = re.compile(r"`([a-z_]+(?:\{[a-z_,]+\})?)`")


def design_section_7() -> tuple[set[str], set[str]]:
    """(metrics, `webhooks_total` outcomes) as DESIGN §7 lists them."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = text[text.index("## 7. Observability") : text.index("## 8.")]
    # The list runs from its heading to the dash that starts the ledger's explanation.
    heading = "Metrics (prefix `order_bridge_`):"
    listed = section[section.index(heading) + len(heading) :].split(" — ", 1)[0]
    heading = "`webhooks_total` outcomes:"
    outcomes = section[section.index(heading) + len(heading) :].split("\n\n", 1)[0]
    return set(_DESIGN_METRIC.findall(listed)), set(_DESIGN_METRIC.findall(outcomes))


def test_metrics_exposes_the_designed_names(running: Any) -> None:
    """/metrics is Prometheus text with every metric of DESIGN §7, each with samples, its type
    and its labels, and no metric the design does not name."""
    dead = (FIXTURES / "shopify" / "erp_addons__order_116901_pln_pl_paid_unfulfilled.json").read_bytes()
    assert post(running.url, dead, shopify_headers(dead)).json() == {"status": "dead_lettered"}
    assert_first_order_arrives(running)
    designed, outcomes = design_section_7()
    assert designed == set(DESIGNED_METRICS), "DESIGNED_METRICS no longer matches DESIGN §7"

    answer = httpx.get(running.url + "/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text) if f.name.startswith("order_bridge_")}
    expected_families = set()
    for spelled, kind in DESIGNED_METRICS.items():
        name, _, labels = spelled.rstrip("}").partition("{")
        family_name = "order_bridge_" + (name.removesuffix("_total") if kind == "counter" else name)
        expected_families.add(family_name)
        # A metric whose HELP line survives alone parses as type "unknown", without samples.
        family = families.get(family_name)
        assert family is not None, f"{spelled} is missing from /metrics"
        assert family.type == kind, (spelled, family.type)
        assert family.samples, f"{spelled} has no sample"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(filter(None, labels.split(","))), (spelled, sample)
    assert set(families) == expected_families, "a metric /metrics exports is not in DESIGN §7"

    def value(name: str, **labels: str) -> float:
        family = families[name.removesuffix("_total")]
        return sum(s.value for s in family.samples if s.name == name and labels.items() <= s.labels.items())

    assert value("order_bridge_webhooks_total", outcome="accepted", platform="shopify") == 1.0
    assert value("order_bridge_webhooks_total", outcome="dead_lettered", platform="shopify") == 1.0
    assert {s.labels["outcome"] for s in families["order_bridge_webhooks"].samples} <= outcomes
    assert value("order_bridge_orders_accepted_total") == 1.0
    assert value("order_bridge_orders_dead_lettered_total", reason="unsupported_currency") == 1.0
    assert value("order_bridge_dead_letters_stored") == 1.0
    assert value("order_bridge_sendcloud_requests_total", status="201") >= 1.0
    assert value("order_bridge_batches_total", outcome="accepted") >= 1.0


def test_unknown_platform_paths_do_not_become_metric_labels(running: Any) -> None:
    """A made-up platform in the URL is counted as `unknown`: clients cannot grow the metrics."""
    for n in range(5):
        post(running.url, SHOPIFY, shopify_headers(SHOPIFY), f"/webhooks/made-up-{n}/7")
    text = httpx.get(running.url + "/metrics").text
    assert "made-up" not in text
    assert 'order_bridge_webhooks_total{outcome="not_found",platform="unknown"} 5.0' in text
