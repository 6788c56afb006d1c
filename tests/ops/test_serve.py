"""`voicebot serve` as a process: refuses unsafe or invalid settings, health and readiness."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from app.dev.local_server import free_port
from tests.ops.process import ServeProcess, run_voicebot

BASE = {"GEMINI_API_KEY": "not-used-by-these-tests"}


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("voicebot: configuration error: "), stderr
    return lines[0]


def test_refuses_to_start_without_twilio_auth_token(tmp_path: Path) -> None:
    result = run_voicebot(tmp_path, BASE, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "TWILIO_AUTH_TOKEN is not set" in line
    assert "ALLOW_UNSIGNED=true" in line and "--allow-unsigned" in line


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "abc"), ("DRAIN_TIMEOUT", "-1"), ("PUBLIC_BASE_URL", "voice.example.com")],
)
def test_an_invalid_setting_fails_with_one_message_naming_it(
    tmp_path: Path, name: str, value: str
) -> None:
    settings = BASE | {"TWILIO_AUTH_TOKEN": "an-auth-token", name: value}
    result = run_voicebot(tmp_path, settings, "serve")
    assert result.returncode == 2
    assert f"{name}: " in _one_error_line(result.stderr)
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_allow_unsigned_lets_it_start_without_a_token(tmp_path: Path, how: str) -> None:
    settings = BASE | ({"ALLOW_UNSIGNED": "true"} if how == "env" else {})
    args = ("--allow-unsigned",) if how == "flag" else ()
    async with ServeProcess(tmp_path, settings, *args) as server:
        server.send_signal(signal.SIGTERM)
        assert await server.wait_exit(30) == 0, server.output()


@pytest.mark.parametrize("redis", ["none", "reachable", "dead"])
async def test_healthz_and_readyz(
    tmp_path: Path, redis: str, request: pytest.FixtureRequest
) -> None:
    settings = BASE | {"TWILIO_AUTH_TOKEN": "an-auth-token"}
    if redis == "reachable":
        settings["REDIS_URL"] = request.getfixturevalue("redis_url")
    elif redis == "dead":
        settings["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    async with ServeProcess(tmp_path, settings) as server:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
            health = await client.get("/healthz")
            ready = await client.get("/readyz", timeout=10)
        server.send_signal(signal.SIGTERM)
        assert await server.wait_exit(30) == 0, server.output()
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    if redis == "dead":
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "draining": "no", "redis": "unreachable"}
    else:
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json().get("redis") == ("ok" if redis == "reachable" else None)


def test_a_bad_agents_file_stops_start_up_naming_the_agent_and_field(tmp_path: Path) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.sales]\ndefault = true\nvoice = "Bob"\n')
    settings = BASE | {"TWILIO_AUTH_TOKEN": "an-auth-token", "AGENTS_FILE": str(agents)}
    result = run_voicebot(tmp_path, settings, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "agent 'sales', field 'voice': unknown voice 'Bob'" in line
    assert "Traceback" not in result.stderr + result.stdout
