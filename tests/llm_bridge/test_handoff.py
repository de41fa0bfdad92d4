"""Which character the user's words address."""

from __future__ import annotations

import json

from llm_bridge.handoff import CHARACTER_ARG, addressed, handoff_arguments, handoff_schema

NAMES = ["Ann", "Anna", "Bob"]


def test_the_first_named_character_is_addressed():
    assert addressed("Bob, and you Ann?", NAMES) == "Bob"
    assert addressed("what do you think, ann?", NAMES) == "Ann"
    assert addressed("Anna, hello", NAMES) == "Anna"  # not Ann: whole names only
    assert addressed("Bobby and Annabel", NAMES) is None
    assert addressed("nobody in particular", NAMES) is None


def test_the_tool_offers_only_the_other_characters():
    schema = handoff_schema("Ann", ["Bob"])
    assert schema["parameters"]["properties"][CHARACTER_ARG]["enum"] == ["Bob"]
    assert "you are Ann" in schema["description"]
    assert json.loads(handoff_arguments("Bob")) == {CHARACTER_ARG: "Bob"}
