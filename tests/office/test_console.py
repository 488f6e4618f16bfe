"""The console's login over HTTP: a flood of wrong passwords throttled, locked and counted, the
session cookie's attributes, the bearer scheme, a store that cannot be written; and a login
flood on a real server while a real call goes on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

from tests.support.fakes import Clock, ScriptedAgent
from tests.support.servers import make_services
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.config import ConsoleSettings, ServerSettings, Settings
from voice.office import console
from voice.office.auth import Scrypt, Users
from voice.office.backoffice import OFFICE, Office, open_office
from voice.office.login import Logins
from voice.ops.line import METRICS
from voice.ops.metrics import Metrics
from voice.ops.server import start_server

QUICK = Scrypt(n=2**10)
PASSWORD = "correct horse battery"
IMMEDIATE = ConsoleSettings(login_refusal_delay_s=0.0)
PCM16 = AudioFormat("pcm16", 16000)


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    users = Users(tmp_path / "voicedesk.db", kdf=QUICK)
    users.add("alice", PASSWORD)
    yield users
    users.close()


def console_app(
    users: Users | None,
    settings: ConsoleSettings = IMMEDIATE,
    clock: Clock | None = None,
    middlewares: tuple[Any, ...] = (),
) -> web.Application:
    """The console's routes alone, on an app with an office and metrics."""
    app = web.Application(middlewares=middlewares)
    app[OFFICE] = Office(users=users)
    app[METRICS] = Metrics()
    console.add_routes(app, settings)
    if clock is not None and users is not None:
        app[console.LOGINS] = Logins(users, settings, clock=clock)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(app)) as client:
        yield client


async def log_in(client: TestClient[Any, Any], password: str, name: str = "alice") -> Any:
    response = await client.post("/api/login", json={"name": name, "password": password})
    return response.status, response.headers, await response.json()


def counted(app: web.Application) -> dict[str, float]:
    found = {}
    for line in app[METRICS].render().decode().splitlines():
        if line.startswith("voicedesk_logins_total{"):
            result = line.split('result="')[1].split('"')[0]
            found[result] = float(line.rsplit(" ", 1)[1])
    return found


async def test_a_flood_of_wrong_passwords_is_throttled_then_locked(users, caplog):
    """The reported attack: wrong passwords back to back. The first few are checked, then each
    attempt must wait longer, then the name and the address are locked and the right password
    is refused until the lock ends; every attempt is counted, and the lock is logged."""
    caplog.set_level(logging.INFO)
    clock = Clock()
    app = console_app(users, clock=clock)
    statuses = []
    async with serving(app) as client:
        while True:
            status, headers, body = await log_in(client, "guess")
            statuses.append(body["error"]["code"])
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
            if body["error"]["code"] == "login_locked":
                break
            if body["error"]["code"] == "login_throttled":
                clock.now += int(headers["Retry-After"])  # a patient attacker
            assert len(statuses) < 100
        status, headers, body = await log_in(client, PASSWORD)
        assert status == 429 and body["error"]["code"] == "login_locked"
        assert int(headers["Retry-After"]) == IMMEDIATE.login_lock_s
        assert "locked for 15 minutes" in body["error"]["message"]
        clock.now += IMMEDIATE.login_lock_s
        status, _, body = await log_in(client, PASSWORD)
        assert status == 200 and body["token"]
    wrong = IMMEDIATE.login_lock_failures
    assert statuses.count("unauthorized") == wrong
    assert statuses.count("login_throttled") == wrong - 1 - IMMEDIATE.login_free_failures
    assert counted(app) == {
        "wrong": wrong,
        "throttled": wrong - 1 - IMMEDIATE.login_free_failures,
        "locked": 2,
        "ok": 1,
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("locked for name 'alice'" in w for w in warnings)
    assert any("locked for address '127.0.0.1'" in w for w in warnings)
    assert "guess" not in caplog.text and PASSWORD not in caplog.text


async def test_the_login_page_says_why_it_refuses(users):
    clock = Clock()
    settings = dataclasses.replace(IMMEDIATE, login_free_failures=0)
    async with serving(console_app(users, settings, clock)) as client:
        form = {"name": "alice", "password": "guess"}
        response = await client.post("/login", data=form, allow_redirects=False)
        assert response.status == 401 and "Wrong name or password." in await response.text()
        response = await client.post("/login", data=form, allow_redirects=False)
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        assert "Too many wrong passwords: wait 1 s" in await response.text()


async def test_the_session_cookie_is_httponly_strict_and_lasts_the_session(users):
    async with serving(console_app(users)) as client:
        form = {"name": "alice", "password": PASSWORD}
        response = await client.post("/login", data=form, allow_redirects=False)
        assert response.status == 303
        cookie = response.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith(f"{console.COOKIE}=")
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Max-Age=43200" in cookie  # records.session_hours, 12 h
    assert "secure" not in attributes  # the quick start is plain http on localhost


@pytest.mark.parametrize("how", ["setting", "https"])
async def test_the_session_cookie_is_secure_behind_tls(users, how):
    @web.middleware
    async def tls_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request.clone(scheme="https"))  # as a forwarded-headers helper does

    if how == "setting":
        app = console_app(users, dataclasses.replace(IMMEDIATE, secure_cookies=True))
    else:
        app = console_app(users, middlewares=(tls_proxy,))
    async with serving(app) as client:
        form = {"name": "alice", "password": PASSWORD}
        response = await client.post("/login", data=form, allow_redirects=False)
        login_cookie = response.headers["Set-Cookie"]
        response = await client.post("/logout", allow_redirects=False)
        logout_cookie = response.headers["Set-Cookie"]
    for cookie in (login_cookie, logout_cookie):
        assert "Secure" in [part.strip() for part in cookie.split(";")]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_console_takes_the_bearer_scheme_in_any_case(users, scheme):
    """One rule for the console and the caller endpoints (RFC 7235: the scheme is
    case-insensitive)."""
    async with serving(console_app(users)) as client:
        _, _, body = await log_in(client, PASSWORD)
        headers = {"Authorization": f"{scheme} {body['token']}"}
        response = await client.get("/console", headers=headers, allow_redirects=False)
        assert response.status == 200
        response = await client.get(
            "/console", headers={"Authorization": f"Basic {body['token']}"}, allow_redirects=False
        )
        assert response.status == 302


async def test_a_store_that_cannot_be_written_answers_503_not_500(users, monkeypatch, caplog):
    """As when the data directory turns read-only; tests may run as root, where chmod does not
    stop a write, so the store is made to fail the way SQLite does."""

    def read_only(*args: object) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    async with serving(console_app(users)) as client:
        _, _, body = await log_in(client, PASSWORD)
        token = body["token"]
        monkeypatch.setattr(users.database, "write", read_only)
        status, _, body = await log_in(client, PASSWORD)
        assert status == 503 and body["error"]["code"] == "store_unavailable"
        assert "cannot write its records" in body["error"]["message"]
        response = await client.post(
            "/logout", headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
        )
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "store_unavailable"
        assert 'voicedesk_session=""' in response.headers["Set-Cookie"]  # the browser forgets
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("readonly database" in e for e in errors)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files")
async def test_a_read_only_data_directory_answers_503(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    users = Users(data / "voicedesk.db", kdf=QUICK)
    users.add("alice", PASSWORD)
    try:
        for path in data.iterdir():
            path.chmod(stat.S_IRUSR)
        data.chmod(stat.S_IRUSR | stat.S_IXUSR)
        async with serving(console_app(users)) as client:
            status, _, body = await log_in(client, PASSWORD)
        assert status == 503 and body["error"]["code"] == "store_unavailable"
    finally:
        data.chmod(stat.S_IRWXU)
        for path in data.iterdir():
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        users.close()


async def test_without_records_nobody_logs_in():
    async with serving(console_app(None)) as client:
        status, _, body = await log_in(client, PASSWORD)
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.models
async def test_a_call_is_answered_through_a_login_flood(models, say, tmp_path):
    """20 clients send wrong passwords back to back while a caller asks a question on a real
    server: the caller's reply comes, whole; the flood is refused (it never holds more than one
    password check at once) and locked out, right password included."""
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=tmp_path))
    office = open_office(settings)
    office.users.add("alice", PASSWORD)
    quick = {"login_delay_s": 0.05, "login_max_delay_s": 0.2}  # locked within a second or so
    services = make_services(models, ScriptedAgent(), console=quick)
    runner, port = await start_server(services, "127.0.0.1", 0, office)
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    stop, locked = asyncio.Event(), asyncio.Event()

    async def flood(number: int) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                body = {"name": "alice", "password": f"guess {number}"}
                async with http.post(f"{base}/api/login", json=body) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        error = (await response.json())["error"]
                        if error["code"] == "login_locked":
                            locked.set()

    flooders = [asyncio.create_task(flood(n)) for n in range(20)]
    try:
        await asyncio.sleep(0.5)
        async with CallClient(f"{base}/call".replace("http", "ws"), PCM16) as call:
            turn = await call.ask(say("My smart bulb keeps flashing red."), realtime=True)
        # Ten password checks can outlast the call on a loaded machine: the flood goes on
        # until it is locked out.
        await asyncio.wait_for(locked.wait(), 30)
        stop.set()
        await asyncio.gather(*flooders)
        async with aiohttp.ClientSession() as http:
            body = {"name": "alice", "password": PASSWORD}
            async with http.post(f"{base}/api/login", json=body) as response:
                assert response.status == 429
                assert (await response.json())["error"]["code"] == "login_locked"
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
    finally:
        stop.set()
        await asyncio.gather(*flooders, return_exceptions=True)
        await runner.cleanup()
        office.close()
    assert turn.reply and turn.timings_ms["first_audio"] is not None
    received_ms = len(turn.audio) // PCM16.bytes_per_sample * 1000 // PCM16.sample_rate
    assert abs(received_ms - turn.audio_ms) <= 1
    assert statuses.count(401) == ConsoleSettings().login_lock_failures
    assert statuses.count(429) > 20
    assert 'voicedesk_logins_total{result="wrong"} 10.0' in metrics
