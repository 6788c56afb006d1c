"""A whole call on Vertex AI, configured the way a user does it (the SDK's variables and a
service-account key file), through each Live client: the server loads the credentials,
real google-auth mints a token at the fake OAuth endpoint, the fake Live server is reached
on the Vertex path with it, the caller is answered, and the call record has the usage
Vertex reports (candidatesTokenCount)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.dev.fakes.oauth import FakeTokenServer, service_account_key
from app.dev.fakes.twilio_caller import simulate_call
from tests.e2e.conftest import StackFactory, call_options, call_record


@pytest.fixture
def key_file(tmp_path: Path) -> Iterator[tuple[Path, FakeTokenServer]]:
    tokens = FakeTokenServer(lifetime_s=3600)
    tokens.start()
    info, public = service_account_key(tokens.token_uri, "voicebot-e2e")
    tokens.trust(info["private_key_id"], public)
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    yield path, tokens
    tokens.stop()


@pytest.mark.parametrize("live_client", ["direct", "sdk"])
async def test_a_call_on_vertex_ai(
    stack: StackFactory, key_file: tuple[Path, FakeTokenServer], live_client: str
) -> None:
    path, tokens = key_file
    s = await stack(
        {"greeting": {"clip": "tone:600:0.6"}, "audio": {"speed": 0}},
        gemini_api_key=None,
        google_genai_use_vertexai=True,
        google_cloud_project="voicebot-e2e",
        google_cloud_location="europe-west4",
        google_application_credentials=path,
        live_client=live_client,
    )
    report = await simulate_call(call_options(s, np.zeros(8000, np.int16), listen_seconds=1.0))
    record = await call_record(s, report.call_sid)
    assert report.error is None and report.first_audio_ms is not None  # greeted
    assert s.fake is not None
    sessions = [r for r in s.fake.sessions if r.setup is not None]
    assert len(sessions) >= 1  # the call's (and any pre-warmed one)
    prefix = "projects/voicebot-e2e/locations/europe-west4/publishers/google/models/"
    model = prefix + s.settings.gemini_model
    for session in sessions:
        assert session.vertex and session.bearer_fingerprint and not session.api_key_present
        assert session.model == model
    assert tokens.issued >= 1
    usage = record["usage"]
    assert usage["response_tokens"] > 0 and usage["response_tokens_by_modality.AUDIO"] > 0
