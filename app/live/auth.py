"""OAuth access tokens for Vertex AI, from google-auth credentials.

Vertex AI's Live endpoint takes `Authorization: Bearer <access token>` at the WebSocket
handshake only, so a token matters when a connection opens: every connect (the first,
and each reconnect) asks `CredentialTokens.token()`, which refreshes when the token is
missing or expires soon. "Soon" is google-auth's own `credentials.expired` (its refresh
threshold, a few minutes before the expiry), the same test google-genai applies.

google-auth is synchronous (a refresh is an HTTP request to the token endpoint or the
metadata server), so refreshes run in a worker thread, never on the event loop; a lock
makes concurrent calls share one refresh.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import google.oauth2.credentials
from google.auth import identity_pool
from google.auth.credentials import Credentials
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from app.errors import ConfigError, LiveSetupError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def load_credentials(key_file: Path | None) -> tuple[Credentials, str | None]:
    """Credentials from a key file (service account, workload identity federation, user),
    else Application Default Credentials; with the project they name, if any.

    Raises `ConfigError` saying what to set when none are found.
    """
    try:
        if key_file is not None:
            return _from_file(key_file)
        creds, project = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        where = f"GOOGLE_APPLICATION_CREDENTIALS ({key_file})" if key_file else "ADC"
        raise ConfigError(
            f"Vertex AI needs Google Cloud credentials and {where} gave none: {exc}. Set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run on GCP with a "
            "service account attached, or run `gcloud auth application-default login`."
        ) from None
    return creds, project


def _from_file(key_file: Path) -> tuple[Credentials, str | None]:
    """A key file by its `type`, with the loader google-auth recommends for it (its
    generic loader is deprecated for files that may come from elsewhere)."""
    try:
        info = json.loads(key_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _unusable(key_file, f"cannot read it as JSON: {type(exc).__name__}") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            sa = service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
            return sa, info.get("project_id")
        if kind == "authorized_user":
            user = google.oauth2.credentials.Credentials.from_authorized_user_info(
                info, scopes=list(SCOPES)
            )
            return user, info.get("quota_project_id")
        if kind == "external_account":  # workload identity federation
            pool = identity_pool.Credentials.from_info(info, scopes=list(SCOPES))
            return pool, None
    except (ValueError, KeyError) as exc:
        raise _unusable(key_file, f"a {kind} key google-auth cannot use: {exc}") from None
    raise _unusable(
        key_file,
        f"unsupported key type {kind!r} (service_account, authorized_user or external_account)",
    )


def _unusable(key_file: Path, why: str) -> ConfigError:
    return ConfigError(
        f"Vertex AI needs Google Cloud credentials and GOOGLE_APPLICATION_CREDENTIALS "
        f"({key_file}) is not usable: {why}"
    )


class CredentialTokens:
    """`AccessTokens` from one google-auth `Credentials` object (shared by all calls)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._lock = asyncio.Lock()
        self.refreshes = 0

    @property
    def quota_project(self) -> str | None:
        project: Any = getattr(self.credentials, "quota_project_id", None)
        return project if isinstance(project, str) and project else None

    async def token(self) -> str:
        async with self._lock:
            creds = self.credentials
            if creds.expired or not creds.token:
                try:
                    await asyncio.to_thread(creds.refresh, Request())
                except google.auth.exceptions.GoogleAuthError as exc:
                    # The message names the failure (e.g. invalid_grant), not the key.
                    raise LiveSetupError(
                        f"Vertex AI credentials could not be refreshed: {type(exc).__name__}"
                    ) from None
                self.refreshes += 1
            token = creds.token
        if not isinstance(token, str) or not token:
            raise LiveSetupError("Vertex AI credentials gave no access token")
        return token
