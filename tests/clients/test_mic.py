"""`voicedesk mic`: the pure parts (half-duplex gate, playback buffer, framing, the terminal view),
the call against a real server with fake sound cards that play speech made by the bundled Piper
voice, and the errors without a sound card or a server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.util
import io
import os
import signal
import socket
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from agent.types import AgentSettings
from tests.support.fakes import ScriptedAgent
from voice.channels.codecs import int16_to_float, resample
from voice.clients import audio_device, mic
from voice.clients.audio_device import AudioDeviceError, BlockHandoff, PlaybackBuffer, SoundDevice
from voice.clients.mic import ConsoleView, Framer, HalfDuplexGate, MicCall, MicSettings

BULB = "What should I do when my smart bulb keeps flashing red?"
"""One clause: at a pause between two sentences the turn may end and the caller going on
continue it in a second turn (docs/protocol.md, "Turn-taking"), which these tests do not
follow."""

# ----------------------------------------------------------------------------- the gate


def test_the_gate_sends_the_microphone_while_the_speaker_is_silent():
    gate = HalfDuplexGate(tail_s=0.3)
    block = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    assert gate.admit(block, now=5.0) is block
    gate.speaker_queued(now=5.0, pending_s=0.0)  # nothing queued: nothing changes
    assert gate.admit(block, now=5.02) is block


def test_the_gate_sends_silence_while_the_reply_plays_and_for_the_echo_tail():
    gate = HalfDuplexGate(tail_s=0.3)
    block = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    gate.speaker_queued(now=1.0, pending_s=0.5)  # plays until 1.5
    for now in (1.0, 1.2, 1.5, 1.79):
        silence = gate.admit(block, now)
        assert silence.dtype == block.dtype and silence.tolist() == [0.0, 0.0, 0.0], now
    assert gate.admit(block, now=1.8) is block
    gate.speaker_queued(now=2.0, pending_s=0.1)
    gate.speaker_queued(now=2.05, pending_s=0.02)  # an earlier end does not shorten it
    assert not gate.is_open(2.39) and gate.is_open(2.4)


def test_a_clear_cuts_the_speaker_but_keeps_the_echo_tail():
    gate = HalfDuplexGate(tail_s=0.3)
    gate.speaker_queued(now=1.0, pending_s=5.0)
    gate.speaker_cut(now=1.2)
    assert not gate.is_open(1.49)
    assert gate.admit(np.array([7, 8], dtype=np.int16), now=1.5).tolist() == [7, 8]


# ----------------------------------------------------------------------------- playback buffer


def test_the_playback_buffer_plays_in_order_and_pads_with_silence():
    buffer = PlaybackBuffer(max_samples=100)
    buffer.push(np.array([1, 2, 3], dtype=np.int16))
    buffer.push(np.array([4, 5], dtype=np.int16))
    assert buffer.buffered == 5
    assert buffer.pull(4).tolist() == [1, 2, 3, 4]
    assert buffer.pull(3).tolist() == [5, 0, 0]
    assert buffer.buffered == 0
    assert buffer.pull(2).tolist() == [0, 0]


def test_clear_drops_everything_at_once():
    buffer = PlaybackBuffer(max_samples=100)
    buffer.push(np.array([1, 2, 3], dtype=np.int16))
    buffer.push(np.array([4, 5], dtype=np.int16))
    buffer.pull(1)
    assert buffer.clear() == 4
    assert buffer.buffered == 0
    assert buffer.pull(3).tolist() == [0, 0, 0]
    buffer.push(np.array([9], dtype=np.int16))
    assert buffer.pull(2).tolist() == [9, 0]


def test_a_full_playback_buffer_drops_its_oldest_samples_and_counts_them():
    buffer = PlaybackBuffer(max_samples=4)
    buffer.push(np.array([1, 2, 3], dtype=np.int16))
    buffer.push(np.array([4, 5, 6], dtype=np.int16))
    assert buffer.buffered == 4 and buffer.dropped == 2
    assert buffer.pull(4).tolist() == [3, 4, 5, 6]
    buffer.push(np.arange(10, 20, dtype=np.int16))
    assert buffer.pull(5).tolist() == [16, 17, 18, 19, 0]
    assert buffer.dropped == 8


def test_the_playback_buffer_fills_the_callbacks_own_array():
    buffer = PlaybackBuffer(max_samples=10)
    source = np.array([1, 2], dtype=np.int16)
    buffer.push(source)
    source[0] = 99  # the buffer kept a copy
    out = np.full((3, 1), 7, dtype=np.int16)  # a PortAudio block: frames x channels
    assert buffer.pull_into(out[:, 0]) == 2
    assert out[:, 0].tolist() == [1, 2, 0]


# ----------------------------------------------------------------------------- framing, handoff


def test_the_framer_cuts_any_chunks_into_whole_frames():
    framer = Framer(4)
    assert framer.push(np.array([1, 2, 3], dtype=np.int16)) == []
    frames = framer.push(np.array([4, 5, 6, 7, 8, 9], dtype=np.int16))
    assert [frame.tolist() for frame in frames] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert [frame.tolist() for frame in framer.push(np.array([10, 11, 12], dtype=np.int16))] == [
        [9, 10, 11, 12]
    ]


async def test_blocks_cross_from_an_audio_thread_and_a_full_queue_drops_them():
    handoff = BlockHandoff(asyncio.get_running_loop(), maxsize=3)
    handoff.put(np.zeros(2, np.float32))  # not listening yet: dropped silently
    handoff.listening = True

    def audio_thread() -> None:
        for value in range(5):
            handoff.put(np.full(2, value, np.float32))

    thread = threading.Thread(target=audio_thread)
    thread.start()
    thread.join(timeout=5)
    await asyncio.sleep(0.05)  # the loop runs the hand-offs
    got = [(await asyncio.wait_for(handoff.get(), 1))[0] for _ in range(3)]
    assert got == [0, 1, 2]
    assert handoff.dropped == 2


# ----------------------------------------------------------------------------- the terminal


def test_the_view_prints_the_conversation_and_the_states():
    out = io.StringIO()
    view = ConsoleView(out)
    for event in [
        {"type": "ready", "call_id": "abc123"},
        {"type": "speech.started", "turn": 1, "at_ms": 300},
        {"type": "transcript.final", "turn": 1, "text": "Where is my order?", "ignored": False},
        {"type": "reply.text", "turn": 1, "text": "I cannot look up orders. "},
        {"type": "reply.text", "turn": 1, "text": "A person can."},
        {
            "type": "reply.end",
            "turn": 1,
            "text": "I cannot look up orders. A person can.",
            "heard": "I cannot look up orders. A person can.",
            "sources": ["faq#orders"],
            "handoff": True,
            "interrupted": False,
        },
        {"type": "handoff", "by": "assistant"},
        {"type": "transcript.final", "turn": 2, "text": "", "ignored": True},
    ]:
        view.show(event)
    assert out.getvalue().splitlines() == [
        "connected (call abc123): speak when you are ready. Enter stops a reply; Ctrl-C hangs up.",
        "[listening…]",
        "you:       Where is my order?",
        "[thinking…]",
        "[speaking… (Enter to stop)]",
        "voicedesk: I cannot look up orders. A person can.",
        "  sources: faq#orders",
        "[listening…]",
        "→ handoff: a person will take over.",
    ]


def test_the_view_shows_no_more_of_a_reply_the_caller_stopped():
    out = io.StringIO()
    view = ConsoleView(out)
    view.show({"type": "reply.text", "turn": 1, "text": "First, unplug it."})
    view.stopping()
    view.show({"type": "reply.text", "turn": 1, "text": " Then plug it in."})
    view.show(
        {
            "type": "reply.end",
            "turn": 1,
            "text": "First, unplug it. Then plug it in.",
            "heard": "First,",
            "sources": [],
            "interrupted": True,
        }
    )
    view.show({"type": "reply.text", "turn": 2, "text": "Hello."})
    assert out.getvalue().splitlines() == [
        "[speaking… (Enter to stop)]",
        "voicedesk: First, unplug it.",
        "(stopping the reply)",
        "  sources: -",
        "  (stopped; heard: 'First,')",
        "[listening…]",
        "[speaking… (Enter to stop)]",
        "voicedesk: Hello.",
    ]


def test_the_view_says_who_the_caller_is_with_once_the_call_is_handed_off():
    out = io.StringIO()
    view = ConsoleView(out)
    for event in [
        {"type": "handoff", "by": "assistant"},
        {"type": "hold", "state": "waiting", "name": "", "reason": "human_request", "at": 1.0},
        {"type": "transcript.final", "turn": 2, "text": "Hello?", "ignored": False},
        {"type": "hold", "state": "person", "name": "alice", "reason": "", "at": 2.0},
        {"type": "person.said", "turn": 3, "name": "alice", "text": "Hi, this is Alice."},
        {"type": "transcript.final", "turn": 4, "text": "My order is late.", "ignored": False},
        {"type": "hold", "state": "assistant", "name": "alice", "reason": "", "at": 3.0},
        {"type": "reply.text", "turn": 5, "text": "You are back with the assistant."},
        {"type": "reply.end", "turn": 5, "text": "You are back with the assistant."},
        {"type": "hold", "state": "waiting", "name": "", "reason": "supervisor", "at": 4.0},
        {"type": "hold", "state": "missed", "name": "", "reason": "supervisor", "at": 5.0},
    ]:
        view.show(event)
    assert out.getvalue().splitlines() == [
        "→ handoff: a person will take over.",
        "→ waiting for a person… (you are on hold)",
        "[listening…]",
        "you:       Hello?",  # on hold: heard, not answered, so not "thinking"
        "→ you are talking to alice.",
        "alice:     Hi, this is Alice.",
        "you:       My order is late.",
        "→ back with the assistant.",
        "[speaking… (Enter to stop)]",
        "voicedesk: You are back with the assistant.",
        "  sources: -",
        "[listening…]",
        "→ waiting for a person… (you are on hold)",
        "→ nobody could take the call.",
    ]


async def test_enter_does_not_stop_hold_audio_or_the_persons_voice():
    """Audio that comes while the call waits for a person, or one holds it, is no reply: Enter
    neither cuts it nor asks the server to stop."""
    device = FakeDevice()
    out = io.StringIO()
    frame = bytes(640)
    async with MicCall(device, out) as call:
        for state in ("waiting", "person"):
            call._on_event({"type": "hold", "state": state, "name": "alice", "at": 1.0})
            call._play(frame)
            call.press_enter()
        call._on_event({"type": "hold", "state": "assistant", "name": "alice", "at": 2.0})
        call._on_event({"type": "reply.text", "turn": 3, "text": "You are back."})
        call._play(frame)
        call.press_enter()  # a reply again: Enter stops it
    assert out.getvalue().count("(stopping the reply)") == 1
    assert device.speaker is not None and device.speaker.written == 3 * 320
    assert device.speaker.clears == 1  # the reply, not the hold audio nor her voice


# ----------------------------------------------------------------------------- fake sound cards


class FakeSpeaker:
    """An `AudioOutput` that plays in real time as its microphone's clock pulls it."""

    latency_s = 0.0

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.buffer = PlaybackBuffer(sample_rate * 10)
        self.written = 0
        """Samples given to it."""
        self.played: list[np.ndarray] = []
        self.clears = 0
        self.closed = False

    def write(self, samples: np.ndarray) -> None:
        assert samples.dtype == np.int16
        self.written += len(samples)
        self.buffer.push(samples)

    def clear(self) -> None:
        self.clears += 1
        self.buffer.clear()

    def pending_s(self) -> float:
        return self.buffer.buffered / self.sample_rate

    def close(self) -> None:
        self.closed = True

    def play(self, count: int) -> np.ndarray:
        samples = self.buffer.pull(count)
        self.played.append(samples)
        return samples


class FakeMicrophone:
    """An `AudioInput` whose own thread delivers `speech`, then silence, in real-time blocks,
    as PortAudio does; each block also plays a block of the speaker. With `echo` the speaker's
    sound is added to the microphone's, like a speaker next to the microphone."""

    def __init__(self, speech, sample_rate, block_ms, on_block, speaker, echo) -> None:
        self.sample_rate = sample_rate
        self._speech = speech
        self._step = sample_rate * block_ms // 1000
        self._on_block = on_block
        self._speaker = speaker
        self._echo = echo
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        began, offset = time.monotonic(), 0
        while not self._closed.is_set():
            block = np.zeros(self._step, np.float32)
            spoken = self._speech[offset : offset + self._step]
            block[: len(spoken)] = spoken
            played = int16_to_float(self._speaker.play(self._step))
            if self._echo:
                block = np.clip(block + played, -1.0, 1.0)
            self._on_block(block)
            offset += self._step
            delay = began + offset / self.sample_rate - time.monotonic()
            if delay > 0:
                self._closed.wait(delay)
            elif delay < -0.5:
                # Held up (a loaded machine): go on in real time from now, as a sound card
                # does after an overrun, rather than deliver the backlog at once — no device
                # does that, and a burst of seconds is more than the server's message rate.
                began -= delay

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)


class FakeDevice:
    """An `AudioDevice`: a microphone at `mic_rate` that says `speech`, a speaker at
    `speaker_rate` (the device's own rates, whatever is asked)."""

    def __init__(self, speech=None, *, echo=False, mic_rate=16000, speaker_rate=16000) -> None:
        self.speech = np.zeros(0, np.float32) if speech is None else speech
        self.echo = echo
        self.mic_rate = mic_rate
        self.speaker_rate = speaker_rate
        self.speaker: FakeSpeaker | None = None
        self.microphone: FakeMicrophone | None = None

    def open_output(self, preferred_rate):
        self.speaker = FakeSpeaker(self.speaker_rate)
        return self.speaker

    def open_input(self, preferred_rate, block_ms, on_block):
        assert self.speaker is not None
        self.microphone = FakeMicrophone(
            self.speech, self.mic_rate, block_ms, on_block, self.speaker, self.echo
        )
        return self.microphone


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.02)


def kinds(call: MicCall) -> list[str]:
    return [event["type"] for event in call.events]


def of_type(call: MicCall, kind: str) -> list[dict]:
    return [event for event in call.events if event["type"] == kind]


@pytest.fixture(scope="module")
def demo_agent():
    from agent.agent import KnowledgeAgent

    return KnowledgeAgent.from_settings(AgentSettings(backend="extractive"))


@pytest.fixture
async def running_call():
    """`call, task = await start(device, url, settings)`; the call is hung up at the end."""
    started: list[tuple[MicCall, asyncio.Task, asyncio.Event, contextlib.AsyncExitStack]] = []

    async def start(device, url, settings=None):
        out = io.StringIO()
        stack = contextlib.AsyncExitStack()
        call = await stack.enter_async_context(MicCall(device, out, settings))
        stop = asyncio.Event()
        task = asyncio.create_task(call.run(url, stop))
        started.append((call, task, stop, stack))
        await until(lambda: "ready" in kinds(call), 30, "ready")
        return call, out, stop, task

    yield start
    for _call, task, stop, stack in started:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)
        await stack.aclose()


@pytest.mark.models
async def test_a_spoken_question_is_answered_out_of_the_speaker_and_its_echo_is_not_heard(
    serve, say, running_call
):
    device = FakeDevice(say(BULB), echo=True)
    async with serve(ScriptedAgent()) as url:  # the bulb's answer, in a few seconds of speech
        call, out, stop, task = await running_call(device, url)
        await until(lambda: of_type(call, "reply.end"), 120, "reply.end")
        # the speaker plays out and its echo reaches the microphone; any turn it made shows
        await asyncio.sleep(2.5)
        stop.set()
        await asyncio.wait_for(task, 15)
    finals = of_type(call, "transcript.final")
    assert len(finals) == 1 and "bulb" in finals[0]["text"].lower(), finals
    end = of_type(call, "reply.end")
    assert len(end) == 1 and not end[0]["interrupted"], end
    assert "troubleshooting#4.2" in end[0]["sources"]
    assert "clear" not in kinds(call)
    assert kinds(call).count("speech.started") == 1, kinds(call)
    assert kinds(call)[-1] == "end"
    speaker = device.speaker
    assert speaker is not None and speaker.written / 16000 > 1.0
    heard = np.concatenate(speaker.played)
    assert np.count_nonzero(heard) / 16000 > 1.0  # it came out of the speaker, not just in
    assert speaker.closed is False  # the stream belongs to the MicCall until it exits
    text = out.getvalue()
    assert "you:" in text and "bulb" in text.lower()
    assert "voicedesk: " in text and "2.4" in text
    assert "sources: troubleshooting#4.2" in text
    assert "[speaking… (Enter to stop)]" in text
    assert text.count("[listening…]") == 2
    assert "call ended (hangup)." in text


@pytest.mark.models
async def test_without_half_duplex_the_echo_interrupts_the_reply(serve, say, running_call):
    """The control for the test above: the echo fake is loud enough to matter."""
    device = FakeDevice(say(BULB), echo=True)
    async with serve(ScriptedAgent()) as url:
        call, _, _, _ = await running_call(device, url, MicSettings(half_duplex=False))
        await until(lambda: of_type(call, "reply.end"), 120, "reply.end")
    end = of_type(call, "reply.end")[0]
    assert end["interrupted"] and "clear" in kinds(call), kinds(call)


@pytest.mark.models
async def test_enter_stops_the_reply(serve, say, demo_agent, running_call):
    # a 48 kHz microphone and a 24 kHz speaker: both resampled to the call's 16 kHz
    device = FakeDevice(resample(say(BULB), 16000, 48000), mic_rate=48000, speaker_rate=24000)
    async with serve(demo_agent) as url:
        call, out, stop, task = await running_call(device, url)
        speaker = device.speaker
        assert speaker is not None
        await until(lambda: speaker.written > 24000, 60, "a second of reply audio")
        await until(lambda: speaker.buffer.buffered > 0, 15, "reply audio queued")
        call.press_enter()
        assert speaker.buffer.buffered == 0  # dropped at once, before the server answers
        await until(lambda: of_type(call, "reply.end"), 10, "reply.end")
        written_at_end = speaker.written
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 15)
    assert "bulb" in of_type(call, "transcript.final")[0]["text"].lower()
    end = of_type(call, "reply.end")[0]
    assert end["interrupted"] and len(end["heard"]) < len(end["text"]), end
    assert kinds(call).index("clear") < kinds(call).index("reply.end")
    assert speaker.clears >= 2  # Enter, then the server's clear
    assert speaker.buffer.buffered == 0 and speaker.written == written_at_end
    assert speaker.written / 24000 < 0.9 * len(end["text"]) / 15  # ~15 characters a second
    text = out.getvalue()
    assert "(stopping the reply)" in text and "(stopped; heard:" in text


COMMAND_WITH_A_FAKE_DEVICE = """
import sys
import numpy as np
import voice.clients.audio_device
from tests.clients.test_mic import FakeDevice
speech = np.load(sys.argv[1])
voice.clients.audio_device.SoundDevice = lambda: FakeDevice(speech)
from voice.cli import main
sys.exit(main(["mic", "--url", sys.argv[2]]))
"""


async def _read_until(stream, marker: str, timeout: float) -> str:
    seen, deadline = "", time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {marker!r} within {timeout} s; got:\n{seen}")
        line = await asyncio.wait_for(stream.readline(), remaining)
        if not line:
            raise AssertionError(f"the command ended before {marker!r}; got:\n{seen}")
        seen += line.decode()
    return seen


@pytest.mark.models
async def test_the_command_stops_a_reply_on_enter_and_hangs_up_on_ctrl_c(
    serve, say, demo_agent, tmp_path
):
    """`voicedesk mic` in a process of its own, a fake device in place of the sound card: the
    Enter key on stdin and SIGINT as a terminal sends them."""
    np.save(tmp_path / "speech.npy", say(BULB))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEDESK_")}
    async with serve(demo_agent) as url:
        command = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            COMMAND_WITH_A_FAKE_DEVICE,
            str(tmp_path / "speech.npy"),
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[2],
            env=env,
        )
        assert command.stdin is not None and command.stdout is not None
        try:
            seen = await _read_until(command.stdout, "[speaking", 120)
            command.stdin.write(b"\n")
            await command.stdin.drain()
            seen += await _read_until(command.stdout, "[listening", 30)
            command.send_signal(signal.SIGINT)
            rest, errors = await asyncio.wait_for(command.communicate(), 30)
        finally:
            if command.returncode is None:
                command.kill()
                await command.communicate()
    output = seen + rest.decode()
    assert command.returncode == 0, errors.decode()
    assert "bulb" in output.lower()
    assert "(stopping the reply)" in output and "(stopped; heard:" in output, output
    assert output.rstrip().endswith("call ended (hangup)."), output
    assert "Traceback" not in errors.decode()


async def test_enter_does_nothing_while_the_caller_has_the_floor():
    device = FakeDevice()
    out = io.StringIO()
    async with MicCall(device, out) as call:
        call.press_enter()
    assert "stopping" not in out.getvalue()
    assert device.speaker is not None and device.speaker.closed and device.speaker.clears == 0


# ----------------------------------------------------------------------------- errors


class _NoPortAudio(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import sounddevice` as it goes where the PortAudio library is missing."""

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise OSError("PortAudio library not found")


def _fake_sounddevice(*, devices: bool = True, opens: bool = True) -> types.ModuleType:
    """A `sounddevice` module on a machine with no sound card (`devices=False`) or one whose
    streams cannot be opened (`opens=False`)."""
    module = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    def query_devices(kind=None):
        if not devices:
            raise PortAudioError("Error querying device -1")
        return {"name": "fake", "default_samplerate": 44100.0}

    def check_settings(**kwargs):
        pass

    def stream(**kwargs):
        raise PortAudioError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")

    module.PortAudioError = PortAudioError  # type: ignore[attr-defined]
    module.query_devices = query_devices  # type: ignore[attr-defined]
    module.check_input_settings = check_settings  # type: ignore[attr-defined]
    module.check_output_settings = check_settings  # type: ignore[attr-defined]
    module.InputStream = stream  # type: ignore[attr-defined]
    module.OutputStream = stream  # type: ignore[attr-defined]
    return module


def _no_server(stack):
    raise AssertionError("no server is started without a sound card")


def _mic_cli(capsys, *args):
    from voice.cli import main

    status = main(["mic", *args])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    return status, lines, captured.out


def test_without_the_portaudio_library_mic_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    with pytest.raises(AudioDeviceError, match="PortAudio library not found"):
        SoundDevice()
    status, lines, _ = _mic_cli(capsys)
    assert status == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("voicedesk mic: no sound system found (PortAudio library not found")
    assert "apt install libportaudio2" in lines[0] and "voicedesk call FILE" in lines[0]


def test_without_a_microphone_mic_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(devices=False))
    status, lines, _ = _mic_cli(capsys)
    assert status == 2
    assert lines == [
        "voicedesk mic: no microphone found (PortAudio: Error querying device -1). "
        "Connect one, or use `voicedesk call FILE` / the kiosk page."
    ]


def test_a_microphone_that_cannot_be_opened_exits_2_before_any_server_starts(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(opens=False))
    err = io.StringIO()
    status = mic.run_mic(None, _no_server, out=io.StringIO(), err=err)
    assert status == 2
    assert err.getvalue().startswith("voicedesk mic: cannot open the ")
    assert "Device unavailable" in err.getvalue() and err.getvalue().count("\n") == 1


def test_a_server_nobody_answers_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(audio_device, "SoundDevice", FakeDevice)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    status, lines, _ = _mic_cli(capsys, "--url", f"ws://127.0.0.1:{port}/call")
    assert status == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"voicedesk mic: cannot reach the server at ws://127.0.0.1:{port}")
