"""Starting a server: first what can be checked in a moment, then the models, then the port.

A server that cannot start says why in one sentence (`StartupError`) before it spends
seconds loading models: a setting it cannot use, a knowledge base that does not load, a voice
whose files are missing, a data directory it cannot write, a port it cannot listen on. A
failure while the models load closes what was loaded, so no worker process or thread keeps the
command alive after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from typing import TYPE_CHECKING

from voice.config import ConfigError, Settings, SipSettings

if TYPE_CHECKING:  # loading them loads the models' libraries: not for a command that fails
    from voice.office.backoffice import Office
    from voice.ops.services import Services

log = logging.getLogger("voicedesk")

MAX_PORT = 65535
MIN_FIRST_CLAUSE_CHARS = 20
"""`call.first_clause_chars` below this (but 0) would make first clauses of a word or two."""


class StartupError(Exception):
    """The server cannot start; the message says why in a line. `status` is the exit status a
    command ends with: 2 for something it was given, 1 for something it found."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def check_settings(settings: Settings) -> None:
    """What a server's settings need before anything loads: the access settings parse, the port
    is a port, the knowledge base loads, and the voice's and the embedding model's files are
    there (milliseconds).

    Raises:
        ConfigError: an access setting or the port is wrong.
        StartupError: anything else.
    """
    from agent.embedder import EmbedderError, model_file
    from agent.kb import KbError, demo_kb_dir, load_kb
    from tts.piper import resolve_voice
    from voice.ops.access import CallerTokens, allowed_origins, trusted_proxies

    CallerTokens.parse(settings.auth.caller_tokens)
    allowed_origins(settings.auth)
    trusted_proxies(settings.server.trusted_proxies)
    port = settings.server.port
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"server.port: {port} is not a port (0 to {MAX_PORT}; 0: any free one)")
    first = settings.call.first_clause_chars
    if first != 0 and first < MIN_FIRST_CLAUSE_CHARS:
        raise ConfigError(
            f"call.first_clause_chars: {first} would cut a word or two off alone "
            f"(0: never cut; else at least {MIN_FIRST_CLAUSE_CHARS})"
        )
    kb_dir = settings.agent.kb_dir or demo_kb_dir()
    try:
        load_kb(kb_dir)
    except KbError as err:
        where = f"{err.file}:{err.line}" if err.line else str(err.file)
        raise StartupError(f"the knowledge base does not load: {where}: {err.problem}", 2) from None
    try:
        resolve_voice(settings.tts.voice)
        if settings.agent.embedding_model:
            model_file(settings.agent.embedding_model)
    except (FileNotFoundError, EmbedderError) as err:
        raise StartupError(str(err), 2) from None
    if settings.sip.listen is not None:
        check_sip(settings.sip)


def check_sip(settings: SipSettings) -> None:
    """`sip.*` parse, and PJSIP is installed.

    Raises:
        ConfigError: a `sip.*` setting is wrong.
        StartupError: PJSIP is missing.
    """
    import importlib.util

    from voice.channels.sip import ListenAddress, Peers

    assert settings.listen is not None
    for key, parse in (("listen", ListenAddress.parse), ("allowed_peers", Peers.parse)):
        try:
            parse(getattr(settings, key))
        except ValueError as err:
            raise ConfigError(f"sip.{key}: {err}") from None
    for key in ("transfer_to", "registrar"):
        uri = getattr(settings, key)
        if uri is not None and uri.partition(":")[0].lower() not in ("sip", "sips", "tel"):
            raise ConfigError(f"sip.{key}: {uri!r} is not a sip:, sips: or tel: URI")
    if importlib.util.find_spec("pjsua2") is None:
        raise StartupError(
            "sip.listen is set, but PJSIP is not installed here "
            "(pip install pjsua2-python; its wheels are for x86-64 Linux, Python 3.10-3.12)",
            2,
        )


async def check_port(host: str, port: int) -> None:
    """Fail now, not after the models load, when `host:port` cannot be listened on. The port is
    bound for a moment, never listened on (a caller is not answered and then dropped)."""
    try:
        probe = await asyncio.get_running_loop().create_server(
            asyncio.Protocol, host, port, reuse_address=True, start_serving=False
        )
    except OSError as err:
        raise StartupError(_cannot_listen(host, port, err)) from None
    probe.close()
    await probe.wait_closed()


def _cannot_listen(host: str, port: int, err: OSError) -> str:
    if isinstance(err, socket.gaierror):
        return f"cannot listen on {host}: no such address ({err.strerror}; server.host, --host)"
    if err.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use by another program (server.port, --port)"
    if err.errno == errno.EACCES:
        return f"not allowed to listen on port {port} (below 1024 needs privileges; --port)"
    if err.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: not an address of this machine (server.host, --host)"
    return f"cannot listen on {host}:{port}: {err.strerror or err}"


def open_records(settings: Settings) -> Office:
    """The back office (`voice.office.backoffice.open_office`), or why the data directory
    cannot hold the records."""
    from voice.office.backoffice import open_office
    from voice.office.spool import STORE_ERRORS, one_line

    try:
        return open_office(settings)
    except STORE_ERRORS as err:
        where = (
            "the database of records.url"
            if settings.records.url
            else settings.server.data_dir.absolute()
        )
        raise StartupError(f"cannot keep the records in {where}: {one_line(err)}") from None


def load_models(settings: Settings) -> Services:
    """`voice.ops.services.load_services`, whose failures (a model that does not load, a worker
    that does not start) become a `StartupError`; the traceback is logged at DEBUG (`-v`)."""
    from agent.embedder import EmbedderError
    from agent.kb import KbError
    from voice.ops.services import load_services

    try:
        return load_services(settings)
    except (RuntimeError, OSError, ValueError, KbError, EmbedderError) as err:
        log.debug("the models did not load", exc_info=True)
        raise StartupError(f"the models did not load: {err}") from None


async def serve(settings: Settings) -> None:
    """Run the server until SIGINT or SIGTERM, then let the calls finish their turn and stop.

    Raises:
        StartupError: before it serves; whatever was started is stopped again.
    """
    from voice.ops.access import exposure_warning
    from voice.ops.line import drain
    from voice.ops.server import start_server

    host, port = settings.server.host, settings.server.port
    await check_port(host, port)
    warning = exposure_warning(settings)
    if warning is not None:
        log.warning("SECURITY: %s", warning)
    log.info("data directory: %s", settings.server.data_dir.absolute())
    async with contextlib.AsyncExitStack() as running:
        office = open_records(settings)
        running.push_async_callback(asyncio.to_thread, office.close)
        services = load_models(settings)
        running.callback(services.close)  # the model workers end with the server, however
        try:
            runner, port = await start_server(services, host, port, office)
        except OSError as err:  # taken while the models loaded
            raise StartupError(_cannot_listen(host, port, err)) from None
        log.info("serving callers on ws://%s:%d/call", host, port)
        log.info("phone carriers on ws://%s:%d/twilio", host, port)
        log.info("kiosk page on http://%s:%d/", host, port)
        log.info("supervisor console on http://%s:%d/console", host, port)
        if settings.sip.listen is not None:
            log.info("SIP calls from the PBX on %s", settings.sip.listen)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        grace = settings.server.shutdown_grace_s
        log.info("shutting down: no new calls; calls in progress finish their turn (%g s)", grace)
        await drain(runner.app, grace)
        await runner.cleanup()
    log.info("stopped")
