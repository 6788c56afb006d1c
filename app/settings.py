"""The one settings object, read once from the environment and an optional `.env`.

Nothing else in the project reads `os.environ` (the google-genai SDK and `ssl` read
`SSL_CERT_FILE` themselves; we honour it explicitly in `Settings.ssl_context`).
Invalid values fail at start with one message naming the variable.
"""

from __future__ import annotations

import re
import ssl
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.capacity import DEFAULT_BUSY_MESSAGE
from app.errors import ConfigError
from app.redis_connect import parse_redis_url

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly, concise phone assistant. Speak in short sentences: the caller "
    "hears you over a telephone line. When the caller says goodbye or asks to hang up, "
    "say a short goodbye and then call the end_call tool."
)


class Settings(BaseSettings):
    """Every setting of the service. Environment names are the field names upper-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- Gemini Live -------------------------------------------------------------
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash-native-audio-preview-12-2025"
    gemini_voice: str = "Puck"
    gemini_base_url: str | None = None
    gemini_api_version: str = "v1beta"
    # Live client: "direct" speaks the wire protocol (cheap per message); "sdk": google-genai.
    live_client: Literal["direct", "sdk"] = "direct"
    system_prompt: str | None = None
    system_prompt_file: Path | None = None
    greeting: str = "Greet the caller warmly and ask how you can help."
    # websockets' default keepalive (20 s ping, 20 s timeout) has been reported to kill
    # long Live sessions; we ping less often and tolerate slow pongs.
    live_ping_interval: float = 30.0
    live_ping_timeout: float = 60.0
    live_connect_timeout: float = 10.0
    live_max_reconnects: int = Field(default=3, ge=0)
    # Vertex AI instead of an AI Studio key (google-genai's own variable names). Auth is
    # Application Default Credentials (google-auth): GOOGLE_APPLICATION_CREDENTIALS (a key
    # file of any kind google-auth reads), else gcloud's ADC file or the metadata server.
    google_genai_use_vertexai: bool = False
    google_cloud_project: str | None = None
    google_cloud_location: str | None = None
    google_application_credentials: Path | None = None
    # Vertex AI's Live API versions are v1beta1 (google-genai's default) and v1.
    vertex_api_version: str = "v1beta1"
    prewarm_timeout: float = Field(default=15.0, gt=0)

    # --- Twilio ------------------------------------------------------------------
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    # Where the Twilio REST client sends requests; only tests and the demo change it.
    twilio_api_base_url: str | None = None
    public_base_url: str | None = None
    trust_proxy_headers: bool = False
    allow_unsigned: bool = False
    stream_token_ttl: float = Field(default=60.0, gt=0)

    # --- Tools and state ---------------------------------------------------------
    redis_url: str | None = None
    state_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    tools: str = "end_call,transfer_call"
    tools_module: str | None = None
    tool_timeout: float = Field(default=10.0, gt=0)
    transfer_allowlist: str = ""
    hangup_fallback_seconds: float = Field(default=10.0, gt=0)

    # --- Agents (docs/agents.md) -------------------------------------------------
    # A TOML file of agents; without it the variables above are the one default agent.
    agents_file: Path | None = None
    # `module:function`, an async function given the call's facts at the webhook.
    call_setup_hook: str | None = None
    call_setup_hook_timeout: float = Field(default=2.0, gt=0)
    # Post-call analysis (agents with `analysis`): the generateContent model, and where
    # to POST each analysed record, signed with HMAC-SHA256 of ANALYSIS_WEBHOOK_SECRET.
    analysis_model: str = "gemini-2.5-flash"
    analysis_timeout: float = Field(default=60.0, gt=0)
    analysis_webhook_url: str | None = None
    analysis_webhook_secret: SecretStr | None = None
    analysis_webhook_backoff: float = Field(default=1.0, gt=0)  # first retry; doubles

    # --- Capacity (app/capacity.py) -----------------------------------------------
    max_active_calls: int = Field(default=0, ge=0)  # per instance; 0 = no cap
    global_max_active_calls: int = Field(default=0, ge=0)  # all instances, in Redis; 0 = off
    capacity_heartbeat_seconds: float = Field(default=5.0, gt=0)
    busy_message: str = DEFAULT_BUSY_MESSAGE
    overflow_number: str | None = None  # over a cap: <Dial> this number instead of the message

    # --- Recording and admin -----------------------------------------------------
    recordings_dir: Path = Path("recordings")
    # Object storage for finished calls: s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]
    # (RECORDINGS_DIR is then the local spool). Unset: calls stay in RECORDINGS_DIR.
    recordings_url: str | None = None
    recordings_s3_endpoint_url: str | None = None  # S3-compatible stores (MinIO, R2, ...)
    recordings_s3_region: str | None = None
    # Unset: the standard AWS chain (AWS_* variables, web identity, instance metadata).
    recordings_s3_access_key_id: str | None = None
    recordings_s3_secret_access_key: SecretStr | None = None
    # Unset: Google application default credentials.
    recordings_gcs_service_account_file: Path | None = None
    recording_retention_days: int = Field(default=0, ge=0)
    admin_token: SecretStr | None = None
    # The web console at /console (docs/console.md); it exists only when ADMIN_TOKEN is set.
    console_enabled: bool = True

    # --- Process -----------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    drain_timeout: float = Field(default=60.0, ge=0)
    # Keep the last n raw bridge timings per kind for `voicebot bench` (served at
    # GET /bench/timings behind ADMIN_TOKEN); 0 = off.
    bench_timings: int = Field(default=0, ge=0)
    ssl_cert_file: Path | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("public_base_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://bot.example.com")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parse_redis_url(value)  # ValueError names what is wrong
        return value

    @field_validator("overflow_number")
    @classmethod
    def _check_overflow(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not re.fullmatch(r"\+[1-9]\d{6,14}|sips?:\S+@\S+", value):
            raise ValueError("must be an E.164 number such as +15550100300 (or a sip: URI)")
        return value

    @field_validator("recordings_url")
    @classmethod
    def _check_recordings_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("s3", "gs") or not parts.netloc:
            raise ValueError("must be s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]")
        return value

    @model_validator(mode="after")
    def _check_global_cap(self) -> Settings:
        if self.global_max_active_calls and not self.redis_url:
            raise ValueError("GLOBAL_MAX_ACTIVE_CALLS needs REDIS_URL (the count is kept there)")
        return self

    @model_validator(mode="after")
    def _check_vertex(self) -> Settings:
        if not self.google_genai_use_vertexai:
            return self
        missing = [
            name
            for name, value in (
                ("GOOGLE_CLOUD_PROJECT (the GCP project id)", self.google_cloud_project),
                (
                    "GOOGLE_CLOUD_LOCATION (a region such as us-central1)",
                    self.google_cloud_location,
                ),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                "GOOGLE_GENAI_USE_VERTEXAI=true needs " + " and ".join(missing) + " to be set"
            )
        key = self.google_application_credentials
        if key is not None and not key.is_file():
            raise ValueError(f"GOOGLE_APPLICATION_CREDENTIALS: no such file: {key}")
        return self

    @model_validator(mode="after")
    def _check_prompt_file(self) -> Settings:
        if self.system_prompt_file is not None and not self.system_prompt_file.is_file():
            raise ValueError(f"SYSTEM_PROMPT_FILE: no such file: {self.system_prompt_file}")
        if self.agents_file is not None and not self.agents_file.is_file():
            raise ValueError(f"AGENTS_FILE: no such file: {self.agents_file}")
        if self.analysis_webhook_url and self.analysis_webhook_secret is None:
            raise ValueError("ANALYSIS_WEBHOOK_URL needs ANALYSIS_WEBHOOK_SECRET (to sign it)")
        return self

    # --- Derived values ----------------------------------------------------------
    @cached_property
    def instructions(self) -> str:
        if self.system_prompt_file is not None:
            return self.system_prompt_file.read_text(encoding="utf-8").strip()
        return self.system_prompt or DEFAULT_SYSTEM_PROMPT

    @property
    def enabled_tools(self) -> list[str]:
        return [name.strip() for name in self.tools.split(",") if name.strip()]

    @property
    def transfer_numbers(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.transfer_allowlist.split(",") if n.strip())

    @property
    def verify_signatures(self) -> bool:
        return not self.allow_unsigned

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else None

    def ssl_context(self) -> ssl.SSLContext:
        """Client context for outgoing TLS, trusting `SSL_CERT_FILE` when set."""
        cafile = str(self.ssl_cert_file) if self.ssl_cert_file else None
        return ssl.create_default_context(cafile=cafile)

    def check_can_serve(self) -> None:
        """Refuse to serve an insecure configuration unless explicitly told to."""
        if self.twilio_auth_token is None and not self.allow_unsigned:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is not set, so Twilio signatures cannot be checked. "
                "Set it, or set ALLOW_UNSIGNED=true (or pass --allow-unsigned) for local "
                "development only."
            )


def load_settings(*, env_file: str | None = ".env", **overrides: object) -> Settings:
    """Read settings once; turn pydantic's error into one clear `ConfigError`.

    `env_file=None` ignores any `.env` (tests, so a developer's file can't leak in).
    """
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg, arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
