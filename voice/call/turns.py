"""Turn-taking without I/O: VAD probabilities in, turn events out; and the barge-in word rule.
`hear_waiting` is the one step that awaits: the audio queued for a detector, through the VAD."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from asr.vad import WINDOW, WINDOW_MS
from text.words import is_filler, plain_words
from voice.config import TurnSettings

SAMPLE_RATE = 16_000
_HYSTERESIS = 0.15
"""A window counts as silence below `vad_threshold - _HYSTERESIS` (Silero's own rule)."""


Reading = Literal["complete", "unfinished", "unmarked"]
"""How a transcript reads at a pause (`read_words`)."""


@dataclass(frozen=True)
class TurnStarted:
    at_ms: int
    """Start of the voiced audio, ms since the call's first sample."""


@dataclass(frozen=True)
class TurnPaused:
    """The caller has been silent for `early_asr_ms` (`early_asr_idle_ms` while recognition
    is idle): the turn may be over."""

    at_ms: int
    audio: np.ndarray
    """The utterance so far, 16 kHz float32."""


@dataclass(frozen=True)
class TurnResumed:
    """The caller spoke again after a pause; a transcript of the paused audio is stale."""

    at_ms: int


@dataclass(frozen=True)
class TurnEnded:
    at_ms: int
    """When the end was detected (`silence_ms` after the last voiced window)."""
    last_voice_ms: int
    """End of the last voiced window."""
    reason: str
    """"silence" or "max_length"."""
    audio: np.ndarray
    """The whole utterance with its pre-roll, 16 kHz float32."""
    speech_ms: int = 0
    """From the start of the voiced audio to the end of the last voiced window."""


TurnEvent = TurnStarted | TurnPaused | TurnResumed | TurnEnded

if TYPE_CHECKING:
    from voice.ops.services import Hearing


class TurnDetector:
    """Decides where each caller utterance starts and ends, from 32 ms VAD windows.

    Feed it the audio and the VAD probabilities of the windows that audio completed, in order.
    Positions are counted in the caller's audio stream, so they do not depend on wall time.
    """

    def __init__(self, settings: TurnSettings, idle: Callable[[], bool] = lambda: False) -> None:
        """`idle`: whether speech recognition has nothing else to do now (the pause that
        starts the speculative transcription comes after `early_asr_idle_ms` then)."""
        self._settings = settings
        self._idle = idle
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_offset = 0
        """Stream sample index of self._audio[0]."""
        self._windows = 0
        self._voiced_run = 0
        self._silent_ms = 0
        self._start_sample: int | None = None
        self._last_voice_ms = 0
        self._paused = False
        self._end_silence_ms = settings.silence_ms
        """The silence that ends the current pause: `silence_ms` until `judge` says more."""

    @property
    def in_speech(self) -> bool:
        return self._start_sample is not None

    @property
    def position_ms(self) -> int:
        return self._windows * WINDOW_MS

    @property
    def speech_ms(self) -> int:
        """Length of the current utterance so far; 0 between utterances."""
        if self._start_sample is None:
            return 0
        return self.position_ms - self._start_sample * 1000 // SAMPLE_RATE

    @property
    def voiced_ms(self) -> int:
        """From the start of the current utterance to its last voiced window; 0 between them."""
        if self._start_sample is None:
            return 0
        return self._last_voice_ms - self._start_sample * 1000 // SAMPLE_RATE

    def utterance(self) -> np.ndarray:
        """The current utterance so far, with its pre-roll (empty between utterances)."""
        if self._start_sample is None:
            return np.zeros(0, dtype=np.float32)
        begin = max(0, self._start_sample - self._preroll_samples() - self._audio_offset)
        end = self._windows * WINDOW - self._audio_offset
        return self._audio[begin:end].copy()

    def push(self, audio: np.ndarray, probabilities: list[float]) -> list[TurnEvent]:
        self._audio = np.concatenate([self._audio, audio.astype(np.float32, copy=False)])
        events: list[TurnEvent] = []
        for probability in probabilities:
            self._windows += 1
            event = self._step(probability)
            if event is not None:
                events.append(event)
        if self._start_sample is None:
            self._trim()
        return events

    def _step(self, probability: float) -> TurnEvent | None:
        threshold = self._settings.vad_threshold
        voiced = probability >= threshold
        silent = probability < threshold - _HYSTERESIS
        if self._start_sample is None:
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run * WINDOW_MS >= self._settings.min_speech_ms:
                self._start_sample = (self._windows - self._voiced_run) * WINDOW
                self._last_voice_ms = self.position_ms
                self._silent_ms = 0
                return TurnStarted(at_ms=self._start_sample * 1000 // SAMPLE_RATE)
            return None
        if voiced:
            self._last_voice_ms = self.position_ms
            self._silent_ms = 0
            if self._paused:
                self._paused = False
                self._end_silence_ms = self._settings.silence_ms
                return TurnResumed(at_ms=self.position_ms)
        elif silent or self._silent_ms:
            self._silent_ms += WINDOW_MS
        if self._silent_ms >= self._end_silence_ms:
            return self._end("silence")
        if self.speech_ms >= self._settings.max_utterance_ms:
            return self._end("max_length")
        if not self._paused and self._pause_due():
            self._paused = True
            return TurnPaused(at_ms=self.position_ms, audio=self.utterance())
        return None

    def _pause_due(self) -> bool:
        """The silence so far is long enough to transcribe it speculatively."""
        silent, settings = self._silent_ms, self._settings
        if silent >= settings.early_asr_ms:
            return True
        return silent > 0 and silent >= settings.early_asr_idle_ms and self._idle()

    def judge(self, reading: Reading) -> TurnEnded | None:
        """What the words of the current pause say (see `read_words`): a complete question
        ends the turn after `complete_silence_ms` of silence — now, if the caller has been
        silent that long already —, an unfinished one after `unfinished_silence_ms`, and words
        with no end mark after `silence_ms`. Only the pause the words were heard in: once the
        caller speaks again, it is `silence_ms`."""
        if self._start_sample is None or not self._paused:
            return None
        settings = self._settings
        self._end_silence_ms = {
            "complete": settings.complete_silence_ms,
            "unfinished": settings.unfinished_silence_ms,
            "unmarked": settings.silence_ms,
        }[reading]
        if self._silent_ms >= self._end_silence_ms:
            return self._end("silence")
        return None

    def _end(self, reason: str) -> TurnEnded:
        event = TurnEnded(
            at_ms=self.position_ms,
            last_voice_ms=self._last_voice_ms,
            reason=reason,
            audio=self.utterance(),
            speech_ms=self._last_voice_ms - (self._start_sample or 0) * 1000 // SAMPLE_RATE,
        )
        self._start_sample = None
        self._voiced_run = 0
        self._silent_ms = 0
        self._paused = False
        self._end_silence_ms = self._settings.silence_ms
        return event

    def _preroll_samples(self) -> int:
        return self._settings.preroll_ms * SAMPLE_RATE // 1000

    def _trim(self) -> None:
        """Between utterances keep only what a pre-roll and a starting utterance can need."""
        keep = self._preroll_samples() + (self._voiced_run + 2) * WINDOW
        excess = len(self._audio) - keep
        if excess > 0:
            self._audio = self._audio[excess:]
            self._audio_offset += excess


BACKCHANNELS = frozenset(
    """
    huh uhhuh okay ok yeah yep yes yup right alright sure i see got it cool great fine
    thanks thank you
    """.split()
)
"""Words that on their own acknowledge a reply rather than interrupt it (docs/protocol.md), as
hesitation sounds do ("uh", "mm-hmm": `text.words.is_filler`)."""


ACKNOWLEDGEMENT_HINT = "Uh-huh. Mm-hmm. Okay. Yeah. Right."
"""Recognition hint while a reply plays: what a caller says then is most often one of these,
and without the hint the small model hears "mm-hmm" as "in memory"."""


INTERRUPTIONS = frozenset(
    """
    stop wait no hold hang sorry excuse pardon hello hey agent human person operator
    what whats why how where when which who
    """.split()
)
"""Words that interrupt a reply even in a short utterance: "stop", "wait", "no, I mean", and
question words ("what's the price?"), compared as `text.words.plain_words` writes them."""


async def hear_waiting(
    queue: asyncio.Queue[np.ndarray], vad: Hearing, turns: TurnDetector
) -> list[TurnEvent]:
    """All the audio waiting in `queue` (16 kHz float32; waits for some), heard by `vad` and
    pushed through `turns`: the turn events it made."""
    chunks = [await queue.get()]
    while not queue.empty():
        chunks.append(queue.get_nowait())
    audio = np.concatenate(chunks)
    return turns.push(audio, await vad.hear(audio))


def _acknowledges(word: str) -> bool:
    return word in BACKCHANNELS or is_filler(word)


def interrupts(text: str, speech_ms: int, min_words_ms: int) -> bool:
    """Whether speech over a reply interrupts it (docs/protocol.md, "Barge-in").

    The small recognizer turns short murmurs into words ("mm-hmm" → "and then, mom"), so under
    `min_words_ms` of speech only an interrupting word counts; past it, any word that is not an
    acknowledgement does.
    """
    content = [word for word in plain_words(text) if not _acknowledges(word)]
    if speech_ms >= min_words_ms:
        return bool(content)
    return any(word in INTERRUPTIONS for word in content)


LEADING_ON = frozenset(
    """
    and or but so because cause if than whether nor
    the a an my your our their his her its
    um uh er erm hmm mm
    """.split()
)
"""Last words that no question ends on ("… and?", "I want to change my …"): conjunctions,
articles, possessives and hesitations, compared as `text.words.plain_words` writes them."""

UNFINISHED_STATEMENT_ENDINGS = LEADING_ON | frozenset(
    """
    to of for with without from at into onto under after before like as which whose while
    """.split()
)
"""Last words after which a statement is not over, though a question may be ("What is it
for?"): those above, and prepositions and clause openers that seldom end one (not "on",
"in", "over", "about" or "that": "The light stays on.", "Stop that.")."""


def read_words(text: str, doubted: bool = False) -> Reading:
    """How a transcript reads: `complete`, a whole question or request (it ends in "?", "."
    or "!" after a word that can end one); `unfinished`, the caller is still going (a last
    word that leads on, "and", "the", "my", "um"; a number being read out; "..."); `unmarked`,
    words that end in a comma or in no mark at all after a word that can end a sentence. The
    recognizer writes those both for a caller who goes on and, at the end of a fast or
    flat-voiced question, for one who has finished: they tell neither way.

    `doubted`: the recognizer doubts the words (`Transcript.reliable` False). Its last word
    may then be a mishearing ("… extra for that?" heard as "… extra reform at."), so a last
    word that leads on tells nothing: `unmarked`."""
    text = text.strip()
    words = plain_words(text)
    if not words:
        return "unmarked"
    last = words[-1]
    if text.endswith("..."):
        return "unfinished"
    leads_on = last in (LEADING_ON if text[-1] == "?" else UNFINISHED_STATEMENT_ENDINGS)
    if leads_on:
        return "unmarked" if doubted else "unfinished"
    if text[-1] == "?":
        return "complete"
    if last.isdigit():  # digits read out by groups
        return "unfinished"
    return "complete" if text[-1] in ".!" else "unmarked"
