"""The agents file (`AGENTS_FILE=agents.toml`): its schema and its loader.

Read with stdlib `tomllib`, validated with pydantic at start-up. Anything wrong (an
unknown key, a bad voice, a missing prompt file, two agents on one number) stops the
server with one `ConfigError` naming the agent and the field. docs/agents.md documents
every key with a complete example.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.errors import ConfigError

# Gemini's prebuilt voices (the Live API and TTS share them). Matched case-insensitively.
VOICES = (
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe",
    "Autonoe", "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib",
    "Rasalgethi", "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima",
    "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat",
)  # fmt: skip
_VOICE_BY_KEY = {v.lower(): v for v in VOICES}
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
# BCP-47 as the Live API takes it: language[-Script][-REGION], e.g. en-US, cmn-CN, sr-Latn-RS.
BCP47 = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$")
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

Sensitivity = Literal["LOW", "HIGH"]


def _canonical_tag(tag: str) -> str:
    """`EN-us` -> `en-US`, `sr-latn-rs` -> `sr-Latn-RS` (BCP-47's conventional casing)."""
    parts = tag.strip().replace("_", "-").split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        out.append(part.title() if len(part) == 4 else part.upper())
    return "-".join(out)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActivityDetectionConfig(_Strict):
    """`[agents.NAME.live.activity_detection]`: the Live API's automatic activity detection."""

    disabled: bool | None = None
    start_sensitivity: Sensitivity | None = None  # -> START_SENSITIVITY_LOW | _HIGH
    end_sensitivity: Sensitivity | None = None  # -> END_SENSITIVITY_LOW | _HIGH
    prefix_padding_ms: int | None = Field(default=None, ge=0)
    silence_duration_ms: int | None = Field(default=None, ge=0)

    @field_validator("start_sensitivity", "end_sensitivity", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class LiveConfig(_Strict):
    """`[agents.NAME.live]`: Live options, each sent in the setup only when set."""

    activity_detection: ActivityDetectionConfig | None = None
    affective_dialog: bool | None = None
    proactive_audio: bool | None = None
    thinking_budget: int | None = Field(default=None, ge=-1)
    compression_trigger_tokens: int | None = Field(default=None, gt=0)
    compression_target_tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _target_below_trigger(self) -> LiveConfig:
        trigger, target = self.compression_trigger_tokens, self.compression_target_tokens
        if trigger is not None and target is not None and target >= trigger:
            raise ValueError("compression_target_tokens must be below compression_trigger_tokens")
        return self


class AnalysisConfig(_Strict):
    """`[agents.NAME.analysis]`: what to ask Gemini about a finished call."""

    prompt: str = Field(min_length=1)
    # A JSON schema (an object schema) the answer must follow; sent as responseJsonSchema.
    schema_: dict[str, Any] = Field(alias="schema")
    model: str | None = None  # default: ANALYSIS_MODEL

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError('must be a JSON schema with type = "object"')
        return value


ToolBehavior = Literal["BLOCKING", "NON_BLOCKING"]


class AgentConfig(_Strict):
    """One `[agents.NAME]` table."""

    default: bool = False
    numbers: tuple[str, ...] = ()
    system_prompt: str | None = None
    system_prompt_file: Path | None = None
    greeting: str | None = None
    voice: str | None = None
    language: str | None = None
    model: str | None = None
    # Names of built-ins, example sets and TOOLS_MODULE tools; None: TOOLS + TOOLS_MODULE.
    tools: tuple[str, ...] | None = None
    # Per tool: "NON_BLOCKING" lets the model talk while it runs (the tool's result
    # chooses the response scheduling, see docs/agents.md).
    tool_behavior: dict[str, ToolBehavior] = Field(default_factory=dict)
    transfer_allowlist: tuple[str, ...] | None = None
    record: bool = True
    timezone: str = "UTC"
    dtmf: Literal["model", "ignore"] = "model"
    live: LiveConfig = LiveConfig()
    analysis: AnalysisConfig | None = None

    @field_validator("numbers", "transfer_allowlist")
    @classmethod
    def _e164(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for number in value or ():
            if not E164.match(number):
                raise ValueError(f"{number!r} is not an E.164 number such as +15550100100")
        return value

    @field_validator("voice")
    @classmethod
    def _voice(cls, value: str | None) -> str | None:
        if value is None:
            return None
        known = _VOICE_BY_KEY.get(value.lower())
        if known is None:
            raise ValueError(f"unknown voice {value!r}; known voices: {', '.join(VOICES)}")
        return known

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        canonical = _canonical_tag(value)
        if not BCP47.match(canonical):
            raise ValueError(f"{value!r} is not a BCP-47 language code such as en-US")
        return canonical

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_prompt(self) -> AgentConfig:
        if self.system_prompt is not None and self.system_prompt_file is not None:
            raise ValueError("give system_prompt or system_prompt_file, not both")
        if self.analysis is not None and not self.record:
            raise ValueError("analysis needs record = true (it reads the call record)")
        return self


AgentName = Annotated[str, Field(pattern=AGENT_NAME.pattern)]


class AgentsFile(_Strict):
    """The whole file: `[agents.NAME]` tables."""

    agents: dict[AgentName, AgentConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _routing(self) -> AgentsFile:
        defaults = [name for name, agent in self.agents.items() if agent.default]
        if len(defaults) > 1:
            raise ValueError(f"only one agent may be default = true; found {defaults}")
        if not defaults and len(self.agents) > 1:
            raise ValueError("one agent must be default = true (it answers unknown numbers)")
        owner: dict[str, str] = {}
        for name, agent in self.agents.items():
            for number in agent.numbers:
                if number in owner:
                    raise ValueError(
                        f"agent {name!r}: number {number} already belongs to {owner[number]!r}"
                    )
                owner[number] = name
        return self

    @property
    def default_name(self) -> str:
        return next((n for n, a in self.agents.items() if a.default), next(iter(self.agents)))


def load_agents_file(path: Path) -> AgentsFile:
    """Parse and validate; relative prompt files are resolved against the file's folder."""
    where = f"AGENTS_FILE {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    try:
        parsed = AgentsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe(exc)}") from None
    problems = []
    resolved = {}
    for name, agent in parsed.agents.items():
        prompt_file = agent.system_prompt_file
        if prompt_file is not None:
            prompt_file = prompt_file if prompt_file.is_absolute() else path.parent / prompt_file
            if not prompt_file.is_file():
                problems.append(
                    f"agent {name!r}, field 'system_prompt_file': no such file: {prompt_file}"
                )
            agent = agent.model_copy(update={"system_prompt_file": prompt_file})
        resolved[name] = agent
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return parsed.model_copy(update={"agents": resolved})


def describe(exc: ValidationError) -> str:
    """pydantic's errors as `agent 'x', field 'y': message`, joined."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        if len(loc) >= 2 and loc[0] == "agents":
            field = ".".join(loc[2:]) or "(table)"
            if err["type"] == "string_pattern_mismatch" and len(loc) == 3:
                problems.append(f"agent name {loc[1]!r}: use letters, digits, - and _")
                continue
            problems.append(f"agent {loc[1]!r}, field {field!r}: {message}")
        else:
            problems.append(f"{'.'.join(loc) or 'file'}: {message}")
    return "; ".join(problems)
