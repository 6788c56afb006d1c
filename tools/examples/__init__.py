"""Example tools, enabled by name (e.g. `TOOLS=end_call,appointments`)."""

from __future__ import annotations

from typing import Any

from tools.examples.appointments import APPOINTMENT_TOOLS
from tools.registry import Tool

EXAMPLE_SETS: dict[str, tuple[Tool[..., Any], ...]] = {
    "appointments": APPOINTMENT_TOOLS,
}
