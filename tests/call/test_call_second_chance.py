"""A second chance before a handoff, over real calls: the server on a loopback socket, real
faster-whisper and Piper, the extractive agent on a small KB of another trade (a library),
questions spoken by the bundled voice.

Where a test is about the flow rather than the calibration, it moves a threshold so that the
band it needs is certain whatever the recognizer heard; the test says which.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent import agent as agent_module
from agent import guardrails
from agent.agent import KnowledgeAgent
from agent.kb import load_kb
from agent.types import AgentSettings
from asr.settings import AsrSettings
from asr.whisper import Transcriber
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient

pytestmark = pytest.mark.models

PCM16 = AudioFormat("pcm16", 16000)
SETTINGS = AgentSettings(backend="extractive")
LIBRARY = """# Library Guide

## 1 Renewing loans
You can renew a book up to three times online or at the front desk, unless another member has
reserved it. Each renewal adds three weeks to the loan.

## 2 Overdue items
Overdue books cost 20 cents a day, up to 5 dollars per item.
Children's books never collect overdue charges.

## 3 Card will not scan
If your library card will not scan at the self-service machine, the barcode is worn out.
Ask at the front desk for a new barcode sticker; it is free.

## 4 Lost card
If you lost your library card, report it at the front desk so nobody else can borrow on it.
A replacement card costs 2 dollars.
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("library")
    (root / "guide.md").write_text(LIBRARY, encoding="utf-8")
    return root


def agent(library: Path, **changes: object) -> KnowledgeAgent:
    return KnowledgeAgent(replace(SETTINGS, **changes), load_kb(library))


async def test_a_loose_match_is_asked_again_once_then_handed_off(serve, say, library):
    # Every match counts as loose here (answer_similarity above any similarity): the test is
    # about what the caller hears on the first and the second miss, not where the line is.
    loose = agent(library, answer_similarity=0.99, unsure_similarity=0.05)
    async with serve(loose) as url, CallClient(url, PCM16, realtime_playback=False) as call:
        first = await call.ask(say("How many times can I renew a book?"), realtime=False)
        second = await call.ask(say("Renewing a book, how many times?"), realtime=False)
    assert first.reply == SETTINGS.rephrase_message
    assert first.rules == [guardrails.CLARIFY] and not first.handoff
    assert second.handoff and second.rules == [guardrails.OUT_OF_SCOPE]
    assert second.reply == SETTINGS.handoff_message


async def test_far_off_the_kb_is_handed_off_at_once_and_a_kb_question_is_answered(
    serve, say, library
):
    async with serve(agent(library)) as url:
        async with CallClient(url, PCM16, realtime_playback=False) as call:
            first = await call.ask(say("What's the weather doing in Paris?"), realtime=False)
            await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "waiting")
        async with CallClient(url, PCM16, realtime_playback=False) as call:
            second = await call.ask(say("How much is it when a book is late?"), realtime=False)
    assert first.handoff and first.rules == [guardrails.OUT_OF_SCOPE]
    assert "20 cents a day" in second.reply and "guide#2" in second.sources
    assert SETTINGS.price_note in second.reply  # an amount from the KB, with its note


async def test_a_question_recognition_doubts_is_asked_again_not_handed_off(
    serve, say, library, models
):
    # A recognizer that trusts nothing (no transcript has a mean log probability of 0): what
    # it hears is "not understood" when the KB has nothing for it, once.
    doubtful = Transcriber(AsrSettings(min_avg_logprob=0.0))
    original = models.transcriber
    models.transcriber = doubtful
    try:
        async with (
            serve(agent(library)) as url,
            CallClient(url, PCM16, realtime_playback=False) as call,
        ):
            first = await call.ask(say("Who won the football match yesterday?"), realtime=False)
            second = await call.ask(say("The football match, who won it?"), realtime=False)
    finally:
        models.transcriber = original
        doubtful.close()
    assert first.reply == SETTINGS.rephrase_message
    assert first.rules == [guardrails.NOT_UNDERSTOOD] and not first.handoff
    assert second.handoff and second.rules == [guardrails.OUT_OF_SCOPE]


async def test_two_passages_that_both_fit_are_offered_as_a_choice(serve, say, library, monkeypatch):
    # Wide margins make the two card passages a choice however the question is heard: any
    # difference between them is small enough, and any closeness is vague enough.
    monkeypatch.setattr(agent_module, "VAGUE_MARGIN", 1.0)
    choosy = agent(library, choice_margin=0.3, answer_similarity=0.3, unsure_similarity=0.2)
    async with serve(choosy) as url, CallClient(url, PCM16, realtime_playback=False) as call:
        first = await call.ask(say("My library card is not working."), realtime=False)
        # Said in full: tiny.en hears a short "It will not scan." as "skin" now and then.
        second = await call.ask(say("The card will not scan at the machine."), realtime=False)
    assert first.rules == [guardrails.CLARIFY] and not first.handoff
    assert set(first.sources) == {"guide#3", "guide#4"}
    assert "card will not scan" in first.reply.lower() and "lost card" in first.reply.lower()
    heard = (second.transcript, second.reply)  # said on failure: which words chose what
    assert second.sources == ["guide#3"] and "barcode sticker" in second.reply, heard
