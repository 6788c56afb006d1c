"""What an agent adds to the bridge's caller input: keypad digits, speech marks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.agents.activity import ActivityMarker
from app.agents.agent import Agent
from app.agents.keypad import Keypad

if TYPE_CHECKING:
    from app.call.bridge import CallBridge


def agent_inputs(bridge: CallBridge, agent: Agent, log: Any) -> None:
    if agent.dtmf == "model":
        bridge.keypad = Keypad(bridge.link.send_text, log)
    detection = agent.live.activity_detection
    if detection is not None and detection.disabled:
        bridge.activity = ActivityMarker(bridge.link, detection.silence_duration_ms)
