"""The one settings object: names, defaults, clear errors, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import load_settings


def test_environment_names_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Be the front desk of Example Dental.\n")
    env = {
        "GEMINI_API_KEY": "k-123",
        "GEMINI_MODEL": "gemini-3.1-flash-live-preview",
        "GEMINI_VOICE": "Kore",
        "GEMINI_BASE_URL": "https://127.0.0.1:9443",
        "GEMINI_API_VERSION": "v1alpha",
        "SYSTEM_PROMPT_FILE": str(prompt),
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": "tok",
        "PUBLIC_BASE_URL": "https://bot.example.com/",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "RECORDINGS_DIR": str(tmp_path / "rec"),
        "ADMIN_TOKEN": "adm",
        "LOG_LEVEL": "debug",
        "HOST": "127.0.0.1",
        "PORT": "9000",
        "SSL_CERT_FILE": str(prompt),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(env_file=None)
    assert settings.secret("gemini_api_key") == "k-123"
    assert settings.gemini_model == "gemini-3.1-flash-live-preview"
    assert settings.gemini_api_version == "v1alpha"
    assert settings.instructions == "Be the front desk of Example Dental."
    assert settings.public_base_url == "https://bot.example.com"
    assert settings.port == 9000 and settings.log_level == "DEBUG"
    assert settings.ssl_cert_file == prompt
    # Secrets never show in a repr (logs, error messages).
    assert "k-123" not in repr(settings) and "tok" not in repr(settings.twilio_auth_token)


def test_dot_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GEMINI_VOICE", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("GEMINI_VOICE=Charon\n")
    assert load_settings(env_file=str(env_file)).gemini_voice == "Charon"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PUBLIC_BASE_URL", "bot.example.com"),
        ("LOG_LEVEL", "LOUD"),
        ("SYSTEM_PROMPT_FILE", "/nonexistent/prompt.txt"),
        ("DRAIN_TIMEOUT", "-1"),
    ],
)
def test_invalid_values_fail_with_one_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings(env_file=None)
    assert name in str(error.value) or name.lower() in str(error.value).lower()


def test_serving_without_a_token_needs_an_explicit_opt_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="ALLOW_UNSIGNED"):
        load_settings(env_file=None).check_can_serve()
    load_settings(env_file=None, allow_unsigned=True).check_can_serve()
