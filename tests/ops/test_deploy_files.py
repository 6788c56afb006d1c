"""The nginx and Compose files users deploy with: valid, and saying what the docs say."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from app.settings import Settings
from tests.support.nginx import DEPLOY, REPO, nginx_binary


def test_bare_metal_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    """deploy/nginx/voicebot.conf as installed on a server, with a throwaway certificate."""
    binary = nginx_binary()
    ca = trustme.CA()
    cert = ca.issue_cert("voice.example.com")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "fullchain.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "privkey.pem"))
    site = (DEPLOY / "voicebot.conf").read_text()
    site = site.replace("/etc/nginx/voicebot/", f"{DEPLOY}/")
    site = site.replace("/etc/letsencrypt/live/voice.example.com/", f"{tmp_path}/")
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    include {tmp_path}/site.conf;\n}}\n"
    )
    check = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    # Every path the config names was replaced: nothing of the host leaked in.
    assert "/etc/nginx/voicebot/" not in site and "letsencrypt" not in site


def test_proxy_settings_carry_websockets_for_an_hour_and_the_signed_url() -> None:
    locations = (DEPLOY / "voicebot-locations.conf").read_text()
    for directive in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-Host $http_host;",
        "proxy_set_header X-Forwarded-Proto $voicebot_forwarded_proto;",
        "proxy_read_timeout 3600s;",
        "proxy_send_timeout 3600s;",
    ):
        assert directive in locations, directive


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.scale.yml").read_text())
    return data


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_compose_runs_replicas_behind_nginx_with_the_shared_includes() -> None:
    services = compose()["services"]
    nginx, bot = services["nginx"], services["voicebot"]
    for mount in nginx["volumes"]:
        source = mount.split(":", 1)[0]
        assert (REPO / source).is_file(), f"{source} is mounted but missing"
    assert "ports" not in bot, "replicas cannot share one host port"
    assert bot["deploy"]["replicas"] >= 2
    assert bot["environment"]["TRUST_PROXY_HEADERS"] == "true"
    assert bot["environment"]["REDIS_URL"].startswith("redis://redis:")
    # Room for the drain (DRAIN_TIMEOUT) plus the closing notice before SIGKILL.
    drain = Settings.model_fields["drain_timeout"].default
    assert _seconds(bot["stop_grace_period"]) >= drain + 20
    conf = (REPO / "deploy" / "compose" / "nginx.conf").read_text()
    assert "voicebot-http.conf" in conf and "voicebot-locations.conf" in conf
    assert re.search(r"server voicebot:8080 resolve", conf)


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.scale.yml"])
def test_compose_files_are_valid_yaml_with_a_voicebot_service(name: str) -> None:
    data = yaml.safe_load((REPO / name).read_text())
    assert data["services"]["voicebot"]["build"]["dockerfile"] == "docker/Dockerfile"
