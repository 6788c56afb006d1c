"""Real nginx in front of voicebot instances, as a test peer (Debian package `nginx`).

The config is generated around the same includes that production uses
(`deploy/nginx/voicebot-http.conf` and `voicebot-locations.conf`): only the listener,
the upstream list and the paths (pid, logs, temp dirs, all in the test's tmp dir) are
the test's own. nginx runs in the foreground (`daemon off`) as the test's child;
`set_upstreams` rewrites the upstream and reloads (SIGHUP), as an operator would.

Without nginx the tests skip, except under `CI=true` (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.dev.local_server import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "nginx"
_LOG_LINE = re.compile(
    r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) .*upstream=(?P<up>\S+)'
)


@dataclass(frozen=True)
class Upstream:
    port: int
    down: bool = False


@dataclass(frozen=True)
class Routed:
    method: str
    path: str
    status: int
    upstreams: tuple[str, ...]  # every instance tried, in order ("127.0.0.1:port")

    @property
    def port(self) -> int:
        """The port of the instance that answered (the last one tried)."""
        return int(self.upstreams[-1].rsplit(":", 1)[1])


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )
    if found is None:
        reason = "nginx is not installed (apt-get install nginx)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"nginx is required under CI=true: {reason}")
        pytest.skip(reason)
    return found


class Nginx:
    """One nginx master process; `url` is its listener."""

    def __init__(self, directory: Path, upstreams: Sequence[Upstream]) -> None:
        self.binary = nginx_binary()
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._upstreams = list(upstreams)
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    def config(self) -> str:
        d = self.dir
        servers = "\n".join(
            f"        server 127.0.0.1:{u.port} max_fails=1 fail_timeout=10s"
            f"{' down' if u.down else ''};"
            for u in self._upstreams
        )
        temp = "\n".join(
            f"    {kind}_temp_path {d / (kind + '_temp')};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, workers would switch to `nobody`, which cannot enter pytest's tmp dirs.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""{user}daemon off;
worker_processes 1;
pid {d / "nginx.pid"};
error_log {d / "error.log"} notice;
events {{ worker_connections 512; }}
http {{
{temp}
    include {DEPLOY / "voicebot-http.conf"};
    access_log {self.access_log} voicebot;
    upstream voicebot {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        include {DEPLOY / "voicebot-locations.conf"};
    }}
}}
"""

    def _write(self) -> Path:
        path = self.dir / "nginx.conf"
        path.write_text(self.config())
        return path

    async def start(self) -> None:
        conf = self._write()
        check = await asyncio.to_thread(
            subprocess.run,
            [self.binary, "-t", "-q", "-c", str(conf), "-p", str(self.dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
        self._proc = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(conf), "-p", str(self.dir),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(200):
                if self._proc.returncode is not None:
                    raise AssertionError(f"nginx exited: {self.error_log()}")
                try:
                    await client.get(self.url + "/metrics", timeout=1)  # nginx's own 404
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise AssertionError(f"nginx did not listen: {self.error_log()}")

    async def set_upstreams(self, upstreams: Sequence[Upstream]) -> None:
        """Rewrite the upstream list and reload, as `nginx -s reload` does."""
        self._upstreams = list(upstreams)
        self._write()
        assert self._proc is not None
        before = self.error_log().count("reconfiguring")
        self._proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            if self.error_log().count("reconfiguring") > before:
                await asyncio.sleep(0.3)  # the new worker takes over new connections
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"nginx did not reload: {self.error_log()}")

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGQUIT)  # graceful: open WebSockets are closed
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def routed(self) -> list[Routed]:
        """Every request nginx passed on, from its access log."""
        if not self.access_log.exists():
            return []
        found = []
        for line in self.access_log.read_text("utf-8", "replace").splitlines():
            match = _LOG_LINE.search(line)
            if match and match["up"] != "-":
                ups = tuple(u.strip() for u in match["up"].split(","))
                found.append(Routed(match["method"], match["path"], int(match["status"]), ups))
        return found


StartNginx = Callable[[Sequence[Upstream]], Awaitable[Nginx]]


@pytest.fixture
async def start_nginx(tmp_path: Path) -> AsyncIterator[StartNginx]:
    """`await start_nginx([Upstream(port), ...])`: a running nginx; all stop at teardown."""
    started: list[Nginx] = []

    async def start(upstreams: Sequence[Upstream]) -> Nginx:
        directory = tmp_path / f"nginx-{len(started)}"
        directory.mkdir()
        proxy = Nginx(directory, upstreams)
        started.append(proxy)
        await proxy.start()
        return proxy

    yield start
    for proxy in started:
        await proxy.stop()
