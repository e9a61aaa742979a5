"""The rules of `pipeline_core.validation`, applied to whole columns with polars.

`fast_json_lines(raw, columns)` takes a batch of raw CSV values (every column a string) and
returns, per row, the row's normalised JSON object, or null where the row needs the exact
check of `validation.validate_row`. The vectorised rules only *accept*: they recognise the
common spellings of each type (`42`, `2.5`, `true`, `2026-01-31`, `2026-01-31T12:00:00Z`, …)
whose normalised value is certain. Anything else — invalid values, and valid but unusual ones
(`1e3` as an int, `20260131`, a `+05:30` offset in year 1, 16-digit ints) — goes to the
Python validator, which decides and gives the reasons. So accepting is exact by
construction, and rejecting is always done by the reference code.

Patterns: a pattern written in the syntax both regex engines read alike (`same_in_polars`)
is run by polars as it is; any other (`\\d`, `\\b`, look-arounds, flags, back-references, …)
with Python's `re.search`, once per distinct value of the batch.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import sys

import polars as pl

from pipeline_core.row_sink import RowSink
from pipeline_core.validation import Column, check_value, validate_row

_INT = r"^[+-]?[0-9]{1,15}$"  # |n| < 2**53: exact as a float too, so bounds compare exactly
_LONG_INT = r"^[+-]?[0-9]{16,}$"
_FLOAT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"  # validation._FLOAT_TEXT
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_HOUR = r"([01][0-9]|2[0-3])"
_DATETIME = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T{_HOUR}:[0-5][0-9]:[0-5][0-9]"
_OFFSET = rf"(Z|[+-]{_HOUR}:[0-5][0-9])"
_DT_FORMAT = "%Y-%m-%dT%H:%M:%S"
_WORDS_TRUE = ["true", "yes", "1"]
_WORDS = [*_WORDS_TRUE, "false", "no", "0"]


@functools.cache
def python_whitespace() -> str:
    """Every character `str.strip()` removes (Unicode `isspace`), for polars' strip."""
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


# ---------------------------------------------------------------- patterns


# The syntax Python's `re` and polars' engine (Rust `regex`) read alike, on stripped values:
# literals, escaped punctuation, `.`, `^`, `$`, plain character sets, groups, alternation and
# the repeats `* + ? {n} {n,} {n,m}` (lazy or not). Rust reads more than this differently
# (`\<`, `a*+`, `x{ 2 }`, set operations `&& -- ~~`, nested sets), so anything else is refused.
_ESCAPED = r"\\[.^$*+?()\[\]{}|\\/-]"
_ATOM = rf"(?:[^\\\[\](){{}}*+?|]|{_ESCAPED}|\[\^?(?:[^\\\[\]]|{_ESCAPED})+\]|\))"
_REPEAT = r"(?:[*+?]|\{[0-9]+(?:,[0-9]*)?\})\??"
_PORTABLE = re.compile(rf"(?:{_ATOM}(?:{_REPEAT})?|\((?:\?:)?|\|)*")


@functools.cache
def same_in_polars(pattern: str) -> bool:
    """Whether polars' `str.contains(pattern)` matches exactly what `re.search` does.

    Example:
        >>> same_in_polars("^[A-Z]{2}-[0-9]+$"), same_in_polars(r"^\\d+$")
        (True, False)
    """
    if not _PORTABLE.fullmatch(pattern) or any(op in pattern for op in ("&&", "--", "~~")):
        return False
    try:  # e.g. a repeat count over the engine's size limit
        pl.Series([""]).str.contains(pattern)
    except pl.exceptions.PolarsError:
        return False
    return True


# ---------------------------------------------------------------- columns


def _typed(column: Column, text: pl.Expr, frame: pl.DataFrame) -> tuple[pl.Expr, pl.Expr]:
    """(accepted, normalised value) for one column's present, stripped values."""
    spec = column.spec
    if spec.type == "str":
        if column.pattern is None:
            return pl.lit(True), text
        if same_in_polars(column.pattern.pattern):
            return text.str.contains(column.pattern.pattern), text
        # Exact Python `re.search`, once per distinct value of this batch.
        distinct = frame.select(text.unique()).to_series().drop_nulls().to_list()
        matching = [v for v in distinct if column.pattern.search(v)]
        return text.is_in(pl.Series(matching, dtype=pl.String)), text
    if spec.type == "bool":
        lower = text.str.to_lowercase()
        ascii_only = text.str.len_bytes() == text.str.len_chars()
        return ascii_only & lower.is_in(_WORDS), lower.is_in(_WORDS_TRUE)
    if spec.type in ("int", "float"):
        if spec.type == "int":
            ok, value = text.str.contains(_INT), text.cast(pl.Int64, strict=False)
        else:
            value = text.cast(pl.Float64, strict=False)
            ok = text.str.contains(_FLOAT) & ~text.str.contains(_LONG_INT) & value.is_finite()
        if spec.min is not None:
            ok = ok & (value >= spec.min)
        if spec.max is not None:
            ok = ok & (value <= spec.max)
        return ok, value
    if spec.type == "date":
        parsed = text.str.to_date("%Y-%m-%d", strict=False)
        return text.str.contains(_DATE) & (parsed.dt.year() >= 1), text
    # datetime: naive values are already in ISO form; aware ones are shifted to UTC.
    local = text.str.slice(0, 19).str.to_datetime(_DT_FORMAT, strict=False, time_unit="us")
    suffix = text.str.slice(19)
    sign = pl.when(suffix.str.starts_with("-")).then(-1).otherwise(1)
    hours, mins = (suffix.str.slice(at, 2).cast(pl.Int64, strict=False) for at in (1, 4))
    offset = pl.when(suffix == "Z").then(0).otherwise(sign * (hours * 60 + mins))
    utc = (local - pl.duration(minutes=offset)).dt.strftime(_DT_FORMAT + "+00:00")
    year = local.dt.year()
    ok = text.str.contains(_DATETIME + f"{_OFFSET}?$") & (year >= 1000) & (year <= 9998)
    value = (
        pl.when(suffix == "").then(text)
        .when(offset == 0).then(text.str.slice(0, 19) + "+00:00")
        .otherwise(utc)
    )  # fmt: skip
    return ok, value


def fast_check(raw: pl.DataFrame, columns: list[Column] | None) -> pl.DataFrame:
    """Per row of `raw` (string columns, named as in the file): `line`, its JSON object, or
    null where the row is not accepted here; and per schema column `i`, `ok_<i>`: whether
    that column's value was accepted (null counts as not).

    Keys are the schema's columns in schema order, then the file's other columns, like
    `validate_row`. Rows with a null `line` must be decided by the Python validator.

    Example:
        >>> from pipeline_core.sources import ColumnSpec
        >>> from pipeline_core.validation import compile_schema
        >>> raw = pl.DataFrame({"n": [" 7", "x"], "note": ["a", "b"]})
        >>> fast_check(raw, compile_schema({"n": ColumnSpec(type="int")}))["line"].to_list()
        ['{"n":7,"note":"a"}', None]
    """
    if columns is None:
        return raw.select(pl.struct(pl.all()).struct.json_encode().alias("line"))
    space = python_whitespace()
    names = {c.name for c in columns}
    checks, values = [], []
    for i, column in enumerate(columns):
        if column.name in raw.columns:
            text = pl.col(column.name).str.strip_chars(space)
        else:
            text = pl.lit("", dtype=pl.String)
        ok, value = _typed(column, text, raw)
        missing = text == ""
        checks.append(
            pl.when(missing).then(not column.spec.required).otherwise(ok).fill_null(False)
            .alias(f"ok_{i}")
        )  # fmt: skip
        values.append(pl.when(missing).then(None).otherwise(value).alias(column.name))
    extras = [pl.col(name) for name in raw.columns if name not in names]
    line = pl.struct([*values, *extras]).struct.json_encode().alias("line")
    oks = [f"ok_{i}" for i in range(len(columns))]
    return raw.select(*checks, line).with_columns(
        pl.when(pl.all_horizontal(oks)).then(pl.col("line")).alias("line")
    )


def read_piece(
    piece: bytes, header: list[str], columns: list[Column] | None, sink: RowSink
) -> bool:
    """Parse a piece of whole CSV records with polars, validate it, write its rows to `sink`.

    Returns False, having written nothing, where polars might not read the piece exactly as
    Python's `csv` module would: blank lines or a lone `\\r`, a record with another number
    of fields than the header, a field over `csv.field_size_limit()`, or quoting it refuses.
    """
    if piece.startswith((b"\n", b"\r\n")) or b"\n\n" in piece or b"\n\r\n" in piece:
        return False
    if b"\r" in piece and piece.count(b"\r") != piece.count(b"\r\n"):
        return False
    try:
        raw = pl.read_csv(
            piece,
            has_header=False,
            schema=dict.fromkeys(header, pl.String),
            empty_string_is_null=False,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:
        return False
    # Every separator outside quotes is a field boundary: exactly (fields - 1) per record.
    commas = piece.count(b",")
    if b'"' in piece:
        inside = raw.select(pl.sum_horizontal(pl.all().str.count_matches(",", literal=True)).sum())
        commas -= int(inside.item())
    if commas != raw.height * (len(header) - 1) or raw.height == 0:
        return False
    longest = raw.select(pl.max_horizontal(pl.all().str.len_bytes().max())).item()
    if (
        longest > csv.field_size_limit()
        and raw.select(pl.max_horizontal(pl.all().str.len_chars().max())).item()
        > csv.field_size_limit()
    ):
        return False

    checked = fast_check(raw, columns)
    lines = checked["line"]
    unsure = lines.is_null().arg_true()
    if len(unsure):
        fixed = _python_rows(raw[unsure], checked[unsure], unsure.to_list(), columns, sink)
        if fixed:
            lines = lines.scatter([i for i, _ in fixed], [line for _, line in fixed])
        lines = lines.drop_nulls()
    # Each line is one JSON object (no raw newline in it): written as they are, no quoting.
    pl.DataFrame({"line": lines}).write_csv(sink.out, include_header=False, quote_style="never")
    sink.rows_out += len(lines)
    return True


def _python_rows(
    raw: pl.DataFrame,
    checked: pl.DataFrame,
    positions: list[int],
    columns: list[Column] | None,
    sink: RowSink,
) -> list[tuple[int, str]]:
    """Decide the rows polars did not accept; returns (position, JSON line) of valid ones.

    A column polars accepted is valid (it only accepts what Python would), so only the
    others are checked; a row whose doubtful values all turn out valid is redone whole.
    """
    first = sink.rows_in  # rows before this piece
    schema = columns or []
    index = {name: i for i, name in enumerate(raw.columns)}
    values_json = raw.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
    flags = checked.drop("line").rows()
    fixed: list[tuple[int, str]] = []
    for k, (at, record) in enumerate(zip(positions, raw.rows(), strict=True)):
        reasons = []
        for column, ok in zip(schema, flags[k], strict=True):
            if not ok:
                where = index.get(column.name)
                _, reason = check_value(None if where is None else record[where], column)
                if reason is not None:
                    reasons.append(reason)
        if reasons:
            sink.reject(first + at + 1, reasons, values_json=values_json[k])
        else:
            row, _ = validate_row(dict(zip(raw.columns, record, strict=True)), columns)
            fixed.append((at, json.dumps(row, ensure_ascii=False, separators=(",", ":"))))
    return fixed
