"""A rolling restart behind real nginx: calls in progress and new calls are not lost.

Two `voicebot serve` processes (as in containers) behind nginx with the production
includes, one Redis, one bucket (moto) for finished calls, the fake Live server. A call
starts and stays on the line; the instance it is not on is restarted the way
docs/scaling.md says (marked `down` in the upstream and nginx reloaded, then SIGTERM: it
drains and exits 0; started again; put back). Meanwhile new calls keep being answered
and bridged by the other instance, the first call goes on undisturbed, and afterwards
any instance serves any call's record from the shared bucket.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.assets import load_clip_8k
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_call
from tests.ops.process import ServeProcess, eventually
from tests.support.fake_live import FakeLiveFactory
from tests.support.moto_s3 import S3Server
from tests.support.nginx import StartNginx, Upstream

pytestmark = [pytest.mark.slow, pytest.mark.redis]

AUTH_TOKEN = "rolling-auth-token-" + secrets.token_hex(6)
ADMIN_TOKEN = "rolling-admin-token-" + secrets.token_hex(6)
DRAIN_TIMEOUT = 20.0


def settings_for(
    name: str, fake: Any, redis_url: str, s3: S3Server, bucket: str, tmp_path: Path
) -> dict[str, str]:
    return {
        "GEMINI_API_KEY": "fake-live-key",
        "GEMINI_BASE_URL": fake.base_url,
        "SSL_CERT_FILE": str(fake.ca_pem_path),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TRUST_PROXY_HEADERS": "true",  # the public URL comes from nginx's X-Forwarded-*
        "REDIS_URL": redis_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "RECORDINGS_DIR": str(tmp_path / name / "spool"),
        "DRAIN_TIMEOUT": str(DRAIN_TIMEOUT),
        **{key.upper(): value for key, value in s3.settings(bucket).items()},
    }


def call_options(base_url: str, listen_seconds: float, **kw: Any) -> CallOptions:
    return CallOptions(
        base_url=base_url,
        auth_token=AUTH_TOKEN,
        audio=load_clip_8k("caller_booking"),
        wait_for_greeting_seconds=10.0,
        listen_seconds=listen_seconds,
        max_seconds=120.0,
        **kw,
    )


async def start_long_call(base_url: str) -> asyncio.Task[CallReport]:
    """A call that stays on the line: returns once the caller heard the greeting."""
    greeted = asyncio.Event()

    def on_event(kind: str, detail: Mapping[str, Any]) -> None:
        if kind == "first_audio":
            greeted.set()

    call = asyncio.create_task(simulate_call(call_options(base_url, 45.0, on_event=on_event)))
    waiter = asyncio.create_task(greeted.wait())
    done, _ = await asyncio.wait({call, waiter}, timeout=40, return_when="FIRST_COMPLETED")
    waiter.cancel()
    assert waiter in done, f"no greeting: {call.result().to_dict() if call.done() else 'timeout'}"
    return call


async def active_calls(server: ServeProcess) -> float:
    async with httpx.AsyncClient(trust_env=False) as client:
        text = (await client.get(server.url + "/metrics", timeout=5)).text
    [line] = [ln for ln in text.splitlines() if ln.startswith("voicebot_active_calls ")]
    return float(line.split()[1])


def assert_bridged(report: CallReport) -> None:
    """Answered and bridged (not the draining notice), and ended by the agent or caller."""
    assert report.error is None, report.to_dict()
    assert report.stream_url is not None, "no stream: the call was turned away"
    assert report.first_audio_ms is not None, report.to_dict()


async def test_rolling_restart_loses_no_call(
    fake_live_factory: FakeLiveFactory,
    redis_url: str,
    s3_server: S3Server,
    s3_bucket: str,
    start_nginx: StartNginx,
    tmp_path: Path,
) -> None:
    fake = await fake_live_factory()
    dirs = {n: tmp_path / n for n in ("a", "b", "a2")}
    for d in dirs.values():
        d.mkdir()
    conf = {n: settings_for(n, fake, redis_url, s3_server, s3_bucket, tmp_path) for n in "ab"}
    async with ServeProcess(dirs["a"], conf["a"]) as a, ServeProcess(dirs["b"], conf["b"]) as b:
        lb = await start_nginx([Upstream(a.port), Upstream(b.port)])

        # 1. A call through nginx; find the instance its stream is on.
        first = await start_long_call(lb.url)
        counts = {a.port: await active_calls(a), b.port: await active_calls(b)}
        assert sorted(counts.values()) == [0.0, 1.0], counts
        busy, idle = (a, b) if counts[a.port] == 1.0 else (b, a)
        idle_name = "a" if idle is a else "b"

        # 2. Rolling restart of the other instance: out of rotation, then SIGTERM.
        others = [Upstream(busy.port), Upstream(idle.port, down=True)]
        await lb.set_upstreams(others)
        idle.send_signal()
        during = asyncio.create_task(simulate_call(call_options(lb.url, 2.0)))
        assert await idle.wait_exit(DRAIN_TIMEOUT + 30) == 0  # drained: no call was there
        assert "drain.done" in idle.output()
        second = await during
        assert_bridged(second)  # new calls kept being answered, by the remaining instance

        # 3. The restarted instance comes back and takes calls again.
        restarted_conf = conf[idle_name] | {"PORT": str(idle.port)}
        async with ServeProcess(dirs["a2"], restarted_conf) as again:
            await lb.set_upstreams([Upstream(busy.port), Upstream(again.port)])
            mark = len(await asyncio.to_thread(lb.routed))
            third = await simulate_call(call_options(lb.url, 2.0))
            assert_bridged(third)
            routed = (await asyncio.to_thread(lb.routed))[mark:]
            assert again.port in {r.port for r in routed if r.status in (200, 101)}, routed

            # 4. The first call was never disturbed: it ended by the caller hanging up.
            report = await first
            assert_bridged(report)
            assert report.ended_by == "caller_hangup", report.to_dict()

            # 5. Every call's record is in the bucket; any instance serves any of them.
            sids = [report.call_sid, second.call_sid, third.call_sid]
            async with httpx.AsyncClient(
                trust_env=False, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as http:

                async def all_stored() -> bool:
                    listed = (await http.get(f"{again.url}/calls", timeout=10)).json()
                    return {c["call_sid"] for c in listed["calls"]} >= set(sids)

                await eventually(all_stored, 30)
                for server in (busy, again):
                    record = (await http.get(f"{server.url}/calls/{report.call_sid}")).json()
                    assert record["end_reason"] == "caller_hangup"
                    assert record["recording"]["status"] == "complete"
                reasons = {
                    sid: (await http.get(f"{lb.url}/calls/{sid}")).json()["end_reason"]
                    for sid in sids
                }
                assert "server_shutdown" not in reasons.values(), reasons
