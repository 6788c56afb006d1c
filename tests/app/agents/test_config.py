"""The agents file: what loads, and the one clear message for everything that does not."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.agents.loader import build_agents
from app.errors import ConfigError
from app.settings import load_settings

GOOD = """
[agents.front-desk]
default = true
numbers = ["+15550100100"]
system_prompt = "You are the front desk of Example Dental."
voice = "Kore"
language = "en-us"
tools = ["end_call", "appointments"]

[agents.after-hours]
numbers = ["+15550100200", "+15550100201"]
system_prompt_file = "prompts/after_hours.md"
greeting = "Tell the caller we are closed until {local_date}."
timezone = "America/New_York"
record = false
dtmf = "ignore"
tools = ["end_call", "transfer_call"]
tool_behavior = { transfer_call = "NON_BLOCKING" }
transfer_allowlist = ["+15550100999"]

[agents.after-hours.live]
affective_dialog = true
thinking_budget = 0
activity_detection = { start_sensitivity = "low", silence_duration_ms = 800 }
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts" / "after_hours.md").write_text("We are closed.\n")
    path = tmp_path / "agents.toml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, **settings: object):  # type: ignore[no-untyped-def]
    return build_agents(load_settings(env_file=None, agents_file=write(tmp_path, text), **settings))


def test_a_good_file_builds_every_agent(tmp_path: Path) -> None:
    book = load(tmp_path, GOOD)
    assert book.default.name == "front-desk"
    after = book.for_number("+1 (555) 010-0201")
    assert after.name == "after-hours"
    assert after.instructions == "We are closed."
    assert (after.record, after.dtmf, after.timezone) == (False, "ignore", "America/New_York")
    assert after.voice == "Puck"  # not set: GEMINI_VOICE's default
    decls = {d["name"]: d for d in after.registry.declarations()}
    assert decls["transfer_call"]["behavior"] == "NON_BLOCKING"
    assert "behavior" not in decls["end_call"]
    assert after.transfer_allowlist == frozenset({"+15550100999"})
    front = book.for_number("+15550100100")
    assert front.registry.names()[:2] == ["end_call", "book_appointment"]
    assert front.language == "en-US"  # written en-us: BCP-47's usual casing
    assert book.for_number("+15559999999") is book.default


def test_without_a_file_the_environment_is_the_default_agent() -> None:
    settings = load_settings(env_file=None, system_prompt="Env prompt.", gemini_voice="Kore")
    book = build_agents(settings)
    assert len(book) == 1
    agent = book.for_number("+15550100100")
    assert (agent.name, agent.instructions, agent.voice) == ("default", "Env prompt.", "Kore")
    assert agent.registry.names() == ["end_call", "transfer_call"]


BAD = [
    ('voice = "Bob"', "agent 'front-desk', field 'voice': unknown voice 'Bob'"),
    ('colour = "blue"', "agent 'front-desk', field 'colour': unknown key"),
    ('language = "english"', "agent 'front-desk', field 'language': 'english' is not a BCP-47"),
    ('timezone = "Mars/Olympus"', "agent 'front-desk', field 'timezone': unknown time zone"),
    ('dtmf = "maybe"', "agent 'front-desk', field 'dtmf'"),
    ('numbers = ["5550100"]', "agent 'front-desk', field 'numbers': '5550100' is not an E.164"),
    ('system_prompt_file = "nope.md"', "agent 'front-desk', field 'system_prompt_file': no such"),
    ('tools = ["end_call", "fly"]', "agent 'front-desk', field 'tools': unknown tool 'fly'"),
    (
        'tool_behavior = { end_call = "LATER" }',
        "agent 'front-desk', field 'tool_behavior.end_call'",
    ),
    ("live = { thinking_budget = -5 }", "agent 'front-desk', field 'live.thinking_budget'"),
    ("live = { proactive = true }", "agent 'front-desk', field 'live.proactive': unknown key"),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_a_bad_agent_is_one_message_naming_agent_and_field(
    tmp_path: Path, line: str, message: str
) -> None:
    text = f'[agents.front-desk]\ndefault = true\nsystem_prompt = "Hi."\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            text.replace('system_prompt = "Hi."\nsystem_prompt_file', "system_prompt_file"),
        )
    assert message in str(caught.value)
    assert str(caught.value).startswith("AGENTS_FILE ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agents.a]\n[agents.b]\n", "one agent must be default = true"),
        ("[agents.a]\ndefault = true\n[agents.b]\ndefault = true\n", "only one agent may be"),
        (
            '[agents.a]\ndefault = true\nnumbers = ["+15550100100"]\n'
            '[agents.b]\nnumbers = ["+15550100100"]\n',
            "agent 'b': number +15550100100 already belongs to 'a'",
        ),
        ("[agents]\n", "agents: Dictionary should have at least 1 item"),
        ("[agents.a\n", "not valid TOML"),
        ('[agents."a b"]\n', "agent name 'a b'"),
        (
            '[agents.a]\nrecord = false\n[agents.a.analysis]\nprompt = "x"\n'
            '[agents.a.analysis.schema]\ntype = "object"\n',
            "analysis needs record = true",
        ),
    ],
)
def test_file_level_problems(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="AGENTS_FILE") as caught:
        load(tmp_path, text)
    assert message in str(caught.value)


def test_a_missing_agents_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AGENTS_FILE: no such file"):
        load_settings(env_file=None, agents_file=tmp_path / "missing.toml")


def test_the_example_in_docs_agents_md_loads(tmp_path: Path) -> None:
    """docs/agents.md's complete example is a working file (prompt file and tool module
    stand-ins provided), so the documentation cannot drift from the schema."""
    docs = (Path(__file__).parents[3] / "docs" / "agents.md").read_text(encoding="utf-8")
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    book = load(tmp_path, example, tools_module="tests.tools.sample_user_tools")
    front = book.for_number("+15550100100")
    assert front.name == "front-desk" and book.default is front
    assert front.analysis is not None and front.analysis.schema_["required"] == [
        "outcome", "summary",
    ]  # fmt: skip
    assert front.live.activity_detection is not None
    assert book.for_number("+15550100201").name == "after-hours"
