"""The supervisor console in a real browser (system Chromium under Playwright), against a real
server with a back office, real callers and the real models.

Screenshots go to artifacts/: login.png, console-live.png (a reply streaming),
console-live-stopped.png, console-history.png, console-gaps.png.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from agent.selection import build_agent
from agent.types import AgentSettings
from tests.support.browser import chromium, fresh_page, log_in, screenshot
from tests.support.supervisor import PASSWORD, office_server
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient

PCM16 = AudioFormat("pcm16", 16000)
NAME = "alice"
QUESTION = "What should I do when my smart bulb keeps flashing red?"
"""One clause, without a pause inside: at a pause after "red." (or "red,", which the recognizer
may hear as a full stop) the turn may end there, the caller going on joins the next turn, and
the test follows turn 1."""
WAIT_MS = 30_000
"""Longest wait for anything the page shows (a spoken turn takes a few seconds)."""


@pytest.fixture(scope="module")
async def server(models, tmp_path_factory):
    agent, _ = build_agent(AgentSettings(backend="extractive"))
    data_dir = tmp_path_factory.mktemp("console-data")
    async with office_server(models, agent, data_dir, supervisors=(NAME,)) as running:
        yield running


@pytest.fixture(scope="module")
async def browser():
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def console(server, browser):
    """A page logged in as the supervisor, on the console with its live feed connected."""
    async with fresh_page(browser) as page:
        await log_in(page, server.base, NAME, PASSWORD)
        yield page


def expect(target: Any) -> Any:
    from playwright.async_api import expect

    return expect(target)


async def until(condition: Callable[[], Any], what: str, timeout: float = 30) -> None:
    """Wait for something the caller sees that no event announces (reply audio)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- logging in


async def test_anonymous_visitors_are_refused(server):
    async with aiohttp.ClientSession() as http:
        async with http.get(server.base + "/console", allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == "/login"
        async with http.get(server.base + "/api/calls") as response:
            assert response.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.base.replace("http", "ws") + "/api/live")
        assert refused.value.status == 401


async def test_a_supervisor_logs_in_through_the_form(server, browser):
    async with fresh_page(browser) as page:
        await page.goto(server.base + "/console")
        assert page.url == server.base + "/login"
        feed = await page.evaluate(
            """() => new Promise((resolve) => {
                const ws = new WebSocket(`ws://${location.host}/api/live`);
                ws.onopen = () => resolve("open");
                ws.onclose = () => resolve("refused");
            })"""
        )
        assert feed == "refused"
        await page.fill("#name", NAME)
        await page.fill("#password", "not the password")
        await page.click("button[type=submit]")
        await expect(page.locator(".error")).to_have_text("Wrong name or password.")
        await page.fill("#name", NAME)
        await page.fill("#password", PASSWORD)
        await screenshot(page, "login.png")
        await page.click("button[type=submit]")
        await page.wait_for_url(server.base + "/console")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "open")
        await expect(page.locator("#no-active")).to_be_visible()
        await page.click("#logout")
        await page.wait_for_url(server.base + "/login")
        await page.goto(server.base + "/console")
        assert page.url == server.base + "/login"


# ---------------------------------------------------------------- live


async def test_a_live_call_shows_its_transcript_and_reply_as_the_caller_speaks(
    server, console, say
):
    async with CallClient(server.call_url, PCM16) as call:
        card = console.locator(f'#active .card[data-call-id="{call.call_id}"]')
        await expect(card).to_be_visible()
        asking = asyncio.create_task(call.ask(say(QUESTION), realtime=True))
        try:
            await expect(card.locator(".question")).to_contain_text("bulb", timeout=WAIT_MS)
            # The reply streams while it plays, long before its end.
            await expect(card.locator(".reply")).to_contain_text("2.4", timeout=WAIT_MS)
            assert not asking.done()
            await screenshot(console, "console-live.png")
            text = await call.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
            await until(lambda: call.turns[text["turn"]].audio, "reply audio")
            await card.get_by_role("button", name="Stop answer").click()
            turn = await asyncio.wait_for(asking, 30)
        finally:
            asking.cancel()
        assert turn.interrupted and "bulb" in turn.transcript
        await expect(card.locator(".latency")).to_have_text(
            f"first audio {turn.timings_ms['first_audio']} ms"
        )
        await expect(card.locator(".reply")).to_have_text(turn.reply)  # heard + what was cut
        await expect(card.locator(".flags")).to_contain_text("BARGE-IN")
        await expect(card.locator(".status")).to_have_text("Answer stopped.")
        await screenshot(console, "console-live-stopped.png")
    ended = console.locator(f'#recent .card[data-call-id="{call.call_id}"]')
    await expect(ended).to_be_visible()
    await expect(ended.locator(".state")).to_contain_text("hangup")
    await expect(console.locator("#active .card")).to_have_count(0)


async def test_a_supervisor_speaks_into_a_call_and_hands_it_off(server, console):
    async with CallClient(server.call_url, PCM16, realtime_playback=False) as call:
        card = console.locator(f'#active .card[data-call-id="{call.call_id}"]')
        await expect(card).to_be_visible()
        markup = '<img src=x onerror="window.injected=1"> do you have <b>smart plugs</b>?'
        await call.send_text(markup)
        await call.wait_for(lambda e: e["type"] == "reply.end")
        await expect(card.locator('.turn[data-turn="1"] .question')).to_have_text(markup)
        assert await console.evaluate("window.injected") is None, "caller text ran as HTML"
        await expect(card.locator(".flags")).to_contain_text("GUARDRAIL: out_of_scope")
        # Out of scope: handed off, the call waits for a person; a supervisor may speak in it.

        message = "Hello, this is Sam from the support team."
        seen = len(call.events)
        await card.get_by_placeholder("Type a message").fill(message)
        await card.get_by_role("button", name="Speak").click()
        said = await call.wait_for(lambda e: e["type"] == "reply.end", since=seen)
        assert said["text"] == message and said["backend"] == "supervisor"
        pieces = [
            e["text"]
            for e in call.events[seen:]
            if e["type"] == "reply.text" and e["turn"] == said["turn"]
        ]
        assert "".join(pieces) == message
        assert call.turns[said["turn"]].audio, "the caller got no audio of the message"
        spoken = card.locator(f'.turn[data-turn="{said["turn"]}"]')
        # The console gets the turn's end through the live feed, later than the caller on a
        # loaded machine; until then the turn still has its (empty) caller line.
        await expect(spoken.locator(".reply")).to_have_text(message, timeout=20_000)
        await expect(spoken.locator(".who")).to_have_text("Supervisor", timeout=20_000)
        await expect(card.get_by_placeholder("Type a message")).to_have_value("")

        seen = len(call.events)
        await card.get_by_role("button", name="Hand off").click()
        handoff = await call.wait_for(lambda e: e["type"] == "handoff", since=seen)
        assert handoff["by"] == "supervisor"
        await expect(card.locator(".flags")).to_contain_text("HANDOFF (supervisor)")
        await screenshot(console, "console-live-handoff.png")


# ---------------------------------------------------------------- history and gaps


async def test_history_opens_a_call_with_its_transcript_and_recording(server, console, say):
    async with CallClient(server.call_url, PCM16, realtime_playback=False) as call:
        turn = await call.ask(say(QUESTION), realtime=False)
    assert server.office.store.flush(10)

    await console.click("nav >> text=History")
    await console.fill("input[name=q]", "bulb")
    await console.click("#filters button[type=submit]")
    row = console.locator(f'#call-list tr[data-call-id="{call.call_id}"]')
    await row.click()
    detail = console.locator("#detail")
    await expect(detail.locator(".question")).to_have_text(turn.transcript)
    await expect(detail.locator(".reply")).to_have_text(turn.heard)
    await console.wait_for_function(
        "() => { const a = document.querySelector('#detail audio');"
        " return a !== null && a.duration > 0 && isFinite(a.duration); }",
        timeout=10_000,
    )
    src = await detail.locator("audio").get_attribute("src")
    recording = await console.request.get(server.base + src)
    assert recording.headers["content-type"] == "audio/wav" and len(await recording.body()) > 1000

    # Exports: the filtered list and the call, as CSV and JSON, through the page's own links.
    csv_href = await console.locator("#export-csv").get_attribute("href")
    assert csv_href is not None and "q=bulb" in csv_href and "format=csv" in csv_href
    listed = await console.request.get(server.base + csv_href)
    assert call.call_id in await listed.text()
    call_json = await detail.get_by_role("link", name="JSON").get_attribute("href")
    exported = json.loads(await (await console.request.get(server.base + call_json)).text())
    assert exported["call_id"] == call.call_id and exported["turns"]

    await detail.get_by_role("button", name="Not helpful").click()
    await expect(detail.get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert server.office.store.flush(10)
    stored = server.office.store.call(call.call_id)
    assert [(f.turn, f.helpful) for f in stored.feedback] == [(1, False)]
    await screenshot(console, "console-history.png")


async def test_gaps_lists_what_the_knowledge_base_misses_and_charts_the_days(server, console):
    # Each is handed off (out of scope), after which a call waits for a person: a call each.
    for question in ("Do you sell garden furniture?", "what will the weather be tomorrow"):
        async with CallClient(server.call_url, PCM16, realtime_playback=False) as call:
            await call.send_text(question)
            await call.wait_for(lambda e: e["type"] == "reply.end")
    assert server.office.store.flush(10)

    await console.click("nav >> text=Gaps")
    table = console.locator("#gap-table")
    await expect(table).to_contain_text("weather")
    await expect(console.locator("#daily-chart rect.bar").first).to_be_visible()
    assert await console.locator("#daily-chart rect.handed_off").count() >= 1
    await screenshot(console, "console-gaps.png")

    # The same call through the History filters: a date range, handed off, any rule.
    await console.click("nav >> text=History")
    today = datetime.date.today().isoformat()
    await console.fill("input[name=since]", today)
    await console.fill("input[name=until]", today)
    await console.select_option("select[name=handoff]", "true")
    await console.fill("input[name=rule]", "*")
    await console.click("#filters button[type=submit]")
    row = console.locator(f'#call-list tr[data-call-id="{call.call_id}"]')
    await expect(row).to_be_visible()
    await console.select_option("select[name=handoff]", "false")
    await console.click("#filters button[type=submit]")
    await expect(row).to_have_count(0)
