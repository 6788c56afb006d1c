"""generateContent with structured JSON output, for post-call analysis.

google-genai's `client.aio.models.generate_content` (a plain HTTPS request, not Live):
`POST {base}/{version}/models/{model}:generateContent` with
`generationConfig.responseMimeType = "application/json"` and `responseJsonSchema`.
This module and `app.live.sdk` are the only ones importing google.genai.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types


class GenerateError(Exception):
    """The model could not be asked, or did not answer with usable JSON text."""


class JsonGenerator:
    """One google-genai client for the process; `generate` is safe to call concurrently."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None,
        api_version: str,
        ssl_context: ssl.SSLContext | None,
        timeout_s: float,
    ) -> None:
        # Our own httpx client: the SDK otherwise picks aiohttp when it is installed,
        # which takes its TLS settings under other names. This way SSL_CERT_FILE (our
        # `ssl_context`) is honoured the same whichever is installed.
        self._http = httpx.AsyncClient(
            verify=ssl_context if ssl_context is not None else True,
            timeout=timeout_s,
            trust_env=False,
        )
        http_options = types.HttpOptions(
            base_url=base_url,
            api_version=api_version,
            timeout=int(timeout_s * 1000),  # milliseconds
            httpx_async_client=self._http,
        )
        self._client = genai.Client(api_key=api_key, http_options=http_options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def generate(self, model: str, prompt: str, schema: Mapping[str, Any]) -> str:
        """The answer's text (JSON by request; the caller parses it)."""
        config = types.GenerateContentConfig(
            response_mime_type="application/json", response_json_schema=dict(schema)
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=model, contents=prompt, config=config
            )
        except genai_errors.APIError as exc:
            message = str(getattr(exc, "message", "") or exc)[:300]
            raise GenerateError(f"generateContent failed: code {exc.code}: {message}") from None
        except (OSError, httpx.HTTPError) as exc:  # ssl.SSLError is an OSError
            raise GenerateError(f"generateContent unreachable: {type(exc).__name__}") from None
        text = response.text
        if not text:
            raise GenerateError("generateContent returned no text")
        return text
