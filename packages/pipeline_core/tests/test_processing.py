"""Processing without Prefect: parsing, validation, normalisation, outputs and the summary."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from pipeline_core.manifest import EntryStatus, Manifest, ManifestEntry
from pipeline_core.processing import (
    SUMMARY,
    ParseError,
    SourceStatus,
    SourceSummary,
    process_manifest,
    process_stream,
    render_markdown,
)
from pipeline_core.row_sink import InvalidRow, RowSink
from pipeline_core.sources import ColumnSpec, Source, parse_sources
from pipeline_core.storage import LocalStorage
from pipeline_core.validation import SchemaError, compile_schema, validate_row

# pipeline_core's own small dataset (fixtures/demo/): one CSV and one JSON file with every
# column type, a few rows deliberately invalid in each file (cities' "maybe" row only in its
# `coastal` column), and the sources describing them (sources.json).
DEMO_DIR = Path(__file__).parent / "fixtures" / "demo"
DEMO = parse_sources((DEMO_DIR / "sources.json").read_text())


def demo_bytes(source: Source) -> bytes:
    return (DEMO_DIR / Path(source.url.path or "").name).read_bytes()


class Processed(NamedTuple):
    rows: list[dict[str, Any]]
    invalid: list[InvalidRow]
    rows_in: int
    body: bytes


def processed(data: bytes, fmt: str, schema: dict[str, ColumnSpec] | None = None) -> Processed:
    """`process_stream` on bytes in memory, as `process_entry` runs it on a stored file."""
    out = io.BytesIO()
    sink = RowSink(out, keep=None)
    process_stream(io.BytesIO(data), fmt, compile_schema(schema) if schema else None, sink)
    body = out.getvalue()
    rows = [json.loads(line) for line in body.splitlines()]
    return Processed(rows, sink.invalid_rows, sink.rows_in, body)


# ------------------------------------------------------------ an independent oracle


def _oracle_ok(value: Any, spec: ColumnSpec) -> bool:
    """Deliberately simple and separate from pipeline_core.validation."""
    if value is None or str(value).strip() == "":
        return not spec.required
    text = str(value).strip()
    try:
        if spec.type == "int":
            number: float = int(text) if re.fullmatch(r"-?\d+", text) else math.nan
        elif spec.type == "float":
            number = float(text)
        elif spec.type == "bool":
            return text.lower() in {"true", "false", "yes", "no", "1", "0"}
        elif spec.type == "date":
            date.fromisoformat(text)
            return True
        elif spec.type == "datetime":
            datetime.fromisoformat(text)
            return True
        else:
            return spec.pattern is None or re.search(spec.pattern, text) is not None
    except ValueError:
        return False
    if math.isnan(number):
        return False
    return (spec.min is None or number >= spec.min) and (spec.max is None or number <= spec.max)


def _oracle_records(source: Source) -> list[dict[str, Any]]:
    text = demo_bytes(source).decode()
    if source.resolved_format == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    return list(json.loads(text))


@pytest.mark.parametrize("source", DEMO, ids=lambda s: s.name)
def test_demo_files_invalid_rows_match_an_independent_check(source: Source) -> None:
    assert source.schema_ is not None
    records = _oracle_records(source)
    expected_bad = [
        i
        for i, rec in enumerate(records, 1)
        if not all(_oracle_ok(rec.get(col), spec) for col, spec in source.schema_.items())
    ]
    assert expected_bad, "the demo files are meant to hold invalid rows"

    result = processed(demo_bytes(source), source.resolved_format or "", source.schema_)

    assert result.rows_in == len(records)
    assert [bad.row for bad in result.invalid] == expected_bad
    assert len(result.rows) == len(records) - len(expected_bad)
    assert all(bad.reasons for bad in result.invalid)
    for row in result.rows:  # every kept row is normalised to its declared type
        assert list(row)[: len(source.schema_)] == list(source.schema_)
        for col, spec in source.schema_.items():
            want = {"int": int, "float": float, "bool": bool}.get(spec.type, str)
            assert type(row[col]) is want, (col, row[col])


def test_demo_reasons_name_the_column_and_value() -> None:
    cities = next(s for s in DEMO if s.name == "cities")
    records = _oracle_records(cities)
    sligo = next(i for i, r in enumerate(records, 1) if r["coastal"] == "maybe")
    result = processed(demo_bytes(cities), "csv", cities.schema_)
    reasons = next(bad.reasons for bad in result.invalid if bad.row == sligo)
    assert len(reasons) == 1
    assert reasons[0].startswith("coastal:")
    assert "'maybe'" in reasons[0]


# ------------------------------------------------------------ hostile inputs


def test_non_utf8_is_a_clear_parse_error() -> None:
    data = "name\nZürich\n".encode("latin-1")
    with pytest.raises(ParseError, match=r"not UTF-8 text: byte 0xfc at offset 6"):
        processed(data, "csv")


def test_utf8_bom_and_padded_header_names() -> None:
    result = processed("\ufeff name , n \nA,1\n".encode(), "csv")
    assert result.rows == [{"name": "A", "n": "1"}]


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("data", [b"", b"  \n\n"])
def test_empty_file_is_a_parse_error(fmt: str, data: bytes) -> None:
    with pytest.raises(ParseError, match="empty file"):
        processed(data, fmt)


def test_header_only_csv_has_no_rows() -> None:
    result = processed(b"a,b\n", "csv", None)
    assert (result.rows_in, result.rows, result.invalid) == (0, [], [])


def test_ragged_csv_rows_are_invalid_the_others_kept() -> None:
    data = b"a,b\n1,2\n3\n4,5,6\n\n7,8\n"
    result = processed(data, "csv", None)
    assert result.rows == [{"a": "1", "b": "2"}, {"a": "7", "b": "8"}]
    assert [(bad.row, bad.reasons) for bad in result.invalid] == [
        (2, ["row has 1 fields, the header has 2"]),
        (3, ["row has 3 fields, the header has 2"]),
    ]
    assert result.rows_in == 4  # the blank line is not a record


@pytest.mark.parametrize(
    ("header", "match"), [(b"a,,b\n", "column 2 has no name"), (b"a, a\n", "duplicate")]
)
def test_bad_csv_header(header: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        processed(header + b"1,2,3\n", "csv")


def test_huge_csv_field_is_a_parse_error_naming_the_line() -> None:
    data = b"a,b\n1,2\n3," + b"x" * (csv.field_size_limit() + 10) + b"\n"
    with pytest.raises(ParseError, match=r"CSV line 3: field larger than field limit"):
        processed(data, "csv")


def test_big_but_allowed_field_is_kept() -> None:
    big = "y" * 100_000
    result = processed(f"a\n{big}\n".encode(), "csv", {"a": ColumnSpec()})
    assert result.rows == [{"a": big}]


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (b"42", "got a number"),
        (b'"text"', "got a string"),
        (b"null", "got null"),
        (b'{"a": 1}', "object with 0 lists"),
        (b'{"a": [], "b": []}', r"object with 2 lists \('a', 'b'\)"),
        (b'[{"a": 1},', "invalid JSON at line 1 column 11: Expecting value"),
        (b'[{"a": NaN}]', "non-standard constant NaN"),
        (b'[{"a": 1e999}]', "out of range"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|invalid JSON"),
        (b'[{"a": ' + b"9" * 5000 + b"}]", "invalid JSON"),
    ],
)
def test_json_of_the_wrong_shape_is_a_parse_error(doc: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        processed(doc, "json")


def test_json_object_holding_one_list_and_non_object_items() -> None:
    doc = b'{"meta": {"v": 1}, "data": [{" a ": 1}, 2, [3], {"a": 4, " a": 5}, null]}'
    result = processed(doc, "json", None)
    assert result.rows == [{"a": 1}]
    assert [(bad.row, bad.reasons) for bad in result.invalid] == [
        (2, ["row is a number, not an object"]),
        (3, ["row is a list, not an object"]),
        (4, ["row has keys that are equal once stripped"]),
        (5, ["row is null, not an object"]),
    ]


def test_unknown_format() -> None:
    with pytest.raises(ParseError, match="unknown format 'xml'"):
        processed(b"<a/>", "xml")


# ------------------------------------------------------------ normalisation


def _one(value: Any, **spec: Any) -> tuple[Any, list[str]]:
    row, reasons = validate_row({"c": value}, compile_schema({"c": ColumnSpec(**spec)}))
    return row["c"], reasons


@pytest.mark.parametrize(
    ("value", "spec", "expected"),
    [
        (" 42 ", {"type": "int"}, 42),
        (42.0, {"type": "int"}, 42),
        ("-3", {"type": "int"}, -3),
        ("1e3", {"type": "int"}, 1000),
        ("2.5", {"type": "float"}, 2.5),
        (7, {"type": "float"}, 7.0),
        ("Yes", {"type": "bool"}, True),
        ("0", {"type": "bool"}, False),
        ("FALSE", {"type": "bool"}, False),
        (1, {"type": "bool"}, True),
        (True, {"type": "bool"}, True),
        ("2026-01-31", {"type": "date"}, "2026-01-31"),
        ("2026-01-31T12:00:00Z", {"type": "datetime"}, "2026-01-31T12:00:00+00:00"),
        ("2026-01-31T14:00:00+02:00", {"type": "datetime"}, "2026-01-31T12:00:00+00:00"),
        ("2026-01-31T12:00:00", {"type": "datetime"}, "2026-01-31T12:00:00"),
        (" text ", {"type": "str"}, "text"),
        (12, {"type": "str"}, "12"),
        (False, {"type": "str"}, "false"),
        ("AB-12", {"type": "str", "pattern": "^[A-Z]{2}-[0-9]+$"}, "AB-12"),
        (5, {"type": "int", "min": 5, "max": 5}, 5),
    ],
)
def test_values_are_normalised(value: Any, spec: dict[str, Any], expected: Any) -> None:
    out, reasons = _one(value, **spec)
    assert reasons == []
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    ("value", "spec", "reason"),
    [
        ("4.2", {"type": "int"}, "is not a whole number"),
        ("1_000", {"type": "int"}, "is not a number"),
        ("0x10", {"type": "int"}, "is not a number"),
        ("9" * 500, {"type": "int"}, "too long"),
        (True, {"type": "int"}, "is a boolean"),
        ("nan", {"type": "float"}, "not a finite number"),
        ("-inf", {"type": "float"}, "not a finite number"),
        ("maybe", {"type": "bool"}, "is not a boolean"),
        (2, {"type": "bool"}, "is not a boolean"),
        ("31/01/2026", {"type": "date"}, "is not an ISO date"),
        (20260131, {"type": "date"}, "expected an ISO date string"),
        ("soon", {"type": "datetime"}, "is not an ISO datetime"),
        ({"x": 1}, {"type": "str"}, "nested dict"),
        ("abc", {"type": "str", "pattern": "^[0-9]+$"}, "does not match pattern"),
        (-1, {"type": "float", "min": 0}, "below the minimum 0"),
        (61, {"type": "float", "max": 60}, "above the maximum 60"),
        ("", {"type": "str"}, "missing required value"),
        (None, {"type": "int"}, "missing required value"),
    ],
)
def test_invalid_values_give_reasons(value: Any, spec: dict[str, Any], reason: str) -> None:
    _, reasons = _one(value, **spec)
    assert len(reasons) == 1
    assert reasons[0].startswith("c: ")
    assert reason in reasons[0]


def test_optional_missing_value_is_none_and_valid() -> None:
    assert _one("  ", type="int", required=False) == (None, [])


def test_row_reasons_collect_every_column_and_extra_columns_are_kept() -> None:
    cols = compile_schema({"a": ColumnSpec(type="int"), "b": ColumnSpec(type="bool")})
    row, reasons = validate_row({"extra": "x", "b": "no", "a": "z"}, cols)
    assert list(row) == ["a", "b", "extra"]
    assert row == {"a": "z", "b": False, "extra": "x"}
    assert reasons == ["a: 'z' is not a number"]
    _, reasons = validate_row({}, cols)
    assert reasons == ["a: missing required value", "b: missing required value"]


def test_invalid_pattern_in_schema() -> None:
    with pytest.raises(SchemaError, match=r"column 'c': invalid pattern '\['"):
        compile_schema({"c": ColumnSpec(pattern="[")})


def test_no_schema_keeps_strings_and_every_row() -> None:
    result = processed(b"a,b\n1,true\n,\n", "csv", None)
    assert result.rows == [{"a": "1", "b": "true"}, {"a": "", "b": ""}]
    assert result.invalid == []


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b'[{"a": 1, "b": "Z\xc3\xbcrich"}, {"a": null, "b": true}]', "json"),
        (b"b\nZ\xc3\xbcrich\n", "csv"),
    ],
)
def test_jsonl_output_keeps_unicode(data: bytes, fmt: str) -> None:
    result = processed(data, fmt)
    assert "Zürich".encode() in result.body
    assert {"b": "Zürich"}.items() <= result.rows[0].items()


# ------------------------------------------------------------ a manifest end to end


async def _store(storage: LocalStorage, name: str, data: bytes, filename: str) -> ManifestEntry:
    sha = hashlib.sha256(data).hexdigest()
    path = f"raw/{name}/{sha}/{filename}"
    await storage.write_bytes(path, data)
    return ManifestEntry(
        source=name, url=f"http://127.0.0.1:9/{filename}", status=EntryStatus.DOWNLOADED,
        sha256=sha, bytes=len(data), path=path,
    )  # fmt: skip


async def test_process_manifest_writes_outputs_and_summary(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    sources = list(DEMO)
    entries = [
        await _store(storage, s.name, demo_bytes(s), Path(s.url.path or "").name) for s in DEMO
    ]
    entries[1].status = EntryStatus.UNCHANGED
    broken = await _store(storage, "broken", b"\xff\xfe\x00junk", "broken.csv")
    sources.append(Source(name="broken", url="http://127.0.0.1:9/broken.csv"))  # type: ignore[arg-type]
    entries.append(broken)
    down = ManifestEntry(
        source="down",
        url="http://127.0.0.1:9/down.csv",
        status=EntryStatus.FAILED,
        error="HTTP 404",
    )
    entries.append(down)
    await storage.write_bytes("processed/down/latest.jsonl", b'{"old":1}\n')
    sources.append(Source(name="later", url="http://127.0.0.1:9/later.json"))  # type: ignore[arg-type]
    manifest = Manifest(run_id="run-1", entries=entries)

    summary = await process_manifest(manifest, sources, storage=storage, run_id="proc-1")

    by_name = {s.source: s for s in summary.sources}
    for source, entry in zip(DEMO, entries, strict=False):
        expected = processed(demo_bytes(source), source.resolved_format or "", source.schema_)
        got = by_name[source.name]
        assert got.status is SourceStatus.PROCESSED
        assert (got.rows_in, got.rows_out, got.rows_invalid) == (
            expected.rows_in, len(expected.rows), len(expected.invalid),
        )  # fmt: skip
        assert got.invalid_rows == expected.invalid
        assert got.output_path == f"processed/{source.name}/{entry.sha256}.jsonl"
        body = (tmp_path / got.output_path).read_bytes()
        assert body == (tmp_path / f"processed/{source.name}/latest.jsonl").read_bytes()
        assert [json.loads(x) for x in body.splitlines()] == expected.rows
    assert by_name["broken"].status is SourceStatus.ERROR
    assert "not UTF-8" in (by_name["broken"].error or "")
    assert by_name["broken"].input_path in (by_name["broken"].error or "")
    assert by_name["down"].status is SourceStatus.FETCH_FAILED
    assert "HTTP 404" in (by_name["down"].error or "")
    assert (tmp_path / "processed/down/latest.jsonl").read_bytes() == b'{"old":1}\n'
    assert by_name["later"].status is SourceStatus.NOT_IN_MANIFEST
    assert [e.source for e in summary.errors] == ["broken"]

    t = summary.totals
    assert (t.sources, t.processed, t.errors, t.skipped) == (6, 3, 1, 2)
    assert t.rows_in == sum(by_name[s.name].rows_in for s in DEMO)
    assert t.rows_out + t.rows_invalid == t.rows_in
    written = json.loads((tmp_path / SUMMARY).read_text())
    assert written["totals"] == t.model_dump()
    assert written["manifest_run_id"] == "run-1"
    assert not list(tmp_path.rglob("*.part"))  # atomic writes leave no temp files


async def test_unexpected_exception_in_one_entry_does_not_stop_the_others(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    a = await _store(storage, "a", b"x\n1\n", "a.csv")
    b = await _store(storage, "b", b"x\n2\n", "b.csv")
    seen = []

    async def flaky(entry: ManifestEntry, source: Source | None, store: Any) -> SourceSummary:
        seen.append(entry.source)
        if entry.source == "a":
            raise RuntimeError("disk on fire")
        from pipeline_core.processing import process_entry

        return await process_entry(entry, source, store)

    summary = await process_manifest(
        Manifest(run_id="r", entries=[a, b]), [], storage=storage, run_id="p", process=flaky
    )
    assert seen == ["a", "b"]
    assert [(s.source, s.status, s.error) for s in summary.sources] == [
        ("a", SourceStatus.ERROR, "RuntimeError: disk on fire"),
        ("b", SourceStatus.PROCESSED, None),
    ]
    assert summary.sources[1].rows_out == 1  # schema-less source, format from the path


def test_markdown_report_escapes_and_truncates() -> None:
    from pipeline_core.processing import InvalidRow, summarise

    bad = [InvalidRow(row=i, reasons=[f"a: 'x|{i}' is not a number"]) for i in range(1, 26)]
    results = [
        SourceSummary(source="s", status=SourceStatus.PROCESSED, rows_in=30, rows_out=5,
                      rows_invalid=25, invalid_rows=bad, latest_path="processed/s/latest.jsonl"),
        SourceSummary(source="e", status=SourceStatus.ERROR, error="raw/e/x.csv: not UTF-8 text"),
    ]  # fmt: skip
    text = render_markdown(summarise("p", "m", results), max_invalid_shown=20)
    assert "| s | processed | 30 | 5 | 25 | `processed/s/latest.jsonl` |" in text
    assert "| e | error | 0 | 0 | 0 | raw/e/x.csv: not UTF-8 text |" in text
    assert "| 20 | a: 'x\\|20' is not a number |" in text
    assert "| 21 |" not in text
    assert f"5 more in `{SUMMARY}`" in text
    assert "in **30**, out **5**, invalid **25**" in text
