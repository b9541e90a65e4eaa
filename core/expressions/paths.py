"""A JSONPath subset with the meaning the Amazon States Language (JSONPath mode) gives it.

Supported syntax, after ``$`` (the document) or ``$$`` (the context object):

* ``.name``: a field; the name is any run of characters other than ``.``, ``[``, ``]``,
  ``*`` and whitespace;
* ``['name']`` or ``["name"]``: a quoted field, with ``\\\\``, ``\\'`` and ``\\"`` escapes;
* ``[n]``: an index into a list (non-negative);
* ``[*]`` or ``.*``: every item of a list or every value of an object.

A path without a wildcard is *definite*: it selects exactly one node, or fails with
:class:`~core.errors.PathNotFoundError`. A path with a wildcard selects a list of
matches (possibly empty). Filters, slices, unions, negative indexes and recursive
descent are refused when parsing, with :class:`~core.errors.ExpressionError`.

Paths are parsed, never evaluated as code; ``parse_path`` caches parsed paths.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rustyflower.core.errors import ExpressionError, PathNotFoundError

__all__ = [
    "WILDCARD",
    "Path",
    "Segment",
    "parse_path",
    "parse_reference_path",
    "place",
]


class _Wildcard(enum.Enum):
    WILDCARD = "*"

    def __repr__(self) -> str:
        return "WILDCARD"


WILDCARD: Final = _Wildcard.WILDCARD
"""The segment of ``[*]`` and ``.*``."""

Segment = str | int | _Wildcard
"""One step of a path: a field name, a list index or the wildcard."""

_NAME_STOP: Final = frozenset(".[]*") | frozenset(" \t\n\r\f\v")
_SIMPLE_NAME_STOP: Final = _NAME_STOP | frozenset("'\"\\$")
_MISSING: Final = object()


def _describe(node: Any) -> str:
    """Name the JSON type of a node, for error details."""
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "a boolean"
    if isinstance(node, int | float):
        return "a number"
    if isinstance(node, str):
        return "a string"
    if isinstance(node, Mapping):
        return "an object"
    if isinstance(node, list | tuple):
        return "a list"
    return f"a {type(node).__name__}"


def format_segments(segments: tuple[Segment, ...], *, context: bool = False) -> str:
    """Write segments back as path text (used to locate errors)."""
    parts = ["$$" if context else "$"]
    for segment in segments:
        if segment is WILDCARD:
            parts.append("[*]")
        elif isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif segment and not any(char in _SIMPLE_NAME_STOP or char.isspace() for char in segment):
            parts.append(f".{segment}")
        else:
            escaped = segment.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed path. Build it with :func:`parse_path`; it is immutable and hashable."""

    text: str
    is_context: bool
    is_definite: bool
    segments: tuple[Segment, ...] = field(default=())

    def __str__(self) -> str:
        return self.text

    # --- selection ----------------------------------------------------------------------

    def _root(self, doc: Any, context: Mapping[str, Any] | None) -> Any:
        if not self.is_context:
            return doc
        if context is None:
            raise PathNotFoundError(self.text, "no context object is available here")
        return context

    def select(self, doc: Any, context: Mapping[str, Any] | None = None) -> Any:
        """Return the node a definite path names, or the list of a wildcard path's matches.

        A definite path raises ``PathNotFoundError`` when a field or index is missing or a
        parent has the wrong type; a wildcard path skips what is missing.
        """
        root = self._root(doc, context)
        if self.is_definite:
            return self._select_definite(root)
        return self._select_all(root)

    def exists(self, doc: Any, context: Mapping[str, Any] | None = None) -> bool:
        """Whether the path selects something (for a wildcard path: at least one match)."""
        if self.is_context:
            if context is None:
                return False
            doc = context
        if self.is_definite:
            return self._lookup(doc) is not _MISSING
        return bool(self._select_all(doc))

    def _lookup(self, node: Any) -> Any:
        for segment in self.segments:
            if isinstance(segment, str):
                if not isinstance(node, Mapping):
                    return _MISSING
                node = node.get(segment, _MISSING)
                if node is _MISSING:
                    return _MISSING
            elif isinstance(node, list | tuple) and isinstance(segment, int):
                if segment >= len(node):
                    return _MISSING
                node = node[segment]
            else:
                return _MISSING
        return node

    def _select_definite(self, node: Any) -> Any:
        for position, segment in enumerate(self.segments):
            if isinstance(segment, str):
                if isinstance(node, Mapping):
                    child = node.get(segment, _MISSING)
                    if child is _MISSING:
                        where = self._prefix(position)
                        raise PathNotFoundError(
                            self.text, f"the object at {where} has no field {segment!r}"
                        )
                    node = child
                    continue
                where = self._prefix(position)
                raise PathNotFoundError(
                    self.text,
                    f"cannot select field {segment!r}: the value at {where} is "
                    f"{_describe(node)}, not an object",
                )
            assert isinstance(segment, int)
            if isinstance(node, list | tuple):
                if segment >= len(node):
                    where = self._prefix(position)
                    raise PathNotFoundError(
                        self.text,
                        f"index {segment} is out of range: the list at {where} has "
                        f"{len(node)} item(s)",
                    )
                node = node[segment]
                continue
            where = self._prefix(position)
            raise PathNotFoundError(
                self.text,
                f"cannot select index {segment}: the value at {where} is "
                f"{_describe(node)}, not a list",
            )
        return node

    def _select_all(self, root: Any) -> list[Any]:
        nodes: list[Any] = [root]
        for segment in self.segments:
            found: list[Any] = []
            for node in nodes:
                if segment is WILDCARD:
                    if isinstance(node, Mapping):
                        found.extend(node.values())
                    elif isinstance(node, list | tuple):
                        found.extend(node)
                elif isinstance(segment, str):
                    if isinstance(node, Mapping):
                        child = node.get(segment, _MISSING)
                        if child is not _MISSING:
                            found.append(child)
                elif (
                    isinstance(node, list | tuple)
                    and isinstance(segment, int)
                    and segment < len(node)
                ):
                    found.append(node[segment])
            nodes = found
        return nodes

    def _prefix(self, length: int) -> str:
        return format_segments(self.segments[:length], context=self.is_context)


# --- parsing ------------------------------------------------------------------------------


def _fail(text: str, offset: int, message: str) -> ExpressionError:
    return ExpressionError(f"invalid path {text!r} at offset {offset}: {message}")


def _found(text: str, offset: int) -> str:
    return "the end of the path" if offset >= len(text) else repr(text[offset])


def _parse_bracket(text: str, start: int, segments: list[Segment]) -> int:
    """Parse the bracket segment opening at ``start``; return the offset after it."""
    size = len(text)
    inner = start + 1
    if inner >= size:
        raise _fail(text, start, "'[' is not closed")
    char = text[inner]
    if char == "*":
        if text[inner + 1 : inner + 2] != "]":
            raise _fail(
                text, inner + 1, f"expected ']' after '[*', found {_found(text, inner + 1)}"
            )
        segments.append(WILDCARD)
        return inner + 2
    if char in "'\"":
        quote = char
        cursor = inner + 1
        name: list[str] = []
        while True:
            if cursor >= size:
                raise _fail(text, inner, f"the quoted name opened here is not closed with {quote}")
            current = text[cursor]
            if current == "\\":
                escaped = text[cursor + 1 : cursor + 2]
                if escaped not in ("\\", "'", '"'):
                    raise _fail(
                        text,
                        cursor,
                        "invalid escape in a quoted name: only \\\\, \\' and \\\" are allowed",
                    )
                name.append(escaped)
                cursor += 2
                continue
            if current == quote:
                break
            name.append(current)
            cursor += 1
        close = cursor + 1
        if text[close : close + 1] == ",":
            raise _fail(text, close, "unions of names ['a','b'] are not supported")
        if text[close : close + 1] != "]":
            raise _fail(
                text, close, f"expected ']' after the quoted name, found {_found(text, close)}"
            )
        segments.append("".join(name))
        return close + 1
    if "0" <= char <= "9":
        cursor = inner
        while cursor < size and "0" <= text[cursor] <= "9":
            cursor += 1
        after = text[cursor : cursor + 1]
        if after == "]":
            segments.append(int(text[inner:cursor]))
            return cursor + 1
        if after == ":":
            raise _fail(text, cursor, "slices [a:b] are not supported")
        if after == ",":
            raise _fail(text, cursor, "unions of indexes [a,b] are not supported")
        raise _fail(text, cursor, f"expected ']' after the index, found {_found(text, cursor)}")
    if char == "-":
        raise _fail(text, inner, "negative indexes are not supported")
    if char == ":":
        raise _fail(text, inner, "slices [a:b] are not supported")
    if char == "?":
        raise _fail(text, inner, "filter expressions [?(...)] are not supported")
    if char == "(":
        raise _fail(text, inner, "script expressions [(...)] are not supported")
    raise _fail(
        text,
        inner,
        f"expected an index, '*' or a quoted name after '[', found {_found(text, inner)}",
    )


def _parse(text: str) -> Path:
    if not isinstance(text, str):
        raise ExpressionError(f"a path must be a string, not {type(text).__name__}")
    if not text:
        raise ExpressionError("invalid path '': a path must start with '$'")
    if text[0] != "$":
        raise _fail(text, 0, f"a path must start with '$', found {text[0]!r}")
    is_context = text.startswith("$$")
    cursor = 2 if is_context else 1
    size = len(text)
    segments: list[Segment] = []
    while cursor < size:
        char = text[cursor]
        if char == ".":
            following = text[cursor + 1 : cursor + 2]
            if following == ".":
                raise _fail(text, cursor, "recursive descent '..' is not supported")
            if following == "*":
                segments.append(WILDCARD)
                cursor += 2
                continue
            end = cursor + 1
            while end < size and text[end] not in _NAME_STOP and not text[end].isspace():
                end += 1
            if end == cursor + 1:
                raise _fail(
                    text, end, f"expected a field name after '.', found {_found(text, end)}"
                )
            segments.append(text[cursor + 1 : end])
            cursor = end
        elif char == "[":
            cursor = _parse_bracket(text, cursor, segments)
        elif char.isspace():
            raise _fail(text, cursor, "whitespace is not allowed in a path")
        else:
            raise _fail(text, cursor, f"expected '.' or '[', found {char!r}")
    return Path(
        text=text,
        is_context=is_context,
        is_definite=WILDCARD not in segments,
        segments=tuple(segments),
    )


@functools.lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """Parse ``text`` into a :class:`Path`; raise ``ExpressionError`` if it is not one."""
    return _parse(text)


def parse_reference_path(text: str) -> Path:
    """Parse an ASL *reference path*: definite and not a context path (used by ResultPath)."""
    path = parse_path(text)
    if path.is_context:
        raise ExpressionError(
            f"invalid reference path {text!r}: a reference path cannot use the context "
            "object ('$$'); it names a place in the document ('$')"
        )
    if not path.is_definite:
        raise ExpressionError(
            f"invalid reference path {text!r}: a reference path must name exactly one "
            "node, so it cannot contain a wildcard ('*')"
        )
    return path


# --- placing ------------------------------------------------------------------------------


def place(doc: Any, path: Path, value: Any) -> Any:
    """Return a copy of ``doc`` with ``value`` at ``path`` (ASL ``ResultPath`` semantics).

    Copy-on-write: neither ``doc`` nor ``value`` is changed; only the containers along
    the path are copied, siblings are shared. ``$`` gives ``value`` itself. Missing
    object fields on the way are created as ``{}``. A list index must already exist.
    """
    if path.is_context or not path.is_definite:
        raise ExpressionError(
            f"cannot place a value at {path.text!r}: a result path must be definite and "
            "must not use the context object"
        )
    return _place(doc, path, 0, value)


def _place(node: Any, path: Path, position: int, value: Any) -> Any:
    segments = path.segments
    if position == len(segments):
        return value
    segment = segments[position]
    if isinstance(segment, str):
        if not isinstance(node, Mapping):
            raise PathNotFoundError(
                path.text,
                f"cannot set field {segment!r}: the value at {path._prefix(position)} is "
                f"{_describe(node)}, not an object",
            )
        child = node.get(segment, _MISSING)
        if child is _MISSING:
            following = segments[position + 1] if position + 1 < len(segments) else None
            if isinstance(following, int):
                raise PathNotFoundError(
                    path.text,
                    f"the object at {path._prefix(position)} has no field {segment!r}, and "
                    f"a missing list cannot be created to hold index {following}",
                )
            child = {}
        copied = dict(node)
        copied[segment] = _place(child, path, position + 1, value)
        return copied
    assert isinstance(segment, int)
    if not isinstance(node, list | tuple):
        raise PathNotFoundError(
            path.text,
            f"cannot set index {segment}: the value at {path._prefix(position)} is "
            f"{_describe(node)}, not a list",
        )
    if segment >= len(node):
        raise PathNotFoundError(
            path.text,
            f"index {segment} is out of range: the list at {path._prefix(position)} has "
            f"{len(node)} item(s)",
        )
    items = list(node)
    items[segment] = _place(node[segment], path, position + 1, value)
    return items
