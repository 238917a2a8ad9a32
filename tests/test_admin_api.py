"""The admin API (DESIGN §9) over real HTTP: the service and its admin listener on one event
loop, the fake Sendcloud enforcing the spec, real signatures.

Every route: auth (missing, wrong, rotated token; the console's cookie and its anti-forgery
header), lanes (pause holds, flush, resume), dead letters (filters, paging, replay that fails
again, replay that succeeds once Sendcloud takes the currency, bulk replay, discard), an order's
history through coalescing, sending, an update Sendcloud refuses and its replay, and that no
answer carries personal data. The replay after a config reload runs on a real process.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.admin.auth import console_cookie
from service.fake_sendcloud import Account, FakeSendcloud
from tests.adminlib import SLOW, deliver, fake_without, order_body
from tests.conftest import (
    ADMIN_TOKEN,
    INTEGRATIONS,
    PUBLIC_KEY,
    SECRET_KEY,
    ServiceProcess,
    free_port,
    ledger_from_metrics,
    service_toml,
)
from tests.helpers import shopify_headers, wait_for

ROOT = Path(__file__).parent.parent
SAMPLE = json.loads((ROOT / "adapters" / "samples" / "shopify.json").read_bytes())
SECRET = "shopify-test-secret"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: every route of the admin API, with a harmless target
ROUTES = [
    ("GET", "/api/lanes"),
    ("POST", "/api/lanes/7/flush"),
    ("POST", "/api/lanes/7/pause"),
    ("POST", "/api/lanes/7/resume"),
    ("GET", "/api/dead-letters"),
    ("POST", "/api/dead-letters/replay"),
    ("POST", "/api/dead-letters/1/replay"),
    ("DELETE", "/api/dead-letters/1"),
    ("GET", "/api/orders/7/1"),
    ("GET", "/api/openapi.json"),
]


def admin(stack: Any, method: str, path: str, **options: Any) -> httpx.Response:
    return httpx.request(method, stack.admin_url + path, headers=AUTH, timeout=10, **options)


def lane(stack: Any, integration_id: int = 7) -> dict[str, Any]:
    lanes = admin(stack, "GET", "/api/lanes").json()["lanes"]
    (found,) = [x for x in lanes if x["integration_id"] == integration_id]
    return dict(found)


# ---------------------------------------------------------------- auth


def test_every_route_needs_a_valid_token_and_says_nothing_else(stack: Any) -> None:
    started = stack(with_admin=True)
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": ADMIN_TOKEN}):
            answer = httpx.request(method, started.admin_url + path, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json() == {"error": "unauthorized", "detail": "Unauthorized."}
            assert answer.headers["www-authenticate"] == "Bearer"
        assert admin(started, method, path).status_code != 401, (method, path)
    # a console page sends the browser to the login form instead
    page = httpx.get(started.admin_url + "/dead-letters")
    assert (page.status_code, page.headers["location"]) == (303, "/login")


def test_the_consoles_cookie_needs_the_anti_forgery_header_to_change_anything(stack: Any) -> None:
    started = stack(with_admin=True)
    login = httpx.post(started.admin_url + "/login", data={"token": ADMIN_TOKEN})
    assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
    assert "samesite=strict" in login.headers["set-cookie"].lower()
    # the cookie is not the token: what a browser sends to other local ports is no API token
    assert login.cookies["order_bridge_admin"] == console_cookie(ADMIN_TOKEN) != ADMIN_TOKEN
    raw = {"order_bridge_admin": ADMIN_TOKEN}
    assert httpx.get(started.admin_url + "/api/lanes", cookies=raw).status_code == 401
    bearer = {"Authorization": f"Bearer {console_cookie(ADMIN_TOKEN)}"}
    assert httpx.get(started.admin_url + "/api/lanes", headers=bearer).status_code == 401
    cookies = {"order_bridge_admin": console_cookie(ADMIN_TOKEN)}
    assert httpx.get(started.admin_url + "/api/lanes", cookies=cookies).status_code == 200
    assert httpx.post(started.admin_url + "/api/lanes/7/pause", cookies=cookies).status_code == 401
    forged = httpx.post(started.admin_url + "/api/lanes/7/pause", cookies=cookies, headers={"X-Requested-With": "x"})
    assert forged.status_code == 401 and lane(started)["paused"] is False
    ok = httpx.post(
        started.admin_url + "/api/lanes/7/pause", cookies=cookies, headers={"X-Requested-With": "order-bridge"}
    )
    assert ok.status_code == 200 and lane(started)["paused"] is True
    bad_login = httpx.post(started.admin_url + "/login", data={"token": "not-the-token-at-all"})
    assert bad_login.status_code == 401 and "set-cookie" not in bad_login.headers


def test_several_tokens_work_at_once_for_rotation(stack: Any) -> None:
    new, old = "the-new-token-abcdefghijkl", "the-old-token-abcdefghijkl"
    started = stack(with_admin=True, admin={"token": [new, old]})
    for token in (new, old):
        answer = httpx.get(started.admin_url + "/api/lanes", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200


def test_the_admin_routes_are_not_on_the_webhook_port(stack: Any) -> None:
    started = stack(with_admin=True)
    for method, path in [*ROUTES, ("GET", "/"), ("GET", "/login")]:
        answer = httpx.request(method, started.url + path, headers=AUTH)
        assert answer.status_code in (404, 405), (method, path)


# ---------------------------------------------------------------- lanes


def test_a_paused_lane_keeps_accepting_and_holds_until_resumed(stack: Any) -> None:
    started = stack(with_admin=True, buffer=SLOW)
    every = {x["integration_id"] for x in admin(started, "GET", "/api/lanes").json()["lanes"]}
    assert every == set(INTEGRATIONS)  # configured integrations appear before any order
    assert deliver(started, order_body(1)) == "accepted"
    shown = lane(started)
    assert (shown["pending"], shown["platform"], shown["next_flush"], shown["paused"]) == (
        1,
        "shopify",
        "debounce",
        False,
    )
    assert 0 < shown["next_flush_in_seconds"] <= 30 and shown["oldest_age_seconds"] >= 0

    assert admin(started, "POST", "/api/lanes/7/pause").json()["paused"] is True
    assert deliver(started, order_body(2)) == "accepted"
    refused = admin(started, "POST", "/api/lanes/7/flush")
    assert (refused.status_code, refused.json()["error"]) == (409, "lane_paused")
    assert (lane(started)["pending"], lane(started)["next_flush"]) == (2, "paused")
    assert started.fake.requests == []

    assert admin(started, "POST", "/api/lanes/7/resume").json()["paused"] is False
    assert admin(started, "POST", "/api/lanes/7/flush").status_code == 202
    wait_for(lambda: started.fake.order(7, "1") is not None and started.fake.order(7, "2") is not None)
    wait_for(lambda: lane(started)["pending"] == 0)
    assert admin(started, "POST", "/api/lanes/999/pause").status_code == 404
    assert admin(started, "POST", "/api/lanes/x/flush").status_code == 400
    ledger_from_metrics(started.url)


# ---------------------------------------------------------------- dead letters


def test_dead_letters_are_filtered_paged_replayed_and_discarded(stack: Any) -> None:
    from structlog.testing import capture_logs

    started = stack(fake_without("GBP"), with_admin=True)
    with capture_logs() as logs:
        for order_id in (11, 12, 13):
            assert deliver(started, order_body(order_id, currency="PLN")) == "dead_lettered"
        assert deliver(started, order_body(14, currency="GBP")) == "accepted"  # Sendcloud refuses GBP here
        wait_for(lambda: started.state.store.dead_letter_count() == 4)
    # the log names each letter by the id the API and `order-bridge admin replay ID` take
    logged = [(e["order_id"], e["dead_letter_id"]) for e in logs if e["event"] == "order.dead_lettered"]
    assert logged == [("11", 1), ("12", 2), ("13", 3), ("14", 4)]

    listed = admin(started, "GET", "/api/dead-letters").json()
    letters = listed["dead_letters"]
    assert [(x["order_id"], x["order_number"], x["reason"], x["replays"]) for x in letters] == [
        ("11", "#11", "unsupported_currency", "webhook"),
        ("12", "#12", "unsupported_currency", "webhook"),
        ("13", "#13", "unsupported_currency", "webhook"),
        ("14", "#14", "sendcloud_rejected", "order"),
    ]
    assert listed["next_cursor"] is None and letters[3]["pointer"].endswith("/currency")
    first = admin(started, "GET", "/api/dead-letters", params={"reason": "unsupported_currency", "limit": 2}).json()
    assert [x["order_id"] for x in first["dead_letters"]] == ["11", "12"] and first["next_cursor"]
    rest = admin(
        started, "GET", "/api/dead-letters", params={"reason": "unsupported_currency", "cursor": first["next_cursor"]}
    ).json()
    assert [x["order_id"] for x in rest["dead_letters"]] == ["13"] and rest["next_cursor"] is None
    assert admin(started, "GET", "/api/dead-letters", params={"integration_id": 8}).json()["dead_letters"] == []
    later = admin(started, "GET", "/api/dead-letters", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["dead_letters"] == []

    # PLN is still not a currency Sendcloud takes: the replay fails again, the letter stays
    failed = admin(started, "POST", f"/api/dead-letters/{letters[0]['id']}/replay").json()
    assert (failed["status"], failed["reason"], failed["attempts"]) == ("failed", "unsupported_currency", 1)
    assert admin(started, "GET", "/api/dead-letters").json()["dead_letters"][0]["attempts"] == 1

    discarded = admin(started, "DELETE", f"/api/dead-letters/{letters[1]['id']}")
    assert discarded.json() == {"id": letters[1]["id"], "status": "discarded"}
    assert admin(started, "DELETE", f"/api/dead-letters/{letters[1]['id']}").status_code == 404
    assert admin(started, "POST", f"/api/dead-letters/{letters[1]['id']}/replay").status_code == 404

    # Sendcloud takes GBP again: the bulk replay by reason resends the refused order
    started.fake.currencies = frozenset({"EUR", "GBP", "USD"})
    bulk = admin(started, "POST", "/api/dead-letters/replay", json={"reason": "sendcloud_rejected"}).json()
    assert (bulk["matched"], bulk["buffered"], bulk["failed"], bulk["stopped"]) == (1, 1, 0, None)
    wait_for(lambda: started.fake.order(7, "14") is not None)
    remaining = [x["order_id"] for x in admin(started, "GET", "/api/dead-letters").json()["dead_letters"]]
    assert remaining == ["11", "13"]
    values = ledger_from_metrics(started.url, restarted=True)  # replays are accepted without a webhook
    assert values["dead_lettered"] == 1  # the GBP version; the PLN bodies never became versions
    metrics = httpx.get(started.url + "/metrics").text
    assert 'order_bridge_dead_letters_resolved_total{how="replayed"} 1.0' in metrics
    assert 'order_bridge_dead_letters_resolved_total{how="discarded"} 1.0' in metrics


def test_bad_parameters_are_named(stack: Any) -> None:
    started = stack(with_admin=True)
    for params, name in (
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"cursor": "-1"}, "cursor"),
        ({"integration_id": "seven"}, "integration_id"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-12-03T10:00:00"}, "since"),  # no offset: ambiguous
    ):
        answer = admin(started, "GET", "/api/dead-letters", params=params)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_parameter", params
        assert answer.json()["detail"].startswith(name + ":"), params
    for body in (b"[", b'{"reason": 5}', b'{"colour": "red"}'):
        answer = admin(started, "POST", "/api/dead-letters/replay", content=body)
        assert answer.status_code == 400, body
    assert admin(started, "GET", "/api/orders/0/1").status_code == 400
    assert admin(started, "GET", "/api/orders/7/unknown").status_code == 404


# ---------------------------------------------------------------- an order's history


def test_an_orders_history_from_coalescing_to_replay(stack: Any) -> None:
    """Two versions coalesced and sent, a duplicate delivery, an update Sendcloud refuses (a
    dead letter), and its replay once Sendcloud takes the currency: every step, in order."""
    started = stack(fake_without("GBP"), with_admin=True, buffer={"debounce_seconds": 0.3, "max_wait_seconds": 2.0})
    assert deliver(started, order_body(21, 0), delivery="d1") == "accepted"
    assert deliver(started, order_body(21, 1), delivery="d2") == "accepted"
    wait_for(lambda: started.fake.order(7, "21") is not None)
    assert deliver(started, order_body(21, 1), delivery="d2") == "duplicate"
    assert deliver(started, order_body(21, 2, currency="GBP"), delivery="d3") == "accepted"
    wait_for(lambda: started.state.store.dead_letter_count() == 1)
    (letter,) = admin(started, "GET", "/api/dead-letters").json()["dead_letters"]
    started.fake.currencies = frozenset({"EUR", "GBP", "USD"})
    replayed = admin(started, "POST", f"/api/dead-letters/{letter['id']}/replay").json()
    assert (replayed["status"], replayed["order_id"]) == ("buffered", "21")
    wait_for(lambda: len(started.fake.orders[(7, "21")].versions) == 2)
    assert started.fake.orders[(7, "21")].order["payment_details"]["total_price"]["currency"] == "GBP"

    def steps() -> list[tuple[str, str | None]]:
        record = admin(started, "GET", "/api/orders/7/21").json()
        return [(s["event"], s.get("outcome")) for s in record["history"]]

    wait_for(lambda: steps()[-1] == ("accepted", None))
    assert steps() == [
        ("received", "buffered"),
        ("received", "coalesced"),
        ("accepted", None),
        ("received", "duplicate"),
        ("received", "buffered"),
        ("rejected", None),
        ("replayed", "buffered"),
        ("accepted", None),
    ]
    record = admin(started, "GET", "/api/orders/7/21").json()
    history = record["history"]
    assert [s.get("delivery_id") for s in history[:2]] == ["d1", "d2"] and history[0]["topic"] == "orders/create"
    assert history[2]["sendcloud_id"] and history[2]["batch_id"] and history[2]["attempt"] == 1
    assert history[5]["pointer"].endswith("/currency") and "detail" not in history[5]  # Sendcloud's words stay out
    assert history[5]["dead_letter_id"] == history[6]["dead_letter_id"] == letter["id"]
    assert (record["pending"], record["in_flight"], record["dead_letters"]) == (False, False, [])
    assert admin(started, "GET", "/api/orders/7/%2321").json()["order_ids"] == ["21"]  # by number


# ---------------------------------------------------------------- no personal data


def _personal_values(value: Any) -> set[str]:
    """Every string of the sample's people and addresses (customer, billing, shipping)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in {"id", "admin_graphql_api_id", "country_code", "province_code", "country", "currency"}:
                continue
            if isinstance(inner, str) and len(inner) > 3:
                found.add(inner)
            else:
                found |= _personal_values(inner)
    return found


def test_no_personal_data_in_any_admin_answer(stack: Any) -> None:
    people = set()
    for part in ("customer", "billing_address", "shipping_address"):
        people |= _personal_values(SAMPLE.get(part) or {})
    people.add(SAMPLE["email"])
    assert len(people) > 5
    started = stack(fake_without("GBP"), with_admin=True, buffer=SLOW)
    deliver(started, order_body(31, currency="PLN"))
    deliver(started, order_body(32, currency="GBP"))
    admin(started, "POST", "/api/lanes/7/flush")
    wait_for(lambda: started.state.store.dead_letter_count() == 2)
    answers = [
        admin(started, "GET", "/api/lanes").text,
        admin(started, "GET", "/api/dead-letters").text,
        admin(started, "GET", "/api/orders/7/31").text,
        admin(started, "GET", "/api/orders/7/32").text,
        *(
            admin(started, "GET", page, cookies={"order_bridge_admin": console_cookie(ADMIN_TOKEN)}).text
            for page in ("/", "/dead-letters", "/orders?integration_id=7&q=32")
        ),
    ]
    for text in answers:
        leaked = [value for value in people if value in text]
        assert leaked == [], leaked


def test_the_openapi_document_names_every_route(stack: Any) -> None:
    started = stack(with_admin=True)
    document = admin(started, "GET", "/api/openapi.json").json()
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    named = {(m, p.replace("/7/", "/{integration_id}/").replace("/1/", "/{letter_id}/")) for m, p in ROUTES}
    named = {(m, "/api/dead-letters/{letter_id}" if p == "/api/dead-letters/1" else p) for m, p in named}
    named = {(m, "/api/orders/{integration_id}/{order}" if p.startswith("/api/orders/") else p) for m, p in named}
    assert documented == named - {("GET", "/api/openapi.json")}


# ---------------------------------------------------------------- a real process


def test_a_replay_after_a_config_reload_rescues_the_order(serve: Any, tmp_path: Path) -> None:
    """`order-bridge serve` with `[admin]`: a PLN order is a dead letter; the replay fails while
    PLN is not configured; SIGHUP with PLN added (and the old admin token rotated out) → the
    replay puts it in its lane, it reaches Sendcloud, the ledger balances."""
    from service.fake_sendcloud import create_app as create_fake

    fake = FakeSendcloud(
        accounts={PUBLIC_KEY: Account(SECRET_KEY, frozenset(INTEGRATIONS))}, currencies=frozenset({"EUR", "PLN", "USD"})
    )
    fake_server = serve(create_fake(fake))
    admin_port = free_port()
    config = tmp_path / "service.toml"

    def write(currencies: list[str], tokens: list[str]) -> None:
        text = service_toml(
            fake_server.url + "/api/v3",
            admin={"port": admin_port, "token": tokens},
            sendcloud={"currencies": currencies},
        )
        config.write_text(text)

    write(["EUR", "USD"], ["old-token-abcdefghijklmnop", "new-token-abcdefghijklmnop"])
    process = ServiceProcess(config, free_port())
    try:
        process.wait_ready()
        base = f"http://127.0.0.1:{admin_port}"
        old, new = ({"Authorization": f"Bearer {t}-token-abcdefghijklmnop"} for t in ("old", "new"))
        body = order_body(41, currency="PLN")
        answer = httpx.post(process.url + "/webhooks/shopify/7", content=body, headers=shopify_headers(SECRET, body))
        assert answer.json() == {"status": "dead_lettered"}
        (letter,) = httpx.get(base + "/api/dead-letters", headers=old).json()["dead_letters"]
        again = httpx.post(base + f"/api/dead-letters/{letter['id']}/replay", headers=old).json()
        assert (again["status"], again["attempts"]) == ("failed", 1)

        write(["EUR", "PLN", "USD"], ["new-token-abcdefghijklmnop"])
        process.process.send_signal(signal.SIGHUP)
        wait_for(lambda: httpx.get(base + "/api/lanes", headers=old).status_code == 401)
        rescued = httpx.post(base + f"/api/dead-letters/{letter['id']}/replay", headers=new).json()
        assert (rescued["status"], rescued["order_id"]) == ("buffered", "41")
        wait_for(lambda: fake.order(7, "41") is not None)
        assert httpx.get(base + "/api/dead-letters", headers=new).json()["dead_letters"] == []
        # a replayed version is accepted without a webhook: only the ledger itself must balance
        wait_for(lambda: ledger_from_metrics(process.url, restarted=True)["pending"] == 0)
    finally:
        code = process.stop(signal.SIGTERM)
    assert code == -signal.SIGTERM  # uvicorn re-raises it after the graceful shutdown (DESIGN §8)
    events = [e["event"] for e in process.events()]
    assert "deadletter.replay_failed" in events and "deadletter.replayed" in events


# ---------------------------------------------------------------- the CLI


def test_the_admin_command_prints_tables_and_exits_as_scripts_expect(
    stack: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.cli import main

    started = stack(fake_without("GBP"), with_admin=True, buffer=SLOW)
    monkeypatch.setenv("ORDER_BRIDGE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("ORDER_BRIDGE_ADMIN_URL", started.admin_url)
    deliver(started, order_body(51, currency="PLN"))
    deliver(started, order_body(52, currency="PLN"))
    deliver(started, order_body(53))

    def run(*argv: str) -> tuple[int, str]:
        code = main(["admin", *argv])
        out, err = capsys.readouterr()
        return code, out + err

    code, out = run("lanes")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["INTEGRATION", "PLATFORM", "PENDING"]
    assert any(line.split()[:3] == ["7", "shopify", "1"] for line in out.splitlines())
    assert run("pause", "7")[1] == "lane 7: paused, 1 pending\n"
    assert run("flush", "7")[0] == 1  # 409: paused
    assert run("resume", "7")[0] == 0 and run("flush", "7")[0] == 0
    wait_for(lambda: started.fake.order(7, "53") is not None)

    code, out = run("dead-letters", "--reason", "unsupported_currency")
    rows = out.splitlines()[1:]
    assert code == 0 and [row.split()[3] for row in rows] == ["51", "52"]
    first = rows[0].split()[0]
    assert run("replay", first) == (
        1,
        f"dead letter {first}: failed again (unsupported_currency: "
        "order currency PLN is not one Sendcloud accepts (EUR, GBP, USD))\n",
    )
    code, out = run("replay", "--reason", "unsupported_currency")
    assert code == 1 and out.splitlines()[1].split()[:5] == ["2", "0", "0", "0", "2"]
    assert run("discard", first) == (0, f"dead letter {first}: discarded\n")
    assert run("discard", first)[0] == 1  # gone
    code, out = run("order", "7", "#53")
    assert code == 0 and out.startswith("order 53 in integration 7\n") and "accepted" in out
    assert run("order", "7", "nothing")[0] == 1
    assert run("replay")[0] == 2
    assert main(["admin", "--token", "wrong-token-0123456789", "lanes"]) == 3
    assert main(["admin", "--url", "http://127.0.0.1:9", "lanes"]) == 3
    capsys.readouterr()


# ---------------------------------------------------------------- what the review asked to prove


def test_sendclouds_words_echoing_a_name_reach_no_answer_page_history_or_log(stack: Any) -> None:
    """Sendcloud's detail may quote the value it refused — here a name with an apostrophe and an
    e-mail address. The letter keeps it; the API, the console, the history and the log show the
    scrubbed form only."""
    from structlog.testing import capture_logs

    started = stack(with_admin=True, buffer=SLOW)
    echo = "Value 'Shaquille O'Neal' is too long; contact shaq.oneal@example.com"
    refusal = {
        "errors": [
            {
                "status": "400",
                "code": "invalid",
                "detail": echo,
                "source": {"pointer": "/data/attributes/[0]/shipping_address/name"},
            }
        ]
    }
    started.fake.fail_next(400, body=json.dumps(refusal).encode())
    with capture_logs() as logs:
        deliver(started, order_body(91))
        admin(started, "POST", "/api/lanes/7/flush")
        wait_for(lambda: started.state.store.dead_letter_count() == 1)
        (letter,) = started.call(started.state.store.dead_letters())
        assert letter.detail == echo  # kept whole, in the store only
        cookies = {"order_bridge_admin": console_cookie(ADMIN_TOKEN)}
        answers = [
            admin(started, "GET", "/api/dead-letters").text,
            admin(started, "GET", "/api/orders/7/91").text,
            admin(started, "GET", "/dead-letters", cookies=cookies).text,
            admin(started, "GET", "/orders?integration_id=7&q=91", cookies=cookies).text,
            admin(started, "POST", f"/api/dead-letters/{letter.id}/replay").text,
        ]
    shown = admin(started, "GET", "/api/orders/7/91").json()["history"]
    assert [s["event"] for s in shown][:3] == ["received", "rejected", "replayed"]
    for text in [*answers, json.dumps(logs)]:
        for word in ("Shaquille", "Neal", "shaq", "example.com"):
            assert word not in text, (word, text[:300])


def test_auth_cannot_be_walked_around_by_path_tricks(stack: Any) -> None:
    import http.client

    started = stack(with_admin=True)
    host, port = started.admin_url.removeprefix("http://").split(":")
    for path in (
        "/loginx",
        "/login/../api/lanes",
        "/login/%2e%2e/api/lanes",
        "/login%2F..%2Fapi%2Flanes",
        "/static/../api/lanes",
        "/static/%2e%2e/__init__.py",
        "/static/..%2fapi.py",
        "//api/lanes",
    ):
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status in (303, 307, 401, 404), (path, answer.status)
        assert b"lanes" not in body and b"import" not in body, path


def test_pages_forbid_framing_and_escape_what_a_shop_sent(stack: Any) -> None:
    started = stack(with_admin=True, buffer=SLOW)
    body = json.loads(order_body(92, currency="PLN"))  # a dead letter: its number is listed
    body["name"] = "<script>alert(1)</script>"
    assert deliver(started, json.dumps(body).encode()) == "dead_lettered"
    cookies = {"order_bridge_admin": console_cookie(ADMIN_TOKEN)}
    letters = admin(started, "GET", "/dead-letters", cookies=cookies)
    page = admin(started, "GET", "/orders", params={"integration_id": 7, "q": body["name"]}, cookies=cookies)
    for shown in (letters, page):
        assert shown.status_code in (200, 404)
        assert "<script>alert" not in shown.text and "&lt;script&gt;alert" in shown.text
    for answer in (page, httpx.get(started.admin_url + "/login"), admin(started, "GET", "/api/lanes")):
        assert answer.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_a_letter_in_hand_is_not_taken_twice() -> None:
    from service.admin.replay import InProgress, NotReplayable

    busy = InProgress()
    with busy.holding(1):
        with pytest.raises(NotReplayable) as refused, busy.holding(1):
            pass
        assert refused.value.code == "in_progress"
        with busy.holding(2):
            pass
    with busy.holding(1):  # free again
        pass


def test_nothing_changes_through_the_admin_api_once_shutdown_began(stack: Any) -> None:
    started = stack(with_admin=True, buffer=SLOW)
    deliver(started, order_body(93, currency="PLN"))
    started.state.begin_shutdown()
    for method, path in ROUTES:
        answer = admin(started, method, path)
        if method == "GET":
            assert answer.status_code != 503, path
        else:
            assert (answer.status_code, answer.json()["error"]) == (503, "shutting_down"), path
            assert answer.headers["retry-after"]
    assert started.state.store.dead_letter_count() == 1 and lane(started)["paused"] is False


def test_an_admin_port_in_use_stops_start_up_before_any_webhook(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    config = tmp_path / "service.toml"
    config.write_text(service_toml("http://127.0.0.1:9/api/v3", admin={"token": ADMIN_TOKEN}))
    process = ServiceProcess(config, free_port(), admin_port=taken.getsockname()[1])
    try:
        code = process.process.wait(timeout=30)
    finally:
        taken.close()
    process._reader.join(timeout=5)
    assert process.process.stdout is not None
    process.process.stdout.close()
    output = b"".join(process.lines).decode()
    assert code == 2 and "the admin listener cannot listen on 127.0.0.1:" in output, output
    assert "service.started" not in output
