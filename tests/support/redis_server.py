"""Real Redis for tests: a shared server for most tests, private ones to kill and restart.

`redis_url` (session): `REDIS_URL` if it answers PING, else 127.0.0.1:6379 if it
answers, else a throwaway `redis-server` on a free port. With none available the
tests skip, except under `CI=true`, where a missing Redis is a failure.

Tests share the server, so each one uses its own key prefix (`redis_prefix`) and
unique call sids; the prefix's keys are deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Redis is required under CI=true: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A `redis-server` process this test owns: start, stop (gently or with SIGKILL), restart.

    With `appendonly=True` data is fsynced to `data_dir`, so it survives a restart.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, appendonly: bool = False):
        self.port = port or _free_port()
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            # Sync every write so even SIGKILL loses nothing we already acknowledged.
            "--appendfsync", "always",
        ]  # fmt: skip
        log = (self.data_dir / "redis.log").open("ab")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not _answers(self.url):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis server that answers PING (see the module docstring)."""
    for url in filter(None, [os.environ.get("REDIS_URL"), "redis://127.0.0.1:6379/0"]):
        if _answers(url):
            yield url
            return
    if shutil.which("redis-server") is None:
        _unavailable("no Redis answers (REDIS_URL, 127.0.0.1:6379) and redis-server is absent")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix owned by one test; its keys are removed afterwards."""
    prefix = f"voicebot-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A running `redis-server` this test may kill and restart; AOF on, so data persists."""
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not installed; it is needed to kill and restart Redis")
    server = RedisServer(tmp_path, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)
