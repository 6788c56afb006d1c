"""The conversation so far, kept by the Live link for a session that has to start over.

When Live refuses a resumption handle the model's memory of the call is gone; a fresh
session gets this log as context (added to its system instruction, see
`app.live.options.instructions_with`). It holds what both sides said (the transcripts,
fragments joined per turn) and each tool call with its result, in order. Bounded: only
the most recent `max_chars` of it are rendered (a native-audio session's window is
128k tokens, and the instruction is sent on every fresh setup).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_CHARS = 12_000


@dataclass
class _Line:
    role: str  # "Caller" | "Agent" | "Tool"
    text: str


class ConversationLog:
    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self._lines: list[_Line] = []
        self._max_chars = max_chars
        self._calls: dict[str, tuple[str, str]] = {}  # call id -> (name, args as JSON)

    def said(self, role: str, text: str) -> None:
        """A transcript fragment; consecutive fragments of one side make one line."""
        if not text:
            return
        if self._lines and self._lines[-1].role == role:
            self._lines[-1].text += text
        else:
            self._lines.append(_Line(role, text))

    def turn_over(self) -> None:
        """The model's turn ended (or was interrupted): the next fragment starts a line."""
        self._lines.append(_Line("", ""))  # a separator, dropped when rendered

    def tool_called(self, call_id: str, name: str, args: Mapping[str, Any]) -> None:
        self._calls[call_id] = (name, _json(args))

    def tool_answered(self, call_id: str, name: str, response: Mapping[str, Any]) -> None:
        called_name, args = self._calls.pop(call_id, (name, "{}"))
        self._lines.append(_Line("Tool", f"{called_name}({args}) returned {_json(response)}"))

    def render(self) -> str:
        """The log as text, newest last; empty when nothing was said yet."""
        lines = [f"{line.role}: {line.text.strip()}" for line in self._lines if line.role]
        text = "\n".join(line for line in lines if not line.endswith(": "))
        if len(text) > self._max_chars:
            text = "[...]\n" + text[-self._max_chars :].split("\n", 1)[-1]
        return text


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, default=str, sort_keys=True)[:2000]
