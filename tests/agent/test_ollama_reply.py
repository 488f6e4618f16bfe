"""The pure core of the Ollama backend: the prompt it sends and how the reply is cleaned."""

from __future__ import annotations

import httpx
import ollama
import pytest

import prompts
from agent.health import OllamaStatus, describe_error, model_listed
from agent.kb import demo_kb_dir, load_kb
from agent.llm import (
    HANDOFF_MARKER,
    ReplyFilter,
    chat_messages,
    passage_budget,
    prompt_ids,
    system_prompt,
)
from agent.ollama import keep_alive
from agent.types import AgentSettings, Exchange

KB = load_kb(demo_kb_dir())
GUARDRAIL = prompts.load("guardrail")


def streamed(text: str, size: int = 3) -> tuple[list[str], ReplyFilter]:
    """`text` fed in pieces of `size` characters, then finished."""
    reply = ReplyFilter()
    out: list[str] = []
    for start in range(0, len(text), size):
        out += reply.feed(text[start : start + size])
    return out + reply.finish(), reply


def test_the_prompt_names_the_marker_the_filter_looks_for() -> None:
    assert f"exactly the word {HANDOFF_MARKER}" in GUARDRAIL


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_sentences_come_out_whole_whatever_the_piece_size(size: int) -> None:
    text = "The bulb flashes red when Wi-Fi fails. Use a 2.4 GHz network, e.g. your main one."
    assert streamed(text, size)[0] == [
        "The bulb flashes red when Wi-Fi fails.",
        "Use a 2.4 GHz network, e.g. your main one.",
    ]


def test_a_sentence_comes_out_as_soon_as_it_is_finished() -> None:
    reply = ReplyFilter()
    assert reply.feed("The bulb flashes red") == []
    assert reply.feed(".") == []  # "2.4" or "e.g." could follow
    assert reply.feed(" Then reset") == ["The bulb flashes red."]
    assert reply.finish() == ["Then reset."]


def test_citations_are_removed_and_collected() -> None:
    out, reply = streamed(
        "The bulb needs 2.4 GHz Wi-Fi [troubleshooting#4.2]. Returns take 30 days "
        "(source: faq#return-window). Sources: [troubleshooting#4.2, orders#3]"
    )
    assert out == ["The bulb needs 2.4 GHz Wi-Fi.", "Returns take 30 days."]
    assert reply.cited == ["troubleshooting#4.2", "faq#return-window", "orders#3"]
    assert not reply.handoff


def test_markdown_lists_become_plain_sentences() -> None:
    out, _ = streamed("## Steps\n1. **Open** the app.\n2. Tap `Add device`\n- Wait for the beep")
    assert out == ["Steps.", "Open the app.", "Tap Add device.", "Wait for the beep."]


@pytest.mark.parametrize(
    "text", ["HANDOFF", "HANDOFF.", " HANDOFF\n", "HANDOFF [troubleshooting#4.2]"]
)
def test_the_handoff_marker_is_never_spoken(text: str) -> None:
    out, reply = streamed(text, 2)
    assert out == [] and reply.handoff


def test_a_marker_after_an_answer_is_noted() -> None:
    out, reply = streamed("Use 2.4 GHz Wi-Fi. HANDOFF")
    assert out == ["Use 2.4 GHz Wi-Fi."] and reply.handoff


def test_an_unfinished_sentence_is_dropped_when_the_model_was_cut_off() -> None:
    reply = ReplyFilter()
    assert reply.feed("Use 2.4 GHz Wi-Fi. Then hold the") == ["Use 2.4 GHz Wi-Fi."]
    assert reply.finish(complete=False) == []


def test_the_system_prompt_is_the_guardrail_then_the_passages_with_ids() -> None:
    passages = [KB.passage("troubleshooting#4.2"), KB.passage("troubleshooting#5.1")]
    prompt = system_prompt(GUARDRAIL, passages, 10_000)
    assert prompt.startswith(GUARDRAIL.rstrip())
    assert "\n[troubleshooting#4.2] Troubleshooting Manual, section 4.2: " in prompt
    assert passages[0].text.strip() in prompt and passages[1].text.strip() in prompt
    assert prompt_ids(prompt, passages) == ("troubleshooting#4.2", "troubleshooting#5.1")


def test_passages_are_cut_to_the_budget_but_the_best_always_goes_in() -> None:
    passages = [KB.passage("troubleshooting#4.2"), KB.passage("troubleshooting#5.1")]
    prompt = system_prompt(GUARDRAIL, passages, 250)
    assert prompt_ids(prompt, passages) == ("troubleshooting#4.2",)
    assert len(prompt) < len(GUARDRAIL) + 300


def test_the_budget_shrinks_with_memory_and_keeps_room_for_the_answer() -> None:
    empty = passage_budget(2048, 160, GUARDRAIL, [], "q")
    memory = [Exchange("q" * 300, "a" * 300)]
    shrunk = passage_budget(2048, 160, GUARDRAIL, memory, "q")
    assert abs(shrunk - (empty - 600)) <= 1  # whole characters: each rounded down apart
    assert passage_budget(512, 160, GUARDRAIL, memory, "q") == 600  # the floor
    tokens = (len(GUARDRAIL) + empty) / 3.0
    assert tokens <= 2048 - 160


def test_memory_becomes_user_and_assistant_turns_before_the_question() -> None:
    memory = [Exchange("my bulb is red", "Use 2.4 GHz."), Exchange("and the hub", "")]
    assert chat_messages("SYS", memory, "what now") == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "my bulb is red"},
        {"role": "assistant", "content": "Use 2.4 GHz."},
        {"role": "user", "content": "and the hub"},
        {"role": "user", "content": "what now"},
    ]


@pytest.mark.parametrize(
    ("setting", "sent"), [("30m", "30m"), ("-1", -1.0), (" 300 ", 300.0), ("1h30m", "1h30m")]
)
def test_keep_alive_is_sent_as_ollama_reads_it(setting: str, sent: str | float) -> None:
    assert keep_alive(setting) == sent


def test_model_names_without_a_tag_mean_latest() -> None:
    assert model_listed("phi3", ["phi3:latest"])
    assert model_listed("phi3:latest", ["phi3"])
    assert model_listed("phi3:mini", ["llama3:8b", "phi3:mini"])
    assert not model_listed("phi3:mini", ["phi3:latest", "phi3:medium"])


def test_status_sentences() -> None:
    url = "http://127.0.0.1:11434"
    assert OllamaStatus(url, "phi3:mini", ("phi3:mini",)).reason == f"phi3:mini at {url}"
    missing = OllamaStatus(url, "phi3:mini", ())
    assert not missing.ready and missing.reachable
    assert missing.reason == "model phi3:mini is not pulled (ollama pull phi3:mini)"
    down = OllamaStatus(url, "phi3:mini", None, "Ollama at x is not reachable (boom)")
    assert not down.reachable and down.reason == "Ollama at x is not reachable (boom)"


def test_errors_are_described_for_people() -> None:
    settings = AgentSettings()
    missing = ollama.ResponseError('{"error":"model \\"phi3:mini\\" not found"}', 404)
    assert describe_error(missing, settings) == (
        "model phi3:mini is not pulled (ollama pull phi3:mini)"
    )
    busy = ollama.ResponseError('{"error":"server busy"}', 503)
    assert describe_error(busy, settings).endswith("answered HTTP 503: server busy")
    refused = httpx.ConnectError("All connection attempts failed")
    refused.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    assert describe_error(refused, settings).endswith("is not reachable (connection refused)")
    slow = httpx.ConnectTimeout("timed out")
    assert describe_error(slow, settings).endswith("(no connection within 2.0 s)")
    cut = httpx.RemoteProtocolError("incomplete chunked read")
    assert describe_error(cut, settings).startswith("the connection to Ollama was cut")
