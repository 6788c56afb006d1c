"""generateContent on the fake Live server: `POST {base}/{version}/models/{model}:generateContent`
over the same TLS port as the Live WebSocket (google-genai's `client.aio.models.generate_content`
reaches it with the same base URL).

websockets only parses GET upgrades (a request body is refused), so the server's
connection class looks at the first bytes: a `POST ` is answered here as plain HTTP/1.1
(one request, then the connection closes); anything else goes to websockets unchanged.

What it answers is the scenario's `generate` (see `GenerateConfig`): by default a JSON
object made up from the request's `responseJsonSchema`.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection

from app.dev.fakes.live.scenario import Scenario

GENERATE_RE = re.compile(
    r"^/+(?:.*/)?(?P<version>v1beta|v1alpha|v1)/+models/(?P<model>[^/:?]+):generateContent(?:\?.*)?$"
)
MAX_BODY = 4 * 2**20


@dataclass(frozen=True)
class GenerateRecord:
    """One generateContent request as the fake received it (never the API key)."""

    path: str
    model: str | None
    api_key_valid: bool
    body: dict[str, Any] | None
    status: int


def answer(
    scenario: Scenario, path: str, headers: dict[str, str], body: bytes, log: list[GenerateRecord]
) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for one request; appends what was seen to `log`."""
    match = GENERATE_RE.match(path)
    key = headers.get("x-goog-api-key")
    expected = scenario.api_key
    key_ok = expected is None or (
        key is not None and hmac.compare_digest(key.encode(), expected.encode())
    )
    try:
        request = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        request = None
    model = match.group("model") if match else None
    status, payload = _respond(scenario, match is not None, key_ok, model, request)
    log.append(GenerateRecord(path, model, key_ok, request if isinstance(request, dict) else None,
                              status))  # fmt: skip
    return status, orjson.dumps(payload)


def _respond(
    scenario: Scenario, found: bool, key_ok: bool, model: str | None, request: Any
) -> tuple[int, dict[str, Any]]:
    if not found:
        return _error(404, "Not found", "NOT_FOUND")
    if not key_ok:
        return _error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")
    if model is None or not scenario.model_allowed(model):
        return _error(404, f"models/{model} is not found for API version", "NOT_FOUND")
    if not isinstance(request, dict) or not request.get("contents"):
        return _error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
    spec = scenario.generate
    if spec.mode == "error":
        return _error(spec.status, "Internal error encountered.", "INTERNAL")
    if spec.mode == "invalid_json":
        text = '{"outcome": "booked", "caller_name": '  # cut off mid-object
    elif spec.mode == "fixed":
        text = orjson.dumps(spec.response).decode()
    else:
        config = request.get("generationConfig") or request.get("generation_config") or {}
        schema = config.get("responseJsonSchema") or config.get("response_json_schema") or {}
        text = orjson.dumps(example_of(schema, "value")).decode()
    return 200, {
        "candidates": [
            {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP",
             "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20,
                          "totalTokenCount": 120},
        "modelVersion": model,
    }  # fmt: skip


def example_of(schema: Any, name: str) -> Any:
    """A value that fits a (simple) JSON schema: enums take their first value."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: example_of(sub, key) for key, sub in props.items()}
    if kind == "array":
        return [example_of(schema.get("items") or {}, name)]
    return {"string": f"example {name}", "integer": 1, "number": 1.5, "boolean": True}.get(
        str(kind)
    )


def _error(code: int, message: str, status: str) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"code": code, "message": message, "status": status}}


class HttpOrWebSocket(ServerConnection):
    """A server connection that answers a plain `POST` itself (see the module doc).

    `answer_post` is set on a subclass per server (`for_server`).
    """

    def answer_post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        raise NotImplementedError

    _mode: str | None = None
    _buffer: bytes = b""

    def data_received(self, data: bytes) -> None:
        if self._mode is None:
            self._mode = "http" if data.startswith(b"POST ") else "ws"
        if self._mode == "ws":
            super().data_received(data)
            return
        self._buffer += data
        head, sep, body = self._buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("latin-1").split("\r\n")
        path = [*lines[0].split(" ", 2), "", ""][1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._reply(413, b'{"error":{"code":413}}')
            return
        if len(body) < length:
            return
        status, payload = self.answer_post(path, headers, body[:length])
        self._reply(status, payload)

    def _reply(self, status: int, payload: bytes) -> None:
        phrase = HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + payload)
        self.transport.close()  # websockets' handshake sees the close and gives up quietly


def for_server(scenario_of: Any, log: list[GenerateRecord]) -> type[HttpOrWebSocket]:
    """The connection class for one server; `scenario_of()` is its current scenario."""

    class Connection(HttpOrWebSocket):
        def answer_post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
            return answer(scenario_of(), path, headers, body, log)

    return Connection
