"""What `voicedesk eval` writes: the progress line, the table, the JSON and the HTML report.

JSON (`results_json`):

    {"summary": {"pass_rate", "cases", "passed", "turns", "wer", "wer_turns",
                 "handoff_precision", "handoff_recall", "handoff_turns", "realtime",
                 "<timing>_p50_ms", "<timing>_p95_ms" for asr, first_text, first_audio, perceived},
     "cases": [{"id", "passed", "why", "error", "text", "transcript", "reply", "sources",
                "handoff", "wer", "timings_ms", "turns" (multi-turn cases only)}]}

Rates are fractions (0–1); None/null where there is nothing to measure. `why` is a list of
reasons, empty when the case passed. A multi-turn case also has `turns`, one object per turn
asked with the same fields (and `turn`, its number); its own fields join them: `text`,
`transcript` and `reply` are the turns' joined by newlines, `sources` the union in order,
`handoff` true when any turn handed off, `wer` pooled over its turns with a reference, and
each of `timings_ms` the slowest turn's.
"""

from __future__ import annotations

import base64
import html
import io
import json
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

from voice.eval.run import CaseResult, Summary, TurnResult
from voice.eval.wer import Alignment, pooled_wer

BAR_WIDTH = 20
"""Characters in the progress bar."""
TEXT_WIDTH = 34
"""Characters of transcript and reply shown in the table."""


def progress_line(done: int, total: int, result: CaseResult) -> str:
    """`[ 3/12] ██████░░░░ bulb-red ✓` (or ✗ and the first reason)."""
    filled = BAR_WIDTH * done // max(total, 1)
    bar = "█" * filled + "░" * (BAR_WIDTH - filled)
    mark = "✓" if result.passed else f"✗ {result.why[0] if result.why else ''}"
    return f"[{done:>{len(str(total))}}/{total}] {bar} {result.case.id} {mark}"


def _percent(value: float | str | None) -> str:
    return value if isinstance(value, str) else "-" if value is None else f"{value:.1%}"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(label: str, mark: str, fields: dict[str, Any], why: Sequence[str]) -> str:
    first_audio = fields["timings_ms"].get("first_audio")
    audio = "-" if first_audio is None else str(first_audio)
    heard, reply = _cut(fields["transcript"], TEXT_WIDTH), _cut(fields["reply"], TEXT_WIDTH)
    return (
        f"{label:<24} {mark:<4} {_percent(fields['wer']):>6} {audio:>7}  "
        f"{heard:<{TEXT_WIDTH}}  {reply:<{TEXT_WIDTH}}  {'; '.join(why)}"
    ).rstrip()


def print_table(results: Sequence[CaseResult], summary: Summary, out: IO[str]) -> None:
    """One row per case (and one per turn of a multi-turn case), then the summary."""
    header = {"wer": "WER", "timings_ms": {"first_audio": "1st ms"}}
    print(_row("case", "pass", header | {"transcript": "transcript", "reply": "reply"}, ["why"]),
          file=out)  # fmt: skip
    for result in results:
        case = case_json(result)
        mark = "✓" if result.passed else "✗"
        if not result.case.multi_turn:
            print(_row(result.case.id, mark, case, case["why"]), file=out)
            continue
        joined = case | {"transcript": "", "reply": ""}
        print(_row(result.case.id, mark, joined, [result.error] if result.error else []), file=out)
        for turn in case["turns"]:
            mark = "✓" if turn["passed"] else "✗"
            print(_row(f"  turn {turn['turn']}", mark, turn, turn["why"]), file=out)
    print(file=out)
    print(summary_text(summary), file=out)


def summary_text(summary: Summary) -> str:
    lines = [
        f"passed     {summary.passed}/{summary.cases} cases ({_percent(summary.pass_rate)}), "
        f"{summary.turns} turns",
        f"WER        {_percent(summary.wer)} over {summary.wer_turns} turns with a reference",
        f"handoff    precision {_percent(summary.handoff_precision)}, recall "
        f"{_percent(summary.handoff_recall)} over {summary.handoff_turns} turns that state it",
        "timings    p50 ms  p95 ms",
    ]
    for name, (p50, p95) in summary.percentiles_ms.items():
        if p50 is not None or name != "perceived":
            lines.append(
                f"  {name:<12} {'-' if p50 is None else p50:>6}  {'-' if p95 is None else p95:>6}"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- JSON


def turn_json(number: int, result: TurnResult) -> dict[str, Any]:
    turn = result.turn
    return {
        "turn": number,
        "passed": not result.why,
        "why": list(result.why),
        "text": result.question.text,
        "transcript": turn.transcript if turn else "",
        "reply": turn.reply if turn else "",
        "sources": list(turn.sources) if turn else [],
        "handoff": turn.handoff if turn else None,
        "wer": result.alignment.wer if result.alignment else None,
        "timings_ms": dict(turn.timings_ms) if turn else {},
    }


def case_json(result: CaseResult) -> dict[str, Any]:
    """A case as in the JSON report (see the module docstring)."""
    turns = [turn_json(number, turn) for number, turn in enumerate(result.turns, 1)]
    out: dict[str, Any] = {
        "id": result.case.id,
        "passed": result.passed,
        "why": result.why,
        "error": result.error,
    }
    if not result.case.multi_turn:
        fields = turns[0] if turns else turn_json(1, TurnResult(result.case.questions[0], None))
        out |= {key: value for key, value in fields.items() if key not in ("turn", "passed", "why")}
        return out
    alignments = [turn.alignment for turn in result.turns if turn.alignment is not None]
    handoffs = [turn["handoff"] for turn in turns if turn["handoff"] is not None]
    out |= {
        "text": "\n".join(q.text for q in result.case.questions if q.text) or None,
        "transcript": "\n".join(turn["transcript"] for turn in turns),
        "reply": "\n".join(turn["reply"] for turn in turns),
        "sources": list(dict.fromkeys(s for turn in turns for s in turn["sources"])),
        "handoff": any(handoffs) if handoffs else None,
        "wer": pooled_wer(alignments),
        "timings_ms": _slowest([turn["timings_ms"] for turn in turns]),
        "turns": turns,
    }
    return out


def _slowest(timings: list[dict[str, Any]]) -> dict[str, int | None]:
    names = list(dict.fromkeys(name for turn in timings for name in turn))
    slowest: dict[str, int | None] = {}
    for name in names:
        values = [turn[name] for turn in timings if turn.get(name) is not None]
        slowest[name] = max(values) if values else None
    return slowest


def results_json(results: Sequence[CaseResult], summary: Summary) -> dict[str, Any]:
    return {"summary": summary.as_json(), "cases": [case_json(result) for result in results]}


def write_json(path: str, results: Sequence[CaseResult], summary: Summary, out: IO[str]) -> None:
    """The JSON report to `path`; "-" writes it to `out`."""
    text = json.dumps(results_json(results, summary), ensure_ascii=False, indent=2) + "\n"
    if path == "-":
        out.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;vertical-align:top}
section{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.5em 1em}
section.fail{border-color:#c33;background:#fff7f7}
h2{font-size:16px;margin:.3em 0}.pass{color:#1a7f37}.failmark{color:#c33}
.why{color:#c33;margin:.3em 0}.turn{border-top:1px dashed #ccc;padding:.5em 0}
.label{color:#666;width:9em}audio{height:32px;vertical-align:middle}
.sub{background:#fde68a}.ins{background:#bfdbfe}.del{background:#fecaca;text-decoration:line-through}
.legend span{padding:0 4px;margin-right:6px}
"""


MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
"""The sample rates MP3 has (MPEG-1, 2 and 2.5)."""
MP3_QUALITY = 0.6
"""libsndfile's compression level of the report's MP3 (0 best, 1 smallest), at a variable
rate: about 28 kbps at 16 kHz (PCM: 256) and 20 kbps at 8 kHz (PCM: 128). Whisper hears 41
questions and replies of the demo suite through it as it hears the PCM, but for 1% of words."""


def audio_data_uri(samples: np.ndarray, sample_rate: int) -> str:
    """Int16 mono samples as a `data:` URI a browser plays: MP3 (every browser plays it) at a
    speech rate; a WAV for a rate MP3 does not have or a libsndfile that writes no MP3."""
    if sample_rate not in MP3_RATES or not len(samples) or "MP3" not in sf.available_formats():
        return wav_data_uri(samples, sample_rate)
    buffer = io.BytesIO()
    sf.write(
        buffer,
        np.asarray(samples, dtype=np.int16),
        sample_rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        bitrate_mode="VARIABLE",
        compression_level=MP3_QUALITY,
    )
    return "data:audio/mpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def wav_data_uri(samples: np.ndarray, sample_rate: int) -> str:
    """Int16 mono samples as a `data:audio/wav;base64,…` URI."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def marked_transcript(alignment: Alignment) -> str:
    """The aligned words as HTML: substitutions (with the word said as a tooltip), insertions
    and deletions in their own marks; words as normalized for the WER."""
    parts = []
    for edit in alignment.edits:
        if edit.op == "ok":
            parts.append(html.escape(edit.hyp or ""))
        elif edit.op == "sub":
            said = html.escape(f"said: {edit.ref}", quote=True)
            parts.append(f'<span class="sub" title="{said}">{html.escape(edit.hyp or "")}</span>')
        elif edit.op == "ins":
            parts.append(f'<span class="ins" title="not said">{html.escape(edit.hyp or "")}</span>')
        else:
            parts.append(
                f'<span class="del" title="not heard">{html.escape(edit.ref or "")}</span>'
            )
    return " ".join(parts)


def _player(samples: np.ndarray, sample_rate: int) -> str:
    return f'<audio controls preload="none" src="{audio_data_uri(samples, sample_rate)}"></audio>'


def _turn_html(result: CaseResult, number: int, turn: TurnResult) -> str:
    channel = result.case.channel
    data = turn_json(number, turn)
    rows = [("question", _player(turn.question_pcm, channel.sample_rate))]
    if turn.question.text:
        rows.append(("said", html.escape(turn.question.text)))
    rows.append(("heard", html.escape(data["transcript"]) or "<i>nothing</i>"))
    if turn.alignment is not None:
        marked = marked_transcript(turn.alignment)
        rows.append(("errors", f"{marked} (WER {_percent(data['wer'])})"))
    rows.append(("reply", html.escape(data["reply"]) or "<i>no reply</i>"))
    if turn.turn is not None and turn.turn.audio:
        reply_pcm = channel.decode(bytes(turn.turn.audio))
        rows.append(("reply audio", _player(reply_pcm, channel.sample_rate)))
    rows.append(("sources", html.escape(", ".join(data["sources"])) or "-"))
    rows.append(("handoff", {True: "yes", False: "no", None: "-"}[data["handoff"]]))
    timings = ", ".join(f"{k} {v} ms" for k, v in data["timings_ms"].items() if v is not None)
    rows.append(("timings", html.escape(timings) or "-"))
    if turn.why:
        rows.append(("why", f'<span class="why">{html.escape("; ".join(turn.why))}</span>'))
    cells = "".join(f'<tr><td class="label">{k}</td><td>{v}</td></tr>' for k, v in rows)
    title = f"<b>turn {number}</b>" if result.case.multi_turn else ""
    return f'<div class="turn">{title}<table>{cells}</table></div>'


def _case_html(result: CaseResult) -> str:
    if result.passed:
        state, mark = "pass", '<span class="pass">✓ pass</span>'
    else:
        state, mark = "fail", '<span class="failmark">✗ fail</span>'
    why = "".join(f"<li>{html.escape(reason)}</li>" for reason in result.why)
    turns = "".join(_turn_html(result, n, turn) for n, turn in enumerate(result.turns, 1))
    channel = f"{result.case.channel.encoding} {result.case.channel.sample_rate} Hz"
    return (
        f'<section class="{state}" id="{html.escape(result.case.id, quote=True)}">'
        f"<h2>{html.escape(result.case.id)} {mark} <small>({channel})</small></h2>"
        f"{f'<ul class=why>{why}</ul>' if why else ''}{turns}</section>"
    )


def html_report(results: Sequence[CaseResult], summary: Summary, title: str) -> str:
    """A self-contained page: the summary, then every case with its audio (the question as
    sent and the reply as received, MP3 in the page), transcript with the recognition errors
    marked, reply and why it failed."""
    legend = (
        '<p class="legend">recognition errors: <span class="sub">heard wrong</span>'
        '<span class="ins">heard, not said</span><span class="del">said, not heard</span></p>'
    )
    cases = "".join(_case_html(result) for result in results)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><pre>{html.escape(summary_text(summary))}</pre>"
        f"{legend}{cases}"
        f"</body></html>\n"
    )


def write_html(path: Path, results: Sequence[CaseResult], summary: Summary, title: str) -> None:
    path.write_text(html_report(results, summary, title), encoding="utf-8")
