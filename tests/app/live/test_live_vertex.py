"""Vertex AI through both Live clients, offline: the fake Live server on the Vertex path,
real google-auth minting and refreshing tokens from a generated service-account key at a
local fake OAuth endpoint (`app.dev.fakes.oauth`). Nothing of google-genai is mocked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.dev.fakes.live import FakeLiveServer, Scenario
from app.dev.fakes.oauth import FakeTokenServer, service_account_key
from app.errors import ConfigError, LiveSetupError
from app.live.auth import CredentialTokens, load_credentials
from app.live.direct import DirectConnector, model_name, setup_message, vertex_url
from app.live.events import (
    AgentAudio,
    LiveConnector,
    LiveEvent,
    ToolCall,
    ToolResponse,
    TurnComplete,
    Usage,
)
from app.live.link import LiveLink, Reconnected
from app.live.options import LiveOptions, VertexTarget
from app.live.sdk import GeminiConnector
from app.server import gemini_connector
from app.settings import load_settings
from tests.app.live.conftest import Client
from tests.app.live.test_live_direct import camel_keys, collect, opened, seen
from tests.support.fake_live import FakeLiveFactory

PROJECT, LOCATION, MODEL = "voicebot-test", "europe-west4", "gemini-live-test"


class Vertex:
    """A token endpoint with a trusted service-account key written to a key file."""

    def __init__(self, tmp: Path, lifetime_s: float) -> None:
        self.oauth = FakeTokenServer(lifetime_s)
        self.oauth.start()
        info, public_pem = service_account_key(self.oauth.token_uri, PROJECT)
        self.oauth.trust(info["private_key_id"], public_pem)
        self.key_file = tmp / "sa.json"
        self.key_file.write_text(json.dumps(info))

    def options(self, server: FakeLiveServer, **overrides: Any) -> LiveOptions:
        credentials, _ = load_credentials(self.key_file)
        values: dict[str, Any] = {
            "api_key": "",
            "model": MODEL,
            "voice": "Puck",
            "instructions": "You are a test agent.",
            "api_version": "v1beta1",
            "base_url": server.base_url,
            "ssl_context": server.client_ssl_context(),
            "connect_timeout": 10.0,
            "vertex": VertexTarget(PROJECT, LOCATION, CredentialTokens(credentials), credentials),
        }
        values.update(overrides)
        return LiveOptions(**values)


@pytest.fixture
def vertex_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Vertex] = []

    def make(lifetime_s: float = 3600.0) -> Vertex:
        v = Vertex(tmp_path, lifetime_s)
        made.append(v)
        return v

    yield make
    for v in made:
        v.oauth.stop()


@pytest.fixture
async def vertex_live(
    fake_live_factory: FakeLiveFactory, vertex_factory: Any
) -> AsyncIterator[tuple[FakeLiveServer, Vertex]]:
    v = vertex_factory()
    server = FakeLiveServer(token_check=v.oauth.is_valid)
    await server.start()
    try:
        yield server, v
    finally:
        await server.stop()


def test_vertex_url_and_model_as_google_genai_builds_them() -> None:
    tail = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
    assert vertex_url(None, "us-central1", "v1beta1") == (
        "wss://us-central1-aiplatform.googleapis.com" + tail
    )
    assert vertex_url(None, "global", "v1beta1") == "wss://aiplatform.googleapis.com" + tail
    assert vertex_url(None, "eu", "v1beta1") == "wss://aiplatform.eu.rep.googleapis.com" + tail
    assert (
        vertex_url("https://127.0.0.1:9/", "us-central1", "v1beta1") == "wss://127.0.0.1:9" + tail
    )
    target = VertexTarget("p", "l", tokens=None)  # type: ignore[arg-type]
    assert model_name("m", target) == "projects/p/locations/l/publishers/google/models/m"
    assert model_name("models/m", target) == "projects/p/locations/l/publishers/google/models/m"
    assert model_name("projects/x/locations/y/publishers/google/models/m", target).startswith(
        "projects/x/"
    )


@pytest.mark.parametrize("resume", [False, True])
async def test_vertex_setup_url_and_headers_match_google_genai(
    vertex_live: tuple[FakeLiveServer, Vertex], resume: bool
) -> None:
    server, v = vertex_live
    options = v.options(server)
    handle = None
    if resume:
        async with opened(DirectConnector(options)) as session:
            await session.send_text("hi")
            events = await collect(session, seen(Usage))
        handle = server.sessions[-1].handles_sent[-1]
        assert any(isinstance(e, Usage) and e.response_tokens > 0 for e in events)
    for connector in (GeminiConnector(options), DirectConnector(options)):
        async with opened(connector, handle) as session:
            assert session.info.session_id
    sdk, direct = server.sessions[-2:]
    assert sdk.vertex and direct.vertex
    assert (
        direct.path
        == sdk.path
        == ("/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent")
    )
    assert sdk.setup is not None and direct.setup is not None
    assert camel_keys(direct.setup) == camel_keys(sdk.setup)
    assert (
        direct.setup["model"]
        == f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}"
    )
    assert direct.setup == setup_message(options, handle)["setup"]
    assert sdk.bearer_fingerprint and direct.bearer_fingerprint
    assert not sdk.api_key_present and not direct.api_key_present
    # The same Google headers (websockets adds the WebSocket ones to both).
    google = {"authorization", "x-goog-api-client", "x-goog-user-project", "x-goog-api-key"}
    assert sdk.header_names & google == direct.header_names & google
    assert (sdk.resumed, direct.resumed) == (resume, resume)


async def test_vertex_usage_reads_candidates_token_count(
    vertex_live: tuple[FakeLiveServer, Vertex], client: Client
) -> None:
    server, v = vertex_live
    async with opened(client(v.options(server))) as session:
        await session.send_text("hi")
        events = await collect(session, seen(Usage))
    (usage,) = [e for e in events if isinstance(e, Usage)]
    assert usage.response_tokens > 0 and usage.response_by_modality == {
        "AUDIO": usage.response_tokens
    }
    assert any(isinstance(e, AgentAudio) for e in events)


async def test_no_or_bad_token_is_refused(
    fake_live_factory: FakeLiveFactory, vertex_factory: Any, client: Client
) -> None:
    v = vertex_factory()
    server = FakeLiveServer(token_check=lambda token: False)
    await server.start()
    try:
        with pytest.raises(LiveSetupError, match="401"):
            await client(v.options(server)).connect()
    finally:
        await server.stop()
    assert server.rejected_tokens == 1 and not server.sessions


@pytest.mark.parametrize(("lifetime_s", "tokens"), [(3600.0, 1), (60.0, 2)])
async def test_tokens_are_reused_then_refreshed_when_near_expiry(
    fake_live_factory: FakeLiveFactory,
    vertex_factory: Any,
    client: Client,
    lifetime_s: float,
    tokens: int,
) -> None:
    """google-auth counts a token as expired a few minutes (3m45s) before its expiry, so a
    60 s token is refreshed on every connect and a 1 h token is reused."""
    v = vertex_factory(lifetime_s)
    server = FakeLiveServer(token_check=v.oauth.is_valid)
    await server.start()
    try:
        connector = client(v.options(server))
        for _ in range(2):
            async with opened(connector) as session:
                assert session.info.session_id
    finally:
        await server.stop()
    assert v.oauth.issued == tokens
    assert len({s.bearer_fingerprint for s in server.sessions}) == tokens


async def test_token_refreshed_across_a_reconnect(vertex_factory: Any, client: Client) -> None:
    """A goAway reconnect through the Live link presents a fresh token (short lifetime)."""
    v = vertex_factory(60.0)
    server = FakeLiveServer(
        token_check=v.oauth.is_valid,
        scenario=None,
    )
    server.scenario = server.scenario.model_copy(
        update={
            "faults": server.scenario.faults.model_copy(
                update={"go_away_after_turns": 1, "go_away_time_left": 0.2}
            ),
        }
    )
    await server.start()
    link = LiveLink(client(v.options(server)))
    try:
        await link.open()
        await link.send_text("hi")
        async with asyncio.timeout(15):
            async for event in link.events():
                if isinstance(event, Reconnected):
                    break
    finally:
        await link.close()
        await server.stop()
    first, second = server.sessions[:2]
    assert second.resumed and second.resumption_handle
    assert first.bearer_fingerprint != second.bearer_fingerprint
    assert v.oauth.issued == 2


# --- settings ----------------------------------------------------------------------------


def test_vertex_settings_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"GOOGLE_CLOUD_PROJECT.*GOOGLE_CLOUD_LOCATION"):
        load_settings(env_file=None, google_genai_use_vertexai=True)
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_LOCATION") as info:
        load_settings(env_file=None, google_genai_use_vertexai=True, google_cloud_project="p")
    assert "GOOGLE_CLOUD_PROJECT" not in str(info.value)
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS: no such file"):
        load_settings(
            env_file=None,
            google_genai_use_vertexai=True,
            google_cloud_project="p",
            google_cloud_location="us-central1",
            google_application_credentials=tmp_path / "missing.json",
        )


def test_vertex_settings_from_the_sdk_variables(
    monkeypatch: pytest.MonkeyPatch, vertex_factory: Any
) -> None:
    v = vertex_factory()
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(v.key_file))
    settings = load_settings(env_file=None, tools="end_call")
    assert settings.google_genai_use_vertexai and settings.google_cloud_project == PROJECT
    for kind, cls in (("direct", DirectConnector), ("sdk", GeminiConnector)):
        connector: LiveConnector = gemini_connector(
            settings.model_copy(update={"live_client": kind}), []
        )
        assert isinstance(connector, cls)


def test_vertex_without_credentials_is_a_clear_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.json"
    bad.write_text("{}")
    settings = load_settings(
        env_file=None,
        google_genai_use_vertexai=True,
        google_cloud_project="p",
        google_cloud_location="us-central1",
        google_application_credentials=bad,
    )
    with pytest.raises(ConfigError, match="Vertex AI needs Google Cloud credentials"):
        gemini_connector(settings, [])


async def test_tool_call_without_id_is_answered_by_name_on_vertex(
    vertex_factory: Any, client: Client
) -> None:
    """Vertex AI may send a function call without an id: both clients answer it by name
    (google-genai allows an id-less response on Vertex only)."""
    v = vertex_factory()
    scenario = Scenario.from_dict(
        {
            "audio": {"speed": 0},
            "greeting": {
                "clip": "greeting",
                "tool_calls": [{"name": "lookup", "args": {"q": 1}, "omit_id": True}],
            },
        }
    )
    server = FakeLiveServer(scenario, token_check=v.oauth.is_valid)
    await server.start()
    try:
        async with opened(client(v.options(server))) as session:

            async def answer(event: LiveEvent) -> None:
                if isinstance(event, ToolCall):
                    await session.send_tool_responses(
                        [ToolResponse(event.call_id, event.name, {"found": True})]
                    )

            await session.send_text("hi")
            events = await collect(session, seen(TurnComplete), on_event=answer)
    finally:
        await server.stop()
    assert [e for e in events if isinstance(e, ToolCall)] == [ToolCall("", "lookup", {"q": 1})]
    (response,) = server.sessions[0].tool_responses
    assert "id" not in response and response["name"] == "lookup"
    assert [c.outcome for c in server.sessions[0].tool_checks] == ["answered"]
