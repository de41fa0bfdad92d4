"""Who speaks next in a scene: the hand-over tool every character carries, and which character
a user's words address. Shared by the cast (which runs the tool) and the offline scripted LLM
(which calls it the way an online LLM would)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

HANDOFF_TOOL = "hand_over"
CHARACTER_ARG = "character"


def handoff_schema(name: str, others: Sequence[str]) -> dict[str, Any]:
    """The tool's raw JSON schema for character `name`; `others` are the names it may pick."""
    return {
        "name": HANDOFF_TOOL,
        "description": (
            f"Give the floor to another character in the scene (you are {name}). Call it when "
            "the user addresses that character by name, or when that character should answer "
            "next. Do not answer yourself after calling it: the chosen character speaks next."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                CHARACTER_ARG: {
                    "type": "string",
                    "enum": list(others),
                    "description": "the name of the character who speaks next",
                }
            },
            "required": [CHARACTER_ARG],
            "additionalProperties": False,
        },
    }


def handoff_arguments(name: str) -> str:
    """The tool call's JSON arguments that pick `name`."""
    return json.dumps({CHARACTER_ARG: name})


def addressed(text: str, names: Sequence[str]) -> str | None:
    """The character the text names first (whole words, any case); the longer name on a tie."""
    best: tuple[int, int, str] | None = None  # (position, -length, name)
    for name in names:
        match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, flags=re.IGNORECASE)
        if match is not None:
            key = (match.start(), -len(name), name)
            best = key if best is None or key < best else best
    return best[2] if best is not None else None
