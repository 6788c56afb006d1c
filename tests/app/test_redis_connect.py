"""REDIS_URL forms: parsing (pure), and real TLS and Sentinel servers started by the test."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from app.dev.local_server import free_port
from app.redis_connect import SentinelTarget, parse_redis_url, redis_from_url
from app.settings import load_settings
from tests.support.redis_server import RedisServer, _unavailable

pytestmark = pytest.mark.redis


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://:pw@cache.example:6380/2", "unix:///run/r.sock?db=1"],
)
def test_plain_tls_and_socket_urls_go_to_redis_py_as_they_are(url: str) -> None:
    assert parse_redis_url(url) == url


def test_sentinel_url_names_sentinels_service_db_and_credentials() -> None:
    target = parse_redis_url(
        "rediss+sentinel://app:p%40ss@s1:26379,s2,[::1]:26380/mymaster/3"
        "?sentinel_password=sp&ssl_cert_reqs=none"
    )
    assert target == SentinelTarget(
        sentinels=(("s1", 26379), ("s2", 26379), ("::1", 26380)),
        service_name="mymaster",
        db=3,
        username="app",
        password="p@ss",
        tls=True,
        sentinel_password="sp",
        options={"ssl_cert_reqs": "none"},
    )
    bare = parse_redis_url("redis+sentinel://secret@s1/mymaster")
    assert isinstance(bare, SentinelTarget)
    assert (bare.password, bare.username, bare.tls, bare.db) == ("secret", None, False, 0)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://x:6379", "unsupported Redis URL scheme"),
        ("redis+sentinel://s1:26379/", "path is /SERVICE_NAME"),
        ("redis+sentinel:///mymaster", "at least one host"),
        ("redis+sentinel://s1:x/mymaster", "bad Sentinel port"),
        ("redis+sentinel://s1/mymaster/zero", "must be a number"),
    ],
)
def test_bad_redis_urls_are_refused_at_start_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_redis_url(url)
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings(env_file=None, redis_url=url)


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not installed")


def _wait_for(path: Path, proc: subprocess.Popen[bytes], text: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text("utf-8", "replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"redis did not come up: {path.read_text('utf-8', 'replace')[-2000:]}")


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """redis-server speaking TLS only, with a certificate from a throwaway CA."""
    _need_redis_server()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    port = free_port()
    log = tmp_path / "redis-tls.log"
    args = [
        "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(tmp_path / "cert.pem"), "--tls-key-file", str(tmp_path / "key.pem"),
        "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no",
        "--save", "", "--dir", str(tmp_path), "--logfile", str(log),
    ]  # fmt: skip
    proc = subprocess.Popen(args)
    try:
        _wait_for(log, proc, "Ready to accept connections")
        yield port, tmp_path / "ca.pem"
    finally:
        proc.kill()
        proc.wait(10)


async def test_rediss_url_talks_tls_and_checks_the_certificate(
    tls_redis: tuple[int, Path],
) -> None:
    port, ca = tls_redis
    client = redis_from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", socket_timeout=5)
    try:
        assert await client.set("voicebot-test:tls", "yes")
        assert await client.get("voicebot-test:tls") == b"yes"
    finally:
        await client.aclose()
    # Without the CA the server's certificate is not trusted: refused, not silently plain.
    untrusting = redis_from_url(f"rediss://127.0.0.1:{port}/0", socket_timeout=5)
    try:
        with pytest.raises(Exception, match=r"(?i)certificate|ssl"):
            await untrusting.ping()
    finally:
        await untrusting.aclose()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, RedisServer]]:
    """A master and one sentinel watching it as `voicebot-master`."""
    _need_redis_server()
    master = RedisServer(tmp_path)
    master.start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor voicebot-master 127.0.0.1 {master.port} 1\n"
    )
    log = tmp_path / "sentinel.log"
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel", "--logfile", str(log)])
    try:
        _wait_for(log, proc, "+monitor master voicebot-master")
        yield port, master
    finally:
        proc.kill()
        proc.wait(10)
        master.stop(kill=True)


async def test_sentinel_url_finds_the_master(sentinel: tuple[int, RedisServer]) -> None:
    port, master = sentinel
    client = redis_from_url(
        f"redis+sentinel://127.0.0.1:{port}/voicebot-master/0", socket_timeout=5
    )
    try:
        await client.set("voicebot-test:sentinel", "found")
    finally:
        await client.aclose()
    direct = redis_from_url(master.url)
    try:
        assert await direct.get("voicebot-test:sentinel") == b"found"
    finally:
        await direct.aclose()
