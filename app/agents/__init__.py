"""Agents: several prompts, voices and tool sets on several numbers (AGENTS_FILE), the
call setup hook, keypad input and post-call analysis. See docs/agents.md."""
