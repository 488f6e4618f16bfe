"""Who may call: caller tokens on /call, /twilio and /api/chat, browser origins, and the warning
for an exposed server. Pure checks, then a real server on a loopback socket."""

from __future__ import annotations

import dataclasses
import json
import logging

import aiohttp
import pytest

from tests.support.carrier import SimulatedCarrier
from tests.support.fakes import ScriptedAgent
from voice.channels.codecs import AudioFormat
from voice.channels.sip import Peers
from voice.clients.client import CallClient
from voice.config import AuthSettings, ConfigError, ServerSettings, Settings
from voice.ops.access import (
    CallerTokens,
    allowed_origins,
    client_address,
    exposure_warning,
    origin_allowed,
    own_origin,
    trusted_proxies,
)

PCM16 = AudioFormat("pcm16", 16000)
TOKENS = "call=call-secret-1, chat=chat-secret-2, twilio=phone-secret-3"
START = {
    "type": "start",
    "version": 1,
    "audio": {"encoding": "pcm16", "sample_rate": 16000},
    "options": {"realtime_playback": False},
}


def test_tokens_per_endpoint_and_shared():
    tokens = CallerTokens.parse("shared, call=mine")
    assert tokens.required
    assert tokens.allows("call", "mine") and tokens.allows("call", "shared")
    assert tokens.allows("chat", "shared") and not tokens.allows("chat", "mine")
    assert not tokens.allows("twilio", None) and not tokens.allows("twilio", "")
    only_call = CallerTokens.parse("call=x")
    assert not only_call.allows("chat", "x"), "an endpoint without a token is closed"
    assert CallerTokens.parse(None).allows("call", None)
    assert CallerTokens.parse("  ").allows("chat", None)


@pytest.mark.parametrize("text", ["fax=1", "call=", ",", "call=a,,b"])
def test_malformed_tokens_are_refused(text):
    with pytest.raises(ConfigError, match="auth.caller_tokens"):
        CallerTokens.parse(text)


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765", (), True),
        ("http://localhost:8765", "localhost:8765", (), True),
        ("http://[::1]:8765", "[::1]:8765", (), True),
        ("http://192.168.1.20:8765", "192.168.1.20:8765", (), True),
        ("http://127.0.0.1:8765", "127.0.0.1:9999", (), False),
        # A name could be pointed at this server after its page loaded (DNS rebinding): only
        # a listed name is the server's own.
        ("http://evil.example:8765", "evil.example:8765", (), False),
        ("https://voice.example.com", "voice.example.com", (), False),
        ("https://voice.example.com", "voice.example.com", ("https://voice.example.com",), True),
        ("http://evil.example", "127.0.0.1:8765", (), False),
        ("https://kiosk.example.com", "voice.example.com", ("https://kiosk.example.com",), True),
        ("https://KIOSK.example.com", "voice.example.com", ("https://kiosk.example.com/",), True),
        ("http://kiosk.example.com", "voice.example.com", ("https://kiosk.example.com",), False),
        ("null", "voice.example.com", (), False),
        ("http://[::1", "[::1]:8765", (), False),
        ("http://[::1]:8765", "[::1", (), False),
        ("http://127.0.0.1:8765", "", (), False),
    ],
)
def test_origins(origin, host, allowed, expected):
    assert origin_allowed(origin, host, allowed) is expected


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765", (), True),
        ("https://voice.example.com", "voice.example.com", ("https://voice.example.com",), True),
        ("https://voice.example.com", "voice.example.com", (), False),
        # listed for callers' pages, but another origin: never the console's own
        ("https://kiosk.example.com", "voice.example.com", ("https://kiosk.example.com",), False),
        ("http://[::1", "[::1]:8765", (), False),
    ],
)
def test_own_origins(origin, host, allowed, expected):
    assert own_origin(origin, host, allowed) is expected


BALANCER = Peers.parse("10.0.0.2, 10.0.1.0/24")


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("10.0.0.2", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.2", [], "10.0.0.2"),
        ("198.51.100.9", ["203.0.113.7"], "198.51.100.9"),  # not a proxy: its header is a lie
        # the client wrote the leftmost hops itself: read from the right
        ("10.0.0.2", ["1.2.3.4, 203.0.113.7"], "203.0.113.7"),
        ("10.0.0.2", ["1.2.3.4", "203.0.113.7, 10.0.1.5"], "203.0.113.7"),
        ("10.0.0.2", ["10.0.1.5, 10.0.1.6"], "10.0.1.5"),
        ("10.0.0.2", ["203.0.113.7:5678"], "203.0.113.7"),
        ("10.0.0.2", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("10.0.0.2", ["not an address"], "10.0.0.2"),
        ("10.0.0.2", ["203.0.113.7, junk, 10.0.1.5"], "10.0.1.5"),
    ],
)
def test_the_client_behind_trusted_proxies(remote, forwarded, expected):
    assert client_address(remote, forwarded, BALANCER) == expected


def test_trusted_proxies_are_read_or_refused():
    assert trusted_proxies(None) is None and trusted_proxies(" ") is None
    assert trusted_proxies("10.0.0.2").allows("10.0.0.2")
    with pytest.raises(ConfigError, match="server.trusted_proxies"):
        trusted_proxies("10.0.0.2, balancer.internal")


@pytest.mark.parametrize("text", ["kiosk.example.com", "https://[::1", "https://k.example:99999"])
def test_an_allowed_origin_that_is_no_origin_is_a_configuration_error(text):
    with pytest.raises(ConfigError, match="allowed_origins"):
        allowed_origins(AuthSettings(allowed_origins=f"https://ok.example, {text}"))


def test_an_exposed_server_without_tokens_is_warned_about():
    def settings(host: str, tokens: str | None) -> Settings:
        return dataclasses.replace(
            Settings(),
            server=ServerSettings(host=host),
            auth=AuthSettings(caller_tokens=tokens),
        )

    assert exposure_warning(settings("127.0.0.1", None)) is None
    assert exposure_warning(settings("::1", None)) is None
    assert exposure_warning(settings("localhost", None)) is None
    warning = exposure_warning(settings("0.0.0.0", None))
    assert warning is not None and "auth.caller_tokens" in warning
    assert exposure_warning(settings("0.0.0.0", "secret")) is None


@pytest.fixture(scope="module")
async def url(serve):
    auth = {"caller_tokens": TOKENS, "allowed_origins": "https://kiosk.example.com"}
    async with serve(ScriptedAgent(), auth=auth) as url:
        yield url


async def connect(url, headers=None, **start):
    """Open /call, send a start; returns the events and the close code (or the HTTP status)."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers or {})
        except aiohttp.WSServerHandshakeError as refused:
            return [], refused.status
        async with ws:
            await ws.send_json({**START, **start})
            events = []
            async for message in ws:
                event = json.loads(message.data)
                events.append(event)
                if event["type"] == "ready":
                    await ws.send_json({"type": "hangup"})
            return events, ws.close_code


async def test_a_call_needs_its_token(url, caplog):
    caplog.set_level(logging.DEBUG)
    events, code = await connect(url)
    assert code == 4401 and events[0]["code"] == "unauthorized" and events[0]["fatal"]
    events, code = await connect(url, token="chat-secret-2")  # another endpoint's token
    assert code == 4401
    _, status = await connect(url, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    events, code = await connect(url, token="call-secret-1")
    assert code == 1000 and events[0]["type"] == "ready"
    events, code = await connect(url, headers={"Authorization": "Bearer call-secret-1"})
    assert code == 1000 and events[0]["type"] == "ready"
    assert "secret" not in caplog.text, "a token was logged"


async def test_the_text_api_needs_its_token(url):
    api = url.replace("ws://", "http://").replace("/call", "/api/chat")
    body = {"message": "how long is the warranty"}
    async with aiohttp.ClientSession() as http:
        async with http.post(api, json=body) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "unauthorized"
        headers = {"Authorization": "Bearer call-secret-1"}
        async with http.post(api, json=body, headers=headers) as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer chat-secret-2"}
        async with http.post(api, json=body, headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["reply"]


async def test_a_phone_stream_needs_its_token(url):
    phone = url.replace("/call", "/twilio")
    async with SimulatedCarrier(phone) as refused:
        await refused.wait_until(lambda: refused.closed_at is not None, timeout=10)
    assert refused.close_code == 4401
    parameters = {"token": "phone-secret-3", "caller_id": "+15550100"}
    async with SimulatedCarrier(phone, parameters=parameters) as carrier:
        await carrier.press("0")
        await carrier.wait_until(lambda: carrier.closed_at is not None, timeout=30)
    assert carrier.close_code == 1000 and carrier.played_ms() > 0


async def test_pages_from_other_origins_are_refused(url):
    api = url.replace("ws://", "http://").replace("/call", "/api/chat")
    host = url.removeprefix("ws://").split("/")[0]
    headers = {"Authorization": "Bearer chat-secret-2"}
    async with aiohttp.ClientSession() as http:
        for origin, status in (
            ("http://evil.example", 403),
            (f"http://{host}", 200),
            ("https://kiosk.example.com", 200),
        ):
            sent = {**headers, "Origin": origin}
            async with http.post(api, json={"message": "hi"}, headers=sent) as response:
                assert response.status == status, origin
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
        # A page whose name was pointed at this server after it loaded (DNS rebinding): its
        # origin matches the Host it sends, and it is refused all the same.
        port = host.split(":")[1]
        rebound = {"Origin": f"http://evil.example:{port}", "Host": f"evil.example:{port}"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers=rebound)
        assert refused.value.status == 403
        async with http.post(api, json={"message": "hi"}, headers=rebound) as response:
            assert response.status == 403
    with pytest.raises(ConnectionError, match="unauthorized"):  # no Origin: a script...
        async with CallClient(url, PCM16, realtime_playback=False):
            pass
    async with CallClient(url, PCM16, realtime_playback=False, token="call-secret-1") as call:
        await call.send_text("is my bulb ok")  # ...which needs its token
        await call.wait_for(lambda e: e["type"] == "reply.end", timeout=30)


async def test_a_token_is_never_kept_or_logged(models, tmp_path, caplog):
    """The stream's token parameter and the start message's token: not in the stored call,
    not in the live feed, not in any log line at any level."""
    from tests.support.servers import make_services
    from voice.office.backoffice import open_office
    from voice.office.records import CallQuery
    from voice.ops.server import start_server

    caplog.set_level(logging.DEBUG)
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=tmp_path))
    office = open_office(settings)
    feed = office.hub.subscribe()
    services = make_services(models, ScriptedAgent(), auth={"caller_tokens": TOKENS})
    runner, port = await start_server(services, "127.0.0.1", 0, office)
    try:
        phone = f"ws://127.0.0.1:{port}/twilio"
        parameters = {"token": "phone-secret-3", "caller_id": "+15550111"}
        async with SimulatedCarrier(phone, parameters=parameters) as carrier:
            await carrier.press("0")
            await carrier.wait_until(lambda: carrier.closed_at is not None, timeout=30)
        url = f"ws://127.0.0.1:{port}/call"
        async with CallClient(url, PCM16, realtime_playback=False, token="call-secret-1") as c:
            await c.send_text("is my bulb ok")
            await c.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
    finally:
        await runner.cleanup()
    office.store.flush(10)
    stored = office.store.calls(CallQuery(limit=10))
    details = [office.store.call(record.call_id) for record in stored]
    office.close()
    assert {record.channel for record in stored} == {"phone", "call"}
    phone_call = next(record for record in stored if record.channel == "phone")
    assert phone_call.metadata["parameters"] == {"caller_id": "[phone]"}  # records.redact
    events = []
    while not feed._queue.empty():
        event = feed._queue.get_nowait()
        if event is not None:
            events.append(event)
    kept = json.dumps([repr(d) for d in details]) + json.dumps(events) + caplog.text
    assert events and details
    assert "secret" not in kept


async def test_a_header_aiohttp_could_not_decode_is_refused_not_a_crash(url):
    api = url.replace("ws://", "http://").replace("/call", "/api/chat")
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": b"Bearer \xff\xfe".decode("latin-1")}
        async with http.post(api, json={"message": "hi"}, headers=headers) as response:
            assert response.status == 401
