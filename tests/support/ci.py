"""What a test does when a service or program it needs is not on the machine."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip the test for want of what `reason` names; under CI (CI=true) fail it instead, since
    CI must run every test (.ci/run installs what they need)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; CI must run this test", pytrace=False)
    pytest.skip(reason)
