"""The admin console in a real browser: Playwright driving Debian's chromium (`make browser`
installs it; Playwright's own browser downloads are never used) against the service and its
admin listener on 127.0.0.1, with the fake Sendcloud behind them.

Log in with the token, watch a lane's counts change as webhooks arrive, replay a dead letter by
keyboard and by click, find an order's timeline; on a phone-sized screen nothing scrolls
sideways but the tables. `SCREENSHOTS_DIR=docs make test` (or pytest) also saves the three
pages' screenshots there (docs/console-*.png, linked from the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.adminlib import SLOW, deliver, fake_without, order_body
from tests.conftest import ADMIN_TOKEN
from tests.helpers import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make browser` installs Debian's package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    wanted = os.environ.get("SCREENSHOTS_DIR")
    if wanted:
        page.screenshot(path=str(Path(wanted) / name), full_page=True)


def log_in(page: Page, admin_url: str) -> None:
    page.goto(admin_url + "/")
    expect(page).to_have_url(admin_url + "/login")
    page.get_by_label("Admin token").fill("not-the-right-token-x")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_label("Admin token").press("Enter")
    expect(page.get_by_role("heading", name="Lanes")).to_be_visible()


def test_log_in_and_watch_a_lanes_counts_change(stack: Any, page: Page, tmp_path: Path) -> None:
    started = stack(with_admin=True, buffer=SLOW)
    log_in(page, started.admin_url)
    pending = page.locator('tr[data-integration="7"] [data-field="pending"]')
    expect(pending).to_have_text("0")
    for order_id in (61, 62, 63):
        deliver(started, order_body(order_id))
    expect(pending).to_have_text("3")  # the page refreshes itself
    expect(page.locator('tr[data-integration="7"] [data-field="next"]')).to_contain_text("debounce in")
    screenshot(page, tmp_path, "console-lanes.png")

    row = page.locator('tr[data-integration="7"]')
    row.get_by_role("button", name="Pause").click()
    expect(row.locator('[data-field="state"]')).to_have_text("paused")
    row.get_by_role("button", name="Flush").click()
    expect(page.get_by_role("status")).to_contain_text("paused")
    row.get_by_role("button", name="Resume").click()
    row.get_by_role("button", name="Flush").click()
    expect(pending).to_have_text("0")
    wait_for(lambda: all(started.fake.order(7, str(i)) is not None for i in (61, 62, 63)))


def test_replay_dead_letters_by_keyboard_and_by_click(stack: Any, page: Page, tmp_path: Path) -> None:
    started = stack(fake_without("GBP"), with_admin=True, buffer={"debounce_seconds": 0.1, "max_wait_seconds": 1.0})
    deliver(started, order_body(71, currency="PLN"))
    for order_id in (72, 73):
        deliver(started, order_body(order_id, currency="GBP"))
    wait_for(lambda: started.state.store.dead_letter_count() == 3)
    log_in(page, started.admin_url)
    page.get_by_role("link", name="Dead letters").click()
    rows = page.locator("tr[data-letter]")
    expect(rows).to_have_count(3)
    screenshot(page, tmp_path, "console-dead-letters.png")

    # PLN is not a currency Sendcloud takes: the replay fails again, the letter stays
    pln = rows.filter(has_text="#71")
    pln.get_by_role("button", name="Replay").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("failed again")
    expect(pln.locator('[data-field="attempts"]')).to_have_text("1")

    started.fake.currencies = frozenset({"EUR", "GBP", "USD"})
    rows.filter(has_text="#72").get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_contain_text("replayed")
    expect(rows).to_have_count(2)
    wait_for(lambda: started.fake.order(7, "72") is not None)

    page.get_by_label("Replay every letter with reason").select_option("sendcloud_rejected")
    page.get_by_role("button", name="Replay all").click()
    expect(page.get_by_role("status")).to_contain_text("Replayed 1 letters")
    wait_for(lambda: started.fake.order(7, "73") is not None)
    expect(rows).to_have_count(1)

    page.once("dialog", lambda dialog: dialog.accept())
    rows.first.get_by_role("button", name="Discard").click()
    expect(rows).to_have_count(0)
    assert started.state.store.dead_letter_count() == 0


def test_find_an_orders_timeline(stack: Any, page: Page, tmp_path: Path) -> None:
    started = stack(fake_without("GBP"), with_admin=True, buffer={"debounce_seconds": 0.1, "max_wait_seconds": 1.0})
    deliver(started, order_body(81, 0), delivery="d-81-1")
    deliver(started, order_body(81, 1), delivery="d-81-2")
    wait_for(lambda: started.fake.order(7, "81") is not None)
    deliver(started, order_body(81, 2, currency="GBP"), delivery="d-81-3")
    wait_for(lambda: started.state.store.dead_letter_count() == 1)
    log_in(page, started.admin_url)
    page.get_by_role("link", name="Order lookup").click()
    page.get_by_label("Integration").select_option("7")
    page.get_by_label("Order id or number").fill("#81")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", name="Order 81 in integration 7")).to_be_visible()
    steps = page.locator("#timeline li")
    expect(steps.first).to_contain_text("received")
    expect(page.locator("#timeline")).to_contain_text("Sendcloud id")
    expect(page.locator("#timeline li.rejected")).to_contain_text("/currency")
    expect(page.get_by_text("dead letter 1: sendcloud_rejected")).to_be_visible()
    screenshot(page, tmp_path, "console-order.png")

    page.get_by_label("Order id or number").fill("no-such-order")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("alert")).to_contain_text("No history for order no-such-order")


def test_on_a_phone_only_the_tables_scroll_sideways(stack: Any, browser: Browser) -> None:
    started = stack(with_admin=True, buffer=SLOW)
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        log_in(phone, started.admin_url)
        for path in ("/", "/dead-letters", "/orders"):
            phone.goto(started.admin_url + path)
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
    finally:
        context.close()
