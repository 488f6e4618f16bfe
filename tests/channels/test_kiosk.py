"""The kiosk page's routes (voice/channels/kiosk.py), through the real server on a loopback
socket: the page and its scripts, with their content types, and nothing loaded from
anywhere else."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from tests.support.fakes import ScriptedAgent
from tests.support.servers import make_services
from voice.channels.kiosk import ASSETS
from voice.ops.server import start_server


@pytest.fixture(scope="module")
async def base(models):
    runner, port = await start_server(make_services(models, ScriptedAgent()), "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def fetch(url: str) -> tuple[int, str, str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, response.content_type, await response.text(), response.headers


@pytest.mark.parametrize(
    ("path", "content_type", "holds"),
    [
        ("/", "text/html", 'id="kiosk"'),
        ("/kiosk.js", "text/javascript", "window.kiosk"),
        ("/kiosk-player.js", "text/javascript", "window.KioskPlayer"),
        ("/kiosk-worklet.js", "text/javascript", 'registerProcessor("pcm16-downsampler"'),
    ],
)
async def test_the_page_and_its_scripts_are_served_with_their_content_types(
    base, path, content_type, holds
):
    status, served_type, text, headers = await fetch(base + path)
    assert status == 200
    assert served_type == content_type
    assert holds in text
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_every_file_the_page_loads_is_served_from_this_server(base):
    _, _, page, _ = await fetch(base + "/")
    _, _, script, _ = await fetch(base + "/kiosk.js")
    loaded = re.findall(r'<script src="([^"]+)"', page) + re.findall(
        r'addModule\("([^"]+)"\)', script
    )
    assert sorted(loaded) == ["kiosk-player.js", "kiosk-worklet.js", "kiosk.js"]
    for name in loaded:
        status, _, _, _ = await fetch(f"{base}/{name}")
        assert status == 200, name
    assert {path.lstrip("/") for path in ASSETS} == {"", *loaded}


async def test_nothing_comes_from_the_internet(base):
    for path in ASSETS:
        _, _, text, _ = await fetch(base + path)
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text), path


async def test_other_paths_are_not_found(base):
    status, _, _, _ = await fetch(base + "/kiosk.html")
    assert status == 404
