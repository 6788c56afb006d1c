"""Keypad digits as the caller's input to the model: batching, pure and clock-driven.

Twilio sends one `dtmf` event per key. A caller entering "1 2 3 #" presses keys a few
hundred ms apart; sending each on its own would make the model answer after the first.
Digits pressed within `gap_s` of the previous one are held and sent together once the
keypad has been quiet for `gap_s`, as realtime text: "The caller pressed 1, 2, 3, #.".
"""

from __future__ import annotations

from dataclasses import dataclass, field

GAP_S = 1.0
DIGITS = frozenset("0123456789*#ABCD")


def keypad_text(digits: str) -> str:
    """What the model reads (it hears nothing: DTMF is cut from the audio by Twilio)."""
    if len(digits) == 1:
        return f"The caller pressed {digits} on the keypad."
    return f"The caller pressed {', '.join(digits)} on the keypad."


@dataclass
class DigitBatcher:
    gap_s: float = GAP_S
    _digits: list[str] = field(default_factory=list)
    _last_at: float | None = None

    def press(self, digit: str, now: float) -> None:
        if digit not in DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        self._digits.append(digit)
        self._last_at = now

    def deadline(self) -> float | None:
        """When the held digits are due (None: nothing held)."""
        if not self._digits or self._last_at is None:
            return None
        return self._last_at + self.gap_s

    def take_due(self, now: float) -> str | None:
        """The held digits once the keypad has been quiet for `gap_s`, else None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        digits, self._digits, self._last_at = "".join(self._digits), [], None
        return digits
