"""Read the user's files for the CLI: definitions, JSON arguments, activities modules."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.activities import registry as default_registry
from rustyflower.core.errors import RustyFlowerError
from rustyflower.core.model import FlowDefinition, load_definition


class CliInputError(RustyFlowerError):
    """A file or argument given on the command line cannot be used."""


def read_definition(path: Path) -> FlowDefinition:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CliInputError(f"{path}: cannot read: {error.strerror}") from None
    return load_definition(text, source=str(path))


def parse_json_argument(value: str, what: str) -> Any:
    """JSON text, or ``@file.json`` to read it from a file."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise CliInputError(f"{what}: cannot read {value[1:]}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CliInputError(
            f"{what} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str, what: str) -> float:
    """'45s', '90m', '12h', '7d', '2w' (or plain seconds) -> seconds."""
    text = value.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise CliInputError(
            f"{what} {value!r} is not a duration; write for example 45s, 90m, 12h or 7d"
        ) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise CliInputError(f"{what} {value!r}: a duration is zero or more")
    return seconds


def parse_events(values: list[str]) -> dict[str, list[Any]]:
    events: dict[str, list[Any]] = {}
    for value in values:
        name, sep, payload = value.partition("=")
        if not sep or not name:
            raise CliInputError(f"--event {value!r}: write NAME=JSON, for example approval='true'")
        events.setdefault(name, []).append(parse_json_argument(payload, f"--event {name}"))
    return events


def load_activities(target: str | None) -> ActivityRegistry:
    """Import an activities module (dotted name or .py path); use its ``registry`` if any."""
    if target is None:
        return default_registry
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise CliInputError(f"--activities {target}: no such file")
        spec = importlib.util.spec_from_file_location(f"rustyflower_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise CliInputError(f"--activities {target}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules of the project dir
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            raise CliInputError(f"--activities {target}: {error}") from None
    found = getattr(module, "registry", None)
    return found if isinstance(found, ActivityRegistry) else default_registry


def load_registry(targets: list[str]) -> ActivityRegistry:
    """The activities of one or more modules, as one registry."""
    if not targets:
        return load_activities(None)
    found: list[ActivityRegistry] = []
    for target in targets:
        registry = load_activities(target)
        if not any(registry is known for known in found):
            found.append(registry)
    if len(found) == 1:
        return found[0]
    merged = ActivityRegistry()
    for registry in found:
        for activity in registry:
            merged.register(
                activity.function,
                name=activity.name,
                retry=list(activity.retry),
                timeout_seconds=activity.timeout_seconds,
            )
    return merged
