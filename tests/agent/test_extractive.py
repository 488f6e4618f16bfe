"""The extractive backend on the demo KB: which sentences it reads out, and how.

Requests come from the retriever the agent uses by default (embeddings and BM25), with the
passages that reach `answer_similarity`; one test reads without embeddings.
"""

from __future__ import annotations

import re
from dataclasses import replace

from agent.backend import BackendRequest
from agent.embedder import shared_embedder
from agent.extractive import ExtractiveBackend
from agent.kb import demo_kb_dir, load_kb
from agent.retrieval import Retriever
from agent.types import AgentSettings, AnswerEnd, AnswerText

KB = load_kb(demo_kb_dir())
SETTINGS = AgentSettings()
RETRIEVER = Retriever(KB, shared_embedder(SETTINGS.embedding_model))
LEXICAL = Retriever(KB)
CITED = replace(SETTINGS, cite_sources=True)


def request(question: str, retriever: Retriever = RETRIEVER) -> BackendRequest:
    search = retriever.search(question, retriever.embed(question))
    threshold = SETTINGS.answer_similarity if retriever.semantic else SETTINGS.min_confidence
    passages = tuple(
        KB.passage(h.id) for h in search.hits if h.kind == "passage" and h.similarity >= threshold
    )
    return BackendRequest(question, search, passages, KB, ())


def compose(question: str, settings: AgentSettings = SETTINGS) -> list[str]:
    return ExtractiveBackend(settings).compose(request(question))


def test_a_problem_gets_the_cause_and_the_steps() -> None:
    sentences = compose("my blub is flashing red")
    assert sentences[0] == ("A Brightnest Smart Bulb that flashes red could not connect to Wi-Fi.")
    assert sentences[1].startswith("First, make sure your phone and the bulb are on the same 2.4")
    assert sentences[2].startswith("Then, turn the light switch off and on")
    assert sentences[3].startswith("Finally, open the Brightnest Home app")
    assert len(sentences) == 4


def test_asking_what_it_means_gets_the_explanation_without_steps() -> None:
    sentences = compose("what does it mean when the bulb flashes red")
    assert len(sentences) == 1 and "could not connect to Wi-Fi" in sentences[0]


def test_cite_sources_names_the_section_and_the_manual() -> None:
    sentences = compose("my blub is flashing red", CITED)
    assert sentences[0] == (
        "According to section 4.2 of the Troubleshooting Manual, a Brightnest Smart Bulb that "
        "flashes red could not connect to Wi-Fi."
    )
    assert sentences[1].startswith("First,")


def test_steps_without_an_opening_sentence_are_introduced_when_citing() -> None:
    sentences = compose("my thermostat is not heating", CITED)
    assert sentences[0] == "Here are the steps from section 5.1 of the Troubleshooting Manual."
    assert sentences[1].startswith("First, check that the thermostat's display")
    assert compose("my thermostat is not heating")[0] == sentences[1]


def test_long_procedures_are_cut_and_say_where_the_rest_is() -> None:
    sentences = compose("the hub light is orange", replace(SETTINGS, max_steps=2))
    assert sentences[1].startswith("First,") and sentences[2].startswith("Then,")
    assert sentences[-1] == "The remaining steps are in section 1.1 of the Troubleshooting Manual."


def test_other_questions_get_the_closest_sentences_in_order() -> None:
    sentences = compose("does the warranty cover water damage")
    assert sentences[0] == (
        "The warranty does not cover damage from drops, water, fire, power surges or "
        "unauthorized repairs."
    )
    assert len(sentences) <= SETTINGS.max_sentences


def test_without_embeddings_the_sentences_sharing_most_words_are_read() -> None:
    backend = ExtractiveBackend(SETTINGS)
    sentences = backend.compose(request("does the warranty cover water damage", LEXICAL))
    assert "water" in sentences[0] and len(sentences) <= SETTINGS.max_sentences


def test_answers_are_at_most_max_sentences_long() -> None:
    short = replace(SETTINGS, max_sentences=1)
    assert len(compose("how do i share my home with my family", short)) == 1
    sentences = compose("can i return a product i bought")
    assert sentences[0].startswith("You can return any product within 7 days")
    assert len(sentences) == 3


def test_no_markdown_reaches_the_answer() -> None:
    for question in (
        "how do i set static of addresses",
        "hub light is orange",
        "how do i trade in my old device",
        "how do i reset the hub",
    ):
        text = " ".join(compose(question))
        assert not any(mark in text for mark in ("#", "**", "`", ">", "\n"))
        assert not re.search(r"(^|\s)\d+[.)]\s", text)  # list numbers


async def test_answer_streams_sentences_and_names_the_source() -> None:
    events = [e async for e in ExtractiveBackend(SETTINGS).answer(request("my bulb is red"))]
    *texts, end = events
    assert all(isinstance(t, AnswerText) for t in texts)
    assert isinstance(end, AnswerEnd)
    assert end.sources == ("troubleshooting#4.2",) and end.backend == "extractive"
    answer = "".join(t.text for t in texts if isinstance(t, AnswerText))
    assert "2.4 GHz" in answer and "  " not in answer
