"""Turn the raw files of the latest manifest into validated, normalised JSON Lines.

Plain functions, no Prefect: `process_stream` (a stored file, read in pieces → rows into a
`RowSink`), `process_entry` (one manifest entry: read, process, write), `process_manifest`
(every entry, then `processed/summary.json`), `render_markdown`.

CSV files stream: pieces of whole records (`csv_stream`) are parsed and checked by polars
(`batch_validation`); each row it does not accept is decided by `validation.validate_row`.
A piece polars cannot read exactly like Python's `csv` module (ragged or blank records, a
lone `\r`, a field over the csv field limit, quoting it refuses) hands that piece and the
rest of the file to the `csv` module. JSON files are parsed in memory, up to `JSON_MAX_BYTES`.

Outputs, under the data root:
- `processed/<source>/<sha256>.jsonl`: the valid rows, normalised, of the raw file whose
  content hash is `<sha256>`; `processed/<source>/latest.jsonl`: the same bytes, at a stable path.
- `processed/<source>/<sha256>.invalid.jsonl`: every invalid row, `{"row", "reasons", "values"}`.
- `processed/summary.json`: a `ProcessSummary` (rows in / out, the first `MAX_INVALID_KEPT`
  invalid rows with reasons, and counts per kind of reason).
Row numbers count data records from 1 (for CSV the header is not a record; blank lines
are skipped).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, BaseModel, Field

from pipeline_core.csv_stream import (
    CsvFormatError,
    HashingReader,
    Readable,
    RecordChunks,
    check_utf8,
)
from pipeline_core.manifest import EntryStatus, Manifest, ManifestEntry
from pipeline_core.row_sink import MAX_INVALID_KEPT, InvalidRow, RowSink
from pipeline_core.validation import Column, Reason, SchemaError, compile_schema

if TYPE_CHECKING:
    from pipeline_core.sources import Source
    from pipeline_core.storage import Storage

SUMMARY = "processed/summary.json"
FORMATS = ("csv", "json")
JSON_MAX_BYTES = 64 * 1024 * 1024  # JSON is parsed in memory (a few times this size at peak)
CHUNK_BYTES = 4 * 1024 * 1024  # CSV read in pieces of about this size (peak RSS grows with it)
MAX_RECORD_BYTES = 64 * 1024 * 1024  # one CSV record (field limit x columns, with margin)


class ParseError(ValueError):
    """A whole file cannot be read as the declared format; the message says where and why."""


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
    invalid_rows: list[InvalidRow] = Field(
        default_factory=list, description=f"The first {MAX_INVALID_KEPT} invalid rows."
    )
    invalid_reasons: dict[str, int] = Field(
        default_factory=dict, description="Invalid rows per kind of reason (value left out)."
    )
    invalid_path: str | None = Field(default=None, description="Every invalid row, as JSONL.")
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


def csv_records(
    records: Iterable[list[str]], header: list[str], number: int = 0
) -> Iterator[ParsedRow]:
    """Rows of csv-module records after the header; blank lines skipped, ragged ones kept as
    unreadable. `number` is the count of rows before these."""
    for record in records:
        if not record:  # blank line
            continue
        number += 1
        if len(record) != len(header):
            problem = Reason(
                f"has {len(record)} fields, the header has {len(header)}",
                f"has … fields, the header has {len(header)}",
            )
            yield number, None, problem
        else:
            yield number, dict(zip(header, record, strict=True)), None


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


# ---------------------------------------------------------------- streaming


def process_stream(
    source: Readable,
    fmt: str,
    columns: list[Column] | None,
    sink: RowSink,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Read `source` (a binary file) as `fmt`, validate each row, write the rows to `sink`.

    CSV is read in pieces of about `chunk_bytes`; JSON whole, up to `JSON_MAX_BYTES`.

    Raises:
        ParseError: the file as a whole is unreadable (rows already written to `sink` are
            then meaningless: callers write into staged files and do not commit them).
    """
    if fmt not in FORMATS:
        raise ParseError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "json":
        data = source.read(JSON_MAX_BYTES + 1)
        if len(data) > JSON_MAX_BYTES:
            raise ParseError(
                f"JSON file over {JSON_MAX_BYTES // 2**20} MiB: JSON sources are parsed in "
                "memory; serve large tables as CSV"
            )
        for number, values, problem in parse_json(decode_text(data)):
            sink.check(number, values, problem, columns)
        return
    try:
        _process_csv(source, columns, sink, chunk_bytes)
    except CsvFormatError as exc:
        raise ParseError(str(exc)) from None


def _process_csv(
    source: Readable, columns: list[Column] | None, sink: RowSink, chunk_bytes: int
) -> None:
    from pipeline_core.batch_validation import read_piece  # polars: imported when needed

    chunks = RecordChunks(source, chunk_bytes, MAX_RECORD_BYTES)
    head = chunks.head()
    if not head.strip():
        if any(piece.strip() for piece in chunks):
            raise ParseError("header: line 1 is blank")
        raise ParseError("empty file: no header line")
    check_utf8(head, chunks.offset - len(head))
    try:
        header = _columns(next(csv.reader(io.StringIO(head.decode(), newline=""))))
    except csv.Error as exc:
        raise ParseError(f"CSV line 1: {exc}") from None
    for piece in chunks:
        check_utf8(piece, chunks.offset - len(piece))
        if not read_piece(piece, header, columns, sink):
            # polars might read this piece differently: the csv module does it and the rest
            _python_csv(chunks.rest(piece), header, columns, sink, chunks.lines)
            return


def _python_csv(
    stream: io.BufferedReader,
    header: list[str],
    columns: list[Column] | None,
    sink: RowSink,
    lines_before: int,
) -> None:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    reader = csv.reader(text)
    try:
        for number, values, problem in csv_records(reader, header, sink.rows_in):
            sink.check(number, values, problem, columns)
    except csv.Error as exc:
        raise ParseError(f"CSV line {lines_before + reader.line_num}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not UTF-8 text after line {lines_before + reader.line_num}: {exc.reason}"
        ) from None


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
    entry: ManifestEntry,
    source: Source | None,
    storage: Storage,
    *,
    keep_invalid: int = MAX_INVALID_KEPT,
) -> SourceSummary:
    """Process one stored file: stream it through validation into staged outputs, then
    publish `<sha256>.jsonl`, `<sha256>.invalid.jsonl` (if any row is invalid) and
    `latest.jsonl`, each atomically.

    A file that cannot be read or parsed gives an `error` summary and publishes nothing;
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
        schema = source.schema_ if source is not None else None
        columns = compile_schema(schema) if schema else None
        # Temp files go in processed/, so a failed source leaves no processed/<source>/.
        async with (
            storage.open_read(entry.path) as raw,
            storage.stage("processed") as out,
            storage.stage("processed") as bad,
        ):
            # The manifest normally knows the hash; otherwise compute it while reading.
            hashing = HashingReader(raw)
            sink = RowSink(out.file, bad.file, keep=keep_invalid)
            reader = raw if entry.sha256 else hashing
            # CPU-bound: keep the event loop (log shipping, other tasks) responsive.
            await asyncio.to_thread(process_stream, reader, fmt, columns, sink)
            sha256 = entry.sha256 or hashing.sha256.hexdigest()
            summary.output_path, summary.latest_path = output_paths(entry.source, sha256)
            if sink.rows_invalid:
                summary.invalid_path = f"processed/{entry.source}/{sha256}.invalid.jsonl"
                await bad.commit(summary.invalid_path)
            await out.commit(summary.output_path)
        await _copy(storage, summary.output_path, summary.latest_path)
    except (ParseError, SchemaError, OSError) as exc:
        what = "schema" if isinstance(exc, SchemaError) else entry.path
        summary.status, summary.error = SourceStatus.ERROR, f"{what}: {exc}"
        summary.output_path = summary.latest_path = summary.invalid_path = None
        return summary
    summary.sha256 = sha256
    summary.rows_in, summary.rows_out = sink.rows_in, sink.rows_out
    summary.rows_invalid, summary.invalid_rows = sink.rows_invalid, sink.invalid_rows
    summary.invalid_reasons = dict(sink.reason_counts.most_common())
    return summary


async def _copy(storage: Storage, source: str, target: str) -> None:
    """Publish a copy of `source` at `target`, atomically."""
    async with storage.open_read(source) as fh, storage.stage("processed") as staged:
        await asyncio.to_thread(shutil.copyfileobj, fh, staged.file, 1024 * 1024)
        await staged.commit(target)


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


def render_markdown(
    summary: ProcessSummary,
    *,
    title: str = "Processing summary",
    max_invalid_shown: int = 20,
    max_reasons_shown: int = 10,
) -> str:
    """A report a person can read in the Prefect UI (a markdown artifact): totals, a row per
    source, and per source its first invalid rows, where the others are, and the most
    frequent kinds of reason."""
    t = summary.totals
    lines = [
        f"# {title}",
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
        shown = s.invalid_rows[:max_invalid_shown]
        for bad in shown:
            lines.append(f"| {bad.row} | {_cell('; '.join(bad.reasons))} |")
        if s.rows_invalid > len(shown):
            where = s.invalid_path or SUMMARY
            lines.append(f"| … | {s.rows_invalid - len(shown)} more in `{where}` |")
        if s.invalid_reasons:
            lines += ["", "| reason (value left out) | rows |", "|---|---:|"]
            top = sorted(s.invalid_reasons.items(), key=lambda kv: -kv[1])[:max_reasons_shown]
            lines += [f"| {_cell(kind)} | {count} |" for kind, count in top]
    return "\n".join(lines) + "\n"
