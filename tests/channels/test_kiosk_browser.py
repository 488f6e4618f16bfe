"""The kiosk page in a real browser (system Chromium under Playwright), against a real server
with the real models and the extractive agent on the demo KB.

Chromium's fake microphone plays a WAV made at test time with the bundled Piper voice, once
(`%noloop`: then silence), through the page's own capture path: getUserMedia with echo
cancellation, the AudioWorklet down to 16 kHz PCM16, the caller protocol. Reply audio goes to
Chromium's audio output (a null sink when the machine has no sound card; its clock runs all
the same), which the page measures through `window.kiosk`.

Screenshots go to artifacts/: kiosk-idle.png, kiosk-answer.png (768x1024),
kiosk-answer-desktop.png (1440x900), kiosk-typed.png, kiosk-mic-refused.png,
kiosk-mic-missing.png, kiosk-offline.png, kiosk-push-to-talk.png, kiosk-barge-in.png,
kiosk-waiting.png, kiosk-person.png.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from agent.selection import build_agent
from agent.types import AgentSettings
from tests.support.browser import chromium, fresh_page, screenshot
from tests.support.servers import make_services
from tests.support.supervisor import supervisor
from voice.config import ServerSettings, Settings
from voice.office.backoffice import Office, open_office
from voice.ops.server import start_server

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, ViewportSize

QUESTION = "My smart bulb keeps flashing red. What should I do?"
HEARD = re.compile(r"bulb|flash|red", re.IGNORECASE)
LONG_QUESTION = "How do I reset the hub to factory settings?"
SHORT_QUESTION = "How long is the warranty?"
PORTRAIT: ViewportSize = {"width": 768, "height": 1024}
"""A tablet kiosk, upright."""
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
WAIT_MS = 30_000
"""Longest wait for anything the page shows (a spoken turn takes a few seconds)."""
RATE = 16_000
ALICE, PASSWORD = "alice", "correct horse battery"
PERSON_SAYS = "Hello, this is Alice from customer service. How can I help you today?"


@dataclass
class KioskServer:
    base: str
    """http://127.0.0.1:PORT"""
    office: Office


@pytest.fixture(scope="module")
async def server(models, tmp_path_factory):
    data_dir: Path = tmp_path_factory.mktemp("kiosk-data")
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=data_dir))
    office = open_office(settings)
    office.users.add(ALICE, PASSWORD)
    agent, _ = build_agent(AgentSettings(backend="extractive"))
    runner, port = await start_server(make_services(models, agent), "127.0.0.1", 0, office)
    yield KioskServer(f"http://127.0.0.1:{port}", office)
    await runner.cleanup()
    office.close()


def write_wav(path: Path, audio: np.ndarray, tail_ms: int = 2000) -> Path:
    """`audio` (float32 mono, 16 kHz) then `tail_ms` of silence, as a 16-bit PCM WAV."""
    tail = np.zeros(RATE * tail_ms // 1000, dtype=np.float32)
    samples = np.clip(np.concatenate([audio, tail]), -1, 1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def silence(tmp_path_factory) -> Path:
    """A microphone that hears nothing, for the typed questions."""
    return write_wav(tmp_path_factory.mktemp("mic") / "silence.wav", np.zeros(RATE // 2))


@contextlib.asynccontextmanager
async def kiosk_browser(microphone: Path | str) -> AsyncIterator[Browser]:
    """Headless Chromium whose microphone plays the WAV `microphone` once, then silence; or,
    with "refused", one whose permission prompt is refused (headless Chromium denies it), or,
    with "missing", a machine without a microphone."""
    args = ["--autoplay-policy=no-user-gesture-required"]
    if microphone == "refused":
        args += ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
    elif microphone != "missing":
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}%noloop",
        ]
    async with chromium(*args) as browser:
        yield browser


@dataclass
class Wire:
    """What the page's call socket sent and received: JSON messages and binary frames."""

    sent: list[str | bytes] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)

    def sent_json(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.sent if isinstance(m, str)]

    def received_json(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.received if isinstance(m, str)]

    def audio_sent(self) -> list[bytes]:
        return [m for m in self.sent if isinstance(m, bytes)]


def watch(page: Page) -> Wire:
    wire = Wire()

    def on_socket(ws: Any) -> None:
        if ws.url.endswith("/call"):
            ws.on("framesent", lambda payload: wire.sent.append(payload))
            ws.on("framereceived", lambda payload: wire.received.append(payload))

    page.on("websocket", on_socket)
    return wire


def expect(target: Any) -> Any:
    from playwright.async_api import expect

    return expect(target)


async def kiosk(page: Page, expression: str) -> Any:
    """A value from the page's read-only status, e.g. `await kiosk(page, "playedMs")`."""
    return await page.evaluate(f"window.kiosk.{expression}")


async def until(page: Page, condition: str, timeout: int = WAIT_MS) -> None:
    """Wait for a condition on `window.kiosk` (e.g. "playedMs > 1000") that nothing shows."""
    await page.wait_for_function(f"() => window.kiosk.{condition}", timeout=timeout)


async def start(page: Page, base: str | None) -> None:
    """Open the page (unless `base` is None: it is open) and press Start; returns once the
    call is ready and listening."""
    if base is not None:
        await page.goto(f"{base}/")
    await expect(page.locator("#kiosk")).to_have_attribute("data-state", "idle")
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#kiosk")).to_have_attribute("data-state", "listening")


async def ask(page: Page, text: str) -> None:
    await page.get_by_placeholder("type your question").fill(text)
    await page.keyboard.press("Enter")


def turn(page: Page, number: int) -> Any:
    return page.locator(f'#turns .turn[data-turn="{number}"]')


# ---------------------------------------------------------------- speaking


async def test_a_spoken_question_is_heard_answered_and_played(server, browser_for, say):
    """Hands-free: the fake microphone asks; the page shows the transcript, the answer and its
    source, passes through thinking and speaking, and plays the whole reply."""
    async with browser_for(say(QUESTION)) as browser, fresh_page(browser) as page:
        wire = watch(page)
        await page.set_viewport_size(PORTRAIT)
        await page.goto(server.base + "/")
        await screenshot(page, "kiosk-idle.png")
        await start(page, None)
        first = turn(page, 1)
        # Its words as heard: Piper says "smart bulb" as "smart, old" one time in twenty.
        await expect(first.locator(".question")).to_contain_text(HEARD, timeout=WAIT_MS)
        await expect(first.locator(".reply")).to_contain_text("2.4 GHz", timeout=WAIT_MS)
        await until(page, "playedMs > 1000")
        await expect(page.locator("#kiosk")).to_have_attribute("data-state", "speaking")
        # The reply ends after it has played: its source shows, and the page listens again.
        await expect(first.locator(".sources")).to_contain_text(
            "troubleshooting#4.2", timeout=60_000
        )
        # Once the page has played it to the end: later than the server's reply.end when a
        # loaded machine's browser plays behind.
        await expect(page.locator("#kiosk")).to_have_attribute(
            "data-state", "listening", timeout=30_000
        )
        await screenshot(page, "kiosk-answer.png")
        await page.set_viewport_size(DESKTOP)
        await screenshot(page, "kiosk-answer-desktop.png")

        history = await kiosk(page, "history")
        assert history[:2] == ["idle", "connecting"]
        assert history[2:6] == ["listening", "thinking", "speaking", "listening"], history
        # Every frame of reply audio the server sent was played, gaplessly scheduled.
        reply_ms = sum(len(m) for m in wire.received if isinstance(m, bytes)) / (RATE * 2) * 1000
        assert reply_ms > 10_000
        assert abs(await kiosk(page, "playedMs") - reply_ms) < 50
        call_id = await kiosk(page, "callId")

    start_message = wire.sent_json()[0]
    assert start_message == {
        "type": "start",
        "version": 2,
        "audio": {"encoding": "pcm16", "sample_rate": 16000},
        "metadata": {"channel": "kiosk"},
    }
    frames = wire.audio_sent()
    assert frames and {len(f) for f in frames} == {640}  # 20 ms of 16 kHz PCM16 each
    assert server.office.store.flush(10)
    stored = server.office.store.call(call_id)
    final = next(m for m in wire.received_json() if m["type"] == "transcript.final")
    assert stored.call.channel == "kiosk" and stored.turns[0].question == final["text"]
    assert HEARD.search(final["text"])


@pytest.fixture
def browser_for(tmp_path):
    """`async with browser_for(audio) as browser:` Chromium whose microphone says `audio`."""

    def launch(audio: np.ndarray) -> Any:
        return kiosk_browser(write_wav(tmp_path / "question.wav", audio))

    return launch


# ---------------------------------------------------------------- typing


async def test_a_typed_question_is_answered_and_feedback_reaches_the_server(server, silence):
    async with kiosk_browser(silence) as browser, fresh_page(browser) as page:
        await page.set_viewport_size(PORTRAIT)
        await start(page, server.base)
        await ask(page, SHORT_QUESTION)
        first = turn(page, 1)
        await expect(first.locator(".question")).to_have_text(SHORT_QUESTION)
        await expect(first.locator(".reply")).to_contain_text("one-year warranty")
        await expect(first.locator(".sources")).to_contain_text(
            "faq#warranty-length", timeout=WAIT_MS
        )
        async with page.expect_response(lambda r: r.url.endswith("/api/feedback")) as posted:
            await first.get_by_role("button", name="Helpful", exact=True).click()
        response = await posted.value
        assert response.status == 200
        call_id = await kiosk(page, "callId")
        sent = response.request.post_data_json
        assert sent.pop("token"), "the call's feedback token went with it"
        assert sent == {"call_id": call_id, "turn": 1, "helpful": True}
        await expect(first.locator(".feedback")).to_contain_text("feedback was sent")
        await expect(first.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        await screenshot(page, "kiosk-typed.png")
    assert server.office.store.flush(10)
    stored = server.office.store.call(call_id)
    assert [(f.turn, f.helpful) for f in stored.feedback] == [(1, True)]


# ---------------------------------------------------------------- no microphone, no server


@pytest.mark.parametrize(
    ("microphone", "message"),
    [("refused", "microphone is not allowed"), ("missing", "No microphone was found")],
)
async def test_without_a_microphone_the_page_says_so_and_typing_still_works(
    server, microphone, message
):
    async with kiosk_browser(microphone) as browser, fresh_page(browser) as page:
        await page.set_viewport_size(PORTRAIT)
        await start(page, server.base)
        notice = page.locator("#notice")
        await expect(notice).to_contain_text(message)
        await expect(notice).to_contain_text("type your question")
        await expect(page.locator("#kiosk")).to_have_attribute("data-mic", microphone)
        await screenshot(page, f"kiosk-mic-{microphone}.png")
        await ask(page, SHORT_QUESTION)
        await expect(turn(page, 1).locator(".reply")).to_contain_text("one-year warranty")


async def test_a_lost_server_is_reported_with_a_retry_button(models, silence):
    agent, _ = build_agent(AgentSettings(backend="extractive"))
    services = make_services(models, agent)
    runner, port = await start_server(services, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        async with kiosk_browser(silence) as browser, fresh_page(browser) as page:
            await page.set_viewport_size(PORTRAIT)
            await start(page, base)
            await runner.cleanup()  # the server goes away with the call in progress
            main, notice = page.locator("#kiosk"), page.locator("#notice")
            await expect(main).to_have_attribute("data-state", "offline")
            await expect(notice).to_contain_text("server was restarted")
            retry = notice.get_by_role("button", name="Try again")
            await retry.click()
            await expect(notice).to_contain_text("server cannot be reached")
            await expect(main).to_have_attribute("data-state", "offline")
            await screenshot(page, "kiosk-offline.png")

            runner, _ = await start_server(services, "127.0.0.1", port)  # back on its port
            await retry.click()
            await expect(main).to_have_attribute("data-state", "listening")
            await expect(notice).to_be_hidden()
    finally:
        await runner.cleanup()


async def test_error_events_and_a_handoff_are_shown(server, silence):
    """An `error` event shows its message (injected into the real call: the page sends nothing
    the server would refuse); "Talk to a person" hands the call off for real, and the banner
    follows the `hold` events (a name shown as text, never as HTML; nobody came)."""
    async with kiosk_browser(silence) as browser, fresh_page(browser) as page:
        calls: list[Any] = []

        def through(route: Any) -> None:
            route.connect_to_server()  # the real server; messages pass both ways
            calls.append(route)

        await page.route_web_socket(re.compile(r"/call$"), through)
        await start(page, server.base)
        message = "Sorry, the answer could not be completed."
        error = {"type": "error", "code": "answer_failed", "message": message, "fatal": False}
        calls[0].send(json.dumps(error))
        await expect(page.locator("#notice-text")).to_have_text(message)
        await expect(page.locator("#kiosk")).to_have_attribute("data-state", "listening")

        await page.get_by_role("button", name="Talk to a person").click()
        first = turn(page, 1)
        await expect(first.locator(".question")).to_have_text("(asked for a person)")
        await expect(first.locator(".reply")).to_contain_text("transferring you to a colleague")
        banner = page.locator("#handoff")
        await expect(banner).to_contain_text("a person will be with you shortly", timeout=WAIT_MS)
        await expect(page.locator("#notice")).to_be_hidden()  # the next answer took it away

        person = {"type": "hold", "state": "person", "name": "<b>bob</b>", "reason": "", "at": 0}
        calls[0].send(json.dumps(person))
        await expect(banner).to_have_text("You are talking to <b>bob</b>.")
        assert await banner.locator("b").count() == 0
        calls[0].send(json.dumps({**person, "state": "missed", "name": ""}))
        await expect(banner).to_have_text("Nobody could take your call right now.")
        await expect(page.get_by_role("button", name="Talk to a person")).to_be_hidden()


# ---------------------------------------------------------------- a person takes the call


async def test_a_person_takes_the_call_is_heard_and_hands_it_back(server, silence, say):
    """ "Talk to a person" puts the call in the queue: the page says to wait and plays the hold
    audio. Supervisor alice takes it over the API: the page says who the caller is talking to,
    plays all of her voice and shows what she said; she hands it back and the banner goes."""
    async with (
        kiosk_browser(silence) as browser,
        fresh_page(browser) as page,
        supervisor(server.base, ALICE, PASSWORD) as alice,
    ):
        wire = watch(page)
        await page.set_viewport_size(PORTRAIT)
        await start(page, server.base)
        call_id = await kiosk(page, "callId")
        main, banner = page.locator("#kiosk"), page.locator("#handoff")
        person_button = page.get_by_role("button", name="Talk to a person")
        await person_button.click()

        await expect(banner).to_contain_text(
            "Please wait — a person will be with you shortly.", timeout=WAIT_MS
        )
        await expect(banner).to_contain_text(re.compile(r"Waiting \d+:\d\d"))
        await expect(main).to_have_attribute("data-state", "waiting")
        await expect(person_button).to_be_hidden()
        await until(page, "playedMsOf(0) > 1000")  # the hold audio, in no reply's turn
        await screenshot(page, "kiosk-waiting.png")
        status, queue = await alice.get("/api/queue")
        assert status == 200 and call_id in [e["call_id"] for e in queue["waiting"]]

        status, taken = await alice.post(f"/api/calls/{call_id}/take")
        assert (status, taken["holder"]) == (200, ALICE)
        await expect(banner).to_have_text("You are talking to alice.")
        await expect(main).to_have_attribute("data-state", "person")
        await until(page, "clears.some((c) => c.turn === 0)")  # the hold audio stopped at once
        assert await kiosk(page, "playedMsOf('person')") == 0

        speech = np.concatenate([say(PERSON_SAYS), np.zeros(RATE, np.float32)])
        async with alice.audio(call_id) as line:
            await line.speak(speech)
            said = page.locator("#turns .turn.person")
            await expect(said.locator(".a .who")).to_have_text(ALICE, timeout=WAIT_MS)
            await expect(said.locator(".reply")).to_contain_text(re.compile(r"help", re.IGNORECASE))
        # All of her voice that came played: the frames between "person" and now.
        events = [m if isinstance(m, bytes) else json.loads(m) for m in wire.received]
        taken_at = next(
            i for i, m in enumerate(events) if isinstance(m, dict) and m.get("state") == "person"
        )
        voice = sum(len(m) for m in events[taken_at:] if isinstance(m, bytes))
        voice_ms = voice / (RATE * 2) * 1000
        assert voice_ms >= len(speech) * 1000 / RATE - 100  # what she said, all of it
        await until(page, f"playedMsOf('person') >= {voice_ms - 50}")
        assert await kiosk(page, "playedMsOf('person')") <= voice_ms + 50
        assert await kiosk(page, "playedMsOf(0)") == (await kiosk(page, "clears"))[0]["playedMs"]
        await screenshot(page, "kiosk-person.png")

        status, _ = await alice.post(f"/api/calls/{call_id}/handback")
        assert status == 200
        await expect(banner).to_have_text("You are back with the assistant.")
        back = page.locator("#turns .turn").last
        await expect(back.locator(".reply")).to_contain_text(
            "back with the assistant", timeout=WAIT_MS
        )
        await expect(banner).to_be_hidden(timeout=WAIT_MS)
        await expect(main).to_have_attribute("data-state", "listening", timeout=WAIT_MS)
        await expect(person_button).to_be_visible()
        hold = await kiosk(page, "hold")
        assert (hold["state"], hold["name"]) == ("assistant", ALICE)


# ---------------------------------------------------------------- push-to-talk and stopping


async def test_push_to_talk_sends_audio_only_while_held_and_a_press_stops_the_reply(
    server, browser_for, say
):
    lead_ms = 1500
    question = say(QUESTION, lead_ms=lead_ms)
    async with browser_for(question) as browser, fresh_page(browser) as page:
        wire = watch(page)
        await page.set_viewport_size(PORTRAIT)
        await page.goto(server.base + "/")
        await page.get_by_role("radio", name="Push to talk").click()
        await start(page, None)
        talk = page.get_by_role("button", name="Hold to talk")
        await expect(talk).to_be_enabled()

        await until(page, "capturedMs >= 500")  # still the WAV's lead silence
        assert wire.audio_sent() == []  # the microphone runs; nothing goes out unheld
        await talk.hover()
        await page.mouse.down()
        await expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
        spoken_ms = len(question) * 1000 // RATE
        await until(page, f"capturedMs >= {spoken_ms + 300}")
        await page.mouse.up()
        sent_held = await kiosk(page, "sentMs")
        frames = wire.audio_sent()
        # What was held, then 800 ms of silence at once so the turn ends now.
        assert len(frames) * 20 == sent_held
        assert all(f == bytes(640) for f in frames[-40:])
        assert any(f != bytes(640) for f in frames[:-40])
        assert sent_held - 800 < spoken_ms

        first = turn(page, 1)
        await expect(first.locator(".question")).to_contain_text(HEARD, timeout=WAIT_MS)
        await until(page, "playedMs > 1000")
        await expect(page.locator("#kiosk")).to_have_attribute("data-state", "speaking")
        await screenshot(page, "kiosk-push-to-talk.png")

        # Pressing over the reply silences it at once and tells the server to stop.
        await page.mouse.down()
        assert await kiosk(page, "playing") is False
        assert await kiosk(page, "bufferedMs") == 0
        await until(page, "outputLevel() === 0", timeout=5000)  # seconds of reply were left
        await expect(first.locator(".stopped")).to_have_text("Answer stopped.")
        await page.mouse.up()
        assert {"type": "stop"} in wire.sent_json()
        events = wire.received_json()
        assert {"type": "clear", "turn": 1} in events
        ended = next(e for e in events if e["type"] == "reply.end")
        assert ended["turn"] == 1 and ended["interrupted"]
        assert "troubleshooting#4.2" in ended["sources"]
        await expect(page.locator("#kiosk")).to_have_attribute("data-state", "listening")

        # The space bar is the button too.
        await page.locator("h1").click()
        await page.keyboard.down("Space")
        await expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
        await page.keyboard.up("Space")
        await expect(page.locator("#talk")).to_have_attribute("aria-pressed", "false")


async def test_a_clear_from_the_server_drops_the_reply_audio_at_once(server, silence):
    """A second typed question interrupts the first reply: the server sends `clear`, and the
    first reply's audio stops where it was."""
    async with kiosk_browser(silence) as browser, fresh_page(browser) as page:
        wire = watch(page)
        await start(page, server.base)
        await ask(page, LONG_QUESTION)
        await until(page, "playedMsOf(1) > 500")
        await ask(page, SHORT_QUESTION)
        await expect(turn(page, 2).locator(".reply")).to_contain_text("one-year warranty")
        await until(page, "clears.length === 1")
        [cleared] = await kiosk(page, "clears")
        assert cleared["turn"] == 1 and cleared["playedMs"] > 500
        assert cleared["droppedMs"] > 0  # scheduled ahead (the server leads by 300 ms), dropped
        await until(page, "playedMsOf(2) > 500")
        assert await kiosk(page, "playedMsOf(1)") == cleared["playedMs"]  # not a frame more
        await expect(turn(page, 1).locator(".stopped")).to_have_text("Answer stopped.")
        assert {"type": "clear", "turn": 1} in wire.received_json()
        await screenshot(page, "kiosk-barge-in.png")


# ---------------------------------------------------------------- the microphone's path


@pytest.mark.parametrize("context_rate", [44_100, 48_000])
async def test_the_worklet_downsamples_to_16_khz_without_aliasing(server, silence, context_rate):
    """A 1 kHz tone passes at its level; a 12 kHz tone, which would fold to 4 kHz, is gone."""
    async with kiosk_browser(silence) as browser, fresh_page(browser) as page:
        await page.goto(server.base + "/")
        frames = await page.evaluate(
            """async (rate) => {
                const seconds = 1;
                const ctx = new OfflineAudioContext(1, rate * seconds, rate);
                await ctx.audioWorklet.addModule("kiosk-worklet.js");
                const tone = ctx.createBuffer(1, rate * seconds, rate);
                const data = tone.getChannelData(0);
                for (let i = 0; i < data.length; i++) {
                    data[i] = 0.4 * Math.sin(2 * Math.PI * 1000 * i / rate)
                            + 0.4 * Math.sin(2 * Math.PI * 12000 * i / rate);
                }
                const source = ctx.createBufferSource();
                source.buffer = tone;
                const node = new AudioWorkletNode(ctx, "pcm16-downsampler",
                                                  {numberOfOutputs: 0});
                const frames = [];
                node.port.onmessage = (m) => frames.push(Array.from(new Int16Array(m.data)));
                source.connect(node);
                source.start();
                await ctx.startRendering();
                await new Promise((resolve) => setTimeout(resolve, 200));
                return frames;
            }""",
            context_rate,
        )
    assert {len(f) for f in frames} == {320}
    assert len(frames) in (49, 50)  # one second, less the filter's delay
    samples = np.concatenate([np.array(f, dtype=np.float64) for f in frames])[1600:] / 32768
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    hz = np.fft.rfftfreq(len(samples), 1 / RATE)
    level = {f: spectrum[np.argmin(np.abs(hz - f))] for f in (1000, 4000)}
    peak = spectrum.max()
    assert level[1000] == peak
    assert level[4000] < peak / 300  # the folded 12 kHz tone: over 50 dB down
    amplitude = np.sqrt(2 * np.mean(samples**2))
    assert 0.37 < amplitude < 0.43  # the 1 kHz tone's 0.4, untouched
