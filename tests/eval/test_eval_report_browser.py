"""The HTML report in a real browser (system Chromium under Playwright): every player in the
page plays its audio, the question as sent and the reply as received, from the file alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import chromium, fresh_page
from voice.channels.codecs import AudioFormat, float_to_int16, resample
from voice.clients.client import Turn
from voice.eval.report import html_report
from voice.eval.run import CaseResult, score_turn, summarize
from voice.eval.suite import Case, Expect, Question

pytestmark = pytest.mark.models

PLAYERS = """async () => Promise.all([...document.querySelectorAll("audio")].map((audio) =>
  new Promise((done) => {
    audio.addEventListener("loadedmetadata", () => done({duration: audio.duration}));
    audio.addEventListener("error", () => done({error: audio.error && audio.error.code}));
    audio.preload = "auto";
    audio.load();
  })))"""


def spoken_case(say, case_id: str, channel: AudioFormat) -> tuple[CaseResult, list[float]]:
    """A one-turn case whose question and reply are real speech; and their lengths (s)."""
    rate = channel.sample_rate
    question = float_to_int16(say("My smart bulb keeps flashing red.", rate=rate))
    reply = float_to_int16(resample(say("Use a 2.4 GHz network."), 16000, rate))
    turn = Turn(turn=1, transcript="my bulb flashes red", reply="Use a 2.4 GHz network.")
    turn.audio = bytearray(channel.encode(reply))
    case = Case(case_id, (Question(Path("q.wav"), None, Expect()),), channel)
    return CaseResult(case, [score_turn(case.questions[0], turn, question)]), [
        len(question) / rate,
        len(reply) / rate,
    ]


async def test_every_player_in_the_report_plays(say, tmp_path):
    phone, lengths = spoken_case(say, "phone", AudioFormat("mulaw", 8000))
    wideband, more = spoken_case(say, "wideband", AudioFormat("pcm16", 16000))
    results = [phone, wideband]
    page_file = tmp_path / "report.html"
    page_file.write_text(html_report(results, summarize(results), "players"), encoding="utf-8")
    async with chromium() as browser, fresh_page(browser) as page:
        await page.goto(page_file.as_uri())
        players = await page.evaluate(PLAYERS)
    assert len(players) == 4
    for player, seconds in zip(players, lengths + more, strict=True):
        assert "error" not in player, player
        assert player["duration"] == pytest.approx(seconds, abs=0.15)
