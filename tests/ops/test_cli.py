"""The `voicedesk` command through its real entry point, as a subprocess: what it does, and
how it fails — in one line on stderr, with a non-zero status, before it loads any model."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.support.servers import free_port
from tests.support.servers import voicedesk as command
from voice.channels.codecs import AudioFormat, resample
from voice.clients.client import CallClient

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch) -> Path:
    """The default data directory's parent for these commands: never the real home."""
    home = tmp_path / "xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def voicedesk(*args: str, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voice.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean_env(), **(env or {})},
        **kwargs,
    )


def clean_env() -> dict[str, str]:
    """This environment without VOICEDESK_ settings, the checkout importable from any cwd."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICEDESK_")}
    return {**clean, "PYTHONPATH": str(ROOT)}


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr, naming itself; that line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("voicedesk "), lines[0]
    return lines[0]


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


@pytest.mark.models
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


@pytest.mark.models
async def test_serve_answers_and_stops_on_sigterm(tmp_path, data_home):
    port = free_port()
    env = clean_env()
    server = await asyncio.create_subprocess_exec(
        *command("serve", "--port", str(port), "--llm", "extractive"),
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
        f"data directory: {data_home / 'voicedesk'}",
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


# ------------------------------------------------------------------ serve: failing at once


def write_kb(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hours.md").write_text(
        "# Opening hours\n\n## Weekdays\n\nWe answer calls from 9 to 5, Monday to Friday.\n"
    )
    return directory


@pytest.fixture
def listening():
    """A port something else listens on, and whether anyone connected to it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken.setblocking(False)
        yield taken


def connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--kb", "{tmp}/no-such-dir"], "no-such-dir: not a directory"),
        (["--kb", "{tmp}"], "empty knowledge base"),
        (["--port", "70000"], "70000 is not a port"),
        (["--port", "-1"], "-1 is not a port"),
        (["--voice", "{tmp}/none.onnx"], "none.onnx does not exist"),
        (["--host", "no-such-host.invalid"], "no-such-host.invalid: no such address"),
    ],
)
def test_serve_with_a_bad_setting_ends_at_once_in_one_line(tmp_path, flags, said):
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    result = voicedesk("serve", *flags, "--llm", "extractive", timeout=60)
    assert said in one_line(result)
    assert result.returncode == (1 if "--host" in flags else 2)


def test_serve_on_a_port_in_use_ends_at_once_in_one_line(listening):
    port = listening.getsockname()[1]
    result = voicedesk("serve", "--port", str(port), timeout=60)
    assert f"port {port} on 127.0.0.1 is in use" in one_line(result)
    assert result.returncode == 1
    assert not connected(listening)  # the other program's port was not touched


def test_serve_with_a_first_clause_of_a_word_or_two_ends_at_once(tmp_path):
    kb = write_kb(tmp_path / "kb")
    env = {"VOICEDESK_CALL_FIRST_CLAUSE_CHARS": "5"}
    result = voicedesk("serve", "--kb", str(kb), env=env, timeout=60)
    assert "call.first_clause_chars: 5 would cut a word or two off alone" in one_line(result)
    assert result.returncode == 2


def test_serve_with_an_unknown_embedding_model_ends_at_once(tmp_path):
    kb = write_kb(tmp_path / "kb")
    env = {"VOICEDESK_AGENT_EMBEDDING_MODEL": "nonsense"}
    result = voicedesk("serve", "--kb", str(kb), env=env, timeout=60)
    assert "unknown embedding model 'nonsense'" in one_line(result)


@pytest.mark.models
def test_a_failure_while_the_models_load_ends_the_process(tmp_path):
    """The speech workers and the VAD are up when the agent fails: they are closed, nothing
    keeps the process alive, and the failure is one line."""
    broken_agent = (
        "import sys, agent.selection\n"
        "def broken(settings):\n"
        "    raise RuntimeError('the agent broke')\n"
        "agent.selection.build_agent = broken\n"
        "from voice.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", broken_agent, "serve", "--port", "0", "--llm", "extractive"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        cwd=tmp_path,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert "speech recognition:" in result.stderr  # the workers had started
    assert lines[-1] == "voicedesk serve: the models did not load: the agent broke"
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 100


# ------------------------------------------------------------------ call: failing in one line


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("call") / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        tone = 0.3 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)
        out.writeframes((tone * 32767).astype("<i2").tobytes())
    return path


def test_call_reports_a_missing_file(tmp_path):
    result = voicedesk("call", str(tmp_path / "nothing.wav"))
    assert result.returncode == 2
    assert "no such file" in one_line(result)


def test_call_to_a_port_nobody_listens_on(question_wav):
    url = f"ws://127.0.0.1:{free_port()}/call"
    result = voicedesk("call", str(question_wav), "--url", url, timeout=60)
    assert one_line(result) == f"voicedesk call: cannot reach {url}: Connection refused"
    assert result.returncode == 1


def test_call_to_a_path_that_takes_no_calls(tmp_path, question_wav):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{web.server_address[1]}/nowhere"
        result = voicedesk("call", str(question_wav), "--url", url, timeout=60)
        web.shutdown()
    line = one_line(result)
    assert f"{url} took no call (HTTP 404" in line
    assert "/call" in line


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/call", "127.0.0.1:8765"])
def test_call_to_an_address_that_is_no_websocket(question_wav, url):
    result = voicedesk("call", str(question_wav), "--url", url, timeout=60)
    assert "not a ws:// or wss:// address" in one_line(result)
    assert result.returncode == 2


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"RIFF\x00\x00\x00\x00WAVE"])
def test_a_file_that_is_not_audio_is_refused_before_any_call(tmp_path, listening, content):
    (tmp_path / "question.wav").write_bytes(content)
    url = f"ws://127.0.0.1:{listening.getsockname()[1]}/call"
    result = voicedesk("call", str(tmp_path / "question.wav"), "--url", url, timeout=60)
    assert "question.wav is not audio" in one_line(result)
    assert result.returncode == 2
    assert not connected(listening)  # no call was made, so none is in anyone's history


# ------------------------------------------------------------------ the back office's data


def test_user_add_without_a_terminal_says_how_to_give_the_password():
    result = voicedesk("user", "add", "alice", stdin=subprocess.DEVNULL)
    line = one_line(result)
    assert "no terminal" in line
    assert "--password-stdin" in line


def test_the_back_office_finds_its_data_wherever_it_runs(tmp_path, data_home):
    somewhere, elsewhere = tmp_path / "a", tmp_path / "b"
    somewhere.mkdir()
    elsewhere.mkdir()
    added = voicedesk(
        "user", "add", "alice", "--password-stdin", input="correct horse\n", cwd=somewhere
    )
    assert added.returncode == 0, added.stderr
    assert str(data_home / "voicedesk") in added.stdout
    listed = voicedesk("user", "list", cwd=elsewhere)
    assert listed.stdout.split() == ["alice"]
    report = voicedesk("report", "gaps", cwd=elsewhere)
    assert "Questions to add to the knowledge base" in report.stdout, report.stdout
    config = voicedesk("config", cwd=elsewhere)
    assert f'data_dir = "{data_home / "voicedesk"}"' in config.stdout
    assert not (somewhere / "data").exists() and not (elsewhere / "data").exists()

    other = tmp_path / "other-data"
    moved = voicedesk("user", "list", env={"VOICEDESK_DATA_DIR": str(other)}, cwd=elsewhere)
    assert moved.stdout.startswith(f"no records yet in {other}")
    removed = voicedesk("user", "remove", "bob", cwd=elsewhere)
    assert one_line(removed) == "voicedesk user remove: no supervisor bob"


@pytest.mark.parametrize("xdg", ["", "relative/ignored"])
def test_without_xdg_data_home_the_data_is_under_the_home(tmp_path, xdg):
    config = voicedesk("config", env={"HOME": str(tmp_path), "XDG_DATA_HOME": xdg})
    assert f'data_dir = "{tmp_path}/.local/share/voicedesk"' in config.stdout, config.stderr


# ------------------------------------------------------------------ help, kb check, ask


def test_help_lists_every_command_the_readme_documents():
    top = voicedesk("--help").stdout
    listed = dict(re.findall(r"^ {4}([a-z]+) +(.*)$", top, re.MULTILINE))
    rows = re.findall(r"^\| `voicedesk ([a-z]+(?: [a-z]+)*)", README.read_text(), re.MULTILINE)
    assert set(listed) == {row.split()[0] for row in rows}
    for group in ("kb", "user", "report"):
        below = voicedesk(group, "--help").stdout
        subcommands = re.findall(r"^ {4}([a-z]+) ", below, re.MULTILINE)
        assert subcommands, below
        for name in subcommands:  # each one named on the group's line of the top help
            assert name in listed[group], (group, name, listed[group])


def test_kb_check_without_a_directory_checks_the_configured_kb(tmp_path):
    kb = write_kb(tmp_path / "kb")
    by_flag = voicedesk("kb", "check", "--kb", str(kb))
    assert by_flag.stdout.splitlines()[-1] == f"ok: 1 passages, 0 FAQ entries in {kb}"
    (tmp_path / "voicedesk.toml").write_text(f'[agent]\nkb_dir = "{kb}"\n')
    by_settings = voicedesk("kb", "check", cwd=tmp_path)
    assert by_settings.stdout.splitlines()[-1] == f"ok: 1 passages, 0 FAQ entries in {kb}"
    demo = voicedesk("kb", "check")
    assert demo.returncode == 0
    assert demo.stdout.splitlines()[-1].endswith("demo_kb")


def test_ask_offers_only_the_flags_it_uses():
    shown = voicedesk("ask", "--help").stdout
    for unused in ("--host", "--port", "--asr-model", "--voice"):
        assert unused not in shown
    refused = voicedesk("ask", "--port", "9000", "how long is the warranty")
    assert refused.returncode == 2
    assert "unrecognized arguments: --port" in refused.stderr
