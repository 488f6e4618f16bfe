"""The circuit breaker's state machine, on a fake clock: opens after a run of failures, stays
open, lets one trial through, closes on a success; barge-in counts for nothing."""

from __future__ import annotations

import logging

import pytest

from agent.breaker import Attempt, BreakerState, CircuitBreaker
from tests.support.fakes import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, open_s=30.0, clock=clock)


def let_through(breaker: CircuitBreaker) -> Attempt:
    attempt = breaker.attempt()
    assert attempt is not None
    return attempt


def fail(breaker: CircuitBreaker, times: int = 1, reason: str = "HTTP 503") -> None:
    for _ in range(times):
        let_through(breaker).failed(reason)


def test_a_new_breaker_is_closed(breaker: CircuitBreaker) -> None:
    assert breaker.state == BreakerState(
        open=False,
        failures_in_a_row=0,
        retry_at=None,
        retry_in_s=None,
        trial=False,
        last_failure=None,
    )


def test_it_opens_on_the_third_failure_in_a_row(
    breaker: CircuitBreaker, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    fail(breaker, 2)
    assert not breaker.state.open and breaker.state.failures_in_a_row == 2
    assert breaker.attempt() is not None
    with caplog.at_level(logging.WARNING):
        fail(breaker, reason="the connection to Ollama was cut")
    state = breaker.state
    assert state.open and state.failures_in_a_row == 3
    assert state.retry_at == clock.now + 30.0 and state.retry_in_s == 30.0
    assert state.last_failure == "the connection to Ollama was cut"
    assert breaker.attempt() is None
    assert caplog.records[-1].levelno == logging.WARNING
    assert caplog.records[-1].getMessage() == (
        "ollama: 3 failures in a row, the last: the connection to Ollama was cut; "
        "the fallback answers without calling it for 30 s"
    )


def test_it_stays_open_for_open_s(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 29.9
    assert breaker.attempt() is None
    assert breaker.state.retry_in_s == pytest.approx(0.1)
    assert breaker.refusal() == "ollama skipped: 3 failures in a row, retrying in 0.1 s"


def test_a_success_ends_the_run(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    let_through(breaker).succeeded()
    fail(breaker, 2)
    assert not breaker.state.open and breaker.state.failures_in_a_row == 2


def test_after_open_s_one_trial_goes_through_and_its_success_closes(
    breaker: CircuitBreaker, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    fail(breaker, 3)
    clock.now += 30.0
    with caplog.at_level(logging.INFO):
        trial = let_through(breaker)
    assert trial.trial and breaker.state.trial and breaker.state.open
    assert breaker.attempt() is None  # a second question during the trial still skips
    assert (
        breaker.refusal() == "ollama skipped: 3 failures in a row, a trial question is with it now"
    )
    with caplog.at_level(logging.INFO):
        trial.succeeded()
    assert breaker.state == BreakerState(False, 0, None, None, False, "HTTP 503")
    assert [r.getMessage() for r in caplog.records[-2:]] == [
        "ollama: trying again after 3 failures in a row",
        "ollama answers again; every question goes to it",
    ]
    assert not let_through(breaker).trial


def test_a_failed_trial_opens_it_for_another_open_s(
    breaker: CircuitBreaker, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    fail(breaker, 3)
    clock.now += 45.0
    with caplog.at_level(logging.WARNING):
        let_through(breaker).failed("no first text within 2.0 s")
    state = breaker.state
    assert state.open and not state.trial and state.failures_in_a_row == 4
    assert state.retry_at == clock.now + 30.0
    assert "still failing (no first text within 2.0 s)" in caplog.text
    clock.now += 29.0
    assert breaker.attempt() is None
    clock.now += 1.0
    let_through(breaker).succeeded()
    assert not breaker.state.open


def test_barge_in_is_not_a_failure(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    for _ in range(5):
        let_through(breaker).abandon()
    assert breaker.state.failures_in_a_row == 2 and not breaker.state.open


def test_an_abandoned_trial_lets_the_next_question_try(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    fail(breaker, 3)
    clock.now += 30.0
    let_through(breaker).abandon()
    state = breaker.state
    assert state.open and not state.trial and state.failures_in_a_row == 3
    assert let_through(breaker).trial


def test_only_the_first_outcome_of_an_attempt_counts(breaker: CircuitBreaker) -> None:
    attempt = let_through(breaker)
    attempt.failed("HTTP 503")
    attempt.failed("HTTP 503")
    attempt.succeeded()
    attempt.abandon()
    assert breaker.state.failures_in_a_row == 1


def test_answers_that_began_before_it_opened_still_report(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    early = [let_through(breaker) for _ in range(5)]  # five calls at once, all failing
    for attempt in early[:4]:
        attempt.failed("HTTP 503")
    state = breaker.state
    assert state.open and state.failures_in_a_row == 4
    assert state.retry_at == clock.now + 30.0  # a late failure does not move the retry
    early[4].succeeded()  # one of them got through after all: the model answers
    assert not breaker.state.open and breaker.state.failures_in_a_row == 0


def test_zero_failures_means_it_never_opens(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=0, open_s=30.0, clock=clock)
    fail(breaker, 10)
    assert not breaker.state.open and breaker.state.failures_in_a_row == 10


def test_its_settings_and_name(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(failures=1, open_s=0.5, clock=clock, name="llm")
    with caplog.at_level(logging.WARNING):
        fail(breaker)
    assert breaker.state.retry_in_s == 0.5
    assert caplog.records[-1].getMessage().startswith("llm: 1 failures in a row")
    assert breaker.refusal().startswith("llm skipped: ")
