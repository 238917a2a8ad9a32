"""Webhook signatures and headers, with bodies signed the way each platform signs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters import get_adapter
from tests.helpers import signature, woocommerce_signature

FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY_BODY = (FIXTURES / "shopify" / "bag_server__orders_create_1030_aud_au_unit_slash_address.json").read_bytes()
WOO_BODY = (FIXTURES / "woocommerce" / "wc_rest_docs__v3_order_727_processing_us_flat_rate.json").read_bytes()
SECRET = "shpss_0123456789abcdef"
OLD_SECRET = "shpss_previous"


@pytest.mark.parametrize("name", ["X-Shopify-Hmac-Sha256", "x-shopify-hmac-sha256", "SHOPIFY-HMAC-SHA256"])
def test_signature_passes_under_any_header_spelling(name: str) -> None:
    """A body signed like Shopify signs it verifies, whatever the header's case or prefix."""
    headers = {name: signature(SECRET, SHOPIFY_BODY)}
    assert get_adapter("shopify").verify(headers, SHOPIFY_BODY, [SECRET])


def test_signature_checks_every_secret_for_rotation() -> None:
    """During a rotation both the old and the new secret are accepted."""
    adapter = get_adapter("shopify")
    for signer in (SECRET, OLD_SECRET):
        headers = {"X-Shopify-Hmac-Sha256": signature(signer, SHOPIFY_BODY)}
        assert adapter.verify(headers, SHOPIFY_BODY, [SECRET, OLD_SECRET])
    headers = {"X-Shopify-Hmac-Sha256": signature(OLD_SECRET, SHOPIFY_BODY)}
    assert not adapter.verify(headers, SHOPIFY_BODY, [SECRET])


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
def test_one_changed_byte_fails(platform: str) -> None:
    """Changing any single byte of the body breaks the signature."""
    body = SHOPIFY_BODY if platform == "shopify" else WOO_BODY
    good = signature(SECRET, body)
    headers = {"X-Shopify-Hmac-Sha256": good, "X-WC-Webhook-Signature": good}
    adapter = get_adapter(platform)
    assert adapter.verify(headers, body, [SECRET])
    for index in (0, len(body) // 2, len(body) - 1):
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        assert not adapter.verify(headers, tampered, [SECRET])


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
def test_wrong_secret_missing_header_and_no_secrets_fail(platform: str) -> None:
    """A wrong secret, a missing or empty header, or no configured secret never verifies."""
    adapter = get_adapter(platform)
    body = SHOPIFY_BODY if platform == "shopify" else WOO_BODY
    name = "X-Shopify-Hmac-Sha256" if platform == "shopify" else "X-WC-Webhook-Signature"
    good = {name: signature(SECRET, body)}
    assert not adapter.verify({name: signature("wrong", body)}, body, [SECRET])
    assert not adapter.verify({}, body, [SECRET])
    assert not adapter.verify({name: ""}, body, [SECRET])
    assert not adapter.verify(good, body, [])
    assert not adapter.verify(good, body, [""])
    assert not adapter.verify({name: "not base64 at all \u00e9"}, body, [SECRET])


def test_woocommerce_secret_with_html_entities_is_decoded_like_wordpress() -> None:
    """WooCommerce keys the HMAC with the secret as typed; `&amp;` in storage is `&` on the wire."""
    typed = "p&ss<word>"
    headers = {"X-WC-Webhook-Signature": woocommerce_signature("p&amp;ss&lt;word&gt;", WOO_BODY)}
    assert get_adapter("woocommerce").verify(headers, WOO_BODY, [typed])


def test_signature_header_whitespace_is_tolerated() -> None:
    """Proxies sometimes pad header values; surrounding whitespace does not break the check."""
    headers = {"x-wc-webhook-signature": f"  {woocommerce_signature(SECRET, WOO_BODY)} "}
    assert get_adapter("woocommerce").verify(headers, WOO_BODY, [SECRET])


def test_shopify_delivery_id_and_topic_read_both_spellings() -> None:
    """Delivery id and topic come from `X-Shopify-*` or the un-prefixed `shopify-*` headers."""
    adapter = get_adapter("shopify")
    prefixed = {"X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "X-Shopify-Topic": "orders/create"}
    bare = {"shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "shopify-topic": "orders/create"}
    for headers in (prefixed, bare):
        assert adapter.delivery_id(headers) == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        assert adapter.topic(headers) == "orders/create"
    assert adapter.delivery_id({"X-Shopify-Event-Id": "e-1"}) == "e-1"
    assert adapter.delivery_id({}) is None
    assert adapter.topic({}) is None


def test_woocommerce_headers_from_a_real_delivery_log() -> None:
    """The headers WooCommerce really sent (a delivery log) give the delivery id and topic."""
    name = "wc_rest_docs__legacy_v3_webhook_delivery_log_378_request_headers_action_topic.json"
    log = json.loads((FIXTURES / "woocommerce" / name).read_bytes())
    headers = {name: str(value) for name, value in log["webhook_delivery"]["request_headers"].items()}
    adapter = get_adapter("woocommerce")
    assert adapter.delivery_id(headers) == "378"
    assert adapter.topic(headers) == "action.woocommerce_add_to_cart"
    assert adapter.topic(headers) not in adapter.order_topics


def test_order_topics_are_the_designed_allow_lists() -> None:
    """Only the order topics of DESIGN §1 step 4 are translated; edits and deletes are not."""
    assert get_adapter("shopify").order_topics == {
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/fulfilled",
        "orders/partially_fulfilled",
    }
    assert get_adapter("woocommerce").order_topics == {"order.created", "order.updated", "order.restored"}


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
def test_sign_gives_a_delivery_the_adapter_verifies_and_reads(platform: str) -> None:
    """`Adapter.sign` is the platform's delivery: verified by the same adapter, with its topic and delivery id."""
    adapter = get_adapter(platform)
    body = adapter.sample()
    headers = adapter.sign(body, SECRET, delivery_id="d-1")
    assert adapter.verify(headers, body, [SECRET])
    assert not adapter.verify(headers, body, [OLD_SECRET])
    assert adapter.delivery_id(headers) == "d-1"
    assert adapter.topic(headers) in adapter.order_topics
    assert adapter.delivery_id(adapter.sign(body, SECRET)) != adapter.delivery_id(adapter.sign(body, SECRET))
    updated = next(topic for topic in sorted(adapter.order_topics) if "update" in topic)
    assert adapter.topic(adapter.sign(body, SECRET, topic=updated)) == updated
    # what the adapter read above (signature, topic, delivery id) is documented for the OpenAPI document
    documented = {name.lower() for name in adapter.headers}
    read = {name.lower() for name, value in headers.items() if value in (headers_signature(headers), "d-1")}
    assert read and read <= documented
    assert any(name.lower() in documented for name, value in headers.items() if value == adapter.topic(headers))


def test_only_the_woocommerce_creation_ping_is_a_ping() -> None:
    """WooCommerce's unsigned `webhook_id=N` is its ping; Shopify has none; an order body is never one."""
    woo, shopify = get_adapter("woocommerce"), get_adapter("shopify")
    for body in (b"webhook_id=35", b" webhook_id=1\n"):
        assert woo.is_ping({}, body)
        assert not shopify.is_ping({}, body)
    for body in (b"webhook_id=", b"webhook_id=3&x=1", woo.sample(), b""):
        assert not woo.is_ping({}, body)
    assert woo.ping and shopify.ping is None


@pytest.mark.parametrize("platform", ["shopify", "woocommerce"])
def test_sample_translates_and_its_secret_is_the_sandbox_configs(platform: str) -> None:
    """`send-sample`'s defaults: the sample is an order to ship, and its secret is examples/sandbox.toml's."""
    adapter = get_adapter(platform)
    assert adapter.translate(adapter.sample(), 1).order_id
    sandbox = (Path(__file__).parent.parent / "examples" / "sandbox.toml").read_text()
    assert f'platform = "{platform}"\nsecrets = ["{adapter.sample_secret}"]' in sandbox


def headers_signature(headers: dict[str, str]) -> str:
    """The one header value that is a base64 SHA-256 HMAC (44 characters ending in `=`)."""
    return next(value for value in headers.values() if len(value) == 44 and value.endswith("="))
