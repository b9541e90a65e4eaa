"""Triggers in the model and the decision every runtime takes for one message."""

from __future__ import annotations

from typing import Any

import pytest

from rustyflower.core.errors import DefinitionError
from rustyflower.core.model import parse_definition
from rustyflower.core.triggers import queue_message, trigger_action, trigger_instance_id

STATES = {"Wait": {"type": "wait_for_event", "event": "go", "end": True}}


def flow(*triggers: dict[str, Any]) -> Any:
    return parse_definition(
        {"name": "f", "start_at": "Wait", "states": STATES, "triggers": list(triggers)}
    )


@pytest.mark.parametrize(
    ("trigger", "fragment"),
    [
        ({"name": "t-1", "source": "queue"}, "names its queue"),
        ({"name": "t-1", "source": "events", "queue": "q-1"}, "names its bus"),
        ({"name": "t-1", "source": "queue", "queue": "q-1", "type": "x"}, "type filters events"),
        ({"name": "t-1", "source": "queue", "queue": "q-1", "action": "signal"}, "its event"),
        ({"name": "t-1", "source": "queue", "queue": "q-1", "event": "go"}, "signal trigger"),
        ({"name": "T!", "source": "queue", "queue": "q-1"}, "not a resource name"),
        (
            {
                "name": "t-1",
                "source": "queue",
                "queue": "q-1",
                "action": "signal",
                "event": "other",
                "instance_path": "$.id",
            },
            "never waits for 'other'",
        ),
    ],
)
def test_a_trigger_is_checked_with_the_flow(trigger: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DefinitionError) as raised:
        flow(trigger)
    assert any(fragment in problem.message for problem in raised.value.problems), raised.value


def test_names_are_unique() -> None:
    same = {"name": "t-1", "source": "queue", "queue": "q-1"}
    with pytest.raises(DefinitionError, match="used twice"):
        flow(same, same)


def test_a_flow_without_triggers_keeps_its_document() -> None:
    assert "triggers" not in flow().document()


def test_start_makes_the_instance_id_from_the_message() -> None:
    definition = flow({"name": "new", "source": "queue", "queue": "q-1", "input_path": "$.o"})
    action = trigger_action(definition.name, definition.triggers[0], "m-1", {"o": {"a": 1}})
    assert (action.kind, action.instance_id, action.data) == ("start", "f:new@m-1", {"a": 1})
    missing = trigger_action(definition.name, definition.triggers[0], "m-2", {"x": 1})
    assert missing.kind == "ignore" and "input_path" in missing.reason
    odd = trigger_instance_id("f", "new", "id\x00with control")
    assert odd.startswith("f:new@") and "\x00" not in odd


def test_signal_reads_the_instance_and_filters_the_type() -> None:
    definition = flow(
        {
            "name": "oks",
            "source": "events",
            "bus": "b-1",
            "type": "approved",
            "action": "signal",
            "event": "go",
            "instance_path": "$.detail.id",
            "input_path": "$.detail",
        }
    )
    trigger = definition.triggers[0]
    event = {"type": "approved", "source": "s", "detail": {"id": "i-1"}}
    action = trigger_action(definition.name, trigger, "e", event)
    assert (action.kind, action.instance_id, action.event, action.data) == (
        "signal",
        "i-1",
        "go",
        {"id": "i-1"},
    )
    assert trigger_action(definition.name, trigger, "e", {**event, "type": "no"}).kind == "ignore"
    no_id = {**event, "detail": {"id": 7}}
    assert trigger_action(definition.name, trigger, "e", no_id).kind == "ignore"


def test_a_queue_message_is_its_json_value_or_its_text() -> None:
    assert queue_message(b'{"a": 1}') == {"a": 1}
    assert queue_message("plain words") == "plain words"
