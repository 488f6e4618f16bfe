"""Fixtures of the call tests: `call_in`, a call session in-process without the speech models."""

from tests.support.inprocess import call_in

__all__ = ["call_in"]
