"""The clause splitter on literal answer text, whole and re-chunked."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.clauses import ClauseSplitter, split_sentences


def clauses_of(text: str, sizes: list[int] | None = None, **options) -> list[str]:
    """Feed `text` in chunks of the given sizes (cycled), or one character at a time."""
    splitter = ClauseSplitter(**options)
    out: list[str] = []
    sizes = sizes or [1]
    at, n = 0, 0
    while at < len(text):
        size = sizes[n % len(sizes)]
        out += splitter.feed(text[at : at + size])
        at, n = at + size, n + 1
    return out + splitter.flush()


def squash(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- sentence ends


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Sure. It ships today! Anything else? Bye.",
            ["Sure.", "It ships today!", "Anything else?", "Bye."],
        ),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ('He said "Hi." Then he left.', ['He said "Hi."', "Then he left."]),
        ("It is free (see below.) Next one.", ["It is free (see below.)", "Next one."]),
        ("Use 2.4 GHz. Then retry.", ["Use 2.4 GHz.", "Then retry."]),
        ("Read section 4.2 first. It helps.", ["Read section 4.2 first.", "It helps."]),
        ("Read section 4.2. It helps.", ["Read section 4.2.", "It helps."]),
        ("Bring ID, e.g. a passport. Thanks.", ["Bring ID, e.g. a passport.", "Thanks."]),
        ("Ask Dr. Smith. Or Mrs. Jones.", ["Ask Dr. Smith.", "Or Mrs. Jones."]),
        ("Order No. 5 shipped. Done.", ["Order No. 5 shipped.", "Done."]),
        ("No. You need a receipt.", ["No.", "You need a receipt."]),
        ("We close at 4:30 p.m. on Fridays.", ["We close at 4:30 p.m. on Fridays."]),
        ("We close at 4:30 p.m. Come early.", ["We close at 4:30 p.m.", "Come early."]),
        ("Cables, plugs, etc. are free.", ["Cables, plugs, etc. are free."]),
        ("Cables, plugs, etc. Ask us.", ["Cables, plugs, etc.", "Ask us."]),
        ("Well... maybe later.", ["Well... maybe later."]),
        ("Wait… what? Yes.", ["Wait… what?", "Yes."]),
        (
            "Visit www.brightnest.com/returns. It is quick.",
            ["Visit www.brightnest.com/returns.", "It is quick."],
        ),
        ("Mail help@brightnest.com today. Thanks.", ["Mail help@brightnest.com today.", "Thanks."]),
        ("Call J. Smith now.", ["Call J. Smith now."]),
        ("It costs $5. That is all.", ["It costs $5.", "That is all."]),
        ("Step 1. Open it.", ["Step 1.", "Open it."]),
        ("no end", ["no end"]),
        ("Odd.end of text", ["Odd.end of text"]),
        ("Ends with a dot.", ["Ends with a dot."]),
    ],
)
def test_sentence_ends(text, expected):
    assert split_sentences(text) == expected
    assert clauses_of(text) == expected


def test_newlines_split_and_list_markers_stay():
    text = "To reset it:\n1. Open the app.\n2. Tap Settings\n\n- Then wait\n"
    assert clauses_of(text) == [
        "To reset it:",
        "1. Open the app.",
        "2. Tap Settings",
        "- Then wait",
    ]


def test_a_list_marker_is_only_one_at_the_start_of_a_line():
    assert split_sentences("1. Open it. 2. Close it.") == ["1. Open it.", "2. Close it."]
    assert split_sentences("  3. Wait") == ["3. Wait"]
    assert split_sentences("Try 1. Then 2.") == ["Try 1.", "Then 2."]


def test_a_period_before_a_lowercase_word_is_an_abbreviation():
    assert split_sentences("Use the approx. size. Done.") == ["Use the approx. size.", "Done."]
    assert split_sentences("The Acme Corp. team helps.") == ["The Acme Corp. team helps."]


def test_a_period_before_a_newline_ends_the_sentence_even_before_lowercase():
    assert split_sentences("Call Dr.\nlater") == ["Call Dr.", "later"]
    assert split_sentences("Done.\nnext") == ["Done.", "next"]


# ----------------------------------------------------------------------------- soft breaks


def test_first_clause_breaks_early_at_a_comma():
    text = "Yes, the Brightnest router, model X200, supports mesh, and it works with older devices."
    assert clauses_of(text) == [
        "Yes, the Brightnest router,",  # 27 characters ≥ first_min_chars (20)
        "model X200, supports mesh, and it works with older devices.",
    ]


def test_later_clauses_need_min_chars_before_a_soft_break():
    text = (
        "Sure. Your order has shipped from our warehouse in Ohio, and it should arrive "
        "within two days; tracking is in the email."
    )
    assert clauses_of(text) == [
        "Sure.",
        "Your order has shipped from our warehouse in Ohio,",  # 51 ≥ min_chars (40)
        "and it should arrive within two days; tracking is in the email.",  # 37 < 40 at ";"
    ]


@pytest.mark.parametrize("mark", [",", ";", ":", " -", " –", " —", "..."])
def test_every_soft_mark_breaks_a_long_clause(mark):
    text = f"This first part is long enough to break{mark} and this is the rest."
    assert clauses_of(text) == [
        f"This first part is long enough to break{mark}",
        "and this is the rest.",
    ]


def test_marks_inside_words_and_numbers_do_not_break():
    text = "The plan covers Wi-Fi, costs 1,200 dollars and starts at 16:00—no earlier."
    assert clauses_of(text, first_min_chars=1, min_chars=1) == [
        "The plan covers Wi-Fi,",
        "costs 1,200 dollars and starts at 16:00—no earlier.",
    ]


def test_soft_breaks_can_be_turned_off():
    text = "Yes, the Brightnest router, model X200, supports mesh, and more."
    assert clauses_of(text, min_chars=None, first_min_chars=None) == [text]
    assert split_sentences(text) == [text]


def test_short_first_clause_does_not_break():
    assert clauses_of("Yes, sure, it works.") == ["Yes, sure, it works."]


# ----------------------------------------------------------------------------- a short first clause


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # before the last word that begins a phrase
            "Each month you need to pay at least the minimum payment shown on your statement.",
            ["Each month you need to pay", "at least the minimum payment shown on your statement."],
        ),
        (
            "The monthly charge is $14.00 per month regardless of usage. It is billed later.",
            [
                "The monthly charge is $14.00",
                "per month regardless of usage.",
                "It is billed later.",
            ],
        ),
        (  # no such word: at the last space
            "Grandmothers knitted enormous woollen scarves yesterday evening.",
            ["Grandmothers knitted enormous", "woollen scarves yesterday evening."],
        ),
        (  # it ends soon after: not cut
            "Your new card will reach you soon. Then call us.",
            ["Your new card will reach you soon.", "Then call us."],
        ),
        (  # a comma too early to end it
            "Of course, I can help with the payment plan you asked about yesterday.",
            ["Of course, I can help", "with the payment plan you asked about yesterday."],
        ),
        (  # a comma soon after the cut ends it there
            "I'm sorry, something went wrong on our side, so I'm transferring you now.",
            ["I'm sorry, something went wrong on our side,", "so I'm transferring you now."],
        ),
        (  # never just after an abbreviation that ends no sentence
            "Please call our specialist Dr. Smith on the number printed on your card today.",
            ["Please call our specialist", "Dr. Smith on the number printed on your card today."],
        ),
    ],
)
def test_a_long_first_sentence_is_cut_where_a_phrase_begins(text, expected):
    assert clauses_of(text, first_max_chars=30) == expected
    assert clauses_of(text, [9], first_max_chars=30) == expected


def test_a_first_cut_does_not_depend_on_where_a_number_was_chunked():
    text = "Our support plan for the whole family, only $14.00 per month, covers everything."
    whole = clauses_of(text, [len(text)], first_max_chars=30)
    assert whole == [
        "Our support plan for the whole family,",  # the comma just past the cut
        "only $14.00 per month, covers everything.",
    ]
    split_at_the_point = text.index("$14.") + 4
    splitter = ClauseSplitter(first_max_chars=30)
    chunked = splitter.feed(text[:split_at_the_point]) + splitter.feed(text[split_at_the_point:])
    assert chunked + splitter.flush() == whole


def test_a_reply_written_a_sentence_at_a_time_is_cut_as_if_written_whole():
    splitter = ClauseSplitter(first_max_chars=30)
    sentences = [
        "Each month you need to pay at least the minimum payment on your card.",
        " The late fee applies when the payment arrives after the due date shown.",
    ]
    clauses = [c for sentence in sentences for c in splitter.feed_written(sentence)]
    assert clauses + splitter.flush() == [
        "Each month you need to pay",
        "at least the minimum payment on your card.",
        "The late fee applies when the payment arrives after the due date shown.",
    ]
    assert clauses_of("".join(sentences), first_max_chars=30) == clauses
    assert splitter.feed_written(sentences[0]) == clauses[:2]  # flushed: a new answer


LONG_SENTENCE = (
    "Each month you need to pay at least the minimum payment shown on your statement before "
    "the due date that is printed at the top of the page and also in the app where you can set "
    "up automatic payments from your checking account without any fee unless the bank charges "
    "one on its side of the transfer."
)


def test_each_later_clause_is_cut_at_twice_the_length_of_the_one_before():
    """Each clause is made while the audio before it plays: about as long as it is."""
    clauses = clauses_of(LONG_SENTENCE, first_max_chars=30)
    assert clauses == [
        "Each month you need to pay",  # cut at 30
        "at least the minimum payment shown on your statement",  # at 60
        "before the due date that is printed at the top of the page and also in the app where "
        "you can set up automatic payments",  # at 120
        "from your checking account without any fee unless the bank charges one on its side of "
        "the transfer.",  # 240 would pass max_chars: ends as any clause
    ]
    assert clauses_of(LONG_SENTENCE, [7], first_max_chars=30) == clauses
    assert clauses_of(LONG_SENTENCE, max_chars=None) == [LONG_SENTENCE]  # not asked for


def test_later_sentences_are_cut_as_the_clauses_they_are():
    text = "Yes. Each month you need to pay at least the minimum payment on your statement."
    assert clauses_of(text, first_max_chars=30) == [
        "Yes.",
        "Each month you need to pay at least the minimum payment on your statement.",
    ]  # a second clause is cut at 60, and this one ends within 20 more
    text = (
        "Our store opens at nine. Repairs take about three working days from the moment we "
        "receive the device in our workshop and test it."
    )
    assert clauses_of(text, first_max_chars=30) == [
        "Our store opens at nine.",
        "Repairs take about three working days",  # the second clause: cut at 60
        "from the moment we receive the device in our workshop and test it.",
    ]


def test_a_cut_leaves_half_its_length_and_a_first_clause_its_least():
    text = "Your order ships with a tracking number that arrives by email later today."
    assert clauses_of(text, first_max_chars=30) == [
        "Your order ships",  # 16 characters: over half of 30
        "with a tracking number that arrives by email later today.",
    ]
    assert clauses_of(text, first_max_chars=30, first_least_chars=20) == [text]
    # not at 16, and not after "with" or "a": not cut
    text = "Open the box and lift the device out carefully before you plug it in anywhere."
    assert clauses_of(text, first_max_chars=30) == [
        "Open the box and lift",  # "and" at 12 is too soon, and "the" goes with "device"
        "the device out carefully before you plug it in anywhere.",
    ]


def test_a_first_sentence_too_short_to_say_alone_goes_with_what_follows():
    """`first_least_chars`: alone, "Yes." would leave the clause after it half a second to be
    synthesized in. Later short sentences stay on their own."""
    text = "Yes. In the app, go to Shop, then Trade-In, and answer a few questions about it."
    merged = ["Yes. In the app, go to Shop,", "then Trade-In, and answer a few questions about it."]
    assert clauses_of(text, first_least_chars=20, first_max_chars=30) == merged
    assert clauses_of(text, [7, 3], first_least_chars=20, first_max_chars=30) == merged
    assert clauses_of(text, first_max_chars=30)[0] == "Yes."  # not asked for
    assert clauses_of("Really?! Yes. It ships today. Bye.", first_least_chars=20) == [
        "Really?! Yes. It ships today.",
        "Bye.",
    ]
    assert clauses_of("This first sentence is long enough. Yes. No.", first_least_chars=20) == [
        "This first sentence is long enough.",
        "Yes.",
        "No.",
    ]
    assert clauses_of("Sure.", first_least_chars=20) == ["Sure."]  # the whole answer


# ----------------------------------------------------------------------------- hard cap


def test_a_long_clause_breaks_at_its_last_space_before_max_chars():
    words = " ".join(f"word{i}" for i in range(120))
    clauses = clauses_of(words)
    assert len(words) == 849
    assert [len(c) for c in clauses[:-1]] == [248, 244, 243]
    assert " ".join(clauses) == words


def test_max_chars_is_configurable():
    clauses = clauses_of("aaa bbb ccc ddd eee", max_chars=8)
    assert clauses == ["aaa bbb", "ccc ddd", "eee"]


def test_a_word_longer_than_max_chars_stays_whole():
    long_word = "x" * 30
    assert clauses_of(f"ab {long_word} cd ef", max_chars=10) == ["ab", long_word, "cd ef"]
    assert clauses_of(long_word, max_chars=10) == [long_word]


# ----------------------------------------------------------------------------- streaming


def test_feed_returns_a_clause_once_the_next_word_shows_it_ended():
    splitter = ClauseSplitter()
    assert splitter.feed("Sure.") == []
    assert splitter.feed(" ") == []  # "Sure. e.g." would not end here
    assert splitter.feed("The") == ["Sure."]
    assert splitter.feed(" box? ") == ["The box?"]  # ! and ? need only the space
    assert splitter.flush() == []


def test_flush_returns_the_rest_and_resets():
    splitter = ClauseSplitter()
    assert splitter.feed("Yes, the first clause here, and") == ["Yes, the first clause here,"]
    assert splitter.flush() == ["and"]
    assert splitter.flush() == []
    # A new answer: the first-clause rule applies again.
    assert splitter.feed("Yes, the first clause here, and") == ["Yes, the first clause here,"]


@pytest.mark.parametrize("text", ["", "   ", "\n\n", " \n \t \n"])
def test_nothing_to_say_gives_no_clauses(text):
    assert clauses_of(text) == []
    assert split_sentences(text) == []


def test_word_split_across_deltas():
    splitter = ClauseSplitter()
    out = []
    for delta in ["We ship", " at 4:", "30 p.", "m. on Mon", "days. Dr", ". Lee", " helps."]:
        out += splitter.feed(delta)
    assert out + splitter.flush() == ["We ship at 4:30 p.m. on Mondays.", "Dr. Lee helps."]


# ----------------------------------------------------------------------------- properties

PIECES = [
    "Sure",
    "the",
    "router",
    "supports",
    "2.4",
    "GHz",
    "e.g.",
    "Dr.",
    "No.",
    "5",
    "4:30",
    "p.m.",
    "etc.",
    "www.brightnest.com/returns",
    "help@brightnest.com",
    "4.2",
    "1.",
    "Wi-Fi",
    "1,200",
    "Yes",
    "You",
    "x" * 30,
    "...",
    "…",
    ".",
    ",",
    ";",
    ":",
    "!",
    "?",
    "-",
    "—",
    '"',
    ")",
    " ",
    " ",
    " ",
    " ",
    "\n",
    "  ",
    "\t",
    "Okay.",
    "$14.",
    "00",
    "J.",
    "A",
]
texts = st.lists(st.sampled_from(PIECES), max_size=80).map("".join)
chunkings = st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8)
options = st.sampled_from(
    [
        {},
        {"max_chars": 30},
        {"min_chars": 10, "first_min_chars": 5, "max_chars": 60},
        {"min_chars": None, "first_min_chars": None, "max_chars": None},
        {"first_max_chars": 12},
        {"first_max_chars": 30, "max_chars": 40},
    ]
)


@settings(max_examples=200)
@given(texts, chunkings, options)
def test_chunking_never_changes_the_clauses(text, sizes, config):
    assert clauses_of(text, sizes, **config) == clauses_of(text, [len(text) or 1], **config)


@settings(max_examples=200)
@given(texts, chunkings, options)
def test_clauses_rebuild_the_text(text, sizes, config):
    clauses = clauses_of(text, sizes, **config)
    assert " ".join(clauses) == squash(text)
    assert all(c and c == squash(c) for c in clauses)


@settings(max_examples=200)
@given(texts, st.integers(min_value=5, max_value=60))
def test_clauses_respect_max_chars(text, max_chars):
    for clause in clauses_of(text, [7], max_chars=max_chars):
        overflow = clause[max_chars:]
        assert (
            len(clause) <= max_chars
            or not any(c.isspace() for c in clause[: max_chars + 1])  # one long word
            or all(c in ".!?…\"')]}" for c in overflow)  # a sentence end ran past it
        )


@settings(max_examples=100)
@given(st.text(max_size=200), chunkings)
def test_any_text_is_split_without_error(text, sizes):
    clauses = clauses_of(text, sizes)
    assert " ".join(clauses) == squash(text)
    assert clauses == clauses_of(text, [len(text) or 1])
