"""Turn the raw files of the latest manifest into validated, normalised JSON Lines.

Plain functions, no Prefect: `parse_rows` (CSV / JSON bytes → rows), `process_table`
(parse + validate + normalise), `process_entry` (one manifest entry: read, process, write),
`process_manifest` (every entry, then `processed/summary.json`) and `render_markdown`.

Outputs, under the data root:
- `processed/<source>/<sha256>.jsonl`: the valid rows, normalised, of the raw file whose
  content hash is `<sha256>`; `processed/<source>/latest.jsonl`: the same bytes, at a stable path.
- `processed/summary.json`: a `ProcessSummary` (rows in / out, invalid rows with reasons).
Row numbers count data records from 1 (for CSV the header is not a record; blank lines
are skipped).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, BaseModel, Field

from pipeline_core.manifest import EntryStatus, Manifest, ManifestEntry
from pipeline_core.validation import SchemaError, compile_schema, validate_row

if TYPE_CHECKING:
    from pipeline_core.sources import ColumnSpec, Source
    from pipeline_core.storage import Storage

SUMMARY = "processed/summary.json"
FORMATS = ("csv", "json")


class ParseError(ValueError):
    """A whole file cannot be read as the declared format; the message says where and why."""


@dataclass
class TableResult:
    """One file, processed: valid normalised rows and the invalid ones with reasons."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[InvalidRow] = field(default_factory=list)
    rows_in: int = 0


class InvalidRow(BaseModel):
    """A rejected row: its number (data records counted from 1) and every reason."""

    row: int
    reasons: list[str]


class SourceStatus(StrEnum):
    """What processing did with one source."""

    PROCESSED = "processed"  # parsed; some rows may still be invalid
    ERROR = "error"  # the stored file could not be read or parsed (or the schema is unusable)
    FETCH_FAILED = "fetch_failed"  # the manifest has no stored copy: nothing to process
    NOT_IN_MANIFEST = "not_in_manifest"  # configured, but the latest ingest did not record it


class SourceSummary(BaseModel):
    """One source's processing outcome."""

    source: str
    status: SourceStatus
    format: str | None = None
    sha256: str | None = None
    input_path: str | None = None
    output_path: str | None = None
    latest_path: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_invalid: int = 0
    invalid_rows: list[InvalidRow] = Field(default_factory=list)
    error: str | None = None


class Totals(BaseModel):
    """Sums over every source."""

    sources: int
    processed: int
    errors: int
    skipped: int
    rows_in: int
    rows_out: int
    rows_invalid: int


class ProcessSummary(BaseModel):
    """The summary of one processing run, written as `processed/summary.json`."""

    run_id: str
    manifest_run_id: str
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    totals: Totals
    sources: list[SourceSummary]

    @property
    def errors(self) -> list[SourceSummary]:
        """Sources whose stored file could not be processed."""
        return [s for s in self.sources if s.status is SourceStatus.ERROR]


# ---------------------------------------------------------------- parsing


def decode_text(data: bytes) -> str:
    """UTF-8 text (a leading BOM is dropped).

    Raises:
        ParseError: naming the first undecodable byte and its offset.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} ({exc.reason})"
        ) from None


def _columns(names: list[str]) -> list[str]:
    stripped = [n.strip() for n in names]
    for i, name in enumerate(stripped, 1):
        if not name:
            raise ParseError(f"header: column {i} has no name")
    dupes = sorted({n for n in stripped if stripped.count(n) > 1})
    if dupes:
        raise ParseError(f"header: duplicate column names {dupes}")
    return stripped


ParsedRow = tuple[int, dict[str, Any] | None, str | None]
"""(row number, values or None, why the row is unreadable or None)."""


def parse_csv(text: str) -> list[ParsedRow]:
    """Rows of a comma-separated file with a header line; column names are stripped.

    A record whose field count differs from the header's is kept as an unreadable row.

    Raises:
        ParseError: empty file, bad header, or a record the csv module refuses (e.g. a field
            over `csv.field_size_limit()`, 128 KiB by default).
    """
    if not text.strip():
        raise ParseError("empty file: no header line")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[ParsedRow] = []
    try:
        header = _columns(next(reader))
        number = 0
        for record in reader:
            if not record:  # blank line
                continue
            number += 1
            if len(record) != len(header):
                problem = f"has {len(record)} fields, the header has {len(header)}"
                rows.append((number, None, problem))
            else:
                rows.append((number, dict(zip(header, record, strict=True)), None))
    except csv.Error as exc:
        raise ParseError(f"CSV line {reader.line_num}: {exc}") from None
    return rows


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), "a number")


def _refuse_constant(name: str) -> Any:
    raise ParseError(f"invalid JSON: non-standard constant {name}")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ParseError(f"invalid JSON: number {text[:40]} is out of range")
    return number


def parse_json(text: str) -> list[ParsedRow]:
    """Rows of a JSON list of objects, or of an object holding exactly one list.

    Keys are stripped; an item that is not an object is kept as an unreadable row.

    Raises:
        ParseError: empty or invalid JSON, or a document of another shape.
    """
    if not text.strip():
        raise ParseError("empty file: no JSON document")
    try:
        doc = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise ParseError("invalid JSON: nested too deeply") from None
    except ParseError:
        raise
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ParseError(f"invalid JSON: {exc}") from None
    if isinstance(doc, dict):
        lists = [key for key, value in doc.items() if isinstance(value, list)]
        if len(lists) != 1:
            raise ParseError(
                "expected a JSON list of objects, or an object holding exactly one list; "
                f"got an object with {len(lists)} lists"
                + (f" ({', '.join(map(repr, lists[:5]))})" if lists else "")
            )
        doc = doc[lists[0]]
    if not isinstance(doc, list):
        raise ParseError(f"expected a JSON list of objects, got {_json_type(doc)}")
    rows: list[ParsedRow] = []
    for number, item in enumerate(doc, 1):
        if not isinstance(item, dict):
            rows.append((number, None, f"is {_json_type(item)}, not an object"))
            continue
        values = {key.strip(): value for key, value in item.items()}
        if len(values) != len(item):
            rows.append((number, None, "has keys that are equal once stripped"))
        else:
            rows.append((number, values, None))
    return rows


def parse_rows(data: bytes, fmt: str) -> list[ParsedRow]:
    """Decode `data` as UTF-8 and parse it as `fmt` (`csv` or `json`).

    Raises:
        ParseError: see `decode_text`, `parse_csv`, `parse_json`; or an unknown format.
    """
    if fmt not in FORMATS:
        raise ParseError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    text = decode_text(data)
    return parse_csv(text) if fmt == "csv" else parse_json(text)


def process_table(data: bytes, fmt: str, schema: dict[str, ColumnSpec] | None) -> TableResult:
    """Parse, validate and normalise one file.

    Without a schema every readable row is kept as parsed (CSV values stay strings).

    Raises:
        ParseError: the file as a whole is unreadable.
        SchemaError: the schema is unusable.

    Example:
        >>> from pipeline_core.sources import ColumnSpec
        >>> r = process_table(b"n,ok\\n1,yes\\nx,no\\n", "csv", {"n": ColumnSpec(type="int")})
        >>> r.rows, r.invalid[0].row, r.rows_in
        ([{'n': 1, 'ok': 'yes'}], 2, 2)
    """
    columns = compile_schema(schema) if schema else None
    result = TableResult()
    for number, values, problem in parse_rows(data, fmt):
        result.rows_in += 1
        if values is None:
            result.invalid.append(InvalidRow(row=number, reasons=[f"row {problem}"]))
            continue
        row, reasons = validate_row(values, columns)
        if reasons:
            result.invalid.append(InvalidRow(row=number, reasons=reasons))
        else:
            result.rows.append(row)
    return result


def to_jsonl(rows: list[dict[str, Any]]) -> bytes:
    """JSON Lines: one compact UTF-8 object per line."""
    return b"".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for row in rows
    )


# ---------------------------------------------------------------- manifest entries


def output_paths(source: str, sha256: str) -> tuple[str, str]:
    """(`processed/<source>/<sha256>.jsonl`, `processed/<source>/latest.jsonl`)."""
    return f"processed/{source}/{sha256}.jsonl", f"processed/{source}/latest.jsonl"


def _format_of(entry: ManifestEntry, source: Source | None) -> str | None:
    if source is not None and source.resolved_format:
        return source.resolved_format
    if entry.format:
        return entry.format
    suffix = (entry.path or "").rsplit(".", 1)[-1].lower()
    return suffix if suffix in FORMATS else None


async def process_entry(
    entry: ManifestEntry, source: Source | None, storage: Storage
) -> SourceSummary:
    """Process one stored file: read it, validate and normalise it, write the JSON Lines.

    A file that cannot be read or parsed gives an `error` summary (nothing is written);
    `source` (for its schema and format) may be None for a source no longer configured.
    """
    if entry.path is None:
        raise ValueError(f"manifest entry {entry.source!r} has no stored path")
    fmt = _format_of(entry, source)
    summary = SourceSummary(
        source=entry.source, status=SourceStatus.PROCESSED, format=fmt, input_path=entry.path
    )
    try:
        if fmt is None:
            raise ParseError("format unknown: declare 'format' (csv or json) for this source")
        data = await storage.read_bytes(entry.path)
        schema = source.schema_ if source is not None else None
        # Parsing is CPU-bound: keep the event loop (log shipping, other tasks) responsive.
        table = await asyncio.to_thread(process_table, data, fmt, schema)
    except (ParseError, SchemaError, OSError) as exc:
        what = "schema" if isinstance(exc, SchemaError) else entry.path
        summary.status, summary.error = SourceStatus.ERROR, f"{what}: {exc}"
        return summary
    sha256 = entry.sha256 or hashlib.sha256(data).hexdigest()
    body = to_jsonl(table.rows)
    summary.output_path, summary.latest_path = output_paths(entry.source, sha256)
    await storage.write_bytes(summary.output_path, body)
    await storage.write_bytes(summary.latest_path, body)
    summary.sha256 = sha256
    summary.rows_in, summary.rows_out = table.rows_in, len(table.rows)
    summary.rows_invalid, summary.invalid_rows = len(table.invalid), table.invalid
    return summary


ProcessOne = Callable[[ManifestEntry, "Source | None", "Storage"], Awaitable[SourceSummary]]


def summarise(run_id: str, manifest_run_id: str, results: list[SourceSummary]) -> ProcessSummary:
    """Add up per-source results into a `ProcessSummary`."""
    count = Counter(r.status for r in results)
    totals = Totals(
        sources=len(results),
        processed=count[SourceStatus.PROCESSED],
        errors=count[SourceStatus.ERROR],
        skipped=count[SourceStatus.FETCH_FAILED] + count[SourceStatus.NOT_IN_MANIFEST],
        rows_in=sum(r.rows_in for r in results),
        rows_out=sum(r.rows_out for r in results),
        rows_invalid=sum(r.rows_invalid for r in results),
    )
    return ProcessSummary(
        run_id=run_id, manifest_run_id=manifest_run_id, totals=totals, sources=results
    )


async def process_manifest(
    manifest: Manifest,
    sources: list[Source],
    *,
    storage: Storage,
    run_id: str,
    process: ProcessOne = process_entry,
) -> ProcessSummary:
    """Process every manifest entry that has a stored copy, then write `processed/summary.json`.

    `process(entry, source, storage)` does one entry; flows pass a Prefect task here.
    Failed fetches and configured sources missing from the manifest are reported, not
    processed; an unexpected exception in one entry becomes that entry's `error`.
    """
    by_name = {s.name: s for s in sources}
    results: list[SourceSummary] = []
    for entry in manifest.entries:
        if entry.status is EntryStatus.FAILED or entry.path is None:
            results.append(
                SourceSummary(
                    source=entry.source,
                    status=SourceStatus.FETCH_FAILED,
                    error=f"fetch {entry.status.value}: {entry.error or 'no stored copy'}",
                )
            )
            continue
        try:
            results.append(await process(entry, by_name.get(entry.source), storage))
        except Exception as exc:  # one broken source never stops the others
            results.append(
                SourceSummary(
                    source=entry.source,
                    status=SourceStatus.ERROR,
                    input_path=entry.path,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
    recorded = {e.source for e in manifest.entries}
    results += [
        SourceSummary(
            source=s.name,
            status=SourceStatus.NOT_IN_MANIFEST,
            error=f"not in manifest {manifest.run_id}",
        )
        for s in sources
        if s.name not in recorded
    ]
    summary = summarise(run_id, manifest.run_id, results)
    await storage.write_bytes(SUMMARY, summary.model_dump_json(indent=2).encode())
    return summary


# ---------------------------------------------------------------- report


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def render_markdown(summary: ProcessSummary, *, max_invalid_shown: int = 20) -> str:
    """A report a person can read in the Prefect UI (a markdown artifact)."""
    t = summary.totals
    lines = [
        "# Project Alpha — processing summary",
        "",
        f"Manifest `{summary.manifest_run_id}` · {t.sources} sources: {t.processed} processed, "
        f"{t.errors} errors, {t.skipped} skipped · rows in **{t.rows_in}**, "
        f"out **{t.rows_out}**, invalid **{t.rows_invalid}**.",
        "",
        "| source | status | rows in | rows out | invalid | output / error |",
        "|---|---|---:|---:|---:|---|",
    ]
    for s in summary.sources:
        where = f"`{s.latest_path}`" if s.status is SourceStatus.PROCESSED else s.error
        lines.append(
            f"| {_cell(s.source)} | {s.status.value} | {s.rows_in} | {s.rows_out} | "
            f"{s.rows_invalid} | {_cell(where)} |"
        )
    for s in summary.sources:
        if not s.invalid_rows:
            continue
        lines += ["", f"## {_cell(s.source)}: {s.rows_invalid} invalid rows", ""]
        lines += ["| row | reasons |", "|---:|---|"]
        for bad in s.invalid_rows[:max_invalid_shown]:
            lines.append(f"| {bad.row} | {_cell('; '.join(bad.reasons))} |")
        if s.rows_invalid > max_invalid_shown:
            lines.append(f"| … | {s.rows_invalid - max_invalid_shown} more in `{SUMMARY}` |")
    return "\n".join(lines) + "\n"
