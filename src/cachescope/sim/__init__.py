"""The offline Messages API: Anthropic's prompt cache, simulated behind the real `anthropic` SDK.

>>> import anthropic
>>> from cachescope.sim import Simulator, VirtualClock
>>> sim = Simulator(clock=VirtualClock())
>>> client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())

Every rule the documentation leaves open is a setting (`SimSettings`); `Fault` injects failures;
`ScriptedResponder`, `TextReply`, `ToolUseReply` and `Reply` script what the model says.
"""

from __future__ import annotations

from cachescope.sim._clock import Clock, RealClock, VirtualClock
from cachescope.sim._errors import APIErrorResponse
from cachescope.sim._faults import Fault, FaultKind
from cachescope.sim._responder import (
    Reply,
    Responder,
    ScriptedResponder,
    TextReply,
    ToolUseReply,
)
from cachescope.sim._settings import SimSettings
from cachescope.sim._simulator import Outcome, Simulator

__all__ = [
    "APIErrorResponse",
    "Clock",
    "Fault",
    "FaultKind",
    "Outcome",
    "RealClock",
    "Reply",
    "Responder",
    "ScriptedResponder",
    "SimSettings",
    "Simulator",
    "TextReply",
    "ToolUseReply",
    "VirtualClock",
]
