"""The support page in a real browser: headless Chromium (Debian's ``chromium`` package)
driven by Playwright, against a real worker, dashboard, broker and Redis.

Playwright's own browser download cannot work offline, so the test uses the system's
Chromium through ``executable_path``. ``make test`` installs it with apt when run as root.
Under ``CI=true`` a missing browser fails the test; elsewhere the test is skipped with
the command that installs it. The screenshot is saved in the test's temporary folder, and
also to ``$CRM_SCREENSHOT`` when that is set (how docs/dashboard.png is made).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crmstream.schemas import ChatMessage, Purchase
from crmstream.streams import topics
from crmstream.streams.tools.publisher import Publisher
from tests.dashboard import TOKEN, DashboardProcess

pytestmark = pytest.mark.integration

WAIT_MS = 30_000


def chromium_path() -> str:
    found = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    message = (
        "Chromium is not installed: apt-get install -y chromium (make test does it when "
        "run as root), or point CRM_CHROMIUM at a Chromium binary"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser():
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def log_in(browser, url: str, name: str):
    page = browser.new_context(viewport={"width": 1500, "height": 950}).new_page()
    page.goto(url)
    assert page.url.endswith("/login")
    page.fill("#login-name", name)
    page.fill("#login-token", TOKEN)
    page.click("#login-submit")
    page.wait_for_url(url + "/")
    page.wait_for_selector("#feed-status[data-state=live]", timeout=WAIT_MS)
    return page


def chat(n: int, customer: str, text: str, at: datetime, intent: str | None = None):
    return ChatMessage(
        event_id=f"{customer}-chat-{n}",
        customer_id=customer,
        occurred_at=at,
        conversation_id=f"{customer}-conv",
        sender="customer",
        text=text,
        intent=intent,
    )


def test_support_page_live_alerts_filters_acknowledgement_and_customer_view(
    browser, stack, start_worker, tmp_path
):
    from playwright.sync_api import expect

    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    now = datetime.now(UTC)
    with start_worker():
        board = DashboardProcess({**stack.env(), "CRM_PARTITIONS": "4"}, tmp_path / "board.log")
        try:
            page = log_in(browser, board.url, "Ana")
            # A failed login shows the error and sets no cookie.
            stranger = browser.new_context().new_page()
            stranger.goto(board.url + "/login")
            stranger.fill("#login-name", "Mallory")
            stranger.fill("#login-token", "wrong")
            stranger.click("#login-submit")
            expect(stranger.locator("#login-error")).to_be_visible()
            assert not stranger.context.cookies()

            with Publisher(bootstrap) as publisher:
                publisher.publish(
                    topics.PURCHASES,
                    Purchase(
                        event_id="zoe-p1",
                        customer_id="zoe",
                        occurred_at=now - timedelta(minutes=5),
                        amount=900.0,
                        cost=300.0,
                    ),
                )
                publisher.publish(
                    topics.CHATS,
                    chat(
                        1, "zoe", "Thanks, the order looks fine so far", now - timedelta(minutes=3)
                    ),
                )
                publisher.flush()
                rows = page.locator("#alerts-body tr")
                expect(rows).to_have_count(0)
                publisher.publish(
                    topics.CHATS,
                    chat(2, "zoe", "This is terrible, awful service. I hate it.", now),
                )
                publisher.flush()
                # 1. the alert appears on the open page
                zoe = page.locator("#alerts-body tr", has_text="zoe")
                expect(zoe.first).to_be_visible(timeout=WAIT_MS)
                expect(zoe.first).to_contain_text("strongly negative")
                expect(zoe.first).to_contain_text("critical")  # a gold customer
                publisher.publish(
                    topics.CHATS,
                    chat(
                        3,
                        "zoe",
                        "Please cancel my subscription today",
                        now + timedelta(minutes=1),
                        "cancel",
                    ),
                )
                publisher.flush()
                expect(page.locator("#alerts-body tr[data-kind=churn_intent]")).to_have_count(
                    1, timeout=WAIT_MS
                )

            # 2. filters
            page.select_option("#filter-kind", "churn_intent")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-kind", "churn_intent")
            page.select_option("#filter-kind", "")
            page.select_option("#filter-tier", "bronze")
            expect(rows).to_have_count(0)
            page.select_option("#filter-tier", "gold")
            expect(rows).to_have_count(2)
            page.select_option("#filter-tier", "")

            # 3. acknowledge; a second page sees who handled it
            second = log_in(browser, board.url, "Bruno")
            target = page.locator("#alerts-body tr[data-kind=churn_intent]")
            expect(second.locator("#alerts-body tr[data-kind=churn_intent]")).to_be_visible()
            target.locator("button.ack").click()
            expect(target).to_contain_text("handled by Ana")
            expect(second.locator("#alerts-body tr[data-kind=churn_intent]")).to_contain_text(
                "handled by Ana", timeout=WAIT_MS
            )
            page.check("#filter-open")
            expect(rows).to_have_count(1)
            page.uncheck("#filter-open")

            # 4. search the customer: profile, history and chart
            page.fill("#search-input", "zoe")
            page.press("#search-input", "Enter")
            expect(page.locator("#customer-body")).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("dd[data-field=tier]")).to_have_text("gold")
            expect(page.locator("dd[data-field=clv]")).to_have_text("600.00")
            expect(page.locator("#history-messages tr")).to_have_count(3)
            expect(page.locator("#history-messages")).to_contain_text("cancel")
            expect(page.locator("#history-alerts tr")).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator("#history-tiers tr")).to_contain_text("gold")
            expect(page.locator("#sentiment-chart circle")).to_have_count(3)
            expect(page.locator("#sentiment-chart polyline")).to_have_count(1)
            page.fill("#search-input", "bad id!")
            page.press("#search-input", "Enter")
            expect(page.locator("#customer-error")).to_contain_text("customer id")
            page.fill("#search-input", "zoe")
            page.press("#search-input", "Enter")
            expect(page.locator("#customer-body")).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#stat-customers")).to_have_text("1", timeout=WAIT_MS)

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("CRM_SCREENSHOT"):
                Path(os.environ["CRM_SCREENSHOT"]).write_bytes(shot.read_bytes())
        finally:
            board.stop()
