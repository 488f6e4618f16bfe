"""The `voicedesk` command through its real entry point, as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
import soundfile

from voice.channels.codecs import AudioFormat, resample
from voice.clients.client import CallClient

pytestmark = pytest.mark.models


def voicedesk(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEDESK_")}
    return subprocess.run(
        [sys.executable, "-m", "voice.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_config_prints_the_effective_settings(tmp_path):
    (tmp_path / "voicedesk.toml").write_text("[turns]\nsilence_ms = 650\n")
    result = voicedesk("config", "--port", "9911", "--llm", "extractive", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "port = 9911" in result.stdout
    assert "silence_ms = 650" in result.stdout
    assert 'backend = "extractive"' in result.stdout


def test_a_bad_setting_is_a_clear_error(tmp_path):
    (tmp_path / "voicedesk.toml").write_text("[server]\nprot = 1\n")
    result = voicedesk("config", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown setting 'server.prot'" in result.stderr
    assert "Traceback" not in result.stderr


def test_call_streams_files_of_any_format_as_turns_of_one_call(tmp_path, say):
    bulb = say("My smart bulb keeps flashing red. What should I do?", rate=22050)
    with wave.open(str(tmp_path / "bulb.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes((bulb * 32767).astype("<i2").tobytes())
    returns = say("How many days do I have to return a product?", rate=16000)
    stereo = np.stack([resample(returns, 16000, 44100)] * 2, axis=1)
    soundfile.write(tmp_path / "returns.flac", stereo, 44100)
    heard = tmp_path / "heard.wav"
    result = voicedesk(
        "call",
        str(tmp_path / "bulb.wav"),
        str(tmp_path / "returns.flac"),
        "--fast",
        "--json",
        "--out",
        str(heard),
        "--llm",
        "extractive",
    )
    assert result.returncode == 0, result.stderr
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(turns) == 2
    assert "troubleshooting#4.2" in turns[0]["sources"]
    assert "return" in turns[1]["transcript"].lower()
    for turn in turns:
        assert set(turn) >= {"transcript", "reply", "sources", "handoff", "timings_ms"}
        assert set(turn["timings_ms"]) >= {"asr", "first_text", "first_audio"}
        assert turn["handoff"] is False
    with wave.open(str(heard)) as saved:
        assert saved.getframerate() == 16000
        assert saved.getnframes() / 16000 > 5


def test_call_reports_a_missing_file(tmp_path):
    result = voicedesk("call", str(tmp_path / "nothing.wav"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


async def test_serve_answers_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEDESK_")}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voice.cli",
        "serve",
        "--port",
        str(port),
        "--llm",
        "extractive",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    try:
        end = await _ask_when_up(f"ws://127.0.0.1:{port}/call", server)
        assert "warranty" in end["text"].lower()
        server.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(server.communicate(), 30)
    finally:
        if server.returncode is None:
            server.kill()
            await server.communicate()
    assert server.returncode == 0
    for logged in (
        "speech recognition: embedded tiny.en",
        "speech synthesis: embedded",
        "answers: extractive",
        f"ws://127.0.0.1:{port}/call",
        "shutting down",
    ):
        assert logged in output.decode(), output.decode()


async def _ask_when_up(url, server):
    deadline = time.monotonic() + 120
    while True:
        try:
            async with CallClient(url, AudioFormat("pcm16", 16000), realtime_playback=False) as c:
                await c.send_text("how long is the warranty")
                return await c.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
        except OSError:
            assert time.monotonic() < deadline and server.returncode is None, "did not start"
            await asyncio.sleep(0.5)
