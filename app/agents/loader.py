"""The `AgentBook` of this process, from AGENTS_FILE or (without one) the environment."""

from __future__ import annotations

from typing import Any

from app.agents.agent import Agent
from app.agents.config import AgentConfig, load_agents_file
from app.agents.routing import AgentBook
from app.agents.tools import agent_registry, available_tools, load_module_tools
from app.errors import ConfigError
from app.settings import Settings
from tools.loader import ToolLoadError
from tools.registry import Tool

DEFAULT_AGENT = "default"


def build_agents(settings: Settings) -> AgentBook:
    """Raises `ConfigError` naming the agent and field (or the variable) that is wrong."""
    try:
        module = load_module_tools(settings.tools_module)
    except ToolLoadError as exc:
        raise ConfigError(f"TOOLS_MODULE: {exc}") from None
    if settings.agents_file is None:
        return AgentBook({DEFAULT_AGENT: env_agent(settings, module)}, DEFAULT_AGENT)
    parsed = load_agents_file(settings.agents_file)
    agents = {
        name: file_agent(settings, name, config, module) for name, config in parsed.agents.items()
    }
    return AgentBook(agents, parsed.default_name)


def env_agent(settings: Settings, module: list[Tool[..., Any]]) -> Agent:
    """The single agent of the environment variables (SYSTEM_PROMPT, GEMINI_VOICE, ...)."""
    allowlist = settings.transfer_numbers
    available = available_tools(module, allowlist)
    try:
        registry = agent_registry(settings.enabled_tools, available)
    except ToolLoadError as exc:
        raise ConfigError(f"TOOLS: {exc}") from None
    for t in module:  # TOOLS_MODULE's tools are all offered, as before agents files
        if t.name not in registry:
            registry.register(t)
    return Agent(
        name=DEFAULT_AGENT,
        instructions=settings.instructions,
        greeting=settings.greeting or None,
        voice=settings.gemini_voice,
        model=settings.gemini_model,
        registry=registry,
        transfer_allowlist=allowlist,
    )


def file_agent(
    settings: Settings, name: str, config: AgentConfig, module: list[Tool[..., Any]]
) -> Agent:
    """One `[agents.NAME]`; keys it leaves out fall back to the environment's values."""
    where = f"AGENTS_FILE {settings.agents_file}: agent {name!r}"
    allowlist = (
        frozenset(config.transfer_allowlist)
        if config.transfer_allowlist is not None
        else settings.transfer_numbers
    )
    available = available_tools(module, allowlist)
    names = config.tools
    if names is None:
        names = (*settings.enabled_tools, *(t.name for t in module))
    try:
        registry = agent_registry(names, available, config.tool_behavior)
    except ToolLoadError as exc:
        field = "tool_behavior" if "tool_behavior" in str(exc) else "tools"
        raise ConfigError(f"{where}, field {field!r}: {exc}") from None
    if config.system_prompt_file is not None:
        instructions = config.system_prompt_file.read_text(encoding="utf-8").strip()
    else:
        instructions = config.system_prompt or settings.instructions
    greeting = config.greeting if config.greeting is not None else settings.greeting
    return Agent(
        name=name,
        instructions=instructions,
        greeting=greeting or None,
        voice=config.voice or settings.gemini_voice,
        model=config.model or settings.gemini_model,
        registry=registry,
        language=config.language,
        timezone=config.timezone,
        dtmf=config.dtmf,
        record=config.record,
        transfer_allowlist=allowlist,
        live=config.live,
        analysis=config.analysis,
        numbers=config.numbers,
    )
