"""Event triggers: a flow starts, or an instance is signalled, when a message arrives.

Declared in the flow (``triggers:``) and carried out by each runtime with its own means
(docs/triggers.md): a Redis stream on the site, an SQS queue or an EventBridge rule
through a Lambda in AWS, a Storage Queue or an Event Grid subscription through a function
in Azure. The sources are the same names the service tasks use: a trigger on queue
``orders`` hears what ``queue.send`` sends to ``orders``, wherever the flow runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from rustyflower.core.model.common import MODEL_CONFIG, PathText, ReferencePath
from rustyflower.core.services.requests import RESOURCE_NAME


def _resource_name(value: str) -> str:
    if not RESOURCE_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a resource name (3-63 lower-case letters, digits and single "
            "hyphens, starting and ending with a letter or digit)"
        )
    return value


ResourceName = Annotated[str, AfterValidator(_resource_name)]


class Trigger(BaseModel):
    """Start the flow (``action: start``) or signal an instance (``action: signal``) for
    each message of a queue or each event of a bus."""

    model_config = MODEL_CONFIG

    name: ResourceName
    source: Literal["queue", "events"]
    queue: ResourceName | None = None
    bus: ResourceName | None = None
    type: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="events: only events of this type (None: every event)."
    )
    action: Literal["start", "signal"] = "start"
    event: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="signal: the event delivered to the instance."
    )
    instance_path: ReferencePath | None = Field(
        default=None, description="signal: where the message holds the instance's id."
    )
    input_path: PathText = Field(
        default="$",
        description="What of the message becomes the flow's input or the event's data "
        "(a queue message: its JSON value; an event: {type, source, detail}).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Trigger:
        if self.source == "queue" and (self.queue is None or self.bus is not None):
            raise ValueError("a queue trigger names its queue (and no bus)")
        if self.source == "events" and (self.bus is None or self.queue is not None):
            raise ValueError("an events trigger names its bus (and no queue)")
        if self.type is not None and self.source != "events":
            raise ValueError("type filters events; a queue trigger takes every message")
        if self.action == "signal" and (self.event is None or self.instance_path is None):
            raise ValueError("a signal trigger names its event and its instance_path")
        if self.action == "start" and (self.event is not None or self.instance_path is not None):
            raise ValueError("event and instance_path belong to a signal trigger")
        return self

    @property
    def resource(self) -> str:
        """The queue or bus the trigger listens to."""
        found = self.queue if self.source == "queue" else self.bus
        assert found is not None
        return found
