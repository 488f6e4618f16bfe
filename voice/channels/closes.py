"""Every code the server closes a websocket with, one meaning each.

The caller protocol's table is in docs/protocol.md ("Errors and close codes"), the phone
dialect's in docs/phone.md, the console's live feed in docs/console.md. The 1xxx codes are the
websocket standard's; the 4xxx ones are ours, numbered after the HTTP status that means the
same (4400 a bad request, 4408 a timeout, 4429 too many requests).
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class CloseCode(IntEnum):
    NORMAL = 1000
    """The call ended: the caller hung up, the carrier sent `stop`, or the call was handed
    off."""
    GOING_AWAY = 1001
    """The server is shutting down."""
    BAD_FRAME = 1002
    """The websocket layer refused a broken frame (and closed the connection itself)."""
    BAD_TEXT = 1007
    """The websocket layer refused a text frame that is not UTF-8 (and closed the connection
    itself)."""
    TOO_BIG = 1009
    """A message over `call.max_frame_bytes`, or over what the websocket layer takes at all."""
    INTERNAL = 1011
    """An internal error in the server; other calls are not affected."""
    BUSY = 1013
    """Every line is taken ("try again later")."""
    BAD_START = 4400
    """The caller's first message is not a start the server can take."""
    UNAUTHORIZED = 4401
    """No valid caller token."""
    START_TIMEOUT = 4408
    """No start message in time."""
    NOT_READING = 4409
    """The peer stopped reading, or fell too far behind: a caller the server could not send
    to for `call.send_timeout_s`, a console that let its live feed's queue fill."""
    IDLE = 4410
    """Nothing came from the caller for `call.idle_timeout_s`."""
    TOO_LONG = 4413
    """The call reached `call.max_call_s`."""
    CARRIER = 4422
    """A phone carrier broke the Media Streams dialect."""
    TOO_MANY = 4429
    """The caller sent more messages a second than `call.max_messages_per_s`."""
