"""A replay host that plays the Azure Functions host for the real Durable Functions SDK.

No Functions host can run here, so this module does what the host and the Durable
extension do for an out-of-process (Python) orchestrator, on a clock of its own (virtual
in the tests; ``rustyflower cloud azure`` moves it with the real time, :mod:`.azure`):

* it keeps each orchestration's history (OrchestratorStarted, ExecutionStarted,
  TaskScheduled/Completed/Failed, TimerCreated/Fired, EventRaised,
  SubOrchestrationInstanceCreated/Completed/Failed, OrchestratorCompleted) and, for every
  *episode*, sends the whole history (old events ``IsPlayed``) to the orchestrator function
  the SDK built from the app (``app.get_functions()``: the ``handle`` of
  ``df.Orchestrator``), exactly as the JSON context the host sends;
* it reads the returned actions (replay schema V2: one list, compound ``whenAny``/``whenAll``
  flattened), checks that the actions already recorded come back identical (else
  :class:`NonDeterminismError`, as the extension's replay would fail), numbers the new
  ones as the extension does (activities, timers and sub-orchestrations share one
  sequence; external-event waits take none) and records them in the history;
* it carries them out: an activity runs in-process through the app's activity function
  (its input decoded and its output encoded by the same converter the worker uses) and
  completes ``durations(name, input)`` virtual seconds later; a timer fires at its
  ``fireAt`` (a cancelled timer still fires, as a durable timer message does, and the
  SDK must ignore it); a sub-orchestration runs as its own instance and reports back; an
  external event is queued to the instance; ``continueAsNew`` starts a new generation
  with the new input and an empty history (messages of the old generation are dropped,
  events raised to the instance are not);
* ``batch``: everything due at the same instant for one instance is delivered in one
  episode, as the host delivers a batch of messages.

:meth:`DurableHost.verify_determinism` replays every recorded episode from scratch (and
each generation's final history) and checks the orchestrator answers identically.

The records it keeps (history types, instances, episodes) are in :mod:`.durable_history`;
the Durable client binding the app's client functions are given, in :mod:`.durable_client`.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import json
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from rustyflower.adapters.localcloud.durable_client import LocalDurableClient
from rustyflower.adapters.localcloud.durable_history import (
    CALL_ACTIVITY,
    CALL_SUB,
    CONTINUE_AS_NEW,
    CREATE_TIMER,
    EPOCH,
    EVENT_RAISED,
    EXECUTION_STARTED,
    EXECUTION_TERMINATED,
    ORCHESTRATOR_COMPLETED,
    ORCHESTRATOR_STARTED,
    SUB_COMPLETED,
    SUB_CREATED,
    SUB_FAILED,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_SCHEDULED,
    TIMER_CREATED,
    TIMER_FIRED,
    WAIT_FOR_EVENT,
    ActivityRun,
    Durations,
    Episode,
    HostError,
    Instance,
    NonDeterminismError,
    QueuedMessage,
    as_history,
    flatten,
    functions_of,
    parse_time,
    signature,
    timestamp,
)

__all__ = ["DurableHost", "EpisodeHook"]

EpisodeHook = Callable[["DurableHost", Instance], None]
"""Called after every episode (the tests' scripted outside world sends events from it)."""


class DurableHost:
    """The host: instances, their histories, a virtual clock and an agenda of messages."""

    def __init__(
        self,
        app: Any,
        *,
        now: datetime = EPOCH,
        durations: Durations | None = None,
        batch: bool = True,
        schema: int = 1,
        long_timers: tuple[str, str] | None = None,
        max_episodes: int | None = 20_000,
        on_episode: EpisodeHook | None = None,
        record: bool = True,
    ) -> None:
        """``max_episodes`` stops an endless orchestration (None: no limit, a long-running
        host); ``record=False`` keeps only each instance's last episode and no activity runs
        (a long-running host: :meth:`verify_determinism` then checks only what is kept)."""
        self.functions = functions_of(app)
        self.clock = now
        self.durations = durations or (lambda _name, _input: 0.0)
        self.batch = batch
        self.schema = schema
        self.long_timers = long_timers
        self.max_episodes = max_episodes
        self.on_episode = on_episode
        self.record = record
        self.instances: dict[str, Instance] = {}
        self.activity_runs: list[ActivityRun] = []
        self.episode_count = 0
        self._agenda: list[QueuedMessage] = []
        self._order: Iterator[int] = itertools.count()
        self._executions: Iterator[int] = itertools.count(1)

    # --- the management side (what the Durable client reaches) -------------------------

    def start_new(self, name: str, instance_id: str, client_input: Any) -> str:
        """Start (or replace a non-running) orchestration, as the extension's start API."""
        if name not in self.functions:
            raise HostError(f"no function named {name!r}")
        existing = self.instances.get(instance_id)
        if existing is not None and not existing.ended:
            raise HostError(
                f"An Orchestration instance with the status {existing.status} already exists."
            )
        text = None if client_input is None else json.dumps(client_input)
        self._create(instance_id, name, text, parent=None)
        return instance_id

    def raise_event(
        self, instance_id: str, name: str, data: Any, at: datetime | None = None
    ) -> int:
        """Queue an external event: 202, or 404 (unknown) / 410 (ended) like the API."""
        instance = self.instances.get(instance_id)
        if instance is None:
            return 404
        if instance.ended:
            return 410
        event = {
            "EventType": EVENT_RAISED,
            "EventId": -1,
            "Name": name,
            "Input": json.dumps(data),
        }
        self._push(at or self.clock, instance_id, None, event)
        return 202

    def terminate(self, instance_id: str, reason: str) -> int:
        instance = self.instances.get(instance_id)
        if instance is None:
            return 404
        if instance.ended:
            return 410
        instance.history.append(self._event(EXECUTION_TERMINATED, Input=json.dumps(reason)))
        self._end(instance, "Terminated", reason)
        return 202

    def status_json(self, instance_id: str) -> dict[str, Any] | None:
        instance = self.instances.get(instance_id)
        if instance is None:
            return None
        return {
            "name": instance.name,
            "instanceId": instance.instance_id,
            "createdTime": timestamp(instance.created),
            "lastUpdatedTime": timestamp(instance.updated),
            "input": instance.input,
            "output": instance.output,
            "runtimeStatus": instance.status,
            "customStatus": instance.custom_status,
        }

    # --- running ------------------------------------------------------------------------

    def run(self, until: datetime | None = None) -> None:
        """Deliver messages until none is left (or the next is after ``until``)."""
        while self._agenda:
            if until is not None and self._agenda[0].when > until:
                self.clock = max(self.clock, until)
                return
            self.step()
        if until is not None:
            self.clock = max(self.clock, until)

    def step(self) -> None:
        item = heapq.heappop(self._agenda)
        self.clock = max(self.clock, item.when)
        items = [item]
        if self.batch:
            while (
                self._agenda
                and self._agenda[0].when <= self.clock
                and self._agenda[0].target == item.target
            ):
                items.append(heapq.heappop(self._agenda))
        instance = self.instances[item.target]
        for due in items:
            if instance.ended:
                continue  # a message to an ended instance is dropped
            if due.execution is not None and due.execution != instance.execution:
                continue  # addressed to an older execution (continued as new, replaced)
            instance.inbox.append(
                {"IsPlayed": False, "Timestamp": timestamp(self.clock), **due.event}
            )
        if instance.inbox and not instance.ended:
            self._episode(instance)

    def _push(
        self, when: datetime, target: str, execution: int | None, event: dict[str, Any]
    ) -> None:
        message = QueuedMessage(when, next(self._order), target, execution, event)
        heapq.heappush(self._agenda, message)

    def _event(self, kind: int, event_id: int = -1, **fields: Any) -> dict[str, Any]:
        return {
            "EventType": kind,
            "EventId": event_id,
            "IsPlayed": False,
            "Timestamp": timestamp(self.clock),
            **fields,
        }

    def _create(
        self, instance_id: str, name: str, text: str | None, parent: tuple[str, int, int] | None
    ) -> Instance:
        instance = Instance(instance_id, name, text, parent, created=self.clock, updated=self.clock)
        previous = self.instances.get(instance_id)
        if previous is not None:
            instance.episodes = previous.episodes  # keep the old run's record for checks
        self.instances[instance_id] = instance
        self._begin_generation(instance)
        return instance

    def _begin_generation(self, instance: Instance) -> None:
        instance.execution = next(self._executions)
        started = self._event(
            EXECUTION_STARTED,
            Name=instance.name,
            Version=None,
            Input=instance.input,
            OrchestrationInstance={"InstanceId": instance.instance_id},
        )
        if instance.parent is not None:
            started["ParentInstance"] = {
                "OrchestrationInstance": {"InstanceId": instance.parent[0]}
            }
        self._push(self.clock, instance.instance_id, instance.execution, started)

    # --- one episode --------------------------------------------------------------------

    def context_json(
        self, instance: Instance, history: list[dict[str, Any]], text: str | None = None
    ) -> str:
        context: dict[str, Any] = {
            "history": history,
            "instanceId": instance.instance_id,
            "isReplaying": any(e["EventType"] == ORCHESTRATOR_COMPLETED for e in history),
            "parentInstanceId": instance.parent[0] if instance.parent else None,
            "input": instance.input if text is None else text,
            "upperSchemaVersion": self.schema,
        }
        if self.long_timers is not None:
            context["maximumShortTimerDuration"] = self.long_timers[0]
            context["longRunningTimerIntervalDuration"] = self.long_timers[1]
        return json.dumps(context)

    def call_orchestrator(
        self, name: str, context: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        handle = self.functions[name].get_user_function()
        try:
            answer = handle(context)
        except Exception as error:  # the orchestrator raised: the orchestration fails
            return None, str(error).split("\n\n$OutOfProcData$")[0]
        return json.loads(answer), None

    def _episode(self, instance: Instance) -> None:
        self.episode_count += 1
        if self.max_episodes is not None and self.episode_count > self.max_episodes:
            raise HostError(f"more than {self.max_episodes} episodes: an endless orchestration?")
        instance.status = "Running"
        instance.updated = self.clock
        new = [self._event(ORCHESTRATOR_STARTED), *instance.inbox]
        instance.inbox = []
        old = [{**event, "IsPlayed": True} for event in instance.history]
        sent = old + [{**event, "IsPlayed": False} for event in new]
        context = self.context_json(instance, sent)
        answer, error = self.call_orchestrator(instance.name, context)
        instance.episodes.append(Episode(instance.generation, context, answer, error))
        if not self.record:
            del instance.episodes[:-1]
        instance.history += new
        if answer is None:
            instance.history.append(self._event(ORCHESTRATOR_COMPLETED))
            self._end(instance, "Failed", error)
            return
        instance.custom_status = answer.get("customStatus")
        actions = flatten(answer.get("actions", []))
        continue_as_new = next((a for a in actions if a["actionType"] == CONTINUE_AS_NEW), None)
        scheduling = [
            a for a in actions if a["actionType"] not in (WAIT_FOR_EVENT, CONTINUE_AS_NEW)
        ]
        for index, recorded in enumerate(instance.scheduled):
            if index >= len(scheduling) or signature(scheduling[index]) != recorded:
                got = signature(scheduling[index]) if index < len(scheduling) else None
                raise NonDeterminismError(
                    f"{instance.instance_id}: action {index} was {recorded}, the replay gave {got}"
                )
        for action in scheduling[len(instance.scheduled) :]:
            self._schedule(instance, action)
        instance.cancelled_timers = sum(
            1 for a in scheduling if a["actionType"] == CREATE_TIMER and a.get("isCanceled")
        )
        instance.history.append(self._event(ORCHESTRATOR_COMPLETED))
        if answer.get("isDone"):
            if continue_as_new is not None:
                self._continue_as_new(instance, continue_as_new.get("input"))
            else:
                self._end(instance, "Completed", None, output=answer.get("output"))
        if self.on_episode is not None:
            self.on_episode(self, instance)

    def _schedule(self, instance: Instance, action: dict[str, Any]) -> None:
        kind = action["actionType"]
        sequence = len(instance.scheduled)
        instance.scheduled.append(signature(action))
        execution = instance.execution
        if kind == CALL_ACTIVITY:
            name = action["functionName"]
            instance.history.append(
                self._event(TASK_SCHEDULED, sequence, Name=name, Input=action.get("input"))
            )
            decoded, outcome = self.run_activity(name, action.get("input"))
            seconds = self.durations(name, decoded)
            self._push(
                self.clock + timedelta(seconds=seconds),
                instance.instance_id,
                execution,
                {**outcome, "TaskScheduledId": sequence},
            )
        elif kind == CREATE_TIMER:
            fire_at = parse_time(action["fireAt"])
            instance.history.append(self._event(TIMER_CREATED, sequence, FireAt=action["fireAt"]))
            self._push(
                max(fire_at, self.clock),
                instance.instance_id,
                execution,
                {
                    "EventType": TIMER_FIRED,
                    "EventId": -1,
                    "TimerId": sequence,
                    "FireAt": action["fireAt"],
                },
            )
        elif kind == CALL_SUB:
            child_id = action.get("instanceId") or f"{instance.instance_id}:{sequence}"
            instance.history.append(
                self._event(
                    SUB_CREATED,
                    sequence,
                    Name=action["functionName"],
                    InstanceId=child_id,
                    Input=action.get("input"),
                )
            )
            existing = self.instances.get(child_id)
            if existing is not None and not existing.ended:
                self._push(
                    self.clock,
                    instance.instance_id,
                    execution,
                    {
                        "EventType": SUB_FAILED,
                        "EventId": -1,
                        "TaskScheduledId": sequence,
                        "Reason": f"An orchestration with instance ID {child_id} already exists",
                        "Details": None,
                    },
                )
                return
            self._create(
                child_id,
                action["functionName"],
                action.get("input"),
                parent=(instance.instance_id, execution, sequence),
            )
        else:
            raise HostError(f"{instance.instance_id}: unexpected action {action}")

    def _continue_as_new(self, instance: Instance, text: str | None) -> None:
        instance.generations.append(
            (instance.input, instance.history, instance.episodes[-1].answer)
        )
        instance.generation += 1
        instance.input = text
        instance.history = []
        instance.scheduled = []
        instance.inbox = []
        self._begin_generation(instance)

    def _end(
        self, instance: Instance, status: str, failure: str | None, output: Any = None
    ) -> None:
        if not instance.generations or instance.generations[-1][1] is not instance.history:
            last = instance.episodes[-1].answer if instance.episodes else None
            instance.generations.append((instance.input, instance.history, last))
        instance.status = status
        instance.failure = failure
        instance.output = output if status == "Completed" else failure
        instance.finished_at = self.clock
        instance.updated = self.clock
        if instance.parent is None:
            return
        parent_id, execution, sequence = instance.parent
        if status == "Completed":
            event = {
                "EventType": SUB_COMPLETED,
                "EventId": -1,
                "TaskScheduledId": sequence,
                "Result": json.dumps(output),
            }
        else:
            event = {
                "EventType": SUB_FAILED,
                "EventId": -1,
                "TaskScheduledId": sequence,
                "Reason": f"{status}: {failure}",
                "Details": None,
            }
        if status != "Terminated":  # a terminated sub-orchestration tells its parent nothing
            self._push(self.clock, parent_id, execution, event)

    # --- activities ----------------------------------------------------------------------

    def run_activity(self, name: str, text: str | None) -> tuple[Any, dict[str, Any]]:
        """Run an activity function as the worker does; (decoded input, completion event)."""
        function = self.functions.get(name)
        if function is None:
            raise HostError(f"no activity function {name!r}")
        decoded = ActivityTriggerConverter.decode(meta.Datum(text, "json"), trigger_metadata=None)
        if self.record:
            self.activity_runs.append(ActivityRun(name, decoded, self.clock))
        user = function.get_user_function()
        trigger = function.get_trigger()
        assert trigger is not None
        kwargs: dict[str, Any] = {trigger.name: decoded}
        target = getattr(user, "client_function", None)
        if target is not None:
            for binding in function.get_bindings():
                if binding.get_dict_repr().get("type") == "durableClient":
                    kwargs[binding.name] = LocalDurableClient(self)
        else:
            target = user
        try:
            result = target(**kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            encoded = ActivityTriggerConverter.encode(result, expected_type=None).value
        except Exception as error:
            return decoded, {
                "EventType": TASK_FAILED,
                "EventId": -1,
                "Reason": str(error),
                "Details": traceback.format_exc(),
            }
        return decoded, {"EventType": TASK_COMPLETED, "EventId": -1, "Result": encoded}

    # --- checks -----------------------------------------------------------------------------

    def verify_determinism(self) -> int:
        """Replay every recorded episode, and each generation's final history, from scratch.

        Each must give the very answer recorded (actions, done, output, custom status);
        a final history must give every action its generation scheduled. Returns how many
        replays were checked.
        """
        checked = 0
        for instance in self.instances.values():
            for episode in instance.episodes:
                answer, error = self.call_orchestrator(instance.name, episode.context)
                if (answer, error) != (episode.answer, episode.error):
                    raise NonDeterminismError(
                        f"{instance.instance_id}: replaying an episode of generation "
                        f"{episode.generation} gave another answer"
                    )
                checked += 1
            generations = list(instance.generations)
            if not instance.ended and instance.history:
                generations.append((instance.input, instance.history, None))
            for text, history, last in generations:
                played = [{**event, "IsPlayed": True} for event in history]
                answer, _error = self.call_orchestrator(
                    instance.name, self.context_json(instance, played, text)
                )
                if answer is None:
                    continue
                scheduled = [
                    signature(a)
                    for a in flatten(answer.get("actions", []))
                    if a["actionType"] not in (WAIT_FOR_EVENT, CONTINUE_AS_NEW)
                ]
                expected = [
                    (event["EventType"], event.get("Name"), event.get("FireAt"))
                    for event in history
                    if event["EventType"] in (TASK_SCHEDULED, TIMER_CREATED, SUB_CREATED)
                ]
                got = [as_history(s) for s in scheduled]
                if got != expected:
                    raise NonDeterminismError(
                        f"{instance.instance_id}: a full replay scheduled {got}, the history "
                        f"holds {expected}"
                    )
                if last is not None and answer != last:
                    raise NonDeterminismError(
                        f"{instance.instance_id}: a full replay of a finished generation "
                        "answered differently from its last episode"
                    )
                checked += 1
        return checked
