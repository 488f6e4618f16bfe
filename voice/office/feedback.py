"""`POST /api/feedback`: a turn marked helpful or not, by a supervisor or by someone who took part
in the call. A caller proves that with the feedback token its call was given (in `ready`, or in
a chat reply); a supervisor with a login. Each address is held to a rate, and comments are
redacted like transcripts before they are kept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from voice.office.records import Feedback
from voice.ops.admission import MessageRate

log = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 1000
MAX_TURN = 100_000
RATE_PER_S = 1.0
"""Feedback posts an address may send a second, on average."""
RATE_BURST_S = 10.0
"""Seconds' worth of posts an address may send at once (ten verdicts in a row)."""
TRACKED_ADDRESSES = 10_000
"""Addresses whose rate is kept; the least recently seen are forgotten beyond this."""


class FeedbackKeys:
    """Feedback tokens: an HMAC of the call id under a secret of this server process, so nothing
    is stored per call. A server restart makes the tokens of earlier calls invalid."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def token(self, call_id: str) -> str:
        digest = hmac.new(self._secret, call_id.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode("ascii")

    def valid(self, call_id: str, token: object) -> bool:
        """Whether `token` is this call's. Constant-time in the token."""
        if not isinstance(token, str):
            return False
        given = token.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(self.token(call_id).encode("ascii"), given)


class AddressRates:
    """A `MessageRate` per remote address, for the least recently seen `capacity` addresses."""

    def __init__(
        self,
        per_s: float = RATE_PER_S,
        burst_s: float = RATE_BURST_S,
        capacity: int = TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_s, self._burst_s, self._capacity, self._clock = per_s, burst_s, capacity, clock
        self._rates: OrderedDict[str, MessageRate] = OrderedDict()

    def take(self, address: str) -> bool:
        """Count one request from `address`; False when it is over its rate."""
        rate = self._rates.pop(address, None)
        if rate is None:
            rate = MessageRate(self._per_s, self._burst_s, self._clock)
        self._rates[address] = rate
        while len(self._rates) > self._capacity:
            self._rates.popitem(last=False)
        return rate.take()

    def wait_s(self, address: str) -> float:
        rate = self._rates.get(address)
        return rate.wait_s() if rate is not None else 0.0


class FeedbackError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse(body: object, *, now: float) -> tuple[Feedback, object]:
    """A feedback post's record and the token it carried (not yet checked).

    Raises:
        FeedbackError: the body is not `{"call_id", "turn", "helpful", "comment"?, "token"?}`.
    """
    bad = FeedbackError(
        400,
        "bad_request",
        'Send {"call_id": ..., "turn": N, "helpful": true|false, "token": ...} as JSON.',
    )
    if not isinstance(body, dict):
        raise bad
    call_id, turn, helpful = body.get("call_id"), body.get("turn"), body.get("helpful")
    comment = body.get("comment", "")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= 64:
        raise bad
    if isinstance(turn, bool) or not isinstance(turn, int) or not 0 <= turn <= MAX_TURN:
        raise bad
    if not isinstance(helpful, bool) or not isinstance(comment, str):
        raise bad
    if len(comment) > MAX_COMMENT_CHARS:
        raise FeedbackError(
            400, "comment_too_long", f"A comment is limited to {MAX_COMMENT_CHARS} characters."
        )
    return Feedback(call_id, turn, helpful, now, comment.strip()), body.get("token")
