"""`build_registry`: built-ins and examples by name, plus a user's module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools import ToolLoadError, build_registry


def test_builtins_examples_and_user_module() -> None:
    registry = build_registry(
        ["end_call", "transfer_call", "appointments"],
        "tests.tools.sample_user_tools",
        frozenset({"+15550109999"}),
    )
    assert registry.names() == [
        "end_call",
        "transfer_call",
        "book_appointment",
        "move_appointment",
        "cancel_appointment",
        "list_appointments",
        "lookup_order",
    ]
    transfer = registry.get("transfer_call")
    assert transfer is not None and "+15550109999" in transfer.description


def test_empty_selection() -> None:
    assert build_registry([], None).names() == []


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(ToolLoadError) as info:
        build_registry(["end_call", "teleport"], None)
    message = str(info.value)
    assert "'teleport'" in message
    assert "appointments, end_call, transfer_call" in message


def test_bad_module() -> None:
    with pytest.raises(ToolLoadError, match="cannot import"):
        build_registry([], "tests.tools.no_such_module")
    with pytest.raises(ToolLoadError, match="defines no @tool"):
        build_registry([], "tests.tools.fakes")


def test_tools_package_never_imports_app() -> None:
    code = (
        "import sys, tools, tools.loader, tools.examples.appointments; "
        "assert not any(m == 'app' or m.startswith('app.') for m in sys.modules), 'app imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
