"""Read the user's files and arguments for the CLI: definitions, JSON data, activities.

Every problem is a ``CliInputError`` naming the option or file and what is wrong with it
(exit 2). The limits (README.md, "Limits") hold for every way in: a definition is at
most ``MAX_DEFINITION_BYTES`` of UTF-8 text, and JSON data (``--input``, ``--data``,
``--event``, ``--inputs``) nests at most ``MAX_DEPTH`` levels and holds only finite
numbers: JSON has no NaN or Infinity, and Python's reader would take them and store
``null`` in their place later.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from rustyflower.adapters.cli.errors import CliInputError
from rustyflower.core.activities import ActivityRegistry
from rustyflower.core.activities import registry as default_registry
from rustyflower.core.model import FlowDefinition, load_definition
from rustyflower.core.model.flow_data import flow_data_problem
from rustyflower.core.model.formats import MAX_DEFINITION_BYTES, MAX_DEPTH

__all__ = [
    "CliInputError",
    "load_activities",
    "load_registry",
    "parse_events",
    "parse_json_argument",
    "read_definition",
    "read_json_lines",
    "read_text",
]

_SURROGATE = re.compile("[\ud800-\udfff]")


def read_text(path: Path, what: str = "", limit: int | None = None) -> str:
    """A UTF-8 text file (a leading byte-order mark is dropped); ``what`` prefixes errors."""
    try:
        with path.open("rb") as handle:
            data = handle.read() if limit is None else handle.read(limit + 1)
    except OSError as error:
        raise CliInputError(f"{what}{path}: cannot read: {error.strerror}") from None
    if limit is not None and len(data) > limit:
        raise CliInputError(f"{what}{path}: more than {limit} bytes; at most {limit}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CliInputError(
            f"{what}{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None


def read_definition(path: Path) -> FlowDefinition:
    text = read_text(path, limit=MAX_DEFINITION_BYTES)
    return load_definition(text, source=str(path))


class _NotFinite(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _refuse_constant(text: str) -> Any:
    raise _NotFinite(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: a valid JSON number no double can hold
        raise _NotFinite(text)
    return value


def parse_json_data(text: str, what: str) -> Any:
    """JSON text as data a flow can carry, or a ``CliInputError`` saying why not."""
    if _SURROGATE.search(text):  # bytes that were not UTF-8, passed through by the shell
        raise CliInputError(f"{what} is not UTF-8 text")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise CliInputError(
            f"{what} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except _NotFinite as error:
        raise CliInputError(
            f"{what}: {error.text} is not a number JSON can carry (no NaN or Infinity)"
        ) from None
    except RecursionError:
        raise CliInputError(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    problem = flow_data_problem(value)
    if problem is not None:
        raise CliInputError(f"{what} {problem}")
    return value


def parse_json_argument(value: str, what: str) -> Any:
    """JSON text, or ``@file.json`` to read it from a file."""
    text = value
    if value.startswith("@"):
        text = read_text(Path(value[1:]), f"{what}: ")
    return parse_json_data(text, what)


def read_json_lines(path: Path, what: str = "--inputs") -> list[Any]:
    """One JSON value per non-empty line; a bad line is reported with its number."""
    lines = read_text(path, f"{what} ").splitlines()
    values = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            values.append(parse_json_data(line, f"{what} {path} line {number}"))
    if not values:
        raise CliInputError(f"{what} {path}: no inputs (one JSON value per line)")
    return values


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
