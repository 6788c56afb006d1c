"""Where finished calls live, for the admin API: the local directory or object storage.

    CallStore        what the admin API (and the console, through it) reads, and what a
                     finished call is handed to
    LocalCallStore   RECORDINGS_DIR itself (one instance, or a shared volume)
    RemoteAudio      a recording in object storage, read in byte ranges

`app.recording.object_store.ObjectCallStore` is the other implementation: the local
directory stays the crash-safe spool the recorder writes to during a call, and each
finished call is uploaded (see there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry

from app.recording.files import call_file, is_call_sid, prune_recordings
from app.recording.record import Json, read_json
from app.settings import Settings

AUDIO_SUFFIXES = (".wav", ".mp3")


@dataclass(frozen=True, slots=True)
class RemoteAudio:
    """A stored recording: its size, and reads of a byte range or of the whole object."""

    name: str
    size: int
    read_range: Callable[[int, int], Awaitable[bytes]]  # [start, end) -> bytes
    stream: Callable[[], AsyncIterator[bytes]]


class CallStore(Protocol):
    """Finished calls: their records and recordings, newest first."""

    def records(self) -> AsyncIterator[Json]:
        """Every finished call's record, newest first, read as the caller iterates."""
        ...

    async def get_record(self, call_sid: str) -> Json | None: ...

    async def audio(self, call_sid: str, suffix: str) -> Path | RemoteAudio | None:
        """A finished call's `.wav`/`.mp3`: a local file or a stored object; None if absent."""
        ...

    def call_finished(self, call_sid: str, after: Awaitable[object] | None = None) -> None:
        """The call's recorder closed: keep its files (object storage: upload). Never raises.

        `after`: work still rewriting the record (post-call analysis) to wait for."""
        ...

    async def start(self) -> None:
        """At start-up, after the spool's crash repair: e.g. retry earlier failed uploads."""
        ...

    async def prune(self, retention_days: int) -> int:
        """Delete calls older than `retention_days` (0 keeps all); the number deleted."""
        ...

    async def aclose(self) -> None:
        """At shutdown: let work in flight (uploads) finish, within reason."""
        ...


class LocalCallStore:
    """Calls in one directory: `{sid}.json`, `{sid}.wav`, `{sid}.mp3` (docs/recordings.md)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def records(self) -> AsyncIterator[Json]:
        for _, path in await asyncio.to_thread(self.finished_calls):
            record = await asyncio.to_thread(read_json, path)
            if record is not None:  # unreadable records are skipped
                yield record

    async def get_record(self, call_sid: str) -> Json | None:
        path = self.path(call_sid, ".json")
        return None if path is None else await asyncio.to_thread(read_json, path)

    async def audio(self, call_sid: str, suffix: str) -> Path | RemoteAudio | None:
        # Only finished (or repaired) calls: a WAV still being written grows under us.
        record, audio = self.path(call_sid, ".json"), self.path(call_sid, suffix)
        if record is None or audio is None:
            return None
        exists = await asyncio.to_thread(lambda: record.is_file() and audio.is_file())
        return audio if exists else None

    def call_finished(self, call_sid: str, after: Awaitable[object] | None = None) -> None:
        """The recorder already wrote its files here (and analysis rewrites them there)."""

    async def start(self) -> None:
        return None

    async def prune(self, retention_days: int, *, now: float | None = None) -> int:
        return await asyncio.to_thread(prune_recordings, self.directory, retention_days, now=now)

    async def aclose(self) -> None:
        return None

    def path(self, call_sid: str, suffix: str) -> Path | None:
        """The call's file, or None for anything that is not a call sid (no traversal)."""
        if not is_call_sid(call_sid):
            return None
        root = self.directory.resolve()
        path = call_file(root, call_sid, suffix).resolve()
        # The sid pattern already rules out dots and slashes; this is the belt to its braces.
        return path if path.parent == root else None

    def finished_calls(self) -> list[tuple[float, Path]]:
        """(mtime, record path) of every call with a record, newest first."""
        if not self.directory.is_dir():
            return []
        dated: list[tuple[float, Path]] = []
        for path in self.directory.glob("CA*.json"):
            if is_call_sid(path.stem):
                try:
                    dated.append((path.stat().st_mtime, path))
                except OSError:
                    continue  # pruned (or uploaded) between the listing and the stat
        dated.sort(reverse=True)
        return dated


def make_call_store(settings: Settings, registry: CollectorRegistry | None = None) -> CallStore:
    """RECORDINGS_URL's object storage (RECORDINGS_DIR as its spool), else RECORDINGS_DIR."""
    if not settings.recordings_url:
        return LocalCallStore(settings.recordings_dir)
    # Imported here: obstore is only loaded when object storage is configured.
    from app.recording.object_store import ObjectCallStore, StoreOptions, open_object_store

    store, prefix = open_object_store(
        settings.recordings_url,
        StoreOptions(
            s3_endpoint_url=settings.recordings_s3_endpoint_url,
            s3_region=settings.recordings_s3_region,
            s3_access_key_id=settings.recordings_s3_access_key_id,
            s3_secret_access_key=settings.secret("recordings_s3_secret_access_key"),
            gcs_service_account_file=(
                str(settings.recordings_gcs_service_account_file)
                if settings.recordings_gcs_service_account_file
                else None
            ),
        ),
    )
    return ObjectCallStore(store, prefix, settings.recordings_dir, registry=registry)
