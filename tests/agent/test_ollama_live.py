"""Against a real Ollama: runs only when VOICEDESK_OLLAMA_URL names one (with the model pulled;
VOICEDESK_MODEL picks another than phi3:mini). Reported as skipped otherwise."""

from __future__ import annotations

import os

import pytest

from agent.agent import KnowledgeAgent
from agent.health import check_ollama
from agent.kb import demo_kb_dir, load_kb
from agent.selection import choose_backend
from agent.types import AgentSettings, AnswerEnd, AnswerText

URL = os.environ.get("VOICEDESK_OLLAMA_URL", "")

pytestmark = pytest.mark.skipif(
    not URL, reason="set VOICEDESK_OLLAMA_URL (e.g. http://127.0.0.1:11434) to test a real Ollama"
)

# A cold model loads before its first token; give it room here, not in production defaults.
SETTINGS = AgentSettings(
    ollama_url=URL,
    model=os.environ.get("VOICEDESK_MODEL", "phi3:mini"),
    backend="ollama",
    first_token_timeout_s=120.0,
    stall_timeout_s=30.0,
    total_timeout_s=180.0,
    connect_timeout_s=5.0,
)


@pytest.mark.timeout(300)
async def test_a_real_model_answers_a_demo_question_from_the_kb() -> None:
    status = await check_ollama(SETTINGS)
    assert status.ready, f"{status.reason}: pull the model or fix VOICEDESK_OLLAMA_URL"
    backend, why = await choose_backend(SETTINGS)
    assert why == f"ollama: {SETTINGS.model} at {URL}"
    agent = KnowledgeAgent(SETTINGS, load_kb(demo_kb_dir()), backend=backend)
    events = [e async for e in agent.answer("my bulb is flashing red, what do I do", ())]
    end = events[-1]
    assert isinstance(end, AnswerEnd)
    text = "".join(e.text for e in events if isinstance(e, AnswerText) and not e.filler)
    assert end.backend == "ollama", f"fell back: {end} {text!r}"
    assert not end.handoff and "troubleshooting#4.2" in end.sources, (end, text)
    assert "[" not in text and "HANDOFF" not in text
    grounded = ("wi-fi", "wifi", "2.4", "network", "reset", "switch", "app")
    assert any(word in text.lower() for word in grounded), text
