"""Synthetic tone clips of the fake Live server (`tone:HZ:SECONDS[:DBFS]`)."""

from __future__ import annotations

import numpy as np
import pytest
from google import genai
from google.genai import types
from pydantic import ValidationError

from app.dev.fakes.live import Scenario, clip_duration, clip_text, load_clip
from app.dev.fakes.live.clips import is_clip
from app.dev.fakes.live.tones import DEFAULT_DBFS, Tone, parse_tone, tone_name
from tests.support.fake_live import FAKE_API_KEY, FakeLiveFactory, live_http_options

CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    output_audio_transcription=types.AudioTranscriptionConfig(),
)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(
    ("name", "tone"),
    [
        ("tone:1000:2", Tone(1000, 2.0)),
        ("tone:1000:2.0", Tone(1000, 2.0)),
        ("tone:5000:1.5:-20", Tone(5000, 1.5, -20.0)),
        ("tone:440.5:0.25:-6.5", Tone(440.5, 0.25, -6.5)),
    ],
)
def test_parse_tone(name: str, tone: Tone) -> None:
    assert parse_tone(name) == tone
    assert parse_tone(tone.name) == tone
    assert is_clip(name)


@pytest.mark.parametrize("name", ["tone:", "tone:1000", "tone:x:1", "tone:0:1", "tone:1000:0",
                                  "tone:1000:1:3", "tone:1000:9999"])  # fmt: skip
def test_bad_tone_names(name: str) -> None:
    with pytest.raises(ValueError):
        parse_tone(name)
    assert not is_clip(name)
    with pytest.raises(ValidationError, match="tone:HZ:SECONDS"):
        Scenario.from_dict({"greeting": {"clip": name}})


def test_clips_are_not_tones() -> None:
    assert parse_tone("greeting") is None
    assert is_clip("greeting") and not is_clip("no_such_clip")


def test_tone_name_round_trip() -> None:
    assert tone_name(1000, 2) == "tone:1000:2"
    assert tone_name(1000, 2, DEFAULT_DBFS) == "tone:1000:2"
    assert tone_name(5000, 1.5, -20) == "tone:5000:1.5:-20"


def test_tone_samples() -> None:
    pcm = load_clip("tone:1000:2", 24_000)
    assert pcm.dtype == np.int16 and pcm.size == 48_000
    assert not pcm.flags.writeable
    steady = pcm[240:-240].astype(np.float64)  # past the 10 ms ramps
    amplitude = 32767 * 10 ** (DEFAULT_DBFS / 20)
    assert abs(np.sqrt(np.mean(steady**2)) - amplitude / np.sqrt(2)) < 2
    assert abs(peak_hz(pcm, 24_000) - 1000) < 1
    # Ramps: no click at either end.
    assert abs(int(pcm[0])) <= 1 and abs(int(pcm[-1])) <= 50
    assert clip_duration("tone:1000:2") == 2.0
    assert clip_text("tone:1000:2") == ""
    assert load_clip("tone:1000:2", 8000).size == 16_000


def test_tone_above_nyquist_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be sampled"):
        load_clip("tone:5000:1", 8000)


def test_existing_clips_still_load() -> None:
    assert clip_text("greeting").startswith("Hello")
    assert load_clip("greeting", 24_000).size > 0


async def test_fake_server_plays_a_tone(fake_live_factory: FakeLiveFactory) -> None:
    server = await fake_live_factory(
        {"greeting": {"clip": "tone:1500:0.5:-6"}, "audio": {"speed": 0}}
    )
    client = genai.Client(api_key=FAKE_API_KEY, http_options=live_http_options(server))
    audio = bytearray()
    async with client.aio.live.connect(model="gemini-live-test", config=CONFIG) as session:
        await session.send_realtime_input(text="Greet the caller.")
        async for message in session.receive():  # ends at turnComplete
            content = message.server_content
            if content and content.model_turn:
                for part in content.model_turn.parts or []:
                    if part.inline_data and part.inline_data.data:
                        audio += part.inline_data.data
            assert not (content and content.output_transcription), "a tone has no words"
    pcm = np.frombuffer(bytes(audio), "<i2")
    assert bytes(audio) == load_clip("tone:1500:0.5:-6", 24_000).tobytes()
    assert abs(peak_hz(pcm, 24_000) - 1500) < 3
