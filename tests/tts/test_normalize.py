"""Answer text to the words Piper says, on literal phrases."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.normalize import normalize_for_speech
from tts.numbers import decimal_words, digit_words, number_words, ordinal_words, year_words

# ----------------------------------------------------------------------------- number words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (110, "one hundred ten"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (1200, "one thousand two hundred"),
        (20_000, "twenty thousand"),
        (100_000, "one hundred thousand"),
        (1_000_000, "one million"),
        (1_000_001, "one million one"),
        (7_050_000, "seven million fifty thousand"),
        (
            999_999_999,
            "nine hundred ninety-nine million nine hundred ninety-nine thousand "
            "nine hundred ninety-nine",
        ),
        (2_000_000_000, "two billion"),
        (-5, "minus five"),
        (10**12, "one zero zero zero zero zero zero zero zero zero zero zero zero"),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zeroth"),
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (4, "fourth"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (11, "eleventh"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (22, "twenty-second"),
        (30, "thirtieth"),
        (100, "one hundredth"),
        (101, "one hundred first"),
        (1000, "one thousandth"),
        (1_000_000, "one millionth"),
    ],
)
def test_ordinal_words(n, words):
    assert ordinal_words(n) == words


@pytest.mark.parametrize(
    ("year", "words"),
    [
        (2024, "twenty twenty-four"),
        (2010, "twenty ten"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (1999, "nineteen ninety-nine"),
        (1905, "nineteen oh five"),
        (1900, "nineteen hundred"),
        (1066, "ten sixty-six"),
        (999, "nine hundred ninety-nine"),
    ],
)
def test_year_words(year, words):
    assert year_words(year) == words


def test_digit_and_decimal_words():
    assert digit_words("0451") == "zero four five one"
    assert decimal_words("2.4") == "two point four"
    assert decimal_words("3.14") == "three point one four"
    assert decimal_words("0.05") == "zero point zero five"
    assert decimal_words("1,200.5") == "one thousand two hundred point five"
    assert decimal_words("4.2.10") == "four point two point ten"


_SMALL = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _digits_back(words: str) -> int:
    """A tiny reader of number_words' output, to check it inverts."""
    values = {w: i for i, w in enumerate(_SMALL)} | {w: 10 * i for i, w in enumerate(_TENS, 2)}
    total = group = 0
    for word in words.replace("-", " ").split():
        if word == "hundred":
            group *= 100
        elif word in ("thousand", "million", "billion"):
            total += group * {"thousand": 10**3, "million": 10**6, "billion": 10**9}[word]
            group = 0
        else:
            group += values[word]
    return total + group


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=999_999_999_999))
def test_number_words_read_back(n):
    words = number_words(n)
    assert _digits_back(words) == n
    assert re.fullmatch(r"[a-z -]+", words)
    assert "  " not in words


# ----------------------------------------------------------------------------- phrases


def say(text: str) -> str:
    return normalize_for_speech(text)


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("3", "three"),
        ("We have 3 stores.", "We have three stores."),
        ("1,200", "one thousand two hundred"),
        ("1,000,000 users", "one million users"),
        ("0.5", "zero point five"),
        ("-5", "minus five"),
        ("1st and 2nd", "first and second"),
        ("the 3rd, 11th and 21st", "the third, eleventh and twenty-first"),
        ("Version 2.0 is out.", "Version two point zero is out."),
        ("Firmware v3.2.1", "Firmware v three point two point one"),
        ("Room 4B", "Room four B"),
        ("page2", "page two"),
        ("COVID-19", "COVID-nineteen"),
        ("Ext. 204", "extension two zero four"),
        ("order 12345678", "order one two three four five six seven eight"),
        ("order #12345", "order number one two three four five"),
        ("code 0451", "code zero four five one"),
    ],
)
def test_numbers(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("in 2024", "in twenty twenty-four"),
        ("Since 1999, we", "Since nineteen ninety-nine, we"),
        ("from 2019 to 2024", "from twenty nineteen to twenty twenty-four"),
        ("2019-2024", "twenty nineteen to twenty twenty-four"),
        ("2019 or 2020", "twenty nineteen or twenty twenty"),
        ("the 1990s", "the nineteen nineties"),
        ("the 90s", "the nineties"),
        ("'70s music", "seventies music"),
        ("We sold 2024 units", "We sold two thousand twenty-four units"),
        ("in 2024 ms", "in two thousand twenty-four milliseconds"),
    ],
)
def test_years(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("4pm", "four p m"),  # the example
        ("4 pm", "four p m"),
        ("4 PM", "four p m"),
        ("4:30 p.m. on Monday", "four thirty p m on Monday"),
        ("at 4 p.m. Then we close.", "at four p m. Then we close."),
        ("It ends at 4:30 p.m.", "It ends at four thirty p m."),
        ("9:05am", "nine oh five a m"),
        ("12pm", "twelve p m"),
        ("16:00", "four p m"),
        ("09:30", "nine thirty a m"),
        ("00:15", "twelve fifteen a m"),
        ("23:59", "eleven fifty-nine p m"),
        ("9:30", "nine thirty"),
        ("12:00", "twelve"),
        ("9am–6pm", "nine a m to six p m"),
        ("4-6pm", "four to six p m"),
        ("I am 4 am", "I am four a m"),
        ("5 amazing days", "five amazing days"),
    ],
)
def test_times(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("$19.99", "nineteen dollars and ninety-nine cents"),
        ("$1", "one dollar"),
        ("$1.01", "one dollar and one cent"),
        ("$0.50", "fifty cents"),
        ("$5.00", "five dollars"),
        ("$12.5", "twelve dollars and fifty cents"),
        ("$1,200", "one thousand two hundred dollars"),
        ("$2.5M", "two point five million dollars"),
        ("$5k", "five thousand dollars"),
        ("$3 billion", "three billion dollars"),
        ("$0.005", "zero point zero zero five dollars"),
        ("€5", "five euros"),
        ("€1", "one euro"),
        ("5€", "five euros"),
        ("£3.50", "three pounds and fifty pence"),
        ("£0.01", "one penny"),
        ("¥500", "five hundred yen"),
        ("$10-$20", "ten dollars to twenty dollars"),
        ("$4.99/month", "four dollars and ninety-nine cents per month"),
        ("$99/yr.", "ninety-nine dollars per year."),
    ],
)
def test_money(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("10%", "ten percent"),
        ("2.5%", "two point five percent"),
        ("50 %", "fifty percent"),
        ("10-20%", "ten to twenty percent"),
        ("-3%", "minus three percent"),
        ("20°C", "twenty degrees Celsius"),
        ("1°C", "one degree Celsius"),
        ("68 °F", "sixty-eight degrees Fahrenheit"),
        ("It is -5°C.", "It is minus five degrees Celsius."),
        ("90°", "ninety degrees"),
        ("in °C", "in degrees Celsius"),
        ("2.4 GHz", "two point four gigahertz"),
        ("2.4GHz", "two point four gigahertz"),
        ("the GHz band", "the gigahertz band"),
        ("300 Mbps", "three hundred megabits per second"),
        ("1 Mbps", "one megabit per second"),
        ("Mbps", "megabits per second"),
        ("5 min", "five minutes"),
        ("1 min", "one minute"),
        ("30 min. later", "thirty minutes later"),
        ("Wait 30 min.", "Wait thirty minutes."),
        ("2 hrs", "two hours"),
        ("10s", "ten seconds"),
        ("24h", "twenty-four hours"),
        ("5 GB", "five gigabytes"),
        ("5 mAh", "five milliamp hours"),
        ("1 kWh", "one kilowatt hour"),
        ("3 ft", "three feet"),
        ("60 km/h", "sixty kilometers per hour"),
        ("2x faster", "two times faster"),
        ("10 x 20 cm", "ten times twenty centimeters"),
        ("5 GB/month", "five gigabytes per month"),
    ],
)
def test_percent_degrees_and_units(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("2024-03-15", "March fifteenth, twenty twenty-four"),
        ("on 2024-03-15.", "on March fifteenth, twenty twenty-four."),
        ("15/03/2024", "March fifteenth, twenty twenty-four"),  # 15 can only be the day
        ("03/15/2024", "March fifteenth, twenty twenty-four"),
        ("03/04/2024", "March fourth, twenty twenty-four"),  # ambiguous: month first (US)
        ("03.04.2024", "April third, twenty twenty-four"),  # dotted: day first
        ("3/15/24", "March fifteenth, twenty twenty-four"),
        ("March 15, 2024", "March fifteenth, twenty twenty-four"),
        ("March 15th", "March fifteenth"),
        ("Aug. 3rd, 2023", "August third, twenty twenty-three"),
        ("Sept 1", "September first"),
        ("15 March 2024", "the fifteenth of March, twenty twenty-four"),
        ("1st of May", "the first of May"),
        ("March 2024", "March twenty twenty-four"),
        ("on 3/15", "on March fifteenth"),
        ("2024-13-45", "two zero two four, one three, four five"),  # not a date
    ],
)
def test_dates(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("call 555-123-4567", "call five five five, one two three, four five six seven"),
        ("1-800-555-0199", "one, eight zero zero, five five five, zero one nine nine"),
        ("+1 (555) 123-4567", "plus one, five five five, one two three, four five six seven"),
        ("(555) 123 4567", "five five five, one two three, four five six seven"),
        ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
        ("0800 123 456", "zero eight zero zero, one two three, four five six"),
        ("555.123.4567", "five five five, one two three, four five six seven"),
        ("12-34", "twelve to thirty-four"),  # too short to be a phone number
    ],
)
def test_phone_numbers(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Q&A", "Q and A"),
        ("AT&T", "AT and T"),
        ("a + b", "a plus b"),
        ("C++", "C plus plus"),
        ("3 + 4 = 7", "three plus four equals seven"),
        ("meet @ noon", "meet at noon"),
        ("#4.2", "number four point two"),
        ("see No. 5", "see number five"),
        ("~10 hrs", "about ten hours"),
        ("<5", "less than five"),
        ("speeds > 300 Mbps", "speeds more than three hundred megabits per second"),
        ("24/7", "twenty-four seven"),
        ("We are open 24/7.", "We are open twenty-four seven."),
        ("1/2 off", "one half off"),
        ("3/4", "three quarters"),
        ("4/5 stars", "four out of five stars"),
        ("Rated 4.5/5", "Rated four point five out of five"),
        ("and/or", "and or"),
        ("TCP/IP", "TCP IP"),
        ("Settings > Network > Wi-Fi", "Settings, Network, Wi-Fi"),
        ("Wi-Fi", "Wi-Fi"),
        ("fast - really fast", "fast, really fast"),
        ("fast—really", "fast, really"),
        ("a | b", "a, b"),
    ],
)
def test_symbols(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("www.brightnest.com/returns", "brightnest dot com slash returns"),
        ("See www.brightnest.com/returns.", "See brightnest dot com slash returns."),
        ("https://www.brightnest.com/returns?id=5#top", "brightnest dot com slash returns"),
        ("Visit brightnest.com.", "Visit brightnest dot com."),
        (
            "go to help.brightnest.io/wifi-setup/",
            "go to help dot brightnest dot io slash wifi dash setup",
        ),
        ("help@brightnest.com", "help at brightnest dot com"),
        (
            "Email first.last+vip@brightnest.co.uk.",
            "Email first dot last plus vip at brightnest dot co dot uk.",
        ),
        ("file.txt", "file.txt"),
    ],
)
def test_urls_and_emails(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("e.g. a passport", "for example a passport"),
        ("E.g., a passport", "For example, a passport"),
        ("i.e. today", "that is today"),
        ("cables, plugs, etc.", "cables, plugs, et cetera."),
        ("cables, etc. are free", "cables, et cetera are free"),
        ("approx. 5 min", "approximately five minutes"),
        ("approx 20", "approximately twenty"),
        ("Plan A vs. Plan B", "Plan A versus Plan B"),
        ("w/ cable", "with cable"),
        ("w/o cable", "without cable"),
        ("Dr. Smith", "Doctor Smith"),
        ("Mr. Lee and Mrs. Lee", "Mister Lee and Missus Lee"),
        ("Mon–Fri", "Monday to Friday"),
        ("Mon-Sat 9am-5pm", "Monday to Saturday nine a m to five p m"),
        ("Sat 10am", "Saturday ten a m"),
        ("Sun exposure", "Sun exposure"),
        ("Tue", "Tuesday"),
    ],
)
def test_abbreviations(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("**bold** and `code`", "bold and code"),
        ("__bold__ and _it_ and *em*", "bold and it and em"),
        ("- item", "item"),
        ("* item", "item"),
        ("1. Open the app", "Open the app"),
        ("2) Tap Settings", "Tap Settings"),
        ("## Returns", "Returns"),
        ("> quoted", "quoted"),
        ("[our site](https://brightnest.com)", "our site"),
        ("snake_case", "snake case"),
        ("Options:\n- A\n- B", "Options: A. B"),
        (
            "1. Unplug it\n2. Wait 30 sec\n3. Plug it in",
            "Unplug it. Wait thirty seconds. Plug it in",
        ),
        ("**Note:** reset takes 5-10 min.", "Note: reset takes five to ten minutes."),
        ("```python", ""),
        ("**", ""),
        ("", ""),
        ("   \n  ", ""),
    ],
)
def test_markdown_remnants(text, spoken):
    assert say(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        (
            "Our store is open Mon–Fri, 9am–6pm.",
            "Our store is open Monday to Friday, nine a m to six p m.",
        ),
        (
            "Returns are accepted within 30 days; see www.brightnest.com/returns.",
            "Returns are accepted within thirty days; see brightnest dot com slash returns.",
        ),
        (
            "It costs $129.99 (approx. €120).",
            "It costs one hundred twenty-nine dollars and ninety-nine cents (approximately one "
            "hundred twenty euros).",
        ),
        (
            "The X200 supports 2.4 GHz & 5 GHz.",
            "The X two hundred supports two point four gigahertz and five gigahertz.",
        ),
        (
            "Since 2019, we have sold 1,000,000+ units.",
            "Since twenty nineteen, we have sold one million plus units.",
        ),
        (
            "Set it to 21°C (70°F).",
            "Set it to twenty-one degrees Celsius (seventy degrees Fahrenheit).",
        ),
    ],
)
def test_whole_sentences(text, spoken):
    assert say(text) == spoken


def test_plain_words_pass_through():
    text = "Hello! How can I help you today? I'm happy to check your order, Wi-Fi or returns."
    assert say(text) == text


# ----------------------------------------------------------------------------- properties

PIECES = [
    "3",
    "1,200",
    "2.4",
    "GHz",
    "$19.99",
    "€5",
    "10%",
    "4pm",
    "4:30",
    "p.m.",
    "16:00",
    "2024-03-15",
    "15/03/2024",
    "555-123-4567",
    "&",
    "+",
    "@",
    "#",
    "°C",
    "/",
    "24/7",
    "www.brightnest.com/returns",
    "help@brightnest.com",
    "e.g.",
    "approx.",
    "min",
    "Wi-Fi",
    "**",
    "`",
    "- ",
    "1. ",
    "\n",
    " ",
    " ",
    " ",
    ".",
    ",",
    "-",
    "—",
    "(",
    ")",
    "1st",
    "2000s",
    "Mon",
    "Fri",
    "No.",
    "x",
    "0",
    "0000000000000000000000",
    "9" * 40,
    "word",
    "It",
]
texts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=200)
@given(texts)
def test_no_digits_survive(text):
    spoken = say(text)
    assert not re.search(r"[0-9]", spoken)
    assert spoken == spoken.strip()
    assert "  " not in spoken


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_any_text_normalizes_without_error(text):
    spoken = say(text)
    assert not re.search(r"[0-9]", spoken)
    assert "\n" not in spoken


@settings(max_examples=200)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map(" ".join))
def test_normalizing_twice_changes_nothing(text):
    once = say(text)
    assert say(once) == once
