"""Compiled machines for Terraform: ASL with placeholders, and the ``flows`` variable.

``python -m lambda_aws.asl FLOW.yaml [MORE.yaml ...] --out build/asl --tfvars
infra/terraform/aws/flows.auto.tfvars.json [--activities myapp.activities]`` compiles
every given flow (sub-flows included) with ``adapters.aws.compile_flow`` and writes

* ``<out>/<flow>-v<version>.asl.json``: the ASL, whose Lambda ARNs are the placeholders
  ``${activity_function_arn}`` / ``${token_function_arn}``, whose sub-flow machines are
  ``${state_machine_arn_prefix}<flow>-v<version>`` and whose service tasks' queues,
  buses and buckets are ``${service_queue_url_base}${service_prefix}<name>`` and
  ``${service_prefix}<name>``; Terraform replaces exactly these texts;
* the ``flows`` variable of infra/terraform/aws (``--tfvars``): each flow's ASL file and its
  cron schedules translated to EventBridge Scheduler expressions.

``--activities`` applies the activities' default retry and timeout to the definitions
first, as the on-premises registry does, so that the machines' digests are the ones the
site's snapshots carry. A definition or schedule that cannot be compiled is reported in
one line (exit status 2), and then nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from croniter import croniter

from lambda_aws.settings import (
    ASL_ACTIVITY_ARN,
    ASL_SERVICE_PREFIX,
    ASL_SERVICE_QUEUE_URL_BASE,
    ASL_STATE_MACHINE_PREFIX,
    ASL_TOKEN_ARN,
)
from rustyflower.adapters.aws import AwsServiceBindings, compile_to_json
from rustyflower.adapters.aws.deployment import flow_arns, state_machine_name
from rustyflower.core.activities import iter_tasks, load_registry
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.model import FlowDefinition, load_definition
from rustyflower.core.schedules import DeclaredSchedule, cron_expression, declared_schedules
from rustyflower.core.services import resource_of


def placeholder_flow_arns(definitions: Iterable[FlowDefinition]) -> dict[str, str]:
    """``name@version`` (and ``name``, for the highest version) -> placeholder ARN."""
    return flow_arns(
        definitions,
        lambda d: ASL_STATE_MACHINE_PREFIX + state_machine_name(d.name, d.version),
    )


def compile_for_terraform(definition: FlowDefinition, flows: Iterable[FlowDefinition] = ()) -> str:
    """The ASL of ``definition`` with Terraform's placeholders (JSON text)."""
    return compile_to_json(
        definition,
        activity_function_arn=ASL_ACTIVITY_ARN,
        token_function_arn=ASL_TOKEN_ARN,
        flow_arns=placeholder_flow_arns([definition, *flows]),
        services=AwsServiceBindings(
            queue_url_base=ASL_SERVICE_QUEUE_URL_BASE, name_prefix=ASL_SERVICE_PREFIX
        ),
    )


def service_resources(definition: FlowDefinition) -> dict[str, list[str]]:
    """The queues, buses and stores the service tasks and triggers of ``definition`` name."""
    found: dict[str, set[str]] = {"queues": set(), "buses": set(), "stores": set()}
    for trigger in definition.triggers:
        found["queues" if trigger.source == "queue" else "buses"].add(trigger.resource)
    group = {"queue": "queues", "event": "buses", "object": "stores"}
    for task in iter_tasks(definition):
        if task.service is None:
            continue
        name = resource_of(task.service, task.parameters)
        if name is not None:
            found[group[task.service.partition(".")[0]]].add(name)
    return {kind: sorted(names) for kind, names in found.items()}


_EVENTBRIDGE_DAY_OF_MONTH = re.compile(r"L|\d{1,2}W|(?:\*|\d{1,2}(?:-\d{1,2})?)(?:/\d{1,2})?")


def aws_schedule_expression(cron: str) -> str:
    """A schedule's cron expression -> EventBridge Scheduler's ``cron(m h dom mon dow year)``.

    The expression is read by the rules every runtime uses (``core.schedules``), so it is
    refused here exactly when the site's scheduler refuses it; beyond that, ValueError
    names what EventBridge cannot express (EventBridge User Guide, "Cron expressions
    reference": one of the two day fields must be ``?``; the day of month takes
    ``, - * ? / L W``; the day of week counts 1-7 from Sunday and takes ``, - * ? L #``,
    with at most one ``#``).
    """
    expression = cron_expression(cron)
    minute, hour, day_of_month, month, _ = expression.split(" ")
    fields, nth = croniter.expand(expression)[:2]
    any_day, any_weekday = fields[2] == ["*"], fields[4] == ["*"]
    if not any_day and not any_weekday:
        raise ValueError(
            f"{cron!r}: EventBridge cannot restrict both the day of month and the day of week"
        )
    if any_weekday:
        if any_day:
            day_of_month = "*"  # also for croniter's '?'
        elif not all(_EVENTBRIDGE_DAY_OF_MONTH.fullmatch(item) for item in day_of_month.split(",")):
            raise ValueError(f"{cron!r}: EventBridge cannot express the day of month")
        return f"cron({minute} {hour} {day_of_month} {month.upper()} ? *)"
    weekdays = _eventbridge_weekdays(cron, fields[4], nth)
    return f"cron({minute} {hour} ? {month.upper()} {weekdays} *)"


def _eventbridge_weekdays(cron: str, days: list[int], nth: dict[int, set[int | str]]) -> str:
    """croniter's expanded days of week (0-6 from Sunday) in EventBridge's 1-7 from Sunday."""
    if nth:
        day, occurrences = next(iter(nth.items()))
        if len(nth) > 1 or len(occurrences) > 1 or days != [day]:
            raise ValueError(
                f"{cron!r}: EventBridge takes one nth weekday (#) or last weekday (L) in the "
                "day of week, and nothing beside it"
            )
        (occurrence,) = occurrences
        weekday = day % 7 + 1
        return f"{weekday}L" if occurrence == "l" else f"{weekday}#{occurrence}"
    runs: list[list[int]] = []
    for weekday in sorted({day % 7 + 1 for day in days}):
        if runs and runs[-1][-1] == weekday - 1:
            runs[-1].append(weekday)
        else:
            runs.append([weekday])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def schedule_entry(schedule: DeclaredSchedule) -> dict[str, str]:
    """One schedule of the ``flows`` variable: EventBridge's expression, zone and input."""
    return {
        "expression": aws_schedule_expression(schedule.spec.cron),
        "timezone": schedule.spec.timezone,
        "input_json": json.dumps(schedule.spec.input, separators=(",", ":")),
    }


def flows_variable(
    definitions: Sequence[FlowDefinition], asl_files: Sequence[str]
) -> dict[str, Any]:
    """The ``flows`` variable of infra/terraform/aws for these definitions."""
    flows: dict[str, Any] = {}
    for definition, asl_file in zip(definitions, asl_files, strict=True):
        # keyed as the site names them: a run's instance id is "<flow>:<key>@<fire time>"
        schedules = {
            schedule.key: schedule_entry(schedule)
            for schedule in declared_schedules(definition)
            if schedule.enabled
        }
        flows[f"{definition.name}@{definition.version}"] = {
            "asl_file": asl_file,
            "schedules": schedules,
            "services": service_resources(definition),
            "triggers": [
                trigger.model_dump(mode="json", exclude_defaults=True)
                for trigger in definition.triggers
            ],
        }
    return flows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="flow definitions (YAML or JSON)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the ASL files")
    parser.add_argument("--tfvars", type=Path, help="write the flows variable here (JSON)")
    parser.add_argument("--activities", help="apply this ActivityRegistry's defaults first")
    arguments = parser.parse_args(argv)
    try:
        _compile(arguments.files, arguments.out, arguments.tfvars, arguments.activities)
    except (RustyFlowerError, ValueError, OSError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def _compile(files: Sequence[Path], out: Path, tfvars: Path | None, activities: str | None) -> None:
    """Compile everything first and write only then: a flow that fails leaves no half output."""
    definitions = [load_definition(path.read_text(), str(path)) for path in files]
    if activities:
        registry = load_registry(activities)
        definitions = [registry.apply_defaults(definition) for definition in definitions]
    base = tfvars.parent if tfvars is not None else Path.cwd()
    outputs: list[tuple[Path, str]] = []
    for definition in definitions:
        others = [d for d in definitions if d is not definition]
        name = state_machine_name(definition.name, definition.version)
        outputs.append((out / f"{name}.asl.json", compile_for_terraform(definition, others)))
    if tfvars is not None:
        # relative to the Terraform root (where the tfvars file goes), as main.tf reads it
        asl_files = [os.path.relpath(target.resolve(), base.resolve()) for target, _ in outputs]
        document = {"flows": flows_variable(definitions, asl_files)}
        outputs.append((tfvars, json.dumps(document, indent=2)))
    for target, text in outputs:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n")
        print(target)


if __name__ == "__main__":
    main()
