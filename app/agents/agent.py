"""An agent as a call uses it: prompt and greeting templates, voice, tools, Live options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.agents.config import AnalysisConfig, LiveConfig
from app.live.options import ActivityDetection, LiveOptions
from tools.registry import ToolRegistry


@dataclass(frozen=True)
class Agent:
    name: str
    instructions: str  # may hold {variables}
    greeting: str | None  # may hold {variables}; None: the model waits for the caller
    voice: str
    model: str
    registry: ToolRegistry
    language: str | None = None
    timezone: str = "UTC"
    dtmf: Literal["model", "ignore"] = "model"
    record: bool = True
    transfer_allowlist: frozenset[str] = frozenset()
    live: LiveConfig = field(default_factory=LiveConfig)
    analysis: AnalysisConfig | None = None
    numbers: tuple[str, ...] = ()

    def live_options(self, base: LiveOptions, instructions: str) -> LiveOptions:
        """This agent's session fields on top of the connector's `base` options."""
        changes: dict[str, Any] = {
            "model": self.model,
            "voice": self.voice,
            "instructions": instructions,
            "tool_declarations": self.registry.declarations(),
            "language": self.language,
            "affective_dialog": self.live.affective_dialog,
            "proactive_audio": self.live.proactive_audio,
            "thinking_budget": self.live.thinking_budget,
            "activity_detection": _activity(self.live),
        }
        if self.live.compression_trigger_tokens is not None:
            changes["compression_trigger_tokens"] = self.live.compression_trigger_tokens
        if self.live.compression_target_tokens is not None:
            changes["compression_target_tokens"] = self.live.compression_target_tokens
        return dataclasses.replace(base, **changes)

    def summary(self) -> Mapping[str, Any]:
        """For logs and the call record (no prompt text)."""
        return {"agent": self.name, "model": self.model, "voice": self.voice,
                "language": self.language}  # fmt: skip


def _activity(live: LiveConfig) -> ActivityDetection | None:
    config = live.activity_detection
    if config is None:
        return None
    return ActivityDetection(
        disabled=config.disabled,
        start_of_speech_sensitivity=(
            None if config.start_sensitivity is None
            else f"START_SENSITIVITY_{config.start_sensitivity}"
        ),
        end_of_speech_sensitivity=(
            None if config.end_sensitivity is None
            else f"END_SENSITIVITY_{config.end_sensitivity}"
        ),
        prefix_padding_ms=config.prefix_padding_ms,
        silence_duration_ms=config.silence_duration_ms,
    )  # fmt: skip
