"""Redaction of card numbers, phone numbers and email addresses in transcripts."""

from __future__ import annotations

import time

import pytest

from voice.redact import is_card, luhn_valid, redact


@pytest.mark.parametrize(
    "digits",
    ["4111111111111111", "5500000000000004", "378282246310005", "6011111111111117", "79927398713"],
)
def test_luhn_valid(digits: str) -> None:
    assert luhn_valid(digits)


@pytest.mark.parametrize("digits", ["4111111111111112", "1234567890123456", "79927398710", ""])
def test_luhn_invalid(digits: str) -> None:
    assert not luhn_valid(digits)


def test_cards_start_like_cards() -> None:
    assert is_card("4111111111111111")
    assert is_card("4222222222222")  # 13 digits
    assert not is_card("8111111111111112")  # Luhn-valid, but no card network starts with 8
    assert not is_card("411111111111")  # 12 digits
    assert not is_card("41111111111111111111")  # 20 digits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # card numbers, Luhn-valid
        ("my card is 4111 1111 1111 1111 thanks", "my card is [card] thanks"),
        ("4111-1111-1111-1111", "[card]"),
        ("4111111111111111", "[card]"),
        ("Mastercard 5500 0000 0000 0004.", "Mastercard [card]."),
        ("amex 3782 822463 10005", "amex [card]"),
        ("4111 1111 1111 1111 123 expires 12/25", "[card] 123 expires 12/25"),
        ("It's 4,111,111,111,111,111", "It's [card]"),
        ("the number 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "the number [card]"),
        ("four one one one one one one one one one one one one one one one", "[card]"),
        ("two cards: 4111111111111111 and 5500000000000004", "two cards: [card] and [card]"),
        # phone numbers
        ("call me on 020 7946 0958", "call me on [phone]"),
        ("my number is (555) 123-4567.", "my number is [phone]."),
        ("+44 20 7946 0958", "[phone]"),
        ("+447946095800", "[phone]"),
        ("+1-800-555-0199 anytime", "[phone] anytime"),
        ("ring 1 800 555 0199", "ring [phone]"),
        ("5551234567", "[phone]"),
        ("it's 555-1234", "it's [phone]"),
        ("555.123.4567", "[phone]"),
        ("five five five one two three four", "[phone]"),
        ("double five five, one two three four", "[phone]"),
        ("oh two oh seven nine four six oh nine five eight", "[phone]"),
        ("my number is 07700 900123, thanks", "my number is [phone], thanks"),
        # email addresses
        ("email me at john.smith@example.com please", "email me at [email] please"),
        ("write to jane_doe+tag@mail.example.co.uk.", "write to [email]."),
        ("it's john dot smith at gmail dot com", "it's [email]"),
        ("j smith at example.com", "j [email]"),
        ("Send it to ANNA at Outlook dot co dot UK", "Send it to [email]"),
        # several at once
        (
            "I'm bob@example.org, 555-123-4567, card 4111 1111 1111 1111",
            "I'm [email], [phone], card [card]",
        ),
    ],
)
def test_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "1234 5678 9012 3456",  # 16 digits, not Luhn-valid
        "4111 1111 1111 1112",
        "the router runs at 2.4 GHz and 5 GHz",
        "returns within 30 days",
        "see section 4.2 of the manual",
        "in 2024 we opened at 4 pm",
        "the 2023-2024 season",
        "from 1999 2000 to now",
        "it costs $1,299.99",
        "1,000,000 customers",
        "€1 299 999",
        "order number 4418 2210 9981",
        "order #12345678",
        "my order is 55512345",
        "tracking number: 1Z 999 AA1 0123 4567 84",
        "on 2024-01-15 at 10:30",
        "on 15.01.2024 or 01/15/2024",
        "ip 192.168.100.200",
        "pi is 3.14159265",
        "we open from 9 to 5, 7 days a week",
        "model 802.11ac",
        "it weighs 1.5 kg and is 30 by 20 by 10 cm",
        "I bought one two weeks ago",
        "oh, one more thing",
        "one or two of the three",
        "visit us at shop dot com",
        "we are at example dot com",
        "meet at noon",
        "100% of 250 mAh",
        "version 1.2.3",
        "",
    ],
)
def test_left_alone(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_idempotent() -> None:
    text = "bob@example.org 555-123-4567 4111 1111 1111 1111"
    assert redact(redact(text)) == redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "1" * 5000,
        "1 " * 5000,
        "1-" * 5000 + "x",
        "one " * 3000 + "x",
        "a dot " * 2000 + "at b",
        "a at " * 2000,
        "order " + "1a " * 3000 + "x",
        ("+(" + "1." * 50) * 100,
    ],
)
def test_long_input_takes_linear_time(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 0.5
