"""`CloseCode`: one meaning a code, and the docs' tables say the same codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voice.channels.closes import CloseCode

DOCS = Path(__file__).resolve().parents[2] / "docs"


def documented(doc: str) -> list[int]:
    """The close codes in the first column of a doc's "Errors and close codes" tables, one
    entry a code a row (a row may name several: "4410, 4413, 4429")."""
    section = (DOCS / doc).read_text().split("## Errors and close codes", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| ")]
    return [
        int(code)
        for cell in rows
        for code in re.findall(r"^\s*(\d{4}(?:,\s*\d{4})*)", cell)
        for code in code.split(",")
    ]


def test_every_code_has_one_name() -> None:
    values = [code.value for code in CloseCode]
    assert len(values) == len(set(values))


@pytest.mark.parametrize("doc", ["protocol.md", "phone.md"])
def test_a_docs_table_gives_each_code_one_row_and_only_codes_the_server_sends(doc: str) -> None:
    codes = documented(doc)
    assert len(codes) == len(set(codes)), f"a code with two rows in {doc}"
    assert set(codes) <= set(CloseCode), f"{doc} names a code the server never sends"


def test_every_code_is_documented() -> None:
    """Each code in one of the tables; the carrier's only in the phone's, the start's only in
    the caller protocol's."""
    caller, phone = set(documented("protocol.md")), set(documented("phone.md"))
    assert set(CloseCode) == caller | phone
    assert CloseCode.CARRIER in phone and CloseCode.CARRIER not in caller
    assert CloseCode.BAD_START in caller and CloseCode.BAD_START not in phone


def test_the_console_feed_names_its_close() -> None:
    text = (DOCS / "console.md").read_text()
    assert f"close {CloseCode.NOT_READING.value}" in text
