"""Choice rules with exactly the meaning of the Amazon States Language comparison operators.

In YAML a rule is written with snake_case keys, for example
``{variable: $.total, numeric_greater_than: 100}``, and combined with
``{and: [...]}``, ``{or: [...]}`` and ``{not: {...}}``. :meth:`to_asl` writes the
ASL JSON form (``{"Variable": "$.total", "NumericGreaterThan": 100}``).

Meaning (as in ASL):

* a ``variable`` that does not exist raises ``PathNotFoundError`` (ASL ``States.Runtime``),
  except under ``is_present``, which tests exactly that;
* a typed comparison whose value (or, for ``*_path`` operators, either value) has the
  wrong type is false, not an error: numeric operators need JSON numbers (a boolean is
  not a number; ``1`` equals ``1.0``), string operators strings, boolean operators
  booleans, timestamp operators strings that are RFC 3339 timestamps (compared as
  instants);
* ``*_path`` operators read their second operand from the document; a missing one
  raises ``PathNotFoundError``;
* ``string_matches``: ``*`` matches any run of characters, ``\\*`` a literal star and
  ``\\\\`` a literal backslash; the whole string must match;
* ``is_*`` tests: the boolean operand says whether the test must hold.

String ordering compares UTF-16 code units, as Step Functions (Java) does; it differs
from Python's code point order only for characters outside the Basic Multilingual Plane.
``and`` and ``or`` evaluate their rules in order and stop at the first that decides.

Why one module: the ASL comparison operators are one table (name, operand type,
comparison), read together with their YAML and ASL spellings; the spec lists them as one
section, and so does this module, so a reviewer checks each operator against it in one place.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Final, Self

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    model_validator,
)
from pydantic.types import Strict

from rustyflower.core.errors import ExpressionError
from rustyflower.core.expressions.paths import Path, parse_path

__all__ = [
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Comparison",
    "Condition",
    "Not",
    "condition_from_asl",
    "is_rfc3339_timestamp",
]

# --- timestamps ---------------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)

Instant = tuple[datetime, Decimal]
"""A timestamp as a comparable instant: UTC time to the second, then the fraction."""


def _instant(text: object) -> Instant | None:
    """Read an ASL timestamp: RFC 3339 with an upper-case 'T' and a zone ('Z' or +hh:mm)."""
    if not isinstance(text, str):
        return None
    return _parse_instant(text)


@functools.lru_cache(maxsize=1024)
def _parse_instant(text: str) -> Instant | None:
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, zone_h, zone_m = match.groups()
    offset = timedelta()
    if sign is not None:
        if int(zone_h) > 23 or int(zone_m) > 59:
            return None
        offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
        if sign == "-":
            offset = -offset
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=timezone(offset),
        )
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment, (Decimal(f"0.{fraction}") if fraction else Decimal(0))


def is_rfc3339_timestamp(value: object) -> bool:
    """Whether ``value`` is a string ASL accepts as a timestamp (``IsTimestamp``)."""
    return _instant(value) is not None


def _check_timestamp(text: str) -> str:
    if _instant(text) is None:
        raise ValueError(
            f"{text!r} is not an RFC 3339 timestamp with an upper-case 'T' and a zone, "
            "for example '2016-03-14T01:59:00Z' or '2016-03-14T03:59:00+02:00'"
        )
    return text


# --- operand types ------------------------------------------------------------------------


def _check_variable(text: str) -> str:
    path = parse_path(text)
    if path.is_context:
        raise ValueError(f"{text!r} uses the context object ('$$'); a rule reads the document")
    if not path.is_definite:
        raise ValueError(f"{text!r} contains a wildcard; a rule compares exactly one value")
    return text


def _glob_pieces(pattern: str) -> tuple[str, ...]:
    """Split a StringMatches pattern on its unescaped stars into literal pieces."""
    pieces: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            escaped = pattern[index + 1 : index + 2]
            if escaped not in ("*", "\\"):
                raise ValueError(
                    f"pattern {pattern!r}: a backslash at offset {index} must be followed by "
                    "'*' (a literal star) or '\\' (a literal backslash)"
                )
            current.append(escaped)
            index += 2
            continue
        if char == "*":
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    pieces.append("".join(current))
    return tuple(pieces)


def _check_pattern(pattern: str) -> str:
    _glob_pieces(pattern)
    return pattern


def _glob_match(pieces: tuple[str, ...], text: str) -> bool:
    """Whole-string match of literal pieces joined by ``*`` (linear, no backtracking)."""
    if len(pieces) == 1:
        return text == pieces[0]
    head, tail = pieces[0], pieces[-1]
    if len(text) < len(head) + len(tail) or not text.startswith(head) or not text.endswith(tail):
        return False
    position, end = len(head), len(text) - len(tail)
    for piece in pieces[1:-1]:
        found = text.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


VariablePath = Annotated[StrictStr, AfterValidator(_check_variable)]
"""A definite document path (no wildcard, no ``$$``)."""
TimestampText = Annotated[StrictStr, AfterValidator(_check_timestamp)]
Number = StrictInt | Annotated[float, Strict(), AllowInfNan(False)]
Pattern = Annotated[StrictStr, AfterValidator(_check_pattern)]


def _operator_field() -> Any:
    return Field(default=None, exclude_if=lambda value: value is None)


# --- operators ----------------------------------------------------------------------------

_NOPE: Final = object()
"""Key of a value of the wrong type: the comparison is false."""


def _number_key(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return _NOPE


def _string_key(value: Any) -> Any:
    return value if isinstance(value, str) else _NOPE


def _string_order_key(value: Any) -> Any:
    if not isinstance(value, str):
        return _NOPE
    if value.isascii():
        return value
    return value.encode("utf-16-be", "surrogatepass")


def _boolean_key(value: Any) -> Any:
    return value if isinstance(value, bool) else _NOPE


def _timestamp_key(value: Any) -> Any:
    instant = _instant(value)
    return _NOPE if instant is None else instant


_COMPARATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "equals": operator.eq,
    "less_than": operator.lt,
    "greater_than": operator.gt,
    "less_than_equals": operator.le,
    "greater_than_equals": operator.ge,
}

_TYPE_TESTS: Final[dict[str, Callable[[Any], bool]]] = {
    "is_null": lambda value: value is None,
    "is_numeric": lambda value: _number_key(value) is not _NOPE,
    "is_string": lambda value: isinstance(value, str),
    "is_boolean": lambda value: isinstance(value, bool),
    "is_timestamp": is_rfc3339_timestamp,
}


@dataclass(frozen=True, slots=True)
class _Operator:
    name: str
    asl_name: str
    key: Callable[[Any], Any] | None
    compare: Callable[[Any, Any], bool] | None
    reads_path: bool


def _asl_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _build_operators() -> dict[str, _Operator]:
    table: dict[str, _Operator] = {}
    families: list[tuple[str, Callable[[Any], Any], tuple[str, ...]]] = [
        ("string", _string_key, tuple(_COMPARATORS)),
        ("numeric", _number_key, tuple(_COMPARATORS)),
        ("boolean", _boolean_key, ("equals",)),
        ("timestamp", _timestamp_key, tuple(_COMPARATORS)),
    ]
    for family, key, relations in families:
        for relation in relations:
            for reads_path in (False, True):
                name = f"{family}_{relation}" + ("_path" if reads_path else "")
                family_key = key
                if family == "string" and relation != "equals":
                    family_key = _string_order_key
                table[name] = _Operator(
                    name, _asl_name(name), family_key, _COMPARATORS[relation], reads_path
                )
        if family == "string":
            table["string_matches"] = _Operator(
                "string_matches", "StringMatches", None, None, False
            )
    for name in ("is_null", "is_present", "is_numeric", "is_string", "is_boolean"):
        table[name] = _Operator(name, _asl_name(name), None, None, False)
    table["is_timestamp"] = _Operator("is_timestamp", "IsTimestamp", None, None, False)
    return table


_OPERATORS: Final = _build_operators()
OPERATORS: Final[tuple[str, ...]] = tuple(_OPERATORS)
"""Every operator name a :class:`Comparison` accepts (snake_case)."""
_BY_ASL_NAME: Final = {spec.asl_name: spec.name for spec in _OPERATORS.values()}


class _Evaluator:
    """A comparison's compiled evaluation function.

    It is derived from the model's fields, so any two compare equal: model equality
    stays field equality.
    """

    __slots__ = ("run",)

    def __init__(self, run: Callable[[Any], bool]) -> None:
        self.run = run

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Evaluator)

    def __hash__(self) -> int:
        return 0


def _compile_comparison(spec: _Operator, variable: Path, operand: Any) -> Callable[[Any], bool]:
    """Build the function that evaluates one comparison: every path is parsed here, once."""
    select = variable.select
    if spec.name == "is_present":
        exists, wanted = variable.exists, bool(operand)
        return lambda doc: exists(doc) is wanted
    if spec.name == "string_matches":
        pieces = _glob_pieces(operand)
        return lambda doc: _matches(pieces, select(doc))
    key, compare = spec.key, spec.compare
    if key is None or compare is None:
        test, wanted = _TYPE_TESTS[spec.name], bool(operand)
        return lambda doc: test(select(doc)) is wanted
    if spec.reads_path:
        select_operand = parse_path(operand).select

        def compare_with_path(doc: Any) -> bool:
            left = key(select(doc))
            right = key(select_operand(doc))
            return left is not _NOPE and right is not _NOPE and compare(left, right)

        return compare_with_path
    right = key(operand)

    def compare_with_literal(doc: Any) -> bool:
        left = key(select(doc))
        return left is not _NOPE and compare(left, right)

    return compare_with_literal


def _matches(pieces: tuple[str, ...], value: Any) -> bool:
    return isinstance(value, str) and _glob_match(pieces, value)


# --- rules --------------------------------------------------------------------------------

_RULE_CONFIG = ConfigDict(
    extra="forbid",
    frozen=True,
    serialize_by_alias=True,
    validate_by_name=True,
    validate_by_alias=True,
)


class Comparison(BaseModel):
    """One comparison: ``variable`` and exactly one operator field."""

    model_config = _RULE_CONFIG

    variable: VariablePath

    string_equals: StrictStr | None = _operator_field()
    string_less_than: StrictStr | None = _operator_field()
    string_greater_than: StrictStr | None = _operator_field()
    string_less_than_equals: StrictStr | None = _operator_field()
    string_greater_than_equals: StrictStr | None = _operator_field()
    string_matches: Pattern | None = _operator_field()
    numeric_equals: Number | None = _operator_field()
    numeric_less_than: Number | None = _operator_field()
    numeric_greater_than: Number | None = _operator_field()
    numeric_less_than_equals: Number | None = _operator_field()
    numeric_greater_than_equals: Number | None = _operator_field()
    boolean_equals: StrictBool | None = _operator_field()
    timestamp_equals: TimestampText | None = _operator_field()
    timestamp_less_than: TimestampText | None = _operator_field()
    timestamp_greater_than: TimestampText | None = _operator_field()
    timestamp_less_than_equals: TimestampText | None = _operator_field()
    timestamp_greater_than_equals: TimestampText | None = _operator_field()

    string_equals_path: VariablePath | None = _operator_field()
    string_less_than_path: VariablePath | None = _operator_field()
    string_greater_than_path: VariablePath | None = _operator_field()
    string_less_than_equals_path: VariablePath | None = _operator_field()
    string_greater_than_equals_path: VariablePath | None = _operator_field()
    numeric_equals_path: VariablePath | None = _operator_field()
    numeric_less_than_path: VariablePath | None = _operator_field()
    numeric_greater_than_path: VariablePath | None = _operator_field()
    numeric_less_than_equals_path: VariablePath | None = _operator_field()
    numeric_greater_than_equals_path: VariablePath | None = _operator_field()
    boolean_equals_path: VariablePath | None = _operator_field()
    timestamp_equals_path: VariablePath | None = _operator_field()
    timestamp_less_than_path: VariablePath | None = _operator_field()
    timestamp_greater_than_path: VariablePath | None = _operator_field()
    timestamp_less_than_equals_path: VariablePath | None = _operator_field()
    timestamp_greater_than_equals_path: VariablePath | None = _operator_field()

    is_null: StrictBool | None = _operator_field()
    is_present: StrictBool | None = _operator_field()
    is_numeric: StrictBool | None = _operator_field()
    is_string: StrictBool | None = _operator_field()
    is_boolean: StrictBool | None = _operator_field()
    is_timestamp: StrictBool | None = _operator_field()

    _operator: _Operator = PrivateAttr()
    _operand_path: Path | None = PrivateAttr(default=None)
    _evaluator: _Evaluator = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _exactly_one_operator(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        allowed = ", ".join(OPERATORS)
        unknown = [key for key in data if key != "variable" and key not in _OPERATORS]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), [*OPERATORS, "variable"], n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(
                f"unknown key(s) {', '.join(hints)} in a comparison; it takes 'variable' and "
                f"exactly one operator among: {allowed}"
            )
        given = [name for name in OPERATORS if data.get(name) is not None]
        if not given:
            raise ValueError(
                f"a comparison needs exactly one operator, none given; use one of: {allowed}"
            )
        if len(given) > 1:
            raise ValueError(
                f"a comparison takes exactly one operator, got {len(given)} "
                f"({', '.join(given)}); use one of: {allowed}"
            )
        return data

    def model_post_init(self, context: Any, /) -> None:
        name = next(name for name in OPERATORS if getattr(self, name) is not None)
        spec = _OPERATORS[name]
        self._operator = spec
        operand = getattr(self, name)
        self._operand_path = parse_path(operand) if spec.reads_path else None
        self._evaluator = _Evaluator(_compile_comparison(spec, parse_path(self.variable), operand))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Copy; with ``update`` the operator is worked out again (fields are not validated)."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied.model_post_init(None)
        return copied

    def __getstate__(self) -> dict[Any, Any]:
        # the compiled evaluator is a closure: rebuild it from the fields after unpickling
        state = super().__getstate__()
        return {**state, "__pydantic_private__": {}}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self.model_post_init(None)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "variable", self.variable
        yield self._operator.name, self.operand

    @property
    def operator(self) -> str:
        """The snake_case name of the operator used."""
        return self._operator.name

    @property
    def operand(self) -> Any:
        """The operator's value (a path string for ``*_path`` operators)."""
        return getattr(self, self._operator.name)

    def evaluate(self, doc: Any) -> bool:
        """Apply the rule to ``doc``; a missing variable raises ``PathNotFoundError``."""
        return self._evaluator.run(doc)

    def to_asl(self) -> dict[str, Any]:
        """The ASL JSON form, for example ``{"Variable": "$.n", "NumericEquals": 1}``."""
        return {"Variable": self.variable, self._operator.asl_name: self.operand}

    def paths(self) -> list[str]:
        """Every path the rule reads."""
        if self._operand_path is not None:
            return [self.variable, self._operand_path.text]
        return [self.variable]


class AllOf(BaseModel):
    """True when every rule is true (ASL ``And``); written ``{and: [...]}``."""

    model_config = _RULE_CONFIG

    all_of: list[Condition] = Field(alias="and", min_length=1)

    def evaluate(self, doc: Any) -> bool:
        """True when every rule holds; stops at the first false one."""
        return all(rule.evaluate(doc) for rule in self.all_of)

    def to_asl(self) -> dict[str, Any]:
        """The ASL JSON form ``{"And": [...]}``."""
        return {"And": [rule.to_asl() for rule in self.all_of]}

    def paths(self) -> list[str]:
        """Every path the rules read."""
        return [path for rule in self.all_of for path in rule.paths()]


class AnyOf(BaseModel):
    """True when at least one rule is true (ASL ``Or``); written ``{or: [...]}``."""

    model_config = _RULE_CONFIG

    any_of: list[Condition] = Field(alias="or", min_length=1)

    def evaluate(self, doc: Any) -> bool:
        """True when a rule holds; stops at the first true one."""
        return any(rule.evaluate(doc) for rule in self.any_of)

    def to_asl(self) -> dict[str, Any]:
        """The ASL JSON form ``{"Or": [...]}``."""
        return {"Or": [rule.to_asl() for rule in self.any_of]}

    def paths(self) -> list[str]:
        """Every path the rules read."""
        return [path for rule in self.any_of for path in rule.paths()]


class Not(BaseModel):
    """True when the rule is false (ASL ``Not``); written ``{not: {...}}``."""

    model_config = _RULE_CONFIG

    negated: Condition = Field(alias="not")

    def evaluate(self, doc: Any) -> bool:
        """The negation of the rule."""
        return not self.negated.evaluate(doc)

    def to_asl(self) -> dict[str, Any]:
        """The ASL JSON form ``{"Not": {...}}``."""
        return {"Not": self.negated.to_asl()}

    def paths(self) -> list[str]:
        """Every path the rule reads."""
        return self.negated.paths()


_COMBINATOR_KEYS: Final = (("and", "all_of"), ("or", "any_of"), ("not", "negated"))


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for tag, name in _COMBINATOR_KEYS:
            if tag in value or name in value:
                return tag
        return "comparison"
    if isinstance(value, Comparison):
        return "comparison"
    if isinstance(value, AllOf):
        return "and"
    if isinstance(value, AnyOf):
        return "or"
    if isinstance(value, Not):
        return "not"
    return None


Condition = Annotated[
    Annotated[Comparison, Tag("comparison")]
    | Annotated[AllOf, Tag("and")]
    | Annotated[AnyOf, Tag("or")]
    | Annotated[Not, Tag("not")],
    Discriminator(
        _condition_tag,
        custom_error_type="invalid_condition",
        custom_error_message=(
            "a condition must be an object: a comparison {variable: ..., <operator>: ...}, "
            "{and: [...]}, {or: [...]} or {not: {...}}"
        ),
    ),
]
"""A Choice rule: a :class:`Comparison`, :class:`AllOf`, :class:`AnyOf` or :class:`Not`."""

AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()

_CONDITION_ADAPTER: Final[TypeAdapter[Condition]] = TypeAdapter(Condition)


def _from_asl(rule: Any, where: str) -> Any:
    if not isinstance(rule, Mapping):
        raise ExpressionError(f"ASL choice rule at {where} is not an object")
    if "And" in rule or "Or" in rule:
        key = "And" if "And" in rule else "Or"
        rules = rule[key]
        if not isinstance(rules, list):
            raise ExpressionError(f"ASL choice rule at {where}: {key!r} needs a list")
        return {
            key.lower(): [_from_asl(item, f"{where}.{key}[{i}]") for i, item in enumerate(rules)]
        }
    if "Not" in rule:
        return {"not": _from_asl(rule["Not"], f"{where}.Not")}
    converted: dict[str, Any] = {}
    for key, value in rule.items():
        if key in ("Next", "Comment") and where == "$":
            continue
        if key == "Variable":
            converted["variable"] = value
        elif key in _BY_ASL_NAME:
            converted[_BY_ASL_NAME[key]] = value
        else:
            raise ExpressionError(f"ASL choice rule at {where}: unknown field {key!r}")
    return converted


def condition_from_asl(rule: Mapping[str, Any]) -> Condition:
    """Read an ASL choice rule (``Next`` and ``Comment`` at the top are ignored)."""
    return _CONDITION_ADAPTER.validate_python(_from_asl(rule, "$"))
