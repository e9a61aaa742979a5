"""Check one parsed row against a declared schema and normalise its values.

Rules (per `ColumnSpec`):
- missing: absent key, JSON `null`, or a blank string; an error only if `required`.
- `str`: text (JSON numbers/bools become their JSON text), stripped; `pattern` is searched
  with `re.search` (anchor it with `^…$` to match the whole value).
- `int`: `42`, `"42"`, `" 42 "`, `42.0`; not `true`, not `4.2`.
- `float`: any finite number or numeric text; `NaN`/`inf` are refused.
- `bool`: `true/false/yes/no/1/0` (any case), JSON booleans, the numbers 1 and 0.
- `date` / `datetime`: ISO 8601 (`2026-01-31`, `2026-01-31T12:00:00+00:00`, `…Z`); written
  back in ISO form, aware datetimes converted to UTC (a value that leaves years 1-9999 in
  UTC is invalid).
- `min` / `max` bound `int` and `float` values (inclusive).
Columns not in the schema are kept as they were parsed.

Each reason is a `Reason`: its text, plus a `kind` (the same text with the offending value
replaced by `…`) so millions of invalid rows can be counted per kind in bounded memory.
This module is the reference: `pipeline_core.batch_validation` applies the same rules to
whole columns and hands every value it is not sure about back to `validate_row`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipeline_core.sources import ColumnSpec

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class SchemaError(ValueError):
    """The declared schema itself is unusable (e.g. an invalid regular expression)."""


class Reason(str):
    """Why a row is invalid (the text), with `kind`: the text minus the offending value.

    Example:
        >>> r = Reason("n: 'x' is not a number", "n: … is not a number")
        >>> (r == "n: 'x' is not a number", r.kind)
        (True, 'n: … is not a number')
    """

    kind: str

    def __new__(cls, text: str, kind: str | None = None) -> Reason:
        reason = super().__new__(cls, text)
        reason.kind = text if kind is None else kind
        return reason


class InvalidValue(ValueError):
    """A value breaks its column's rule; `template` holds `{v}` where the value goes."""

    def __init__(self, template: str, value: str = "") -> None:
        super().__init__(template.replace("{v}", value))
        self.kind = template.replace("{v}", "…")


@dataclass(frozen=True)
class Column:
    """A schema column ready to check values: its spec and compiled pattern."""

    name: str
    spec: ColumnSpec
    pattern: re.Pattern[str] | None


def compile_schema(schema: dict[str, ColumnSpec]) -> list[Column]:
    """Compile each column's pattern once; names are stripped like parsed column names.

    Raises:
        SchemaError: a pattern is not a valid regular expression.
    """
    columns = []
    for name, spec in schema.items():
        try:
            pattern = re.compile(spec.pattern) if spec.pattern is not None else None
        except re.error as exc:
            raise SchemaError(f"column {name!r}: invalid pattern {spec.pattern!r} ({exc})") from exc
        columns.append(Column(name.strip(), spec, pattern))
    return columns


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def convert(value: Any, column: Column) -> Any:
    """Convert one present value to the column's type and check its bounds and pattern.

    Raises:
        InvalidValue: a reason naming the column and the value.

    Example:
        >>> convert(" 7 ", Column("n", ColumnSpec(type="int", min=0), None))
        7
    """
    spec, name = column.spec, column.name
    kind = spec.type
    text = value.strip() if isinstance(value, str) else None
    result: Any
    if isinstance(value, dict | list):
        raise InvalidValue(f"{name}: expected a {kind} value, got a nested {type(value).__name__}")
    if kind == "str":
        if text is not None:
            result = text
        elif isinstance(value, bool):
            result = "true" if value else "false"
        else:
            result = str(value)
        if column.pattern is not None and not column.pattern.search(result):
            raise InvalidValue(
                f"{name}: {{v}} does not match pattern {spec.pattern!r}", _show(result)
            )
        return result
    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = text.lower() if text is not None else str(value)
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise InvalidValue(f"{name}: {{v}} is not a boolean (true/false/yes/no/1/0)", _show(value))
    if kind in ("int", "float"):
        result = _number(value, text, kind, name)
        if spec.min is not None and result < spec.min:
            raise InvalidValue(f"{name}: {{v}} is below the minimum {spec.min:g}", str(result))
        if spec.max is not None and result > spec.max:
            raise InvalidValue(f"{name}: {{v}} is above the maximum {spec.max:g}", str(result))
        return result
    if text is None:
        raise InvalidValue(f"{name}: expected an ISO {kind} string, got {{v}}", _show(value))
    try:
        if kind == "date":
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"{name}: {{v}} is not an ISO {kind}", _show(value)) from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:30:00+01:00 is before year 1 in UTC
            raise InvalidValue(f"{name}: {{v}} is out of range in UTC", _show(value)) from None
    return moment.isoformat()


def _number(value: Any, text: str | None, kind: str, name: str) -> int | float:
    """An int or float from a JSON number or decimal text (no `1_000`, no hex)."""
    number: int | float
    if isinstance(value, bool):
        raise InvalidValue(f"{name}: {{v}} is a boolean, not a {kind}", _show(value))
    if text is not None:
        if _INT_TEXT.fullmatch(text):
            if len(text) > 100:  # int() of thousands of digits is slow, then refused
                raise InvalidValue(f"{name}: {{v}} is too long for a number", _show(value))
            number = int(text)
        elif _FLOAT_TEXT.fullmatch(text) or text.lower().lstrip("+-") in ("inf", "infinity", "nan"):
            number = float(text)
        else:
            raise InvalidValue(f"{name}: {{v}} is not a number", _show(value))
    elif isinstance(value, int | float):
        number = value
    else:
        raise InvalidValue(f"{name}: {{v}} is not a number", _show(value))
    if isinstance(number, float) and not math.isfinite(number):
        raise InvalidValue(f"{name}: {{v}} is not a finite number", _show(value))
    if kind == "float":
        return float(number)
    if isinstance(number, float):
        if not number.is_integer():
            raise InvalidValue(f"{name}: {{v}} is not a whole number", _show(value))
        return int(number)
    return number


def check_value(value: Any, column: Column) -> tuple[Any, Reason | None]:
    """One value of a row: (normalised value, None), or (value as given, why it is invalid).

    Example:
        >>> check_value(" 7 ", Column("n", ColumnSpec(type="int"), None))
        (7, None)
    """
    if _is_missing(value):
        if column.spec.required:
            return None, Reason(f"{column.name}: missing required value")
        return None, None
    try:
        return convert(value, column), None
    except ValueError as exc:
        return value, Reason(str(exc), getattr(exc, "kind", None))


def validate_row(
    row: dict[str, Any], columns: list[Column] | None
) -> tuple[dict[str, Any], list[Reason]]:
    """Normalise `row` against `columns`; returns (normalised row, reasons it is invalid).

    Schema columns come first, in schema order, then any other columns unchanged.
    With no schema the row is returned as is, valid.

    Example:
        >>> cols = compile_schema({"n": ColumnSpec(type="int"), "ok": ColumnSpec(type="bool")})
        >>> validate_row({"n": "3", "ok": "yes", "note": "x"}, cols)
        ({'n': 3, 'ok': True, 'note': 'x'}, [])
        >>> validate_row({"n": "", "ok": "maybe"}, cols)[1]
        ['n: missing required value', "ok: 'maybe' is not a boolean (true/false/yes/no/1/0)"]
    """
    if columns is None:
        return dict(row), []
    out: dict[str, Any] = {}
    reasons: list[Reason] = []
    for column in columns:
        out[column.name], reason = check_value(row.get(column.name), column)
        if reason is not None:
            reasons.append(reason)
    for key, value in row.items():
        if key not in out:
            out[key] = value
    return out, reasons
