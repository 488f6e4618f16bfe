"""Settings, read once at the edge (voicedesk.toml, VOICEDESK_* variables, flags) into dataclasses.

Precedence, lowest first: the defaults below, `voicedesk.toml`, environment variables, command-line
flags. A TOML key is `section.field` (`[asr] beam_size = 2`); an environment variable is
`VOICEDESK_<SECTION>_<FIELD>` (`VOICEDESK_ASR_BEAM_SIZE=2`), and each flag also has a short
variable (`VOICEDESK_PORT`, `VOICEDESK_KB`, `VOICEDESK_OLLAMA_URL`, ...). Unknown keys fail loudly.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.types import AgentSettings
from asr.settings import AsrSettings
from tts.settings import TtsSettings


class ConfigError(Exception):
    """A setting is unknown or has a value of the wrong kind."""


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """Where call data is kept unless `server.data_dir` says otherwise, the same for every
    command wherever it runs: `$XDG_DATA_HOME/voicedesk`, else `~/.local/share/voicedesk`."""
    xdg = environ.get("XDG_DATA_HOME", "")
    if os.path.isabs(xdg):  # the XDG rule: a relative or empty value is ignored
        return Path(xdg) / "voicedesk"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "voicedesk"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    """Where call data is kept: the records, recordings, supervisors and the embedding cache
    (created on demand). Default: `default_data_dir`."""
    shutdown_grace_s: float = 30.0
    """On SIGTERM or SIGINT: new calls are refused, and each call in progress may finish its
    current turn for up to this long before it is closed (1001)."""
    log_format: Literal["text", "json"] = "text"
    """Log lines as text, or one JSON object a line; either way each line of a call carries its
    call id."""
    header_timeout_s: float = 10.0
    """A connection must send a complete request (its headers, or a websocket upgrade) within
    this long of opening, and again within this long after each response; otherwise it is
    closed. Silent connections and headers sent a byte at a time are closed alike."""
    max_connections_per_address: int = 64
    """Open connections one remote address may hold (calls, pages, API requests together); more
    are reset at once. Behind a proxy every connection comes from the proxy's address: raise it
    above the proxy's own limit there."""
    trusted_proxies: str | None = None
    """The load balancers or proxies in front of this server (and, behind one balancer, the
    other servers), as addresses or networks separated by commas. A request from one of them is
    counted by the address its `X-Forwarded-For` gives (the last one not itself trusted), for
    every limit per address but `max_connections_per_address`. Not set: by the address the
    connection comes from."""
    isolate_models: bool = True
    """Run speech recognition and synthesis in worker processes: a crash or a kill there costs
    the requests in flight (those calls get an apology and a handoff), never the server, and
    the worker is restarted. False runs them in threads of the server process."""


@dataclass(frozen=True)
class TurnSettings:
    vad_threshold: float = 0.5
    """Silero speech probability at which a window counts as speech."""
    phone_vad_threshold: float = 0.35
    """The same for callers at 8 kHz: Silero scores telephone-band speech lower (a short
    question on a μ-law line can stay under 0.5 throughout; see docs/benchmarks.md)."""
    min_speech_ms: int = 160
    """Voiced audio needed before a turn starts (clicks and pops are shorter)."""
    silence_ms: int = 700
    """Silence that ends the caller's turn while its words are not known yet (the speculative
    transcript, started after `early_asr_ms`, is not in), or when they end in a comma or in no
    mark at all, which tells neither way."""
    complete_silence_ms: int = 300
    """Silence that ends the turn once its speculative transcript reads as a complete question
    or request (docs/protocol.md, "Turn-taking")."""
    unfinished_silence_ms: int = 1100
    """Silence that ends the turn when its speculative transcript reads as unfinished (it ends
    in "and", "the", "um", "...", a number being read out): the caller is still thinking."""
    answer_ahead: bool = True
    """Begin the answer (and the first clause's speech) on the speculative transcript of a
    pause, held until the turn ends with the same words; thrown away when the caller goes on."""
    continuation_ms: int = 1000
    """A caller who speaks again within this long of their turn's end, while its reply has
    only begun, is going on with the same question: the reply stops and the two parts are
    answered as one."""
    max_utterance_ms: int = 30_000
    """A turn longer than this is ended and answered."""
    preroll_ms: int = 300
    """Audio kept from before the detected start, so the first syllable is not lost."""
    partial_interval_ms: int = 1000
    """How often a partial transcript is sent while the caller speaks; 0 turns partials off.
    Partials are best effort: skipped while the recognizer is busy."""
    early_asr_ms: int = 100
    """Silence after which the final transcription starts speculatively, before the turn is
    known to be over; it is discarded if the caller goes on."""
    early_asr_idle_ms: int = 50
    """The same while speech recognition has nothing else to do (when shorter than
    `early_asr_ms`): then a speculation costs no other call anything, and the answer is begun
    sooner. Under load every pause between words would add work for the shared recognizer,
    which slowed 8 callers' replies (docs/benchmarks.md), so busy, it waits `early_asr_ms`."""
    barge_in_min_ms: int = 400
    """Voiced audio needed before speech during a reply can interrupt it."""
    barge_in_recheck_ms: int = 400
    """How often the words of a possible interruption are checked again while it goes on."""
    barge_in_words_ms: int = 1000
    """Speech over a reply shorter than this interrupts only with an interrupting word ("stop",
    "wait", "no"); longer speech interrupts with any word that is not an acknowledgement."""


@dataclass(frozen=True)
class CallSettings:
    start_timeout_s: float = 5.0
    """Time a caller has to send the start message after the websocket opens."""
    send_timeout_s: float = 10.0
    """A caller that takes no data for this long is closed (it stopped reading)."""
    idle_timeout_s: float = 120.0
    """A caller that sends nothing (no audio, no message) for this long is closed (4410)."""
    max_call_s: float = 3600.0
    """Longest call; past it the call is ended (4413)."""
    max_messages_per_s: float = 200.0
    """Messages a caller may send per second, on average over `burst_s`; a caller that sends
    more is closed (4429). 20 ms audio frames are 50 a second."""
    burst_s: float = 2.0
    """How many seconds' worth of messages may come at once (a network hiccup flushed)."""
    max_typed_per_s: float = 1.0
    """Typed questions a call answers a second, on average, three at once; one more waits its
    turn (a newer one takes its place). Nobody types faster; a flood of questions would take
    the speech workers from the other calls."""
    ping_interval_s: float = 20.0
    """The server pings every caller this often; one that does not answer in time is dropped."""
    max_frame_bytes: int = 65_536
    max_frame_ms: int = 100
    reply_frame_ms: int = 40
    """Size of each reply-audio frame the server sends."""
    playback_lead_ms: int = 300
    """How far reply audio is sent ahead of real time; what barge-in can no longer take back."""
    first_clause_chars: int = 30
    """A reply's first sentence is cut in two at about this many characters, before a word
    that begins a phrase, so that its first words are synthesized (and heard) sooner, and each
    later clause at twice the length the one before it could have, so it is made while the
    audio before it plays; 0: no sentence is cut (tts/clauses.py)."""
    inbound_queue_frames: int = 500
    """Audio frames waiting to be processed before the server stops reading the socket."""
    failure_message: str = (
        "I'm sorry, something went wrong on our side, so I'm transferring you to a colleague."
    )
    """Spoken when part of the server fails a call (a model's worker dies); a handoff follows."""
    not_understood_message: str = "Sorry, I couldn't make that out. Could you say it again?"
    """Spoken (and sent in `asr_failed`) when a question could not be recognized."""
    answer_failed_message: str = "Sorry, I couldn't finish that answer. Could you ask it again?"
    """Spoken (and sent in `answer_failed`) when an answer broke off for an unexpected reason."""
    text_idle_timeout_s: float = 300.0
    """A text-API session (`POST /api/chat`, one `session_id`) with no message for this long
    is over: recorded as ended ("idle"), its memory forgotten. More than 0."""


@dataclass(frozen=True)
class RecordsSettings:
    enabled: bool = True
    """Keep every call and turn in the store (SQLite in the data dir, or `url`)."""
    url: str | None = None
    """A PostgreSQL database for the records and the supervisors' logins instead of SQLite
    (`postgresql://user:password@host:5432/voicedesk`); its schema is created and upgraded at
    start (`voicedesk migrate`). A secret (it may hold a password): `voicedesk config` does not
    print it."""
    recordings: bool = True
    """Keep a stereo WAV of every call: the caller left, the assistant right."""
    recordings_dir: Path | None = None
    """Where the recordings are kept. Not set: `recordings/` in `server.data_dir`. Servers
    behind one balancer name one shared directory (an NFS or SMB mount), so that every one of
    them plays and exports every call's recording (docs/deploy.md)."""
    redact: bool = True
    """Replace card numbers, phone numbers and email addresses in stored transcripts and in the
    live feed."""
    retention_days: int = 90
    """Calls older than this are deleted by `voicedesk purge` (and daily while serving)."""
    session_hours: float = 12.0
    """How long a supervisor's login lasts."""
    max_waiting: int = 100_000
    """Records kept in memory while the store is down (a few hundred bytes each); past this the
    oldest waiting record is dropped (`voicedesk_records_dropped`)."""


@dataclass(frozen=True)
class LimitsSettings:
    max_calls: int = 8
    """Calls served at once; a caller beyond them hears `busy_message` and is closed with 1013.
    The default is what this software holds on a 2-core CPU with the embedded models (see
    docs/benchmarks.md, "Load"); measure yours with bench/load.py."""
    busy_message: str = "All our lines are busy right now. Please call again in a few minutes."
    """Synthesized once at start."""
    max_waiting: int = 32
    """Connections that have not sent their start message yet, at most, in each of two rooms:
    callers whose upgrade carried valid credentials (a caller token in the `Authorization`
    header, a valid `X-Twilio-Signature`), and the rest. More are refused with HTTP 503 before
    the upgrade (each may wait `call.start_timeout_s`)."""
    max_waiting_per_address: int = 8
    """Of the connections without credentials at the upgrade, how many one remote address may
    hold before they start."""


@dataclass(frozen=True)
class AuthSettings:
    caller_tokens: str | None = None
    """Tokens a caller must present on /call, /twilio and /api/chat; unset: no token needed.
    Comma-separated; `channel=token` (channel: call, twilio, chat) is for that endpoint only,
    a bare token for all of them. A secret: not printed by `voicedesk config`, never logged."""
    allowed_origins: str | None = None
    """Comma-separated origins (https://kiosk.example.com) whose pages may use this server,
    besides its own; a browser request from any other origin is refused (403)."""


@dataclass(frozen=True)
class ConsoleSettings:
    """Supervisor logins. Each limit applies to a remote address (an IPv6 address by its /64)
    and to a supervisor's name separately; behind a proxy every login comes from the proxy's
    address, so the address limits then hold for all supervisors together."""

    login_free_failures: int = 3
    """Wrong passwords that cost nothing more; each further one makes the next attempt wait."""
    login_delay_s: float = 1.0
    """The first such wait; it doubles with each further wrong password. An attempt that comes
    sooner is refused unchecked (429 `login_throttled`, with Retry-After)."""
    login_max_delay_s: float = 30.0
    """The longest such wait."""
    login_lock_failures: int = 10
    """Wrong passwords within `login_lock_window_s` that lock an address or a name."""
    login_lock_window_s: float = 600.0
    """Counted from the first of them; the count starts again after it."""
    login_lock_s: float = 900.0
    """How long a lock lasts. Meanwhile even the right password is refused (429 `login_locked`);
    a restart lifts every lock."""
    login_max_waiting: int = 8
    """Logins waiting while another one's password is checked (one at a time, in a thread of
    its own); more are refused at once (429 `login_busy`)."""
    login_refusal_delay_s: float = 1.0
    """Refusals (`login_throttled`, `login_locked`, `login_busy`) are answered after this long,
    so a client that ignores Retry-After gets one answer a second per connection."""
    login_table_size: int = 10_000
    """Addresses and names whose wrong passwords are remembered; beyond it the least recently
    seen are forgotten (locked ones last)."""
    secure_cookies: bool = False
    """Mark the session cookie `Secure` (sent over HTTPS only). Set it when supervisors reach the
    console through a TLS proxy; a request that reaches this server over TLS gets it anyway."""


@dataclass(frozen=True)
class HandoffSettings:
    """A call handed off to a person, when it stays on this server (docs/console.md, "The
    handoff queue"): it waits in the console's queue, on hold, until a supervisor takes it."""

    hold_message: str = "Please stay on the line; someone will be with you shortly."
    """Said once the handoff sentence has played, before the hold audio."""
    reminder_message: str = "Thank you for waiting. Someone will be with you shortly."
    """Said over the hold audio every `reminder_every_s`."""
    reminder_every_s: float = 30.0
    hold_volume: float = 0.06
    """Peak level of the hold audio (a quiet, generated chime), 0 to 1 of full scale."""
    max_wait_s: float = 180.0
    """How long a call waits in the queue; then the caller is told (`when_missed`) and the
    call is recorded as a missed handoff."""
    when_missed: Literal["call_back", "message"] = "call_back"
    """"call_back": the caller is asked to call back (`missed_message`) and the call ends;
    "message": the caller is asked to leave a message (`message_prompt`), which is
    transcribed into the call's record, thanked for it (`message_thanks`), and the call ends."""
    missed_message: str = (
        "Sorry, nobody could take your call right now. Please call again later. Goodbye."
    )
    message_prompt: str = (
        "Sorry, nobody can take your call right now. Please leave a message after the tone, "
        "and we will call you back."
    )
    message_thanks: str = "Thank you, your message is recorded. Goodbye."
    message_max_s: float = 60.0
    """How long the caller has to begin and say their message."""
    back_message: str = "You are back with the assistant. What else can I help you with?"
    """Said when a supervisor hands the call back."""


@dataclass(frozen=True)
class TwilioSettings:
    auth_token: str | None = None
    """The Twilio account's auth token. When set, `/twilio` refuses a connection whose upgrade
    request lacks a valid X-Twilio-Signature. A secret: `voicedesk config` does not print it and
    nothing logs it; set it with VOICEDESK_TWILIO_AUTH_TOKEN rather than in a file."""
    public_url: str | None = None
    """The wss:// URL of `/twilio` as written in the TwiML `<Stream url=...>`, which is what
    Twilio signs. Default: wss://<the request's Host header>/twilio (right unless a proxy
    rewrites the host or path)."""
    handoff: Literal["dial", "takeover"] = "dial"
    """What a handoff does on `/twilio`: "dial" ends the stream, so that the TwiML after
    `<Connect><Stream>` (a `<Dial>`) passes the call to a person; "takeover" keeps the stream
    and puts the call in the console's handoff queue, where a supervisor takes it in-stream."""


@dataclass(frozen=True)
class SipSettings:
    listen: str | None = None
    """Where the SIP user agent listens for the PBX's calls, "udp:HOST:PORT" or "tcp:HOST:PORT"
    (e.g. "udp:0.0.0.0:5060"). Not set: no SIP (docs/sip.md)."""
    allowed_peers: str | None = None
    """The addresses or networks calls may come from (the PBX, the SBC), separated by commas.
    Not set: this machine only. A call from elsewhere is refused with 403."""
    public_address: str | None = None
    """The address the PBX reaches this server at, written into SIP headers and SDP, when it is
    not the listening address (behind NAT, or listening on 0.0.0.0)."""
    transfer_to: str | None = None
    """Where a handoff sends the caller: a SIP URI for a blind transfer (REFER) once the handoff
    sentence has played, e.g. "sip:600@pbx.example" (the agents' queue). Not set: the call stays
    with the assistant, as on `/call`."""
    codecs: str = "PCMU,PCMA,G722"
    """The codecs offered, in order of preference (PCMU and PCMA are G.711 μ-law and A-law;
    G722 is wideband)."""
    rtp_port: int = 40000
    """The first UDP port for RTP; each call takes the next free pair."""
    rtp_port_range: int = 1000
    """How many ports from `rtp_port` RTP may use."""
    rtp_timeout_s: float = 30.0
    """A call whose peer sends no RTP for this long is ended (the peer vanished without BYE)."""
    answer_timeout_s: float = 5.0
    """How long an answered call may take to bring its audio up before it is ended."""
    transfer_timeout_s: float = 10.0
    """How long a transfer may take to be confirmed before the call is ended anyway."""
    transfer_failed_message: str = (
        "Sorry, I couldn't put you through to a person right now. I can keep helping, or you "
        "can call again later."
    )
    """Said when the PBX refuses the transfer; the call stays with the assistant."""
    registrar: str | None = None
    """Register with the PBX as an extension: its registrar's SIP URI (e.g. "sip:10.0.0.5").
    Not set: no registration (the PBX sends calls to `listen`'s address, as a trunk)."""
    user: str = "voicedesk"
    """The extension's user name: in our SIP address, and for digest authentication."""
    password: str | None = None
    """The extension's password, for digest authentication to the PBX. A secret: set it with
    VOICEDESK_SIP_PASSWORD rather than in a file."""
    register_expiry_s: int = 300
    """How long a registration lasts before it is renewed."""


@dataclass(frozen=True)
class LiveSettings:
    url: str | None = None
    """A Redis server that the servers of one deployment share their live floor through
    (`redis://host:6379/0`): every call on every server on each console, a supervisor's step
    into a call sent to the server that holds it, and text-chat sessions that any server
    continues (docs/deploy.md). Not set: one server, all in process. A secret (it may hold a
    password): `voicedesk config` does not print it."""
    prefix: str = "voicedesk"
    """What this deployment's Redis keys start with, so that two deployments can share one
    Redis."""
    advertise_url: str | None = None
    """How the other servers reach this one, to pass it a supervisor's step into one of its
    calls (`http://10.0.0.5:8765`). Not set: `http://` with `server.host` (this machine's name
    when that is 0.0.0.0 or ::) and the port it listens on."""


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    turns: TurnSettings = field(default_factory=TurnSettings)
    call: CallSettings = field(default_factory=CallSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    records: RecordsSettings = field(default_factory=RecordsSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    twilio: TwilioSettings = field(default_factory=TwilioSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    live: LiveSettings = field(default_factory=LiveSettings)

    def answering(self) -> AgentSettings:
        """The agent's settings, its embedding cache under `server.data_dir` unless set."""
        if self.agent.embedding_cache_dir is not None:
            return self.agent
        cache = self.server.data_dir / "cache"
        return dataclasses.replace(self.agent, embedding_cache_dir=cache)


FLAG_KEYS: Mapping[str, str] = {
    "host": "server.host",
    "port": "server.port",
    "data_dir": "server.data_dir",
    "kb": "agent.kb_dir",
    "llm": "agent.backend",
    "ollama_url": "agent.ollama_url",
    "model": "agent.model",
    "asr_model": "asr.model",
    "voice": "tts.voice",
}
"""Command-line flag (argparse dest) → setting key."""

ENV_PREFIX = "VOICEDESK_"

SECRETS = frozenset(
    {"twilio.auth_token", "auth.caller_tokens", "sip.password", "records.url", "live.url"}
)
"""Settings that `settings_as_toml` never prints."""


def load_settings(
    toml_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, the TOML file, the environment and flags (None values are not set).

    Raises:
        ConfigError: on an unknown key or a value that does not convert.
    """
    values: dict[str, dict[str, Any]] = {}
    environ = os.environ if environ is None else environ
    if toml_path is not None:
        try:
            document = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"{toml_path}: {err}") from err
        for section, table in document.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{toml_path}: '{section}' must be a [section] table")
            for name, value in table.items():
                _put(values, f"{section}.{name}", value, str(toml_path))
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX):
            _put(values, _env_key(name), value, f"environment variable {name}")
    for flag, value in (flags or {}).items():
        if value is not None and flag in FLAG_KEYS:
            _put(values, FLAG_KEYS[flag], value, f"flag --{flag.replace('_', '-')}")
    default_dir = (default_data_dir(environ), "the default data directory")
    values.setdefault("server", {}).setdefault("data_dir", default_dir)
    sections = {
        field_.name: _build(_section_class(field_.name), values.pop(field_.name, {}))
        for field_ in dataclasses.fields(Settings)
    }
    return Settings(**sections)


def settings_as_toml(settings: Settings) -> str:
    """The effective settings as a voicedesk.toml that reproduces them."""
    lines: list[str] = []
    for section in dataclasses.fields(settings):
        lines.append(f"[{section.name}]")
        for item in dataclasses.fields(getattr(settings, section.name)):
            value = getattr(getattr(settings, section.name), item.name)
            if f"{section.name}.{item.name}" in SECRETS and value is not None:
                lines.append(f"# {item.name} = (set; not shown)")
            elif value is None:
                lines.append(f"# {item.name} = (not set)")
            else:
                lines.append(f"{item.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _section_class(name: str) -> type:
    hints = typing.get_type_hints(Settings)
    return typing.cast(type, hints[name])


def _env_key(name: str) -> str:
    rest = name[len(ENV_PREFIX) :].lower()
    if rest in FLAG_KEYS:
        return FLAG_KEYS[rest]
    for section in dataclasses.fields(Settings):
        if rest.startswith(section.name + "_"):
            return f"{section.name}.{rest[len(section.name) + 1 :]}"
    return rest


def _put(values: dict[str, dict[str, Any]], key: str, value: Any, origin: str) -> None:
    section, _, name = key.partition(".")
    known = {f.name for f in dataclasses.fields(Settings)}
    if section not in known or not name:
        raise ConfigError(f"{origin}: unknown setting '{key}'")
    fields_ = {f.name for f in dataclasses.fields(_section_class(section))}
    if name not in fields_:
        raise ConfigError(
            f"{origin}: unknown setting '{key}' (known: {', '.join(sorted(fields_))})"
        )
    values.setdefault(section, {})[name] = (value, origin)


def _build(cls: type, given: dict[str, tuple[Any, str]]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, (value, origin) in given.items():
        try:
            kwargs[name] = _convert(value, hints[name])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{origin}: {cls.__name__[:-8].lower()}.{name}: {err}") from err
    return cls(**kwargs)


def _convert(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        return _convert(value, options[0])
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    if hint is float:
        return float(value)
    if hint is Path:
        return Path(os.path.expanduser(str(value)))
    if hint is str:
        if not isinstance(value, str | int | float):
            raise ValueError(f"{value!r} is not text")
        return str(value)
    raise TypeError(f"cannot read a setting of type {hint}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
