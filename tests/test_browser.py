"""The quote page in real headless Chromium (Debian's ``chromium``, driven by Playwright): load
it from the gateway, see prices change on the board, the depth ladder and the candles fill,
add and remove a symbol, then kill the connection from the server side and see the page
resume without a gap. A screenshot is saved to ``test-artifacts/``.

``.ci/run`` installs Chromium; elsewhere the test is skipped when there is no browser, unless
``TICKGATE_REQUIRE_BROWSER=1`` says one must be there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from gatewaykit import Client, http_get, start_gateway

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

if CHROMIUM is None and os.environ.get("TICKGATE_REQUIRE_BROWSER") != "1":
    pytest.skip("no chromium on this machine (.ci/run installs it)", allow_module_level=True)

#: The browser runs on the machine's own clock even when the suite runs under a moved one
#: (tools/moved_clock.sh: libfaketime, which Chromium does not run under): a user's browser
#: clock is not the server's either, and the page must not need them to agree.
BROWSER_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}


async def launch(pw: Any) -> Any:
    return await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], env=BROWSER_ENV)


# Seqs of one channel as the page's client delivered them, to check the resume left no gap.
WATCH = """
window.seen = [];
window.tickgate.addEventListener("update", (e) => {
  if (e.detail.channel === "AAPL$US:quote") window.seen.push(e.detail.seq);
});
"""


async def until(page: Any, condition: str, timeout: float = 10_000) -> None:
    """Waits until the JS ``condition`` holds (a function, not a string to eval: the page's
    Content-Security-Policy forbids eval, and it is tested as it is served)."""
    await page.wait_for_function(f"() => {condition}", timeout=timeout)


def rows_updates(symbol: str) -> str:
    return f"Number(document.querySelector('tr[data-symbol=\"{symbol}\"]')?.dataset.updates)"


async def updates(page: Any, symbol: str) -> int:
    return int(await page.get_attribute(f'tr[data-symbol="{symbol}"]', "data-updates") or 0)


@pytest.mark.parametrize("protocol", ["json", "proto"])
async def test_the_quote_page_streams_and_resumes_in_chromium(protocol: str) -> None:
    from playwright.async_api import async_playwright

    gw = await start_gateway(None, simulator_rate=20.0)
    # A keeper holds the page's channels, so the provider streams them while the page is away
    # (a channel nobody holds is not streamed, and its gap could not be recovered).
    keeper = await Client.connect(gw)
    await keeper.request(
        {
            "action": "subscribe",
            "symbols": ["AAPL$US", "TSLA$US", "700$HK"],
            "types": ["quote", "depth", "kline@1"],
        }
    )
    errors: list[str] = []
    try:
        status, kind, body = await asyncio.to_thread(http_get, gw.url.replace("ws", "http"))
        assert status == 200 and kind.startswith("text/html") and b"/app.js" in body
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"], env=BROWSER_ENV
            )
            page = await browser.new_page(viewport={"width": 1200, "height": 700})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            url = gw.url.replace("ws://", "http://") + f"?symbols=AAPL$US,TSLA$US&protocol={protocol}"
            await page.goto(url)
            await until(page, "document.body.dataset.state === 'live'")
            await page.evaluate(WATCH)
            # Prices change on the board.
            await until(page, f"{rows_updates('AAPL$US')} >= 3")
            last = await page.inner_text('tr[data-symbol="AAPL$US"] td.last')
            assert float(last.replace(",", "")) > 0
            # The first symbol is selected: its depth ladder (5 + 5 levels) and candles fill.
            await until(page, "document.querySelectorAll('#depth tbody tr').length === 10")
            await until(page, "Number(document.getElementById('chart').dataset.bars) >= 1")
            # Add a symbol and remove another from the box and the board.
            await page.fill("#symbol", "700$HK")
            await page.press("#symbol", "Enter")
            await page.wait_for_selector('tr[data-symbol="700$HK"]')
            await page.click('tr[data-symbol="TSLA$US"] button.remove')
            await until(page, "!document.querySelector('tr[data-symbol=\"TSLA$US\"]')")
            # A bad symbol gets its error shown.
            await page.fill("#symbol", "NOT A SYMBOL")
            await page.press("#symbol", "Enter")
            await until(page, "document.getElementById('error').textContent.includes('invalid_symbol')")
            # Kill the connection from the server side, mid-stream.
            session = await page.evaluate("window.tickgate.session")
            conn = gw.hub.live_connection(session)
            assert conn is not None
            conn.abort()
            try:
                await until(page, "document.body.dataset.state === 'recovered'", 15_000)
            except Exception:
                state = await page.evaluate(
                    "[window.tickgate.state, document.getElementById('reason').textContent]"
                )
                raise AssertionError(f"the page did not recover: {state}, errors {errors}") from None
            before = await updates(page, "AAPL$US")
            await until(page, f"{rows_updates('AAPL$US')} >= {before + 3}")
            seen = await page.evaluate("window.seen")
            assert seen == list(range(seen[0], seen[0] + len(seen))), seen
            assert await page.is_visible('tr[data-symbol="700$HK"]')  # its subscriptions came back
            # Batch mode from the switch: updates keep coming, as batches.
            await page.check("#batch")
            await until(page, "window.tickgate.mode === 'batch'")
            before = await updates(page, "AAPL$US")
            await until(page, f"{rows_updates('AAPL$US')} >= {before + 2}")
            assert any(
                conn.id and gw.dispatcher.mode_of(conn.id) == ("batch", 500) for conn in gw.hub.connections
            )
            # A request made as the connection drops waits for the reconnect and then goes out.
            channels = await page.evaluate(
                """async () => {
                    window.tickgate.drop();
                    return (await window.tickgate.subscribe(["MSFT$US"], ["quote"])).channels;
                }"""
            )
            assert channels == ["MSFT$US:quote"]
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"quote-page-{protocol}.png"), full_page=True)
            await browser.close()
        assert not errors, errors
        assert gw.stats()["resumes_recovered"] == 2  # the kill, then the drop
    finally:
        await keeper.close()
        await gw.stop()


async def test_the_page_takes_a_token_and_says_so_when_it_has_none() -> None:
    from playwright.async_api import async_playwright

    from tickgate.auth import KeyRing, issue

    secret = "a-test-secret-that-is-long-enough-for-hs256"
    gw = await start_gateway(None, simulator_rate=20.0, auth="jwt", jwt_secret=secret, auth_timeout=0.5)
    token = issue(KeyRing.from_secret(secret), "alice", 3600, symbols=["*$US"])
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"], env=BROWSER_ENV
            )
            page = await browser.new_page()
            base = gw.url.replace("ws://", "http://")
            await page.goto(base + f"?symbols=AAPL$US&token={token}")
            await until(page, f"{rows_updates('AAPL$US')} >= 2")
            # Entitled to US symbols only: the refusal is shown.
            await page.fill("#symbol", "700$HK")
            await page.press("#symbol", "Enter")
            await until(page, "document.getElementById('error').textContent.includes('not_entitled')")
            stranger = await browser.new_page()
            await stranger.goto(base)
            await until(stranger, "document.body.dataset.state === 'closed'")
            assert "unauthenticated" in await stranger.inner_text("#reason")
            await browser.close()
    finally:
        await gw.stop()
