"""The `voicedesk` command: serve, call, mic, eval, config, ask, kb check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voice.config import ConfigError, Settings, load_settings, settings_as_toml

log = logging.getLogger("voicedesk")

DEFAULT_TOML = Path("voicedesk.toml")


def main(argv: Sequence[str] | None = None) -> int:
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
    except ConfigError as err:
        print(f"voicedesk: configuration error: {err}", file=sys.stderr)
        return 2
    handler = args.handler
    return int(handler(args, settings))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicedesk", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help="settings file (default: ./voicedesk.toml if present)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    _setting_flags(serve)
    serve.set_defaults(handler=_serve)

    config = commands.add_parser("config", help="print the effective settings as TOML")
    _setting_flags(config)
    config.set_defaults(handler=_config)

    call = commands.add_parser(
        "call", help="call a server with recorded questions, one turn per file"
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
    _setting_flags(call)
    call.set_defaults(handler=_call)

    mic = commands.add_parser(
        "mic", help="talk to a server from this machine's microphone and speaker (half-duplex)"
    )
    mic.add_argument("--url", help="ws://HOST:PORT/call (default: an in-process server)")
    mic.add_argument("--token", help="caller token, for a server that asks for one")
    _setting_flags(mic)
    mic.set_defaults(handler=_mic)

    evaluate = commands.add_parser(
        "eval", help="call a server with a suite of recorded questions and score the answers"
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
    _setting_flags(evaluate)
    evaluate.set_defaults(handler=_eval)

    ask = commands.add_parser("ask", help="answer a typed question from the knowledge base")
    ask.add_argument("question")
    _setting_flags(ask)
    ask.set_defaults(handler=_ask)

    doctor = commands.add_parser("doctor", help="show which answer backend is used, and why")
    _setting_flags(doctor)
    doctor.set_defaults(handler=_doctor)

    user = commands.add_parser("user", help="supervisor logins for the console")
    user_commands = user.add_subparsers(required=True, metavar="USER_COMMAND")
    add = user_commands.add_parser("add", help="add a supervisor (asks for the password)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=_user_add)
    remove = user_commands.add_parser("remove", help="remove a supervisor")
    remove.add_argument("name")
    remove.set_defaults(handler=_user_remove)
    listing = user_commands.add_parser("list", help="list the supervisors")
    listing.set_defaults(handler=_user_list)
    for command in (add, remove, listing):
        _setting_flags(command)

    purge = commands.add_parser("purge", help="delete calls older than records.retention_days")
    _setting_flags(purge)
    purge.set_defaults(handler=_purge)

    report = commands.add_parser("report", help="reports from the call records")
    report_commands = report.add_subparsers(required=True, metavar="REPORT")
    gaps = report_commands.add_parser("gaps", help="questions the knowledge base does not answer")
    _setting_flags(gaps)
    gaps.add_argument("--days", type=int, default=30)
    gaps.set_defaults(handler=_report_gaps)

    kb = commands.add_parser("kb", help="knowledge-base tools")
    kb_commands = kb.add_subparsers(required=True, metavar="KB_COMMAND")
    check = kb_commands.add_parser("check", help="validate a knowledge base and list its passages")
    check.add_argument("dir", type=Path)
    check.set_defaults(handler=_kb_check)
    return parser


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8765)")
    parser.add_argument("--kb", type=Path, help="knowledge-base directory (default: the demo KB)")
    parser.add_argument("--llm", choices=["auto", "ollama", "extractive"], help="answer backend")
    parser.add_argument("--ollama-url", help="Ollama server (default http://127.0.0.1:11434)")
    parser.add_argument("--model", help="Ollama model (default phi3:mini)")
    parser.add_argument("--asr-model", help="faster-whisper model name or local path")
    parser.add_argument("--voice", type=Path, help="Piper .onnx voice")
    parser.add_argument("--data-dir", type=Path, help="where call data is kept")


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
    from voice.ops.access import CallerTokens, allowed_origins, exposure_warning
    from voice.ops.logs import setup

    setup(logging.DEBUG if args.verbose else logging.INFO, settings.server.log_format)
    try:
        CallerTokens.parse(settings.auth.caller_tokens)
        allowed_origins(settings.auth)
    except ConfigError as err:
        print(f"voicedesk: configuration error: {err}", file=sys.stderr)
        return 2
    warning = exposure_warning(settings)
    if warning is not None:
        log.warning("SECURITY: %s", warning)
    from voice.ops.services import load_services

    async def run() -> None:
        from voice.office.backoffice import open_office
        from voice.ops.line import drain
        from voice.ops.server import start_server

        services = load_services(settings)
        try:
            office = open_office(settings)
            runner, port = await start_server(
                services, settings.server.host, settings.server.port, office
            )
            log.info("serving callers on ws://%s:%d/call", settings.server.host, port)
            log.info("phone carriers on ws://%s:%d/twilio", settings.server.host, port)
            log.info("kiosk page on http://%s:%d/", settings.server.host, port)
            log.info("supervisor console on http://%s:%d/console", settings.server.host, port)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
            grace = settings.server.shutdown_grace_s
            log.info(
                "shutting down: no new calls; calls in progress finish their turn (%g s)", grace
            )
            await drain(runner.app, grace)
            await runner.cleanup()
            await asyncio.to_thread(office.close)
        finally:  # the model workers end with the server, however it ends
            services.close()
        log.info("stopped")

    asyncio.run(run())
    return 0


def _call(args: argparse.Namespace, settings: Settings) -> int:
    from voice.channels.codecs import AudioFormat, CodecError

    try:
        audio_format = AudioFormat.parse(args.encoding, args.rate)
    except CodecError as err:
        print(f"voicedesk call: {err}", file=sys.stderr)
        return 2
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        print(f"voicedesk call: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    return asyncio.run(_run_call(args, settings, audio_format))


async def _run_call(args: argparse.Namespace, settings: Settings, audio_format: Any) -> int:
    from voice.clients.client import CallClient, Turn, read_audio

    async with contextlib.AsyncExitStack() as stack:
        url = args.url or await _in_process_server(stack, settings)
        client = await stack.enter_async_context(
            CallClient(url, audio_format, realtime_playback=not args.fast, token=args.token)
        )
        turns: list[Turn] = []
        for path in args.files:
            samples = read_audio(path, audio_format.sample_rate)
            turn = await client.ask(samples, realtime=not args.fast)
            turns.append(turn)
            _print_turn(turn, args.json)
    if args.out:
        _write_wav(args.out, audio_format, turns)
    return 0


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
    from voice.ops.services import load_services

    services = load_services(settings)
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
    if not args.verbose:  # a line per call would bury the progress
        logging.getLogger("voice.ops.server").setLevel(logging.WARNING)
    if suite.kb is not None and args.kb is None:  # --kb wins over the suite's kb
        agent = dataclasses.replace(settings.agent, kb_dir=suite.kb)
        settings = dataclasses.replace(settings, agent=agent)
    return asyncio.run(_run_eval(args, settings, suite))


async def _run_eval(args: argparse.Namespace, settings: Settings, suite: Any) -> int:
    from voice.eval.report import print_table, progress_line, write_html, write_json
    from voice.eval.run import exit_code, run_suite, summarize

    def progress(done: int, total: int, result: Any) -> None:
        print(progress_line(done, total, result), file=sys.stderr, flush=True)

    async with contextlib.AsyncExitStack() as stack:
        url = args.url or await _in_process_server(stack, settings)
        results = await run_suite(suite, url, realtime=args.realtime, progress=progress)
    summary = summarize(results, realtime=args.realtime)
    print_table(results, summary, sys.stderr if args.json == "-" else sys.stdout)
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

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
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


def _report_gaps(args: argparse.Namespace, settings: Settings) -> int:
    from voice.office.admin import report_gaps

    return report_gaps(settings, args.days, sys.stdout)


def _kb_check(args: argparse.Namespace, settings: Settings) -> int:
    from agent.commands import kb_check

    return kb_check(args.dir, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
