"""A person takes the call, in the supervisor console in a real browser (system Chromium under
Playwright), against a real server with the real models: the handoff queue and its alert,
taking the call with the page's own microphone (Chromium's fake one, playing a sentence made at
test time with the bundled Piper voice), hearing the caller, handing the call back; and what a
second supervisor's page shows. The same over the API alone: tests/office/test_takeover.py.

Screenshots go to artifacts/: console-queue.png, console-takeover.png.
"""

from __future__ import annotations

import re
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.support.browser import chromium, fresh_page, log_in, screenshot
from tests.support.fakes import ScriptedAgent
from tests.support.supervisor import PASSWORD, office_server, supervisor
from voice.channels.codecs import AudioFormat, float_to_int16, int16_to_float
from voice.clients.client import CallClient

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

PCM16 = AudioFormat("pcm16", 16000)
ALICE, BOB = "alice", "bob"
PERSON_SAYS = "Hello, this is Alice from customer service. How can I help you today?"
CALLER_SAYS = "I would like to change the address on my account."
ANSWER = "The warranty lasts two years."
TITLE = "voicedesk console"
WAIT_MS = 30_000
"""Longest wait for anything the page shows."""
MIC_RATE = 16_000


@pytest.fixture(scope="module")
async def server(models, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("takeover-browser-data")
    async with office_server(models, ScriptedAgent(reply=ANSWER), data_dir) as running:
        yield running


@pytest.fixture(scope="module")
def microphone(say, tmp_path_factory) -> Path:
    """What the supervisor says into the fake microphone: the sentence, then a second of
    silence (so that the server hears it end), as a 16-bit WAV."""
    audio = np.concatenate([say(PERSON_SAYS, rate=MIC_RATE), np.zeros(MIC_RATE, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "person.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(MIC_RATE)
        out.writeframes(float_to_int16(audio).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
async def browser(microphone) -> AsyncIterator[Browser]:
    """Chromium whose microphone plays `microphone` once from when a page opens it (then
    silence), with sound allowed before a click (the queue's alert tone)."""
    async with chromium(
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}%noloop",
    ) as browser:
        yield browser


@pytest.fixture
async def alice_page(server, browser) -> AsyncIterator[Page]:
    async with fresh_page(browser) as page:
        await log_in(page, server.base, ALICE, PASSWORD)
        yield page


def expect(target: Any) -> Any:
    from playwright.async_api import expect

    return expect(target)


def words(text: str) -> set[str]:
    return {w.strip(".,?!").lower() for w in text.split()}


async def wait_for_waiting(call: CallClient) -> None:
    """Ask for a person on the keypad; returns once the call waits in the queue."""
    await call.send_key("0")
    await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "waiting", timeout=60)


async def number(locator: Locator, attribute: str) -> int:
    return int(await locator.get_attribute(attribute) or 0)


async def test_a_supervisor_takes_a_call_from_the_queue_speaks_hears_and_hands_it_back(
    server, alice_page, models, say
):
    page = alice_page
    async with CallClient(server.call_url, PCM16, keep_audio=True) as call:
        await call.send_text("How long is the warranty?")
        await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
        await wait_for_waiting(call)

        # The queue shows the call, with an alert seen, heard and in the tab's title.
        entry = page.locator(f'#queue .queued[data-call-id="{call.call_id}"]')
        await expect(entry).to_be_visible()
        await expect(entry.locator(".caller")).to_have_text("unknown caller")
        await expect(entry.locator(".sub")).to_have_text("call")
        await expect(entry.locator(".reason")).to_have_text("asked for a person")
        await expect(entry.locator(".last")).to_contain_text("How long is the warranty?")
        await expect(entry.locator(".last")).to_contain_text(ANSWER)
        alert = page.locator("#queue-alert")
        await expect(alert).to_be_visible()
        await expect(alert).to_have_text("1 caller waiting for a person")
        await expect(page.locator("#queue-panel")).to_be_visible()
        assert (await page.title()).startswith("(1)")
        await expect(alert).to_have_attribute("data-tones", "1")
        assert await page.evaluate("audioCtx.state") == "running", "the tone was not heard"
        waited = await entry.locator(".waited").text_content()
        assert waited is not None and re.fullmatch(r"waiting \d+:\d\d", waited)
        await expect(entry.locator(".waited")).not_to_have_text(waited)  # it ticks
        card = page.locator(f'#active .card[data-call-id="{call.call_id}"]')
        await expect(card.locator(".holder")).to_contain_text("Waiting for a person")
        await screenshot(page, "console-queue.png")

        # Take it: the caller is with alice, and hears her microphone.
        seen = len(call.events)
        await entry.get_by_role("button", name="Take call").click()
        held = await call.wait_for(
            lambda e: e["type"] == "hold" and e["state"] == "person", since=seen
        )
        assert held["name"] == ALICE
        held_at = time.monotonic()
        await expect(card.locator(".holder")).to_have_text("You have this call")
        await expect(card.locator(".takeover")).to_have_attribute("data-mic", "on")
        await expect(entry).to_have_count(0)
        await expect(alert).to_be_hidden()
        assert await page.title() == TITLE

        said = await call.wait_for(lambda e: e["type"] == "person.said", since=seen, timeout=60)
        assert said["name"] == ALICE and {"alice", "help"} <= words(said["text"]), said
        assert call.received is not None
        to_caller = b"".join(frame for at, frame in call.received if at >= held_at)
        heard = models.transcriber.transcribe_blocking(int16_to_float(PCM16.decode(to_caller)))
        assert {"alice", "customer", "help"} <= words(heard.text), heard.text
        assert await number(card.locator(".takeover"), "data-mic-ms") > 3000
        person_turn = card.locator(f'.turn.person[data-turn="{said["turn"]}"]')
        await expect(person_turn.locator(".who")).to_have_text(ALICE, timeout=WAIT_MS)
        await expect(person_turn.locator(".reply")).to_have_text(said["text"])

        # The caller speaks: the page hears it, and shows what was said.
        bar = card.locator(".takeover")
        voiced_before = await number(bar, "data-caller-voice-ms")
        await call.speak(say(CALLER_SAYS))
        final = await call.wait_for(
            lambda e: e["type"] == "transcript.final" and "address" in e["text"], timeout=60
        )
        await page.wait_for_function(
            "([sel, least]) => Number(document.querySelector(sel).dataset.callerVoiceMs) >= least",
            arg=[f'.card[data-call-id="{call.call_id}"] .takeover', voiced_before + 1500],
            timeout=WAIT_MS,
        )
        caller_turn = card.locator(f'.turn[data-turn="{final["turn"]}"]')
        await expect(caller_turn.locator(".question")).to_have_text(final["text"])
        await expect(caller_turn.locator(".meta")).to_have_text("said to alice")
        await screenshot(page, "console-takeover.png")

        # Hand it back: the microphone stops, the assistant answers again.
        seen = len(call.events)
        await card.get_by_role("button", name="Hand back").click()
        await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "assistant", since=seen)
        await expect(bar).to_have_attribute("data-mic", "off")
        await expect(card.locator(".holder")).to_have_text("")
        await expect(card.locator(".person-status")).to_have_text("Handed back to the assistant.")
        seen = len(call.events)
        await call.send_text("How long is the warranty?")
        answer = await call.wait_for(
            lambda e: e["type"] == "reply.end" and e["backend"] != "handback",
            since=seen,
            timeout=60,
        )
        assert (answer["text"], answer["backend"]) == (ANSWER, "scripted")


async def test_another_supervisor_sees_who_holds_the_call_and_cannot_take_it(server, browser):
    async with (
        supervisor(server.base, ALICE, PASSWORD) as alice,
        fresh_page(browser) as page,
    ):
        await log_in(page, server.base, BOB, PASSWORD)
        async with CallClient(server.call_url, PCM16) as call:
            await wait_for_waiting(call)
            entry = page.locator(f'#queue .queued[data-call-id="{call.call_id}"]')
            await expect(entry).to_be_visible()

            # Listening in: the hold audio comes through.
            card = page.locator(f'#active .card[data-call-id="{call.call_id}"]')
            bar = card.locator(".takeover")
            await card.get_by_role("button", name="Listen in").click()
            await expect(bar).to_have_attribute("data-listening", "true")
            await expect(card.locator(".audio-state")).to_have_text("Listening in.")
            await page.wait_for_function(
                "(sel) => Number(document.querySelector(sel).dataset.assistantMs) > 1000",
                arg=f'.card[data-call-id="{call.call_id}"] .takeover',
                timeout=WAIT_MS,
            )

            status, _ = await alice.post(f"/api/calls/{call.call_id}/take")
            assert status == 200
            await expect(card.locator(".holder")).to_have_text(f"Held by {ALICE}")
            await expect(entry).to_have_count(0)
            await card.get_by_role("button", name="Take call").click()
            await expect(card.locator(".person-status")).to_have_text(f"{ALICE} has this call.")
            await expect(card.locator(".holder")).to_have_text(f"Held by {ALICE}")
            await expect(bar).to_have_attribute("data-mic", "off")
            await expect(bar).to_have_attribute("data-listening", "true")  # as before
            await card.get_by_role("button", name="Stop listening").click()
            await expect(bar).to_have_attribute("data-listening", "false")

            # Any supervisor may end a call; it takes a second click.
            end = card.locator("button.end")
            await end.click()
            await expect(end).to_have_text("Really end the call?")
            await end.click()
            ended = await call.wait_for(lambda e: e["type"] == "end", timeout=30)
            assert ended["reason"] == "ended_by_supervisor"
        recent = page.locator(f'#recent .card[data-call-id="{call.call_id}"]')
        await expect(recent.locator(".state")).to_contain_text("ended_by_supervisor")
