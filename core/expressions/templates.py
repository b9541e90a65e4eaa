"""ASL payload templates: ``Parameters``, ``ResultSelector`` and ``ItemSelector``.

A template is a JSON value. In any object, at any depth (objects inside arrays too), a
key ending in ``.$`` takes a path as its value; rendering puts the selected data under
the key without its ``.$``. Every other value is copied as it is (and shared between
renders: literal parts are treated as immutable).

Templates are compiled once; :meth:`Template.render` re-parses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rustyflower.core.errors import ExpressionError
from rustyflower.core.expressions.paths import Segment, format_segments, parse_path

__all__ = ["Template", "compile_template"]

Renderer = Callable[[Any, Mapping[str, Any] | None], Any]
"""Builds one part of the output from the document and the context object."""

_SCALARS = (str, int, float, bool, type(None))


class Template:
    """A compiled template. Build it with :func:`compile_template`."""

    __slots__ = ("_paths", "_renderer", "_source")

    def __init__(self, source: Any, renderer: Renderer | None, paths: tuple[str, ...]) -> None:
        self._source = source
        self._renderer = renderer
        self._paths = paths

    @property
    def source(self) -> Any:
        """The object the template was compiled from (for serialisation)."""
        return self._source

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path the template reads, in source order."""
        return self._paths

    @property
    def is_static(self) -> bool:
        """True when the template reads nothing: it renders to its source."""
        return self._renderer is None

    def render(self, doc: Any, context: Mapping[str, Any] | None = None) -> Any:
        """Build the value; a missing path raises ``PathNotFoundError``."""
        if self._renderer is None:
            return self._source
        return self._renderer(doc, context)

    def __repr__(self) -> str:
        return f"Template({self._source!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return bool(self._source == other._source)

    def __hash__(self) -> int:
        return hash(self._paths)


def compile_template(obj: Any) -> Template:
    """Compile a template; raise ``ExpressionError`` naming the offending key."""
    paths: list[str] = []
    renderer = _compile(obj, (), paths)
    return Template(obj, renderer, tuple(paths))


def _where(location: tuple[Segment, ...]) -> str:
    return "the top level" if not location else format_segments(location)


def _compile(obj: Any, location: tuple[Segment, ...], paths: list[str]) -> Renderer | None:
    """Compile one value: ``None`` when it is a literal (rendered as itself)."""
    if isinstance(obj, Mapping):
        return _compile_object(obj, location, paths)
    if isinstance(obj, list | tuple):
        return _compile_array(obj, location, paths)
    if isinstance(obj, _SCALARS):
        return None
    raise ExpressionError(
        f"template value at {_where(location)} is a {type(obj).__name__}, not a JSON value"
    )


def _compile_object(
    obj: Mapping[Any, Any], location: tuple[Segment, ...], paths: list[str]
) -> Renderer | None:
    entries: list[tuple[str, Renderer | None, Any]] = []
    dynamic = False
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ExpressionError(
                f"template key {key!r} at {_where(location)} is not a string: "
                "object keys must be strings"
            )
        if not key.endswith(".$"):
            renderer = _compile(value, (*location, key), paths)
            dynamic = dynamic or renderer is not None
            entries.append((key, renderer, value))
            continue
        name = key[:-2]
        prefix = f"template key {key!r} at {_where(location)}"
        if not name:
            raise ExpressionError(f"{prefix}: the name before '.$' is empty")
        if name in obj:
            raise ExpressionError(
                f"{prefix}: both {key!r} and {name!r} are given; they would write the same "
                "output key"
            )
        if not isinstance(value, str):
            raise ExpressionError(
                f"{prefix}: a key ending in '.$' needs a path string as its value, "
                f"got {type(value).__name__}"
            )
        if value.startswith("States."):
            raise ExpressionError(
                f"{prefix}: {value!r} is an intrinsic function; intrinsic functions are not "
                "supported yet"
            )
        try:
            path = parse_path(value)
        except ExpressionError as error:
            raise ExpressionError(f"{prefix}: {error}") from error
        paths.append(path.text)
        dynamic = True
        entries.append((name, path.select, None))
    if not dynamic:
        return None
    frozen = tuple(entries)

    def render_object(doc: Any, context: Mapping[str, Any] | None) -> Any:
        return {
            key: literal if renderer is None else renderer(doc, context)
            for key, renderer, literal in frozen
        }

    return render_object


def _compile_array(
    obj: list[Any] | tuple[Any, ...], location: tuple[Segment, ...], paths: list[str]
) -> Renderer | None:
    items: list[tuple[Renderer | None, Any]] = []
    dynamic = False
    for index, value in enumerate(obj):
        renderer = _compile(value, (*location, index), paths)
        dynamic = dynamic or renderer is not None
        items.append((renderer, value))
    if not dynamic:
        return None
    frozen = tuple(items)

    def render_array(doc: Any, context: Mapping[str, Any] | None) -> Any:
        return [
            literal if renderer is None else renderer(doc, context) for renderer, literal in frozen
        ]

    return render_array
