"""The `voicedesk` command: the server, the testers that call it, the knowledge base's tools and
the back office.

A command that cannot do what it was asked ends with one line on stderr, `voicedesk COMMAND:
what went wrong`, and a non-zero status: 2 for something it was given (a setting, a flag, a
file), 1 for something it found (a port in use, a server that does not answer). The server
checks what it can in a moment (settings, the knowledge base, the voice, the records, the port)
before it loads the models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from voice.config import ConfigError, Settings, load_settings, settings_as_toml

log = logging.getLogger("voicedesk")

DEFAULT_TOML = Path("voicedesk.toml")


class CommandError(Exception):
    """What stops a command, said in one line; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    from voice.office.admin import AdminError
    from voice.ops.startup import StartupError

    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("faster_whisper", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = _settings(args)
        return int(args.handler(args, settings))
    except ConfigError as err:
        print(f"voicedesk {args.command}: configuration error: {err}", file=sys.stderr)
        return 2
    except (CommandError, StartupError, AdminError) as err:
        print(f"voicedesk {args.command}: {err}", file=sys.stderr)
        return 1 if isinstance(err, AdminError) else err.status
    except KeyboardInterrupt:
        print(f"voicedesk {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicedesk",
        description="An on-premise voice customer-service server, and the tools around it.",
        epilog="'voicedesk COMMAND --help' shows a command's flags.",
    )
    parser.add_argument(
        "--config", type=Path, help="settings file (default: ./voicedesk.toml if present)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    everything = (_server_flags, _answer_flags, _speech_flags, _data_flag)
    in_process = (_answer_flags, _speech_flags, _data_flag)  # the server started without --url

    serve = _command(commands, "serve", _serve, "run the server")
    _flags(serve, *everything)
    config = _command(commands, "config", _config, "print the effective settings as TOML")
    _flags(config, *everything)

    call = _command(
        commands, "call", _call, "call a server with recorded questions, one turn per file"
    )
    call.add_argument("files", nargs="+", type=Path, help="wav/flac/mp3/ogg, any rate or channels")
    call.add_argument("--url", help="ws://HOST:PORT/call (default: an in-process server)")
    call.add_argument(
        "--fast",
        action="store_true",
        help="stream ten times real time or faster, within the server's message limit",
    )
    call.add_argument("--out", type=Path, help="save the reply audio the caller heard (WAV)")
    call.add_argument("--json", action="store_true", help="one JSON object per turn")
    call.add_argument("--encoding", choices=["pcm16", "mulaw"], default="pcm16")
    call.add_argument("--rate", type=int, default=16000, help="caller sample rate (Hz)")
    call.add_argument("--token", help="caller token, for a server that asks for one")
    _flags(call, *in_process)

    mic = _command(
        commands,
        "mic",
        _mic,
        "talk to a server from this machine's microphone and speaker (half-duplex)",
    )
    mic.add_argument("--url", help="ws://HOST:PORT/call (default: an in-process server)")
    mic.add_argument("--token", help="caller token, for a server that asks for one")
    _flags(mic, *in_process)

    evaluate = _command(
        commands,
        "eval",
        _eval,
        "call a server with a suite of recorded questions and score the answers",
    )
    evaluate.add_argument("suite", type=Path, help="the suite (YAML; see docs/eval.md)")
    evaluate.add_argument("--url", help="ws://HOST:PORT/call (default: an in-process server)")
    evaluate.add_argument(
        "--realtime",
        action="store_true",
        help="stream in real time and time what callers feel (default: 10x or faster)",
    )
    evaluate.add_argument("--json", metavar="OUT", help="write the results as JSON ('-': stdout)")
    evaluate.add_argument("--html", metavar="OUT", type=Path, help="write an HTML report")
    evaluate.add_argument(
        "--min-pass",
        metavar="RATE",
        type=float,
        default=1.0,
        help="exit 0 only when at least this share of cases passes (default 1.0: all)",
    )
    _flags(evaluate, *in_process)

    ask = _command(commands, "ask", _ask, "answer a typed question from the knowledge base")
    ask.add_argument("question")
    _flags(ask, _answer_flags, _data_flag)
    doctor = _command(commands, "doctor", _doctor, "show which answer backend is used, and why")
    _flags(doctor, _answer_flags)

    kb = commands.add_parser("kb", help="knowledge-base tools: check")
    kb_commands = kb.add_subparsers(required=True, metavar="KB_COMMAND")
    check = _command(
        kb_commands, "check", _kb_check, "validate a knowledge base and list its passages", "kb"
    )
    check.add_argument("dir", type=Path, nargs="?", help="default: --kb, or the configured KB")
    _flags(check, _kb_flag)

    user = commands.add_parser("user", help="supervisor logins for the console: add, remove, list")
    user_commands = user.add_subparsers(required=True, metavar="USER_COMMAND")
    add = _command(
        user_commands, "add", _user_add, "add a supervisor (asks for the password)", "user"
    )
    add.add_argument("name")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (the first line), not from the terminal",
    )
    remove = _command(user_commands, "remove", _user_remove, "remove a supervisor", "user")
    remove.add_argument("name")
    listing = _command(user_commands, "list", _user_list, "list the supervisors", "user")
    for command in (add, remove, listing):
        _flags(command, _data_flag)

    report = commands.add_parser("report", help="reports from the call records: gaps")
    report_commands = report.add_subparsers(required=True, metavar="REPORT")
    gaps = _command(
        report_commands,
        "gaps",
        _report_gaps,
        "questions the knowledge base does not answer",
        "report",
    )
    gaps.add_argument("--days", type=int, default=30)
    _flags(gaps, _data_flag)
    purge = _command(commands, "purge", _purge, "delete calls older than records.retention_days")
    _flags(purge, _data_flag)
    migrate = _command(
        commands, "migrate", _migrate, "create or upgrade the records' schema (serve does too)"
    )
    _flags(migrate, _data_flag)
    return parser


Handler = Callable[[argparse.Namespace, Settings], int]


def _command(
    commands: Any, name: str, handler: Handler, help: str, group: str = ""
) -> argparse.ArgumentParser:
    """A subcommand `name` (of `group`) run by `handler`; errors name it (`voicedesk user add`)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help)
    parser.set_defaults(handler=handler, command=f"{group} {name}".strip())
    return parser


def _flags(
    parser: argparse.ArgumentParser, *groups: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The setting flags a command uses (see `voice.config.FLAG_KEYS`), and no others."""
    for add in groups:
        add(parser)


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8765)")


def _kb_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kb", type=Path, help="knowledge-base directory (default: the demo KB)")


def _answer_flags(parser: argparse.ArgumentParser) -> None:
    _kb_flag(parser)
    parser.add_argument("--llm", choices=["auto", "ollama", "extractive"], help="answer backend")
    parser.add_argument("--ollama-url", help="Ollama server (default http://127.0.0.1:11434)")
    parser.add_argument("--model", help="Ollama model (default phi3:mini)")


def _speech_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--asr-model", help="faster-whisper model name or local path")
    parser.add_argument("--voice", type=Path, help="Piper .onnx voice")


def _data_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the records and supervisors are kept (default ~/.local/share/voicedesk)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    toml_path = args.config
    if toml_path is None and DEFAULT_TOML.is_file():
        toml_path = DEFAULT_TOML
    if toml_path is not None and not toml_path.is_file():
        raise ConfigError(f"{toml_path} does not exist")
    return load_settings(toml_path, os.environ, vars(args))


def _config(args: argparse.Namespace, settings: Settings) -> int:
    print(settings_as_toml(settings), end="")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from voice.ops.logs import setup
    from voice.ops.startup import check_settings, serve

    setup(logging.DEBUG if args.verbose else logging.INFO, settings.server.log_format)
    check_settings(settings)
    asyncio.run(serve(settings))
    return 0


def _call(args: argparse.Namespace, settings: Settings) -> int:
    from voice.channels.codecs import AudioFormat, CodecError

    try:
        audio_format = AudioFormat.parse(args.encoding, args.rate)
    except CodecError as err:
        raise CommandError(str(err), 2) from None
    if args.url is not None:
        _check_call_url(args.url)
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        raise CommandError(f"no such file: {', '.join(missing)}", 2)
    questions = [_read_question(path, audio_format.sample_rate) for path in args.files]
    return asyncio.run(_run_call(args, settings, audio_format, questions))


def _check_call_url(url: str) -> None:
    from yarl import URL

    try:
        parsed = URL(url)
        usable = parsed.scheme in ("ws", "wss") and bool(parsed.host) and parsed.port is not None
    except ValueError:
        usable = False
    if not usable:
        raise CommandError(f"--url {url}: not a ws:// or wss:// address (ws://HOST:PORT/call)", 2)


def _read_question(path: Path, sample_rate: int) -> Any:
    """A question's audio, read before the call is made: a file that is no audio makes none."""
    from av.error import FFmpegError

    from voice.clients.client import read_audio

    try:
        samples = read_audio(path, sample_rate)
    except (FFmpegError, OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise CommandError(f"{path} is not audio that ffmpeg reads ({reason})", 2) from None
    if samples.size == 0:
        raise CommandError(f"{path} holds no audio", 2)
    return samples


async def _run_call(
    args: argparse.Namespace, settings: Settings, audio_format: Any, questions: list[Any]
) -> int:
    import aiohttp

    from voice.clients.client import CallClient, Turn

    async with contextlib.AsyncExitStack() as stack:
        url = args.url or await _in_process_server(stack, settings)
        client = CallClient(url, audio_format, realtime_playback=not args.fast, token=args.token)
        try:
            await stack.enter_async_context(client)
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise CommandError(_no_call(url, err, client.events)) from None
        turns: list[Turn] = []
        for samples in questions:
            try:
                turn = await client.ask(samples, realtime=not args.fast)
            except (aiohttp.ClientError, OSError, TimeoutError) as err:
                said = _server_said(client.events)
                raise CommandError(f"the call broke off: {said or err}") from None
            turns.append(turn)
            _print_turn(turn, args.json)
    if args.out:
        _write_wav(args.out, audio_format, turns)
    return 0


def _no_call(url: str, err: BaseException, events: list[dict[str, Any]]) -> str:
    """Why calling `url` made no call, in a sentence."""
    import aiohttp

    if isinstance(err, aiohttp.WSServerHandshakeError):
        if err.status == 401:
            return f"{url} asks for a caller token (--token), or a right one (HTTP 401)"
        return f"{url} took no call (HTTP {err.status}; a voicedesk server takes them on /call)"
    if isinstance(err, aiohttp.ClientConnectorError):
        cause = err.os_error
        if isinstance(cause, socket.gaierror):
            return f"cannot reach {url}: no such host ({cause.strerror})"
        return f"cannot reach {url}: {os.strerror(cause.errno) if cause.errno else cause}"
    if isinstance(err, TimeoutError):
        return f"{url} did not answer the call's start in time"
    said = _server_said(events)
    if said:
        return f"the server refused the call: {said}"
    return f"cannot call {url}: {err}"


def _server_said(events: list[dict[str, Any]]) -> str:
    """The server's last word on a call: its last error's sentence, else how it ended."""
    errors = [event for event in events if event.get("type") == "error"]
    if errors:
        return f"{errors[-1].get('message')} ({errors[-1].get('code')})"
    ends = [event for event in events if event.get("type") == "end"]
    return f"the call ended ({ends[-1].get('reason')})" if ends else ""


def _mic(args: argparse.Namespace, settings: Settings) -> int:
    from voice.clients.mic import MicSettings, run_mic

    if not args.verbose:  # log lines would break up the conversation on the terminal
        for name in ("voice.ops.server", "voice.ops.line", "voice.call.session"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return run_mic(
        args.url,
        lambda stack: _in_process_server(stack, settings),
        settings=MicSettings(token=args.token),
    )


async def _in_process_server(stack: contextlib.AsyncExitStack, settings: Settings) -> str:
    """Serve on a free loopback port for this command only (`--kb` is already in settings)."""
    from voice.ops.server import start_server
    from voice.ops.startup import check_settings, load_models

    check_settings(settings)
    services = load_models(settings)
    stack.callback(services.close)
    runner, port = await start_server(services, "127.0.0.1", 0)
    stack.push_async_callback(runner.cleanup)
    return f"ws://127.0.0.1:{port}/call"


def _print_turn(turn: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(turn.as_json(), ensure_ascii=False), flush=True)
        return
    if turn.ignored:
        print(f"[turn {turn.turn}] (ignored) {turn.transcript!r}", flush=True)
        return
    timings = ", ".join(
        f"{name} {value} ms" for name, value in turn.timings_ms.items() if value is not None
    )
    print(f"[turn {turn.turn}] caller: {turn.transcript}")
    print(f"  reply:   {turn.reply}")
    print(
        f"  sources: {', '.join(turn.sources) or '-'}   handoff: {'yes' if turn.handoff else 'no'}"
    )
    print(f"  timings: {timings}", flush=True)


def _write_wav(path: Path, audio_format: Any, turns: list[Any]) -> None:
    import numpy as np

    pcm = [audio_format.decode(bytes(turn.audio)) for turn in turns]
    samples = np.concatenate(pcm) if pcm else np.zeros(0, np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio_format.sample_rate)
        out.writeframes(samples.astype("<i2").tobytes())


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from voice.eval.suite import SuiteError, load_suite

    if not 0.0 <= args.min_pass <= 1.0:
        print("voicedesk eval: --min-pass is a fraction from 0 to 1", file=sys.stderr)
        return 2
    try:
        suite = load_suite(args.suite)
    except SuiteError as err:
        count = len(err.problems)
        plural = "s" if count > 1 else ""
        print(f"voicedesk eval: the suite cannot run ({count} problem{plural}):", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if not args.verbose:  # the progress and the table alone; warnings and errors still show
        logging.getLogger().setLevel(logging.WARNING)
    if suite.kb is not None and args.kb is None:  # --kb wins over the suite's kb
        agent = dataclasses.replace(settings.agent, kb_dir=suite.kb)
        settings = dataclasses.replace(settings, agent=agent)
    return asyncio.run(_run_eval(args, settings, suite))


async def _run_eval(args: argparse.Namespace, settings: Settings, suite: Any) -> int:
    from voice.eval.report import print_table, progress_line, write_html, write_json
    from voice.eval.run import Unreachable, exit_code, run_suite, summarize

    # The progress, then the table, on one stream (the JSON's, when it takes stdout); logs go
    # to stderr.
    out = sys.stderr if args.json == "-" else sys.stdout

    def progress(done: int, total: int, result: Any) -> None:
        print(progress_line(done, total, result), file=out, flush=True)

    async with contextlib.AsyncExitStack() as stack:
        url = args.url or await _in_process_server(stack, settings)
        try:
            results = await run_suite(suite, url, realtime=args.realtime, progress=progress)
        except Unreachable as err:
            print(f"voicedesk eval: {err}", file=sys.stderr)
            return 1
    summary = summarize(results, realtime=args.realtime)
    print_table(results, summary, out)
    if args.json:
        write_json(args.json, results, summary, sys.stdout)
    if args.html:
        write_html(args.html, results, summary, f"voicedesk eval: {suite.path}")
    return exit_code(summary, args.min_pass)


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from agent.commands import ask

    return ask(args.question, settings.answering(), sys.stdout)


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from agent.commands import doctor

    return doctor(settings.agent, sys.stdout)


def _user_add(args: argparse.Namespace, settings: Settings) -> int:
    from voice.office.admin import user_add

    password: str | None = None  # asked for on the terminal
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("--password-stdin: no password on stdin", 2)
    elif not sys.stdin.isatty():
        raise CommandError(
            "no terminal to ask for the password on; give it on stdin: "
            f'echo "$PASSWORD" | voicedesk user add {args.name} --password-stdin',
            2,
        )
    return user_add(settings, args.name, password, sys.stdout)


def _user_remove(args: argparse.Namespace, settings: Settings) -> int:
    from voice.office.admin import user_remove

    return user_remove(settings, args.name, sys.stdout)


def _user_list(args: argparse.Namespace, settings: Settings) -> int:
    from voice.office.admin import user_list

    return user_list(settings, sys.stdout)


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    from voice.office.admin import purge

    return purge(settings, sys.stdout)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from voice.office.admin import migrate

    return migrate(settings, sys.stdout)


def _report_gaps(args: argparse.Namespace, settings: Settings) -> int:
    from voice.office.admin import report_gaps

    return report_gaps(settings, args.days, sys.stdout)


def _kb_check(args: argparse.Namespace, settings: Settings) -> int:
    from agent.commands import kb_check
    from agent.kb import demo_kb_dir

    return kb_check(args.dir or settings.agent.kb_dir or demo_kb_dir(), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
