"""Compiled machines for Terraform: ASL with placeholders, and the ``flows`` variable.

``python -m lambda_aws.asl FLOW.yaml [MORE.yaml ...] --out build/asl --tfvars
infra/terraform/aws/flows.auto.tfvars.json [--activities myapp.activities]`` compiles
every given flow (sub-flows included) with ``adapters.aws.compile_flow`` and writes

* ``<out>/<flow>-v<version>.asl.json``: the ASL, whose Lambda ARNs are the placeholders
  ``${activity_function_arn}`` / ``${token_function_arn}`` and whose sub-flow machines are
  ``${state_machine_arn_prefix}<flow>-v<version>``; Terraform replaces exactly these texts;
* the ``flows`` variable of infra/terraform/aws (``--tfvars``): each flow's ASL file and its
  cron schedules translated to EventBridge Scheduler expressions.

``--activities`` applies the activities' default retry and timeout to the definitions
first, as the on-premises registry does, so that the machines' digests are the ones the
site's snapshots carry.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lambda_aws.settings import ASL_ACTIVITY_ARN, ASL_STATE_MACHINE_PREFIX, ASL_TOKEN_ARN
from rustyflower.adapters.aws import compile_to_json
from rustyflower.adapters.aws.deployment import flow_arns, state_machine_name
from rustyflower.core.activities import load_registry
from rustyflower.core.model import FlowDefinition, load_definition
from rustyflower.core.model.schedule import Schedule

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


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
    )


def _dow(field: str) -> str:
    """cron's day of week (0-7, Sunday 0 or 7) -> EventBridge's (1-7, Sunday 1)."""

    def number(text: str) -> str:
        return str(int(text) % 7 + 1) if text.isdigit() else text

    parts = []
    for item in field.split(","):
        body, slash, step = item.partition("/")
        if "-" in body:
            low, _, high = body.partition("-")
            if high == "7":
                # a range up to Sunday (7) ends on Saturday (7) and wraps to Sunday (1)
                parts.extend([f"{number(low)}-7{slash}{step}", "1"])
                continue
            body = f"{number(low)}-{number(high)}"
        else:
            body = number(body)
        parts.append(body + slash + step)
    return ",".join(parts)


def aws_schedule_expression(cron: str) -> str:
    """A 5-field cron expression -> EventBridge Scheduler's ``cron(m h dom mon dow year)``."""
    fields = MACROS.get(cron.strip().lower(), cron).split()
    if len(fields) != 5:
        raise ValueError(f"{cron!r} is not a 5-field cron expression")
    minute, hour, dom, month, dow = fields
    if dom != "*" and dow != "*":
        raise ValueError(
            f"{cron!r}: EventBridge cannot restrict both the day of month and the day of week"
        )
    if dow == "*":
        dow = "?"
    else:
        dom, dow = "?", _dow(dow)
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def schedule_entry(schedule: Schedule) -> dict[str, str]:
    return {
        "expression": aws_schedule_expression(schedule.cron),
        "timezone": schedule.timezone,
        "input_json": json.dumps(schedule.input, separators=(",", ":")),
    }


def flows_variable(
    definitions: Sequence[FlowDefinition], asl_files: Sequence[str]
) -> dict[str, Any]:
    """The ``flows`` variable of infra/terraform/aws for these definitions."""
    flows: dict[str, Any] = {}
    for definition, asl_file in zip(definitions, asl_files, strict=True):
        schedules = {
            schedule.name or str(index): schedule_entry(schedule)
            for index, schedule in enumerate(definition.schedules)
            if schedule.enabled
        }
        flows[f"{definition.name}@{definition.version}"] = {
            "asl_file": asl_file,
            "schedules": schedules,
        }
    return flows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="flow definitions (YAML or JSON)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the ASL files")
    parser.add_argument("--tfvars", type=Path, help="write the flows variable here (JSON)")
    parser.add_argument("--activities", help="apply this ActivityRegistry's defaults first")
    arguments = parser.parse_args(argv)
    definitions = [load_definition(path.read_text(), str(path)) for path in arguments.files]
    if arguments.activities:
        registry = load_registry(arguments.activities)
        definitions = [registry.apply_defaults(definition) for definition in definitions]
    arguments.out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    base = arguments.tfvars.parent if arguments.tfvars is not None else Path.cwd()
    for definition in definitions:
        others = [d for d in definitions if d is not definition]
        name = state_machine_name(definition.name, definition.version)
        target = arguments.out / f"{name}.asl.json"
        target.write_text(compile_for_terraform(definition, others) + "\n")
        # relative to the Terraform root (where the tfvars file goes), as main.tf reads it
        files.append(os.path.relpath(target.resolve(), base.resolve()))
        print(target)
    if arguments.tfvars is not None:
        document = {"flows": flows_variable(definitions, files)}
        arguments.tfvars.parent.mkdir(parents=True, exist_ok=True)
        arguments.tfvars.write_text(json.dumps(document, indent=2) + "\n")
        print(arguments.tfvars)


if __name__ == "__main__":
    main()
