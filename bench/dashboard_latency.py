"""Publish-to-screen latency of the support page, and the API's latency under load.

Starts the embedded broker and Redis, a worker and a dashboard, logs a headless Chromium
(Debian's ``chromium``) into the page, then publishes strongly negative chat messages, one
customer each, at a steady rate: the latency of one alert is from just before its chat is
published (``time.time()``) to the moment its row is added to the page (``Date.now()`` in
the browser; same machine, same clock). Then 50 concurrent clients call
``GET /api/customers/{id}``. Prints p50/p99 of both.

    .venv/bin/python bench/dashboard_latency.py [--alerts 200] [--rate 20] [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from crmstream.schemas import ChatMessage
from crmstream.streams import topics
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.tools.publisher import Publisher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dashboard import TOKEN, DashboardProcess
from tests.helpers import WorkerProcess, wait_until

OBSERVE = """() => {
  window.__seen = {};
  new MutationObserver((changes) => {
    const now = Date.now();
    for (const change of changes) for (const row of change.addedNodes) {
      const link = row.querySelector && row.querySelector(".customer-link");
      if (link && !(link.textContent in window.__seen)) window.__seen[link.textContent] = now;
    }
  }).observe(document.getElementById("alerts-body"), {childList: true});
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def publish_to_screen(board: DashboardProcess, bootstrap: list[str], alerts: int, rate: float):
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        sys.exit("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page()
        page.goto(board.url)
        page.fill("#login-name", "bench")
        page.fill("#login-token", TOKEN)
        page.click("#login-submit")
        page.wait_for_selector("#feed-status[data-state=live]")
        page.evaluate(OBSERVE)
        published: dict[str, float] = {}
        with Publisher(bootstrap, linger_ms=0) as publisher:
            for n in range(alerts):
                customer = f"bench-{n}"
                message = ChatMessage(
                    event_id=f"bench-chat-{n}",
                    customer_id=customer,
                    occurred_at=datetime.now(UTC),
                    conversation_id=f"k{n}",
                    sender="customer",
                    text="This is terrible, awful service. I hate it.",
                )
                published[customer] = time.time()
                publisher.publish(topics.CHATS, message)
                publisher.flush()
                time.sleep(1 / rate)
        deadline = time.monotonic() + 30
        seen: dict[str, float] = {}
        while time.monotonic() < deadline and len(seen) < alerts:
            seen = page.evaluate("() => window.__seen")
            time.sleep(0.2)
        browser.close()
    latencies = [seen[c] / 1000 - t for c, t in published.items() if c in seen]
    return latencies, alerts - len(latencies)


async def api_load(board: DashboardProcess, customers: int, requests: int, clients: int):
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=board.url, headers=headers, limits=limits) as client:
        counter = iter(range(requests))

        async def one_client() -> None:
            for n in counter:
                start = time.perf_counter()
                response = await client.get(f"/api/customers/bench-{n % customers}")
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return latencies, statuses, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="chats per second")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="crmstream-bench-"))
    with EmbeddedStack() as stack:
        env = {**stack.env(), "CRM_PARTITIONS": "4", "CRM_SESSION_TIMEOUT": "6"}
        worker = WorkerProcess(env, logs / "worker.log")
        try:
            board = DashboardProcess(env, logs / "dashboard.log")
            try:
                bootstrap = [stack.kafka_url.removeprefix("kafka://")]
                wait_until(lambda: "ok" in worker.log(), 60, "the worker to start", every=0.5)
                latencies, missing = publish_to_screen(board, bootstrap, args.alerts, args.rate)
                ms = [x * 1000 for x in latencies]
                print(
                    f"publish-to-screen over {len(ms)} alerts ({args.rate:g} chats/s): "
                    f"p50 {percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, "
                    f"max {max(ms):.0f} ms, mean {statistics.fmean(ms):.0f} ms; "
                    f"{missing} not seen within 30 s"
                )
                api, statuses, elapsed = asyncio.run(
                    api_load(board, args.alerts, args.requests, args.clients)
                )
                ms = [x * 1000 for x in api]
                print(
                    f"GET /api/customers/{{id}} with {args.clients} concurrent clients: "
                    f"{len(ms)} requests in {elapsed:.1f} s ({len(ms) / elapsed:.0f}/s), "
                    f"p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms; "
                    f"statuses {statuses}"
                )
            finally:
                board.stop()
        finally:
            worker.stop()
    print(f"logs in {logs}")


if __name__ == "__main__":
    main()
