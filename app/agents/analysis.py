"""Post-call analysis, off the call path: after the call record is written, ask Gemini
(generateContent, structured JSON) the agent's `analysis` prompt about the transcript,
store the answer in the record as `analysis`, then optionally POST the record
(`app.agents.delivery`). Every failure is written into the record, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import structlog

from app.agents.agent import Agent
from app.agents.delivery import RecordPoster
from app.recording.record import iso_utc, read_json, write_json_atomic

log = structlog.get_logger()

SHUTDOWN_GRACE_S = 10.0


class Generator(Protocol):
    async def generate(self, model: str, prompt: str, schema: Mapping[str, Any]) -> str: ...

    async def aclose(self) -> None: ...


def transcript_text(record: Mapping[str, Any]) -> str:
    """The call as the model reads it: who said what, keys pressed, tools used."""
    events: list[tuple[float, str]] = []
    for line in record.get("transcript") or ():
        who = "Caller" if line.get("side") == "caller" else "Agent"
        events.append((float(line.get("at_s") or 0), f"{who}: {line.get('text', '')}"))
    for press in record.get("dtmf") or ():
        events.append((float(press.get("at_s") or 0), f"Caller pressed key {press.get('digit')}"))
    for call in record.get("tool_calls") or ():
        args = orjson.dumps(call.get("args")).decode()[:300]
        result = orjson.dumps(call.get("result")).decode()[:300]
        events.append(
            (float(call.get("at_s") or 0), f"[tool {call.get('name')} {args} -> {result}]")
        )
    events.sort(key=lambda e: e[0])
    lines = [f"[{at:7.1f} s] {text}" for at, text in events]
    return "\n".join(lines) or "(nothing was said)"


def analysis_prompt(prompt: str, record: Mapping[str, Any]) -> str:
    return (
        f"{prompt.strip()}\n\n"
        f"Call from {record.get('from')} to {record.get('to')}, "
        f"{record.get('duration_s')} s, ended: {record.get('end_reason')}.\n"
        f"Transcript:\n{transcript_text(record)}"
    )


def parse_answer(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The model's JSON object; ValueError when it is not one or lacks required fields."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the model's answer is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"the model's answer is a JSON {type(value).__name__}, not an object")
    missing = [k for k in schema.get("required") or () if k not in value]
    if missing:
        raise ValueError(f"the model's answer lacks required fields {missing}")
    return value


class Analyst:
    """Runs each finished call's analysis and delivery as a background task."""

    def __init__(
        self,
        generator: Generator | None,
        *,
        default_model: str,
        poster: RecordPoster | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self._on_outcome = on_outcome or (lambda kind, outcome: None)
        self._generator = generator
        self._model = default_model
        self._poster = poster
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, agent: Agent, record_path: Path | None) -> asyncio.Task[None] | None:
        """Start work for a written record; returns at once (the call is over) with the
        task that rewrites the record, or None when there is nothing to do."""
        if record_path is None or (agent.analysis is None and self._poster is None):
            return None
        task = asyncio.get_running_loop().create_task(
            self._run(agent, record_path), name=f"analysis-{record_path.stem}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_idle(self) -> None:
        """Wait for every submitted analysis (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Give running work a grace period, then cancel it (it is logged)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_GRACE_S):
                    await self.wait_idle()
            for task in list(self._tasks):
                log.warning("analysis.abandoned_at_shutdown", task=task.get_name())
                task.cancel()
        if self._generator is not None:
            await self._generator.aclose()

    async def _run(self, agent: Agent, path: Path) -> None:
        bound = log.bind(call_sid=path.stem, agent=agent.name)
        try:
            record = await asyncio.to_thread(read_json, path)
            if record is None:
                bound.error("analysis.no_record", path=str(path))
                return
            if agent.analysis is not None:
                analysis = await self.analyse(agent, record)
                record["analysis"] = analysis
                self._on_outcome("analysis", str(analysis["status"]))
                await asyncio.to_thread(write_json_atomic, path, record)
                bound.info("analysis.done", status=analysis["status"])
            if self._poster is not None:
                body = orjson.dumps(record)
                outcome = await self._poster.deliver(path.stem, body)
                record["analysis_webhook"] = {**outcome, "at": iso_utc(datetime.now(UTC))}
                self._on_outcome("analysis_webhook", str(outcome["status"]))
                await asyncio.to_thread(write_json_atomic, path, record)
                level = bound.info if outcome["status"] == "delivered" else bound.error
                level("analysis.webhook", **outcome)
        except OSError as exc:  # the record could not be read or rewritten
            bound.error("analysis.record_failed", error=repr(exc))

    async def analyse(self, agent: Agent, record: Mapping[str, Any]) -> dict[str, Any]:
        """`{"status": "ok", "result": {...}}` or `{"status": "error", "error": ...}`."""
        config = agent.analysis
        assert config is not None
        model = config.model or self._model
        outcome: dict[str, Any] = {"model": model}
        if self._generator is None:
            return {**outcome, "status": "error", "error": "GEMINI_API_KEY is not set"}
        try:
            text = await self._generator.generate(
                model, analysis_prompt(config.prompt, record), config.schema_
            )
            outcome |= {"status": "ok", "result": parse_answer(text, config.schema_)}
        except Exception as exc:  # the edge to an outside service: record why, go on
            outcome |= {"status": "error", "error": str(exc)[:500] or type(exc).__name__}
        outcome["at"] = iso_utc(datetime.now(UTC))
        return outcome
