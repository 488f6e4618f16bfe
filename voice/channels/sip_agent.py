"""The SIP user agent inside `voicedesk serve` (docs/sip.md): PJSIP, through its PJSUA2 bindings,
answers the PBX's calls, and their audio flows between RTP and the call's event loop.

Threads. PJSIP is driven from one thread of ours, "sip", which creates the endpoint, polls it,
and runs every command the event loop asks for (answer, refuse, hang up, transfer), so no PJSIP
call is made from the event loop. The media clock (PJSIP's null sound device) calls each call's
port from its own thread, every 20 ms: the port hands the caller's frame to the event loop and
takes the next reply frame from the call's `Playout`. Everything the event loop learns from
PJSIP arrives through `loop.call_soon_threadsafe`.

One `SipAgent` per process: PJSIP keeps one endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

from voice.call.transport import PlaybackReports
from voice.channels.sip import (
    Gone,
    Heard,
    Keyed,
    ListenAddress,
    News,
    Peers,
    Playout,
    Reached,
    Transferred,
    host_of,
)
from voice.config import SipSettings

log = logging.getLogger(__name__)

FRAME_MS = 20
"""The conference bridge's tick: one frame of audio each way per call."""


def bridge_rate(codecs: str) -> int:
    """The conference bridge's sample rate: the rate of the codec most preferred. Each call's
    port is at its own codec's rate, and a call at another rate than the bridge's is
    resampled twice on its way (PJSIP's resampler), which costs recognition a little: the
    calls most expected go through untouched."""
    first = codecs.split(",")[0].strip().upper()
    return 16000 if first == "G722" else 8000


MAX_CALLS = 32
"""Calls PJSIP may track at once, refused ones included; INVITEs beyond get 486 from PJSIP
itself. PJSIP caps this at its compiled-in PJSUA_MAX_CALLS, which is 4 in the pjsua2-python
wheel (measured: a fifth call is refused whatever is asked for): so at most 4 SIP calls are up
at once (docs/sip.md, "How many calls"). Below that, `limits.max_calls` decides, as for every
channel."""

POLL_MS = 10
"""How long the SIP thread waits for SIP events before it runs the event loop's commands."""


class SipCall:
    """One SIP call as the event loop sees it: what its caller sends arrives in `news`; what
    the loop wants done goes to the SIP thread. Used from the event loop, except for the
    `_`-methods, which the SIP side calls from its threads.

    Args:
        max_frames: caller frames `news` holds before new ones are dropped (a loop that fell
            that far behind has lost them anyway).
    """

    def __init__(
        self,
        agent: SipAgent,
        index: int,
        peer: str,
        info: Any,
        max_frames: int,
    ) -> None:
        self._agent = agent
        self.index = index
        """PJSUA's number for the call (reused once the call is over)."""
        self._loop = agent.loop
        self.peer = peer
        """The address the INVITE came from ("HOST:PORT")."""
        self.remote_uri: str = info.remoteUri
        self.local_uri: str = info.localUri
        self.sip_call_id: str = info.callIdString
        self.news: asyncio.Queue[News] = asyncio.Queue()
        self._max_frames = max_frames
        self.dropped_frames = 0
        self.reports = PlaybackReports()
        """How far the reply audio has gone out on the line, turn by turn."""
        self.playout: Playout | None = None
        """The reply audio waiting for the line: there once the audio is up."""
        self.media: asyncio.Future[tuple[int, str]] = self._loop.create_future()
        """Resolves to (sample rate, codec name) once the call's audio is up; fails with
        ConnectionError when the call ends first."""
        self.over = False
        """True once the SIP side has ended the call."""

    # ------------------------------------------------------------------ from the event loop

    def answer(self) -> None:
        self._agent.act(self, lambda call: call.respond(200))

    def refuse(self, status: int) -> None:
        """Refuse the call before it is answered (486 busy, 503 shutting down...)."""
        self._agent.act(self, lambda call: call.respond(status))

    def hang_up(self) -> None:
        """End the call from our side (BYE); nothing when it is over already."""
        if not self.over:
            self._agent.act(self, lambda call: call.end())

    def transfer(self, target: str) -> None:
        """Ask the caller's side to call `target` instead (a blind transfer, REFER)."""
        self._agent.act(self, lambda call: call.refer(target))

    # ------------------------------------------------------------ from the SIP side's threads

    def _post(self, news: News) -> None:
        self._threadsafe(self._deliver, news)

    def _deliver(self, news: News) -> None:
        if isinstance(news, Heard) and self.news.qsize() >= self._max_frames:
            self.dropped_frames += 1
            return
        if isinstance(news, Gone):
            self.over = True
            if not self.media.done():  # the caller gave up before the audio came up
                self.media.set_exception(ConnectionError(f"the call ended: {news.reason}"))
                self.media.exception()  # marked as seen: a refused call never awaits it
        self.news.put_nowait(news)

    def _media_up(self, rate: int, codec: str) -> None:
        """The call's audio is up (from the SIP thread, before the port is made)."""
        if self.playout is None:
            self.playout = Playout(rate * FRAME_MS // 1000 * 2)
        self._threadsafe(self._media_ready, rate, codec)

    def _media_ready(self, rate: int, codec: str) -> None:
        if not self.media.done():
            self.media.set_result((rate, codec))

    def _reached(self, marks: list[Reached]) -> None:
        self._threadsafe(self._report, marks)

    def _report(self, marks: list[Reached]) -> None:
        for mark in marks:
            self.reports.report(mark.turn, mark.position_ms)

    def _threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        tell(self._loop, callback, *args)


class SipAgent:
    """Runs PJSIP in its own thread and hands each allowed incoming call to `incoming`, on
    the event loop, as a `SipCall` to answer or refuse.

    Args:
        settings: `sip.*`; `listen` must be set.
        loop: the server's event loop.
        incoming: called on the loop for each new call from an allowed peer.
        refused: called on the loop with the reason ("unauthorized": where it came from,
            "busy": PJSIP holds all the calls it can) when a call is refused before the loop
            sees it.
        max_frames: see `SipCall`.
    """

    def __init__(
        self,
        settings: SipSettings,
        loop: asyncio.AbstractEventLoop,
        incoming: Callable[[SipCall], None],
        refused: Callable[[str], None],
        max_frames: int = 500,
    ) -> None:
        assert settings.listen is not None
        self.settings = settings
        self.listen = ListenAddress.parse(settings.listen)
        self.peers = Peers.parse(settings.allowed_peers)
        self.loop = loop
        self._incoming = incoming
        self._refused = refused
        self._max_frames = max_frames
        self._commands: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sip", daemon=True)
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self.port = 0
        """The port SIP listens on (useful when `listen` asked for port 0)."""

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the user agent; returns once it listens.

        Raises:
            RuntimeError: PJSIP could not start (the port is taken, the address is not here...).
        """
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError(f"the SIP user agent did not start within {timeout_s:g} s")
        if self._failure is not None:
            raise RuntimeError(f"the SIP user agent could not start: {self._failure}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Hang up every call still up and stop PJSIP. Blocks: run it in a worker thread."""
        if self._thread.is_alive():
            self._commands.put(None)
            self._thread.join(timeout_s)

    @property
    def registered(self) -> bool:
        """True while the registration with `sip.registrar` holds."""
        account = getattr(self, "_account", None)
        return bool(account is not None and account.registered)

    def act(self, call: SipCall, action: Callable[[_PjCall], None]) -> None:
        """Do `action` to `call`'s PJSUA2 object in the SIP thread, soon (within `POLL_MS`);
        nothing once the call is over. The event loop never holds PJSUA2 objects: one that
        outlived the library would abort the process when collected."""

        def command() -> None:
            pj_call = self._account.calls.get(call.index)
            if pj_call is not None and pj_call.handle is call and not pj_call.ended:
                action(pj_call)

        self._commands.put(command)

    # ---------------------------------------------------------------------- the SIP thread

    def _run(self) -> None:
        endpoint = _Endpoint(self)
        try:
            self._create_endpoint(endpoint)
        except pj.Error as err:
            self._failure = RuntimeError(err.reason or err.info())
            with contextlib.suppress(pj.Error):
                endpoint.libDestroy()  # what was made of it, so another may start
            self._started.set()
            return
        self._started.set()
        try:
            self._serve(endpoint)
        finally:
            self._destroy(endpoint)

    def _create_endpoint(self, endpoint: Any) -> None:
        settings, listen = self.settings, self.listen
        endpoint.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0  # polled by this thread
        config.uaConfig.mainThreadOnly = False
        config.uaConfig.maxCalls = MAX_CALLS
        config.uaConfig.userAgent = "voicedesk"
        self._writer = _LogWriter()
        config.logConfig.writer = self._writer
        # The writer takes what the console would print: its level is the console's.
        level = 4 if log.isEnabledFor(logging.DEBUG) else 2
        config.logConfig.level = config.logConfig.consoleLevel = level
        config.medConfig.clockRate = config.medConfig.sndClockRate = bridge_rate(settings.codecs)
        config.medConfig.noVad = True  # RTP keeps flowing in silence, as PBXs expect
        config.medConfig.ecTailLen = 0
        endpoint.libInit(config)
        transport = pj.TransportConfig()
        transport.port = listen.port
        if listen.host not in ("0.0.0.0", "::"):
            transport.boundAddress = listen.host
        if settings.public_address:
            transport.publicAddress = settings.public_address
        kind = pj.PJSIP_TRANSPORT_UDP if listen.protocol == "udp" else pj.PJSIP_TRANSPORT_TCP
        if ":" in listen.host:
            kind = pj.PJSIP_TRANSPORT_UDP6 if listen.protocol == "udp" else pj.PJSIP_TRANSPORT_TCP6
        transport_id = endpoint.transportCreate(kind, transport)
        self.port = int(endpoint.transportGetInfo(transport_id).localName.rpartition(":")[2])
        endpoint.libStart()
        endpoint.audDevManager().setNullDev()  # the clock of the conference bridge
        _prefer_codecs(endpoint, settings.codecs)
        self._account = _Account(self)
        self._account.create(self._account_config(listen), True)

    def _account_config(self, listen: ListenAddress) -> Any:
        settings = self.settings
        host = settings.public_address or listen.host
        if ":" in host:
            host = f"[{host}]"
        config = pj.AccountConfig()
        config.idUri = f"sip:{settings.user}@{host}:{self.port}"
        if settings.registrar is not None:
            domain = settings.registrar.partition(":")[2].partition(";")[0]
            config.idUri = f"sip:{settings.user}@{domain}"
            config.regConfig.registrarUri = settings.registrar
            config.regConfig.timeoutSec = settings.register_expiry_s
            if settings.password is not None:
                credentials = pj.AuthCredInfo("digest", "*", settings.user, 0, settings.password)
                config.sipConfig.authCreds.append(credentials)
        media = config.mediaConfig.transportConfig
        media.port = settings.rtp_port
        media.portRange = settings.rtp_port_range
        if listen.host not in ("0.0.0.0", "::"):
            media.boundAddress = listen.host
        if settings.public_address:
            media.publicAddress = settings.public_address
        return config

    def _serve(self, endpoint: Any) -> None:
        next_check = time.monotonic() + 1.0
        while True:
            endpoint.libHandleEvents(POLL_MS)
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                if command is None:
                    return
                try:
                    command()
                except pj.Error as err:
                    log.warning("SIP: %s", err.info())
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 1.0
                self._account.check_calls(now)

    def _destroy(self, endpoint: Any) -> None:
        try:
            endpoint.hangupAllCalls()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and self._account.calls:
                endpoint.libHandleEvents(POLL_MS)
                self._account.check_calls(time.monotonic())
        finally:
            endpoint.audDevManager().setNoDev()  # the bridge's clock stops: no port is called
            self._account.forget_all()  # PJSUA2 objects must go before the library does
            self._account.shutdown()
            del self._account
            endpoint.libDestroy()

    # ----------------------------------------------------------- calls, from the SIP thread

    def _offer(self, pj_call: _PjCall, source: str) -> SipCall | None:
        """A new incoming call from `source`: a `SipCall` for the loop, or None (refused)."""
        if not self.peers.allows(source):
            log.warning("SIP call refused: %s is not an allowed peer", host_of(source))
            pj_call.respond(403)
            self._threadsafe(self._refused, "unauthorized")
            return None
        call = SipCall(self, pj_call.getId(), source, pj_call.getInfo(), self._max_frames)
        pj_call.respond(180)
        self._threadsafe(self._incoming, call)
        return call

    def _busy(self) -> None:
        self._refused("busy")

    def _threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        tell(self.loop, callback, *args)


def tell(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run `callback(*args)` on `loop`, from any thread; nothing once the loop is closed (the
    server is gone, and the call with it)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _prefer_codecs(endpoint: Any, preference: str) -> None:
    """Offer only the codecs named in `preference`, in its order."""
    wanted = [name.strip().upper() for name in preference.split(",") if name.strip()]
    for codec in endpoint.codecEnum2():
        name = codec.codecId.split("/")[0].upper()
        priority = 255 - wanted.index(name) if name in wanted else 0
        endpoint.codecSetPriority(codec.codecId, priority)


class _Endpoint(pj.Endpoint):  # type: ignore[misc]
    """PJSIP's endpoint, telling the agent of the calls PJSIP refuses by itself."""

    def __init__(self, agent: SipAgent) -> None:
        super().__init__()
        self.agent = agent

    def onRejectedIncomingCall(self, param: Any) -> None:  # noqa: N802 (PJSUA2's name)
        """PJSIP refused an INVITE before it became a call: with 486 when it holds as many
        calls as it can (`MAX_CALLS`)."""
        log.warning("SIP call refused by PJSIP: %d %s", param.statusCode, param.reason)
        if param.statusCode == 486:
            self.agent._threadsafe(self.agent._busy)


class _LogWriter(pj.LogWriter):  # type: ignore[misc]
    """PJSIP's log lines into ours: its errors are a call's trouble, not the server's."""

    def write(self, entry: Any) -> None:
        level = logging.WARNING if entry.level <= 1 else logging.DEBUG
        log.log(level, "pjsip: %s", entry.msg.rstrip())


class _Account(pj.Account):  # type: ignore[misc]
    """The one local account: takes every INVITE, keeps the calls alive until they end."""

    def __init__(self, agent: SipAgent) -> None:
        super().__init__()
        self.agent = agent
        self.calls: dict[int, _PjCall] = {}
        self.idle_ports: dict[int, list[_Port]] = {}
        """Media ports of calls that ended, by sample rate, for the next calls: a port is never
        destroyed while the conference bridge runs (it takes a port out at its next tick, and
        would call one already freed)."""
        self.registered = False
        """True while the registration with `sip.registrar` holds."""

    def onIncomingCall(self, param: Any) -> None:  # noqa: N802 (PJSUA2's name)
        pj_call = _PjCall(self, param.callId)
        self.calls[param.callId] = pj_call
        pj_call.handle = self.agent._offer(pj_call, param.rdata.srcAddress)

    def onRegState(self, param: Any) -> None:  # noqa: N802
        registered = param.code // 100 == 2 and param.expiration > 0
        if registered != self.registered:
            self.registered = registered
            level = logging.INFO if registered else logging.WARNING
            log.log(level, "SIP registration: %d %s", param.code, param.reason)

    def check_calls(self, now: float) -> None:
        """End the calls whose peer stopped sending RTP."""
        for pj_call in list(self.calls.values()):
            pj_call.check_rtp(now, self.agent.settings.rtp_timeout_s)

    def ended(self, pj_call: _PjCall, index: int) -> None:
        """`pj_call` is disconnected: let it go now, within its last callback, as PJSUA2 asks.
        PJSUA reuses the call's number for the next INVITE, and a call object of that number
        still alive would be taken for the new call's (and end it when collected)."""
        if self.calls.get(index) is pj_call:
            del self.calls[index]

    def port_for(self, handle: SipCall, rate: int) -> _Port:
        """A media port at `rate` for `handle`'s call: an idle one, or a new one."""
        idle = self.idle_ports.get(rate)
        port = idle.pop() if idle else _Port(rate)
        port.attach(handle)
        return port

    def release_port(self, port: _Port) -> None:
        port.detach()
        self.idle_ports.setdefault(port.rate, []).append(port)

    def forget_all(self) -> None:
        """Let go of every call and port; only once the bridge's clock is stopped."""
        for pj_call in self.calls.values():
            pj_call.forget()
        self.calls.clear()
        self.idle_ports.clear()


class _PjCall(pj.Call):  # type: ignore[misc]
    """PJSUA2's call object; lives in the SIP thread until the call is disconnected."""

    def __init__(self, account: _Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self.account = account
        self.index = call_id
        self.handle: SipCall | None = None
        self.port: _Port | None = None
        self.ended = False
        self._rx_packets = -1
        self._rx_at = 0.0
        self.jitter: tuple[int, int, int] | None = None
        """The jitter buffer's frames discarded and lost and its mean delay (ms), as last read
        (each second)."""

    def respond(self, status: int) -> None:
        """Answer (200), ring (180) or refuse (4xx-6xx) the incoming call."""
        param = pj.CallOpParam(True)
        param.statusCode = status
        if status < 300:
            self.answer(param)
        else:
            self.hangup(param)

    def end(self) -> None:
        if not self.ended:
            self.hangup(pj.CallOpParam(True))

    def refer(self, target: str) -> None:
        log.info("SIP: transferring the call to %s", target)
        self.xfer(target, pj.CallOpParam(True))

    def onCallState(self, param: Any) -> None:  # noqa: N802
        info = self.getInfo()
        if info.state != pj.PJSIP_INV_STATE_DISCONNECTED or self.ended:
            return
        self.ended = True
        log.debug("SIP call disconnected: %d %s", info.lastStatusCode, info.lastReason)
        if self.jitter is not None:
            discarded, lost, delay_ms = self.jitter
            log.info(
                "SIP call audio: %d frames discarded and %d lost by the jitter buffer, "
                "mean delay %d ms",
                discarded,
                lost,
                delay_ms,
            )
        if self.handle is not None:
            self.handle._post(Gone("hangup"))
        if self.port is not None:
            self.account.release_port(self.port)
        self.forget()
        self.account.ended(self, self.index)

    def onCallMediaState(self, param: Any) -> None:  # noqa: N802
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            stream = self.getStreamInfo(index)
            rate = 16000 if stream.codecClockRate >= 16000 else 8000
            handle = self.handle
            if handle is None:
                return
            handle._media_up(rate, stream.codecName)
            assert handle.playout is not None
            if self.port is None:
                self.port = self.account.port_for(handle, rate)
            audio = self.getAudioMedia(index)
            audio.startTransmit(self.port)
            self.port.startTransmit(audio)
            self._rx_at = time.monotonic()
            return

    def onDtmfDigit(self, param: Any) -> None:  # noqa: N802
        if self.handle is not None and param.digit:
            self.handle._post(Keyed(param.digit.upper()))

    def onCallTransferStatus(self, param: Any) -> None:  # noqa: N802
        if self.handle is not None:
            self.handle._post(Transferred(param.statusCode, bool(param.finalNotify)))
        param.cont = not param.finalNotify

    def check_rtp(self, now: float, timeout_s: float) -> None:
        if self.port is None or self.ended:
            return
        try:
            stat = self.getStreamStat(0)
        except pj.Error:
            return
        packets = stat.rtcp.rxStat.pkt
        jitter = stat.jbuf
        self.jitter = (jitter.discard, jitter.lost, jitter.avgDelayMsec)
        if packets != self._rx_packets:
            self._rx_packets, self._rx_at = packets, now
        elif now - self._rx_at > timeout_s:
            log.warning("SIP call: no RTP for %g s; ending it", timeout_s)
            if self.handle is not None:
                self.handle._post(Gone("rtp_timeout"))
            self.end()

    def forget(self) -> None:
        """Let go of the port (PJSIP no longer calls it once the call is disconnected)."""
        self.port = None


class _Port(pj.AudioMediaPort):  # type: ignore[misc]
    """A call's end of the conference bridge: the caller's frames in, reply frames out. Called
    from the media clock's thread; serves one call at a time (`attach`), and the next one
    after (`detach`): see `_Account.idle_ports`."""

    def __init__(self, rate: int) -> None:
        super().__init__()
        self.rate = rate
        self._handle: SipCall | None = None
        audio = pj.MediaFormatAudio()
        audio.type = pj.PJMEDIA_TYPE_AUDIO
        audio.clockRate = rate
        audio.channelCount = 1
        audio.bitsPerSample = 16
        audio.frameTimeUsec = FRAME_MS * 1000
        self._silence = pj.ByteVector(bytes(rate * FRAME_MS // 1000 * 2))
        self.createPort(f"call{id(self):x}", audio)

    def attach(self, handle: SipCall) -> None:
        self._handle = handle

    def detach(self) -> None:
        self._handle = None

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802
        handle = self._handle
        if handle is not None and frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
            handle._post(Heard(read_bytes(frame.buf)))

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        handle = self._handle
        if handle is None or handle.playout is None:
            frame.buf = self._silence
            frame.size = len(self._silence)
            return
        data, reached = handle.playout.take()
        frame.buf = pj.ByteVector(data)
        frame.size = len(data)
        if reached:
            handle._reached(reached)


def _vector_reader() -> Callable[[Any], bytes]:
    """How to copy a PJSUA2 `ByteVector` into bytes. Iterating it from Python costs ~0.2 ms
    a frame; reading its storage in place costs a microsecond. The storage is found through
    libstdc++'s layout of a vector (a pointer to the first element, then one past the last),
    which is checked here on a known vector: where it does not hold, the slow way is used."""

    def slow(vector: Any) -> bytes:
        return bytes(vector)

    def fast(vector: Any) -> bytes:
        start, end = (ctypes.c_void_p * 2).from_address(int(vector.this))
        if not start or end is None:
            return b""
        return ctypes.string_at(start, end - start)

    probe = bytes(range(256)) * 2
    try:
        if fast(pj.ByteVector(probe)) == probe and fast(pj.ByteVector(b"")) == b"":
            return fast
    except (ValueError, TypeError, OSError):
        pass
    return slow


read_bytes = _vector_reader()
"""Copy a PJSUA2 `ByteVector` (a media frame's buffer) into bytes."""
