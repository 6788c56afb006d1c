"""Finished calls in object storage: a real S3-compatible server (moto) started by the test.

The recorder still writes into the local spool during the call; the finished call is
uploaded, the spool emptied, and any instance's admin API serves it. A failed upload
keeps the files and is counted; they are uploaded later (the next sweep or start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from app.dev.local_server import free_port, serving
from app.errors import CallStoreError
from app.recording import CallRecorder, repair_recordings
from app.recording.object_store import ObjectCallStore, StoreOptions, open_object_store
from app.recording.store import RemoteAudio
from app.recording.wavfile import wav_header
from app.recording.writer import RecordingResult
from app.server import build_services, create_app
from app.services import Services
from app.settings import load_settings
from tests.app.call.bridge_fakes import ScriptedConnector
from tests.ops.process import eventually
from tests.support.moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server

ADMIN = "object-store-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def spooled(spool: Path, sid: str) -> list[str]:
    return sorted(p.name for p in spool.glob(f"{sid}.*"))


async def stored(server: S3Server, bucket: str, sid: str) -> None:
    """Wait until the call's record and WAV are in the bucket."""
    expected = [f"calls/{sid}.json", f"calls/{sid}.wav"]

    async def done() -> bool:
        return await asyncio.to_thread(server.keys, bucket) == expected

    await eventually(done, 20)


def options(server: S3Server) -> StoreOptions:
    return StoreOptions(
        s3_endpoint_url=server.endpoint,
        s3_region=REGION,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        request_timeout_s=5.0,
        max_retries=0,
    )


def call_store(server: S3Server, bucket: str, spool: Path, **kw: object) -> ObjectCallStore:
    store, prefix = open_object_store(f"s3://{bucket}/calls", options(server))
    return ObjectCallStore(store, prefix, spool, backoff=(0.05, 0.05, 0.05), **kw)  # type: ignore[arg-type]


async def record_call(spool: Path, sid: str, seconds: float = 1.0) -> bytes:
    """A real recording of a short call; the WAV's bytes."""
    return (await record_call_result(spool, sid, seconds))[0]


async def record_call_result(
    spool: Path, sid: str, seconds: float = 1.0
) -> tuple[bytes, RecordingResult]:
    recorder = CallRecorder(spool, sid, meta={"from": "+15550001"}, flush_interval=0.005)
    tone = (np.sin(np.arange(int(8000 * seconds)) * 0.2) * 8000).astype(np.int16)
    recorder.caller_audio(0, tone)
    recorder.transcript("caller", "hello there", 0)
    recorder.advance(tone.size)
    result = await recorder.aclose("caller_hangup")
    assert result.error is None and result.record_path is not None
    return (spool / f"{sid}.wav").read_bytes(), result


async def test_a_finished_call_is_uploaded_and_the_spool_emptied(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    store = call_store(s3_server, s3_bucket, tmp_path, registry=registry)
    sid = new_sid()
    wav = await record_call(tmp_path, sid)
    assert await store.upload_soon(sid)
    assert s3_server.keys(s3_bucket) == [f"calls/{sid}.json", f"calls/{sid}.wav"]
    assert not spooled(tmp_path, sid)  # stored, so the local copies are gone
    assert registry.get_sample_value("voicebot_recording_uploads_total", {"result": "ok"}) == 1

    record = await store.get_record(sid)
    assert record is not None and record["call_sid"] == sid
    assert record["transcript"][0]["text"] == "hello there"  # type: ignore[index]
    [listed] = [r async for r in store.records()]
    assert listed == record
    audio = await store.audio(sid, ".wav")
    assert isinstance(audio, RemoteAudio) and audio.size == len(wav)
    assert await audio.read_range(0, 44) == wav[:44]
    assert b"".join([c async for c in audio.stream()]) == wav
    assert await store.audio(sid, ".mp3") is None
    assert await store.audio(new_sid(), ".wav") is None


async def test_retention_deletes_old_calls_from_the_bucket(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = call_store(s3_server, s3_bucket, tmp_path)
    sid = new_sid()
    await record_call(tmp_path, sid)
    assert await store.upload_soon(sid)
    assert await store.prune(30) == 0  # just stored: kept
    later = datetime.now(UTC) + timedelta(days=31)
    assert await store.prune(30, now=later) == 1
    assert s3_server.keys(s3_bucket) == []
    assert await store.get_record(sid) is None


async def test_a_record_rewritten_after_the_call_is_uploaded_again(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Post-call analysis writes into the record after the call: the spool keeps it until
    then, and the bucket gets the final version."""
    store = call_store(s3_server, s3_bucket, tmp_path)
    sid = new_sid()
    await record_call(tmp_path, sid)
    analysis_done = asyncio.get_running_loop().create_future()
    upload = store.upload_soon(sid, after=analysis_done)
    await stored(s3_server, s3_bucket, sid)  # uploaded at once: any instance can list it
    assert spooled(tmp_path, sid) == [f"{sid}.json", f"{sid}.wav"]  # kept for the analysis
    path = tmp_path / f"{sid}.json"
    record = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps(record | {"analysis": {"status": "ok"}}))
    analysis_done.set_result(None)
    assert await upload
    assert not spooled(tmp_path, sid)
    assert (await store.get_record(sid) or {})["analysis"] == {"status": "ok"}


async def test_a_failed_upload_keeps_the_files_and_is_retried_later(
    s3_server: S3Server, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    bucket = f"voicebot-test-{uuid.uuid4().hex[:12]}"  # not created yet: every PUT fails
    store = call_store(s3_server, bucket, tmp_path, registry=registry)
    sid = new_sid()
    wav = await record_call(tmp_path, sid)
    assert not await store.upload_soon(sid)
    assert spooled(tmp_path, sid) == [f"{sid}.json", f"{sid}.wav"]
    assert registry.get_sample_value("voicebot_recording_uploads_total", {"result": "failed"}) == 1
    # The call is not lost from view either: this instance serves it from its spool.
    assert (await store.get_record(sid) or {}).get("call_sid") == sid
    assert await store.audio(sid, ".wav") == tmp_path / f"{sid}.wav"
    with pytest.raises(CallStoreError):  # listing needs the bucket: an outage says so
        [r async for r in store.records()]

    s3_server.create_bucket(bucket)  # the store is back
    assert [r["call_sid"] async for r in store.records()] == [sid]  # from the spool
    assert await store.upload_spool() == 1
    assert s3_server.keys(bucket) == [f"calls/{sid}.json", f"calls/{sid}.wav"]
    assert not spooled(tmp_path, sid)
    audio = await store.audio(sid, ".wav")
    assert isinstance(audio, RemoteAudio)
    assert await audio.read_range(0, audio.size) == wav


async def test_a_crashed_call_is_repaired_then_uploaded_at_start(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """A WAV with no record (the instance was killed mid-call) gets a record and is stored."""
    sid = new_sid()
    pcm = np.zeros(8000 * 2, dtype=np.int16).tobytes()  # 0.5 s of stereo silence
    (tmp_path / f"{sid}.wav").write_bytes(wav_header(0, channels=2, sample_rate=8000) + pcm)
    assert len(repair_recordings(tmp_path)) == 2
    store = call_store(s3_server, s3_bucket, tmp_path, sweep_every_s=3600)
    await store.start()
    try:
        await stored(s3_server, s3_bucket, sid)
    finally:
        await store.aclose()
    record = await store.get_record(sid)
    assert record is not None and record["end_reason"] == "server_crashed"


@pytest.fixture
async def two_instances(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> AsyncIterator[tuple[str, str, Services]]:
    """Two apps on one bucket, each with its own spool: (url A, url B, A's services)."""
    async with contextlib.AsyncExitStack() as stack:
        urls, both = [], []
        for name in ("a", "b"):
            settings = load_settings(
                env_file=None,
                allow_unsigned=True,
                admin_token=ADMIN,
                recordings_dir=tmp_path / name,
                tools="end_call",
                **s3_server.settings(s3_bucket),
            )
            services = build_services(settings, connector=ScriptedConnector())
            both.append(services)
            urls.append(await stack.enter_async_context(serving(create_app(services), free_port())))
        yield urls[0], urls[1], both[0]


async def test_any_instance_serves_any_call_from_the_bucket(
    two_instances: tuple[str, str, Services], s3_server: S3Server, s3_bucket: str
) -> None:
    _, url_b, a = two_instances
    sid = new_sid()
    wav, result = await record_call_result(a.settings.recordings_dir, sid)
    a.call_store.call_finished(result.call_sid)  # what the end of a call on A does
    # A uploads it in the background; B has never seen it.
    await stored(s3_server, s3_bucket, sid)
    async with httpx.AsyncClient(trust_env=False, headers=AUTH) as http:
        listed = (await http.get(f"{url_b}/calls")).json()
        assert [c["call_sid"] for c in listed["calls"]] == [sid]
        assert (await http.get(f"{url_b}/calls/{sid}")).json()["end_reason"] == "caller_hangup"
        whole = await http.get(f"{url_b}/calls/{sid}/recording")
        assert whole.status_code == 200 and whole.content == wav
        assert whole.headers["content-type"] == "audio/wav"
        part = await http.get(f"{url_b}/calls/{sid}/recording", headers={"Range": "bytes=44-99"})
        assert part.status_code == 206 and part.content == wav[44:100]
        assert part.headers["content-range"] == f"bytes 44-99/{len(wav)}"
        tail = await http.get(f"{url_b}/calls/{sid}/recording", headers={"Range": "bytes=-10"})
        assert tail.content == wav[-10:]
        beyond = await http.get(
            f"{url_b}/calls/{sid}/recording", headers={"Range": f"bytes={len(wav)}-"}
        )
        assert beyond.status_code == 416
        assert (await http.get(f"{url_b}/calls/{new_sid()}/recording")).status_code == 404


async def test_object_storage_down_gives_503_not_a_crash(
    s3_server: S3Server, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = load_settings(
        env_file=None,
        allow_unsigned=True,
        admin_token=ADMIN,
        recordings_dir=tmp_path,
        tools="end_call",
        **(s3_server.settings("bucket") | {"recordings_s3_endpoint_url": nowhere}),
    )
    services = build_services(settings, connector=ScriptedConnector())
    async with serving(create_app(services), free_port()) as url:
        async with httpx.AsyncClient(trust_env=False, headers=AUTH, timeout=60) as http:
            response = await http.get(f"{url}/calls")
        assert response.status_code == 503
        assert response.json() == {"error": "object storage did not answer (list calls)"}
    assert "moto-secret-key" not in orjson.dumps(response.json()).decode()
