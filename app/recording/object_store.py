"""Calls kept in object storage (S3, S3-compatible, Google Cloud Storage) through obstore.

`RECORDINGS_URL=s3://bucket/prefix` or `gs://bucket/prefix`. During a call nothing
changes: the recorder writes its WAV crash-safe into RECORDINGS_DIR, which becomes a
spool. When the call ends its files are uploaded (`{prefix}/{sid}.wav`, `.mp3`, then
`.json` last, so a record in the bucket means the audio is there too), with retries; once
all are stored, the local copies are deleted. An upload that keeps failing leaves the
files in the spool, logs `recording.upload_failed` and counts it; the spool is swept
again at start-up (after the crash repair, so a killed instance's calls are uploaded by
its next start) and every UPLOAD_SWEEP_S. Nothing is deleted before it is stored.

Reads (the admin API, so the console) go to the bucket, so any instance answers for
any call; calls still waiting in this instance's spool are served from there too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import structlog
from obstore import delete_async, get_async, get_range_async, head_async, put_async
from obstore import list as list_objects
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.store import GCSStore, S3Store
from prometheus_client import CollectorRegistry, Counter

from app.errors import CallStoreError
from app.recording.files import is_call_sid
from app.recording.record import Json, read_json
from app.recording.store import AUDIO_SUFFIXES, LocalCallStore, RemoteAudio

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ClientConfig, GCSConfig, ObjectStore, RetryConfig, S3Config

log = structlog.get_logger("app.recording")

UPLOAD_ATTEMPTS = 4
UPLOAD_BACKOFF_S = (0.5, 2.0, 8.0)  # between attempts (obstore also retries each request)
UPLOAD_SWEEP_S = 300.0
CLOSE_WAIT_S = 30.0  # at shutdown, how long uploads in flight may take
READ_BATCH = 16  # records fetched at once while listing
UPLOAD_ORDER = (".wav", ".mp3", ".json")  # the record last: it says the call is complete


class UploadMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.uploads = Counter(
            "recording_uploads",
            "Finished calls uploaded to object storage, by result (ok / failed).",
            ["result"],
            namespace="voicebot",
            registry=registry if registry is not None else CollectorRegistry(),
        )
        for result in ("ok", "failed"):
            self.uploads.labels(result)


class ObjectCallStore:
    """A `CallStore` over an obstore `ObjectStore`, with RECORDINGS_DIR as the spool."""

    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        spool: Path,
        *,
        registry: CollectorRegistry | None = None,
        backoff: Sequence[float] = UPLOAD_BACKOFF_S,
        sweep_every_s: float = UPLOAD_SWEEP_S,
    ) -> None:
        self._store = store
        self._prefix = prefix.strip("/")
        self.spool = LocalCallStore(spool)
        self.metrics = UploadMetrics(registry)
        self._backoff = tuple(backoff)
        self._sweep_every = sweep_every_s
        self._uploading: dict[str, asyncio.Task[bool]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def key(self, call_sid: str, suffix: str) -> str:
        name = f"{call_sid}{suffix}"
        return f"{self._prefix}/{name}" if self._prefix else name

    # --- writing -----------------------------------------------------------------
    def call_finished(self, call_sid: str, after: Awaitable[object] | None = None) -> None:
        self.upload_soon(call_sid, after)

    def upload_soon(
        self, call_sid: str, after: Awaitable[object] | None = None
    ) -> asyncio.Task[bool]:
        """Upload the call's spooled files in the background (once at a time per call).

        `after`: work that rewrites the record later (post-call analysis); the record is
        uploaded again once it is done, and the spool keeps the files until then.
        """
        task = self._uploading.get(call_sid)
        if task is None or task.done():
            upload = self._upload(call_sid, after)
            task = asyncio.create_task(upload, name=f"upload-{call_sid}")
            self._uploading[call_sid] = task
            task.add_done_callback(lambda t: self._forget(call_sid, t))
        return task

    async def upload_spool(self) -> int:
        """Upload every finished call waiting in the spool; the number now stored."""
        calls = await asyncio.to_thread(self.spool.finished_calls)
        results = await asyncio.gather(*(self.upload_soon(p.stem) for _, p in calls))
        return sum(results)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="recordings-upload-sweep")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        pending = [t for t in self._uploading.values() if not t.done()]
        if pending:
            log.info("recording.uploads_waiting", calls=len(pending))
            await asyncio.wait(pending, timeout=CLOSE_WAIT_S)

    async def _sweep(self) -> None:
        while True:
            try:
                stored = await self.upload_spool()
                if stored:
                    log.info("recording.spool_uploaded", calls=stored)
            except (ObjectStoreError, OSError) as exc:
                log.error("recording.spool_sweep_failed", error=str(exc)[:300])
            await asyncio.sleep(self._sweep_every)

    async def _upload(self, call_sid: str, after: Awaitable[object] | None = None) -> bool:
        files = [p for s in UPLOAD_ORDER if (p := self.spool.path(call_sid, s)) is not None]
        present = await asyncio.to_thread(lambda: [p for p in files if p.is_file()])
        if not present or present[-1].suffix != ".json":
            return False  # not finished (no record yet): the recorder or repair will get to it
        error = await self._put(call_sid, present)
        if after is not None:
            await _settled(after)  # the record is rewritten: nothing may delete it before
            if error is None:
                error = await self._put(call_sid, present[-1:])
        if error is None:
            await asyncio.to_thread(_unlink_all, present)
            self.metrics.uploads.labels("ok").inc()
            log.info("recording.uploaded", call_sid=call_sid, files=[p.name for p in present])
            return True
        self.metrics.uploads.labels("failed").inc()
        log.error("recording.upload_failed", call_sid=call_sid, error=error,
                  kept=[str(p) for p in present])  # fmt: skip
        return False

    async def _put(self, call_sid: str, paths: list[Path]) -> str | None:
        """Store `paths` in order, retrying; None when done, else the last error."""
        error = ""
        for attempt in range(UPLOAD_ATTEMPTS):
            try:
                for path in paths:
                    await put_async(self._store, self.key(call_sid, path.suffix), path)
                return None
            except (ObjectStoreError, OSError) as exc:
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
                log.warning("recording.upload_retry", call_sid=call_sid, attempt=attempt + 1,
                            error=error)  # fmt: skip
                if attempt < len(self._backoff):
                    await asyncio.sleep(self._backoff[attempt])
        return error

    def _forget(self, call_sid: str, task: asyncio.Task[bool]) -> None:
        if self._uploading.get(call_sid) is task:
            del self._uploading[call_sid]

    # --- reading -----------------------------------------------------------------
    async def records(self) -> AsyncIterator[Json]:
        """Records in the bucket and in the spool, newest first (by end time)."""
        with _reading("list calls"):
            metas = [m async for m in self._objects() if m["path"].endswith(".json")]
        spooled = await asyncio.to_thread(self.spool.finished_calls)
        # (when, key or path): the bucket's by upload time, the spool's by write time.
        entries: list[tuple[float, str | Path]] = [
            (m["last_modified"].timestamp(), m["path"]) for m in metas
        ]
        local = {p.stem for _, p in spooled}
        entries = [e for e in entries if _sid(str(e[1])) not in local] + list(spooled)
        entries.sort(key=lambda e: e[0], reverse=True)
        for start in range(0, len(entries), READ_BATCH):
            batch = entries[start : start + READ_BATCH]
            with _reading("read call records"):
                found = await asyncio.gather(*(self._read_entry(where) for _, where in batch))
            for record in found:
                if record is not None:
                    yield record

    async def _read_entry(self, where: str | Path) -> Json | None:
        if isinstance(where, Path):
            return await asyncio.to_thread(read_json, where)
        return await self._read_json(where)

    async def get_record(self, call_sid: str) -> Json | None:
        if not is_call_sid(call_sid):
            return None
        local = await self.spool.get_record(call_sid)
        if local is not None:
            return local
        with _reading("read the call record"):
            return await self._read_json(self.key(call_sid, ".json"))

    async def audio(self, call_sid: str, suffix: str) -> Path | RemoteAudio | None:
        if not is_call_sid(call_sid) or suffix not in AUDIO_SUFFIXES:
            return None
        local = await self.spool.audio(call_sid, suffix)
        if local is not None:
            return local
        key = self.key(call_sid, suffix)
        try:
            with _reading("find the recording"):
                # The record is uploaded last: without it the audio may be half-way.
                await head_async(self._store, self.key(call_sid, ".json"))
                meta = await head_async(self._store, key)
        except FileNotFoundError:
            return None
        store = self._store

        async def read_range(start: int, end: int) -> bytes:
            return bytes(await get_range_async(store, key, start=start, end=end))

        async def stream() -> AsyncIterator[bytes]:
            result = await get_async(store, key)
            async for chunk in result.stream(min_chunk_size=256 * 1024):
                yield bytes(chunk)

        return RemoteAudio(name=f"{call_sid}{suffix}", size=meta["size"], read_range=read_range,
                           stream=stream)  # fmt: skip

    async def prune(self, retention_days: int, *, now: datetime | None = None) -> int:
        """Delete stored calls whose newest object is older than `retention_days`."""
        if retention_days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
        newest: dict[str, datetime] = {}
        keys: dict[str, list[str]] = {}
        async for meta in self._objects():
            sid = _sid(meta["path"])
            if sid is None:
                continue
            keys.setdefault(sid, []).append(meta["path"])
            newest[sid] = max(newest.get(sid, meta["last_modified"]), meta["last_modified"])
        expired = [sid for sid, moment in newest.items() if moment < cutoff]
        for sid in expired:
            # The record first: a half-deleted call then no longer lists as complete.
            record = [k for k in keys[sid] if k.endswith(".json")]
            if record:
                await delete_async(self._store, record)
            await delete_async(self._store, [k for k in keys[sid] if k not in record])
        spooled = await self.spool.prune(
            retention_days, now=None if now is None else now.timestamp()
        )
        return len(expired) + spooled

    async def _objects(self) -> AsyncIterator[ObjectMeta]:
        prefix = f"{self._prefix}/" if self._prefix else None
        async for chunk in list_objects(self._store, prefix, chunk_size=1000):
            for meta in chunk:
                yield meta

    async def _read_json(self, key: str) -> Json | None:
        try:
            data = await (await get_async(self._store, key)).bytes_async()
            document: Any = orjson.loads(bytes(data))
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return document if isinstance(document, dict) else None


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Object storage failures as `CallStoreError` (no URL or credential in the message)."""
    try:
        yield
    except ObjectStoreError as exc:
        log.error("recording.store_read_failed", what=what, error=str(exc)[:300])
        raise CallStoreError(f"object storage did not answer ({what})") from None


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How to reach the bucket; None = obstore's default (its environment, then metadata)."""

    s3_endpoint_url: str | None = None  # S3-compatible stores (MinIO, R2, Ceph, moto)
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    gcs_service_account_file: str | None = None
    request_timeout_s: float = 30.0
    max_retries: int = 3


def parse_store_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket, prefix) of `s3://bucket/prefix` or `gs://bucket/prefix`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("s3", "gs") or not parts.netloc:
        raise ValueError("must be s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]")
    return scheme, parts.netloc, parts.path.strip("/")


def open_object_store(url: str, options: StoreOptions) -> tuple[ObjectStore, str]:
    """The obstore store for RECORDINGS_URL, and the key prefix inside the bucket."""
    scheme, bucket, prefix = parse_store_url(url)
    client: ClientConfig = {
        "timeout": timedelta(seconds=options.request_timeout_s),
        "connect_timeout": timedelta(seconds=min(10.0, options.request_timeout_s)),
    }
    # obstore retries each request itself; ours (UPLOAD_ATTEMPTS) is around a whole call.
    retry: RetryConfig = {
        "max_retries": options.max_retries,
        "retry_timeout": timedelta(seconds=options.request_timeout_s * 2),
    }
    if scheme == "gs":
        gcs: GCSConfig = {}
        if options.gcs_service_account_file:
            gcs["service_account"] = options.gcs_service_account_file
        return GCSStore(bucket, config=gcs, client_options=client, retry_config=retry), prefix
    s3: S3Config = {}
    if options.s3_endpoint_url:
        s3["endpoint"] = options.s3_endpoint_url.rstrip("/")
        # S3-compatible servers are usually addressed by path, not bucket.host.
        s3["virtual_hosted_style_request"] = False
        client["allow_http"] = options.s3_endpoint_url.startswith("http://")
    if options.s3_region:
        s3["region"] = options.s3_region
    if options.s3_access_key_id and options.s3_secret_access_key:
        s3["access_key_id"] = options.s3_access_key_id
        s3["secret_access_key"] = options.s3_secret_access_key
    return S3Store(bucket, config=s3, client_options=client, retry_config=retry), prefix


def _sid(key: str) -> str | None:
    name = key.rsplit("/", 1)[-1]
    stem, dot, _ = name.rpartition(".")
    return stem if dot and is_call_sid(stem) else None


async def _settled(work: Awaitable[object]) -> None:
    """Wait for `work` to finish however it ends (its owner logs its own failures)."""
    with contextlib.suppress(Exception):
        await asyncio.shield(work)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
