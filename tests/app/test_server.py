"""The application's lifespan: fails fast when it cannot record, never hides a failed close."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from app.call.state_memory import MemoryStateStore
from app.errors import RecordingError
from app.logs import suppress_logged
from app.server import build_services, create_app
from app.services import Services
from app.settings import load_settings
from tests.app.call.bridge_fakes import ScriptedConnector


def services_for(recordings_dir: Path) -> Services:
    settings = load_settings(
        env_file=None, twilio_auth_token="t" * 32, recordings_dir=recordings_dir
    )
    return build_services(settings, connector=ScriptedConnector())


def test_a_server_that_cannot_record_does_not_start(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "recordings"
    not_a_dir.write_text("a file where the recordings directory should be")
    app = create_app(services_for(not_a_dir))
    expected = r"RECORDINGS_DIR .*recordings is not usable"
    with pytest.raises(RecordingError, match=expected), TestClient(app):
        pass


class StoreThatFailsToClose(MemoryStateStore):
    async def aclose(self) -> None:
        raise ConnectionError("state backend went away")


def test_a_failed_close_at_shutdown_is_logged_not_hidden(tmp_path: Path) -> None:
    services = services_for(tmp_path)
    services.state_store = StoreThatFailsToClose()
    with capture_logs() as logs, TestClient(create_app(services)):
        pass
    [failed] = [e for e in logs if e["event"] == "server.shutdown_failed"]
    assert failed["log_level"] == "warning"
    assert failed["step"] == "state_store"
    assert failed["error_type"] == "ConnectionError"
    assert failed["error"] == "state backend went away"


def test_suppress_logged_logs_and_suppresses_exceptions_only() -> None:
    log = _Log()
    with suppress_logged(log, "x.failed", step="s"):
        raise ValueError("v" * 500)
    fields = {"error_type": "ValueError", "error": "v" * 200, "step": "s"}
    assert log.events == [("x.failed", fields)]
    with pytest.raises(KeyboardInterrupt), suppress_logged(log, "x.failed"):
        raise KeyboardInterrupt


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))
