"""Fixtures of the eval tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def logging_left_as_it_was() -> Iterator[None]:
    """`main` quiets the logs for an eval; put them back for the tests after this one."""
    names = ("", "voice.ops.server", "faster_whisper", "aiohttp.access")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
