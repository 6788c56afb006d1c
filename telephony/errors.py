"""Errors of the pure Twilio protocol layer."""

from __future__ import annotations


class TelephonyError(Exception):
    """Base of the telephony package's errors."""


class ProtocolError(TelephonyError):
    """A Media Streams message is malformed; the message says what is wrong."""
