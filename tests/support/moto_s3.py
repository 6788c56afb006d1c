"""A real S3-compatible server for tests: moto in server mode, on a free port.

`s3_server` (session) starts `moto_server` (moto[server] from PyPI) as a child process;
each test makes its own bucket with `s3_bucket`. Without moto the tests skip, except
under `CI=true`, where a missing server is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.dev.local_server import free_port

ACCESS_KEY = "moto-access-key"
SECRET_KEY = "moto-secret-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def settings(self, bucket: str, prefix: str = "calls") -> dict[str, str]:
        """RECORDINGS_* settings (Settings field names) for a bucket on this server."""
        return {
            "recordings_url": f"s3://{bucket}/{prefix}",
            "recordings_s3_endpoint_url": self.endpoint,
            "recordings_s3_region": REGION,
            "recordings_s3_access_key_id": ACCESS_KEY,
            "recordings_s3_secret_access_key": SECRET_KEY,
        }

    def create_bucket(self, name: str) -> None:
        # moto does not check signatures: a plain PUT makes a bucket (S3's CreateBucket).
        response = httpx.put(f"{self.endpoint}/{name}", trust_env=False, timeout=10)
        response.raise_for_status()

    def keys(self, bucket: str) -> list[str]:
        import xml.etree.ElementTree as ET

        response = httpx.get(f"{self.endpoint}/{bucket}?list-type=2", trust_env=False)
        response.raise_for_status()
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        return sorted(e.text or "" for e in ET.fromstring(response.text).findall(".//s3:Key", ns))


def _moto_command() -> list[str] | None:
    script = Path(sys.executable).with_name("moto_server")
    if script.is_file():
        return [str(script)]
    found = shutil.which("moto_server")
    return [found] if found else None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    command = _moto_command()
    if command is None:
        reason = "moto_server is not installed (pip install 'moto[server]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"an S3-compatible server is required under CI=true: {reason}")
        pytest.skip(reason)
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(endpoint + "/moto-api/", trust_env=False, timeout=1).status_code < 500:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"moto_server did not start (exit {proc.poll()})")
        time.sleep(0.1)
    try:
        yield S3Server(endpoint, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = f"voicebot-test-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name
