"""What the agent decides per question, on a small KB of another trade (a dental practice):
answer, ask again, offer a choice, or hand off; prices with their note; advice.

The extractive backend and the real embedder answer. Where a test is about the flow rather
than where a threshold lies, it moves the threshold so that the band it needs is certain, and
says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from agent import guardrails as g
from agent.agent import KnowledgeAgent
from agent.kb import KnowledgeBase, load_kb
from agent.types import AgentSettings, AnswerEnd, AnswerText, Exchange

SETTINGS = AgentSettings(backend="extractive")

PRACTICE = """\
# Smile Dental Practice Guide

## Check-ups

A check-up with a cleaning costs $85 and takes about 30 minutes.
We recommend a check-up every six months.

## Missed appointments

Please cancel at least 24 hours ahead, by phone or in the app.
An appointment missed without notice is charged a fee of $25.

## Teeth whitening

We offer whitening at the practice and take-home trays.
The dentist checks your teeth first to see whether whitening suits you.

## After a tooth extraction

Bite on the gauze for 30 minutes and do not rinse your mouth for 24 hours.
Eat soft food and avoid hot drinks for the first day.
For pain, take only the medication the dentist prescribed.
"""

TOOTHBRUSH = """\
# Smile Toothbrush Manual

## Orange light

An orange light on the handle means the battery is low.
Put the toothbrush on its charger for twelve hours.

## Red light

A red light on the handle means the brush head is worn out.
Replace the brush head with a new one.
"""


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    root = tmp_path_factory.mktemp("dentist")
    (root / "practice.md").write_text(PRACTICE, encoding="utf-8")
    (root / "toothbrush.md").write_text(TOOTHBRUSH, encoding="utf-8")
    return load_kb(root)


@pytest.fixture(scope="module")
def agent(kb: KnowledgeBase) -> KnowledgeAgent:
    return KnowledgeAgent(SETTINGS, kb)


async def ask(
    agent: KnowledgeAgent,
    question: str,
    memory: Sequence[Exchange] = (),
    *,
    heard_clearly: bool = True,
) -> tuple[str, AnswerEnd]:
    events = [e async for e in agent.answer(question, memory, heard_clearly=heard_clearly)]
    *texts, end = events
    assert isinstance(end, AnswerEnd)
    return "".join(t.text for t in texts if isinstance(t, AnswerText)), end


def heard(question: str, reply: tuple[str, AnswerEnd]) -> Exchange:
    """The turn as the call's memory keeps it."""
    text, end = reply
    return Exchange(question, text, end.rules, end.sources)


# ------------------------------------------------------------ prices


async def test_a_price_from_the_kb_is_spoken_with_the_price_note_after_it(
    agent: KnowledgeAgent,
) -> None:
    text, end = await ask(agent, "how much is a check-up")
    assert text == (
        f"A check-up with a cleaning costs $85 and takes about 30 minutes. {SETTINGS.price_note}"
    )
    assert end.sources == ("practice#check-ups",) and end.rules == (g.PRICE,)
    assert not end.handoff


async def test_a_price_question_whose_passage_has_no_amount_gets_the_price_message(
    agent: KnowledgeAgent,
) -> None:
    text, end = await ask(agent, "how much does teeth whitening cost")
    assert text == SETTINGS.price_message
    assert end.rules == (g.PRICE,) and not end.handoff


async def test_the_price_messages_are_settings(kb: KnowledgeBase) -> None:
    own = KnowledgeAgent(
        replace(SETTINGS, price_note="Prices change.", price_message="Ask at reception."), kb
    )
    assert (await ask(own, "how much is a check-up"))[0].endswith(" Prices change.")
    assert (await ask(own, "how much does teeth whitening cost"))[0] == "Ask at reception."


BIKE_HIRE = """\
# Harbour Bike Hire

## Hiring a bike

Bikes are hired from the kiosk on the quay, which opens at 9am.
Bring a photo ID; children under 12 ride with an adult.
A city bike costs $18 a day, helmet included.

## Child seats

Child seats fit every city bike and are fitted at the kiosk while you wait.
Ask for one when you book, as there are only ten.
"""


async def test_a_price_question_answered_without_an_amount_is_told_there_is_none_here(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A passage with a price was found (the hire), so the question went on to be answered;
    # what answers it (the child seats) names none, and the caller asked what it costs.
    root = tmp_path_factory.mktemp("bikes")
    (root / "hire.md").write_text(BIKE_HIRE, encoding="utf-8")
    hire = KnowledgeAgent(SETTINGS, load_kb(root))
    text, end = await ask(hire, "how much extra is a seat for my toddler on the bike")
    assert text.startswith("Child seats fit every city bike")
    assert text.endswith(" " + SETTINGS.price_message)
    assert SETTINGS.price_note not in text.removesuffix(SETTINGS.price_message)
    assert end.rules == (g.PRICE,) and end.sources == ("hire#child-seats",)
    assert not end.handoff


# ------------------------------------------------------------ a second chance before a handoff


async def test_a_loose_match_is_asked_again_then_the_same_miss_is_handed_off(
    kb: KnowledgeBase,
) -> None:
    # The lines moved to 0.3 and 0.5: "do you do braces" matches the whitening passage at
    # about 0.41, loose by a wide margin either way (the test is the flow, not the line).
    loose = KnowledgeAgent(replace(SETTINGS, answer_similarity=0.5, unsure_similarity=0.3), kb)
    first = await ask(loose, "do you do braces")
    assert first[0] == SETTINGS.rephrase_message
    assert first[1] == AnswerEnd(rules=(g.CLARIFY,), backend="clarify")

    second = await ask(loose, "do you do braces", [heard("do you do braces", first)])
    assert second[0] == SETTINGS.handoff_message
    assert second[1].handoff and second[1].rules == (g.OUT_OF_SCOPE,)


async def test_a_miss_after_another_topic_is_a_first_miss_again(kb: KnowledgeBase) -> None:
    loose = KnowledgeAgent(replace(SETTINGS, answer_similarity=0.5, unsure_similarity=0.3), kb)
    answered = Exchange("how much is a check-up", "...", (g.PRICE,), ("practice#check-ups",))
    _, end = await ask(loose, "do you do braces", [answered])
    assert end.rules == (g.CLARIFY,) and not end.handoff


async def test_a_doubtful_transcript_that_finds_nothing_is_asked_again_once(
    agent: KnowledgeAgent,
) -> None:
    question = "whats the weather tomorrow"
    clear = await ask(agent, question)
    assert clear[1].handoff and clear[1].rules == (g.OUT_OF_SCOPE,)  # heard clearly: off topic

    first = await ask(agent, question, heard_clearly=False)
    assert first[0] == SETTINGS.rephrase_message
    assert first[1] == AnswerEnd(rules=(g.NOT_UNDERSTOOD,), backend="clarify")
    second = await ask(agent, question, [heard(question, first)], heard_clearly=False)
    assert second[1].handoff and second[1].rules == (g.OUT_OF_SCOPE,)


async def test_a_doubtful_transcript_that_matches_is_answered(agent: KnowledgeAgent) -> None:
    text, end = await ask(agent, "what is the fee if i miss my appointment", heard_clearly=False)
    assert "$25" in text and end.sources == ("practice#missed-appointments",)


# ------------------------------------------------------------ advice


async def test_a_request_for_advice_the_kb_does_not_answer_is_handed_off(
    agent: KnowledgeAgent,
) -> None:
    text, end = await ask(agent, "should i sue you if the extraction went wrong")
    assert text == SETTINGS.handoff_message
    assert end == AnswerEnd(handoff=True, rules=(g.ADVICE,), backend="guardrail")


async def test_a_policy_touching_health_gets_the_disclaimer_last(agent: KnowledgeAgent) -> None:
    text, end = await ask(agent, "can i take pain medication after a tooth extraction")
    assert "take only the medication the dentist prescribed" in text
    assert text.endswith(" " + g.ADVICE_DISCLAIMER)
    assert end.rules == (g.ADVICE,) and end.sources == ("practice#after-a-tooth-extraction",)
    assert not end.handoff


async def test_a_request_for_advice_the_kb_answers_clearly_is_answered(
    agent: KnowledgeAgent,
) -> None:
    question = "should i take the medication the dentist prescribed after an extraction"
    assert g.asks_advice(question)
    text, end = await ask(agent, question)
    assert not end.handoff and text.endswith(" " + g.ADVICE_DISCLAIMER)


@pytest.mark.parametrize(
    "question",
    ["is it going to snow tomorrow before my check-up", "are you hiring dental nurses"],
)
async def test_small_talk_that_finds_no_clear_answer_is_handed_off_without_asking_again(
    agent: KnowledgeAgent, question: str
) -> None:
    # Understood, and not something the practice answers: asking again would not help, even
    # where a loose match would be asked again (the lines moved so that any match is loose).
    loose = replace(agent.settings, answer_similarity=0.9, unsure_similarity=0.0)
    for asked in (agent, KnowledgeAgent(loose, agent.kb)):
        text, end = await ask(asked, question)
        assert text == SETTINGS.handoff_message
        assert end == AnswerEnd(handoff=True, rules=(g.OUT_OF_SCOPE,), backend="guardrail")


# ------------------------------------------------------------ a choice between two passages


async def test_two_passages_that_fit_equally_are_offered_then_the_choice_is_answered(
    kb: KnowledgeBase,
) -> None:
    # The two light passages are within 0.01 of this question; the answer line is raised to
    # 0.55 so that a match of about 0.62 counts as vague, and the margin widened to 0.05.
    choosy = KnowledgeAgent(replace(SETTINGS, answer_similarity=0.55, choice_margin=0.05), kb)
    question = "what does the toothbrush light mean"
    offer = await ask(choosy, question)
    assert offer[0] == SETTINGS.choice_message.format(first="orange light", second="red light")
    assert offer[1] == AnswerEnd(
        sources=("toothbrush#orange-light", "toothbrush#red-light"),
        rules=(g.CLARIFY,),
        backend="clarify",
    )

    text, end = await ask(choosy, "the orange one", [heard(question, offer)])
    assert text.startswith("An orange light on the handle means the battery is low.")
    assert end.sources == ("toothbrush#orange-light",) and end.rules == ()
    _, end = await ask(choosy, "the red one", [heard(question, offer)])
    assert end.sources == ("toothbrush#red-light",)


@pytest.mark.parametrize(
    ("reply", "chosen"),
    [("the second one", "toothbrush#red-light"), ("the first", "toothbrush#orange-light")],
)
async def test_a_choice_made_by_position_takes_that_passage(
    kb: KnowledgeBase, reply: str, chosen: str
) -> None:
    choosy = KnowledgeAgent(replace(SETTINGS, answer_similarity=0.55, choice_margin=0.05), kb)
    question = "what does the toothbrush light mean"
    offer = await ask(choosy, question)
    assert offer[1].rules == (g.CLARIFY,)  # the same offer as in the test above
    _, end = await ask(choosy, reply, [heard(question, offer)])
    assert end.sources == (chosen,)


async def test_a_new_question_after_an_offer_is_answered_on_its_own() -> None:
    """A caller who moves on from "is it this or that?" to a question clear on its own is
    answered, not searched together with the question offered on and handed off. (The
    bundled KB: a misheard "door lot" is offered as two passages there.)"""
    bundled = KnowledgeAgent.from_settings(AgentSettings())
    question = "how do I reset my door lot,"
    offer = await ask(bundled, question)
    assert offer[1].rules == (g.CLARIFY,) and len(offer[1].sources) == 2
    alone = "How long is the warranty on your products?"
    text, end = await ask(bundled, alone, [heard(question, offer)])
    assert not end.handoff and end.sources
    assert (text, end) == await ask(bundled, alone)


async def test_neither_of_the_two_is_handed_off(kb: KnowledgeBase) -> None:
    choosy = KnowledgeAgent(replace(SETTINGS, answer_similarity=0.55, choice_margin=0.05), kb)
    question = "what does the toothbrush light mean"
    offer = await ask(choosy, question)
    text, end = await ask(choosy, "neither of them", [heard(question, offer)])
    assert text == SETTINGS.handoff_message
    assert end.handoff and end.rules == (g.OUT_OF_SCOPE,)


async def test_a_clear_question_about_one_of_them_is_answered_at_once(
    agent: KnowledgeAgent,
) -> None:
    _, end = await ask(agent, "the light on the handle is red")
    assert end.sources == ("toothbrush#red-light",) and end.backend == "extractive"
