"""The web page end to end: a real ``hybrec serve`` (reco, trainer, chat, web) on the demo shop, driven by headless
Chromium through Playwright.

Needs a Chromium executable (``HYBREC_TEST_CHROMIUM``, default Debian's ``/usr/bin/chromium``); Playwright never
downloads a browser here. Without one the test is skipped, unless ``HYBREC_REQUIRE_TEST_TOOLS=1`` (CI), which makes a
missing browser a failure. Screenshots of each step go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybrec.config import Settings
from servers import REPO_ROOT, find_free_port, running_server

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("HYBREC_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "test-artifacts" / "web"
API_KEY = "web-test-key"
STREAM_TIMEOUT_MS = 180_000  # the first chat request loads the embedder and the cross-encoder in the server
STEP_TIMEOUT_MS = 30_000

# Text nodes appended to a reply, in order: the page adds one per streamed token.
WATCH_REPLY = """() => {
  window.__replyPieces = [];
  new MutationObserver((records) => {
    for (const r of records) {
      if (!(r.target instanceof Element) || !r.target.classList.contains("reply")) continue;
      for (const node of r.addedNodes) if (node.nodeType === Node.TEXT_NODE) window.__replyPieces.push(node.data);
    }
  }).observe(document.querySelector("#chat-log"), { childList: true, subtree: true });
}"""
FOR_YOU_IDS = "() => [...document.querySelectorAll('#for-you-list li.card')].map((c) => c.dataset.itemId)"
FOR_YOU_CHANGED = """(before) => {
  const ids = [...document.querySelectorAll('#for-you-list li.card')].map((c) => c.dataset.itemId);
  return ids.length > 0 && ids.join() !== before.join();
}"""


def _browser_or_skip() -> Path:
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM} (set HYBREC_TEST_CHROMIUM or install chromium)"
        if os.environ.get("HYBREC_REQUIRE_TEST_TOOLS") == "1":
            pytest.fail(message + " and HYBREC_REQUIRE_TEST_TOOLS=1")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def server(web_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hybrec serve`` on the web shop (rules-only LLM, an API key required on every call), as a separate process."""
    workdir = tmp_path_factory.mktemp("web_server")  # no stray .env from the checkout
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBREC_")}
    env.update(
        {
            "HYBREC_DATABASE_URL": web_shop.database_url,
            "HYBREC_VAR_DIR": str(web_shop.var_dir),
            "HYBREC_ALS_PARAMS_PATH": str(web_shop.als_params_path),
            "HYBREC_LLM_BACKEND": "none",
            "HYBREC_API_KEYS": f'["{API_KEY}"]',
            "HYBREC_API_KEYS_ON_READS": "true",  # every call of the page needs the key: the strictest deployment
            "HYBREC_TRAIN_INTERVAL_MINUTES": "600",
            "PYTHONUNBUFFERED": "1",
        }
    )
    port = find_free_port()
    command = [str(Path(sys.executable).parent / "hybrec"), "serve", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with running_server(
        command, f"{base}/health", workdir / "server.log", what="hybrec serve", timeout_s=120, env=env, cwd=workdir
    ):
        yield base


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(server + "/")
            yield page
        finally:
            browser.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _price(text: str) -> float:
    match = re.fullmatch(r"\$([\d,]+\.\d\d)", text.strip())
    assert match, f"not a price: {text!r}"
    return float(match.group(1).replace(",", ""))


def test_the_shop_page_end_to_end(page: Any) -> None:
    from playwright.sync_api import expect

    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    # Without the key the page still loads, and says what is missing.
    expect(page.locator("#errors .error").first).to_contain_text("401")
    expect(page.locator("#errors .error").first).to_contain_text("API key")
    _shot(page, "01-opened-without-key")

    # The key is typed once, kept in localStorage and sent as X-API-Key from then on.
    page.locator("summary", has_text="API key").click()
    page.get_by_label("X-API-Key", exact=True).fill(API_KEY)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#user-select option")).not_to_have_count(0)
    expect(page.locator("#for-you-list li.card").first).to_be_visible()
    assert page.evaluate("() => localStorage.getItem('hybrec.apiKey')") == API_KEY
    expect(page.locator("#errors .error")).to_have_count(0)
    assert page.locator("#for-you-strategy").inner_text() in {"trained", "folded_in", "cold_start_popular"}
    _shot(page, "02-for-you")

    # The assistant: items first, then the reply token by token; every card within the stated price ceiling.
    page.evaluate(WATCH_REPLY)
    page.get_by_label("Your message", exact=True).fill("Some coffee beans under $30, please")
    with page.expect_response("**/v1/chat/stream", timeout=STREAM_TIMEOUT_MS) as streamed:
        page.get_by_role("button", name="Send", exact=True).click()
    assert streamed.value.status == 200, streamed.value.text()
    assert streamed.value.headers["content-type"].startswith("text/event-stream")
    turn = page.locator("#chat-log .turn").last
    expect(turn).to_have_attribute("data-state", "done", timeout=STREAM_TIMEOUT_MS)
    pieces: list[str] = page.evaluate("() => window.__replyPieces")
    reply = turn.locator(".reply")
    assert len(pieces) >= 3, pieces  # several tokens, each appended as it arrived
    assert "".join(pieces) == reply.text_content() and reply.inner_text().strip()
    expect(reply).to_have_attribute("aria-busy", "false")
    cards = turn.locator(".chat-cards li.card")
    expect(cards.first).to_be_visible()
    assert cards.count() >= 1
    for k in range(cards.count()):
        card = cards.nth(k)
        assert float(card.get_attribute("data-price") or "inf") <= 30
        assert _price(card.locator(".card-price").inner_text()) <= 30
        assert card.locator(".card-name").inner_text().strip() and card.locator(".card-brand").inner_text().strip()
        assert card.locator(".card-rating").inner_text().strip()
        expect(card.locator(".card-reason")).to_contain_text("under $30")
    _shot(page, "03-chat-streamed")

    # Clicking a "for you" card posts a click and the panel changes (the clicked item is now seen, and excluded).
    before = page.evaluate(FOR_YOU_IDS)
    first_pick = page.locator("#for-you-list li.card .card-main").first
    with page.expect_request("**/v1/interactions") as posted:
        first_pick.click()
    request = posted.value
    assert request.method == "POST" and request.headers.get("x-api-key") == API_KEY
    body = request.post_data_json
    assert body["kind"] == "click" and body["item_id"] == before[0]
    assert request.response().status == 201
    page.wait_for_function(FOR_YOU_CHANGED, arg=before)
    after = page.evaluate(FOR_YOU_IDS)
    assert before[0] not in after
    expect(page.locator("#for-you-list li.card.new").first).to_be_visible()  # the newcomers are highlighted
    expect(page.locator("#for-you-status")).to_contain_text("new")
    _shot(page, "04-after-for-you-click")

    # Clicking a chat card posts a click too, then refreshes the panel.
    chat_card = cards.first
    with (
        page.expect_response("**/v1/users/*/recommendations*") as refreshed,
        page.expect_response("**/v1/interactions") as clicked,
    ):
        chat_card.locator(".card-main").click()
    assert clicked.value.status == 201 and refreshed.value.status == 200
    expect(chat_card).to_have_class(re.compile(r"\bclicked\b"))
    _shot(page, "05-after-chat-click")

    # "Similar items" opens under the card with items from the model.
    toggle = chat_card.get_by_role("button", name="Similar items", exact=True)
    with page.expect_response("**/v1/items/*/similar*") as similar:
        toggle.click()
    assert similar.value.status == 200, similar.value.text()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(chat_card.locator(".similar")).to_be_visible()
    expect(chat_card.locator(".similar-list li[data-item-id]").first).to_be_visible()
    _shot(page, "06-similar-items")

    # Bad filters are the server's 422, shown in the page.
    page.get_by_label("Min price", exact=True).fill("50")
    page.get_by_label("Max price", exact=True).fill("10")
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page.locator("#errors .error").last).to_contain_text("422")
    expect(page.locator("#errors .error").last).to_contain_text("min_price")
    _shot(page, "07-filter-error")
    page.get_by_role("button", name="Reset", exact=True).click()
    page.locator("#errors .error button").first.click()  # dismiss

    # Switching shopper: a new conversation and another shopper's picks.
    before = page.evaluate(FOR_YOU_IDS)
    other = page.locator("#user-select option").last.get_attribute("value")
    assert other and other != page.locator("#user-select").input_value()
    with page.expect_response(f"**/v1/users/{other}/recommendations*") as switched:
        page.get_by_label("Shopper", exact=True).select_option(other)
    assert switched.value.status == 200
    page.wait_for_function(FOR_YOU_CHANGED, arg=before)
    expect(page.locator("#chat-user")).to_contain_text(other)
    expect(page.locator("#chat-log .turn")).to_have_count(0)
    _shot(page, "08-switched-user")

    # Without the key a write is refused, and the page says so.
    page.locator("summary", has_text="API key").click()
    page.get_by_role("button", name="Clear", exact=True).click()
    assert page.evaluate("() => localStorage.getItem('hybrec.apiKey')") is None
    with page.expect_response("**/v1/interactions") as refused:
        page.locator("#for-you-list li.card .card-main").first.click()
    assert refused.value.status == 401
    expect(page.locator("#errors .error").last).to_contain_text("401")
    expect(page.locator("#errors .error").last).to_contain_text("API key")
    _shot(page, "09-missing-key")

    assert not page_errors, page_errors
