"""The tree's import rules, checked by importing in a fresh interpreter.

- The production server (`app.server`) pulls in no developer tooling or fake: nothing under
  `app.dev` (demo, bench, simulate, the fake Live server, fake Twilio, the simulated caller).
- `telephony` is pure protocol and codec code: no asyncio, sockets, HTTP clients or CLIs.
- `telephony` and `tools` never import `app`.

Each check runs in a subprocess so that modules other tests imported do not hide a leak.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import telephony

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = {"asyncio", "websockets", "httpx", "starlette", "uvicorn", "redis"}


def _modules_after_import(*modules: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(out.stdout))


def _telephony_modules() -> list[str]:
    return sorted(f"telephony.{info.name}" for info in pkgutil.iter_modules(telephony.__path__))


def test_production_server_imports_no_tooling_or_fakes() -> None:
    loaded = _modules_after_import("app.server")
    assert "app.server" in loaded and "app.call.bridge" in loaded  # the check ran
    leaked = sorted(m for m in loaded if m == "app.dev" or m.startswith("app.dev."))
    assert leaked == [], f"app.server imports tooling/fakes: {leaked}"


def test_telephony_modules_exist() -> None:
    # Guards the parametrised test below against passing over an empty list.
    assert {"telephony.messages", "telephony.mulaw", "telephony.resample"} <= set(
        _telephony_modules()
    )


def _direct_imports(module: str) -> set[str]:
    """Top-level names a module's own source imports (at any depth in the file)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", _telephony_modules())
def test_telephony_is_pure(module: str) -> None:
    # What the module's own code imports: no I/O, no CLI, no app.
    own = _direct_imports(module) & {*IO_MODULES, "argparse", "socket", "ssl", "app"}
    assert own == set(), f"{module} imports {sorted(own)}"
    # And nothing it pulls in brings an event loop, sockets library or the app along
    # (scipy itself loads argparse/socket, so those are checked on our source only).
    loaded = _modules_after_import(module)
    assert module in loaded
    bad = sorted(m for m in loaded if m.split(".")[0] in {*IO_MODULES, "app"})
    assert bad == [], f"{module} loads {bad}"


def test_tools_never_import_app() -> None:
    loaded = _modules_after_import("tools", "tools.registry", "tools.dispatch", "tools.builtin")
    assert "tools.dispatch" in loaded
    assert sorted(m for m in loaded if m == "app" or m.startswith("app.")) == []
