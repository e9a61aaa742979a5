"""`RowSink`: where processed rows go, valid and invalid, and what is counted of them."""

from __future__ import annotations

import json
from collections import Counter
from typing import IO, Any

from pydantic import BaseModel

from pipeline_core.validation import Column, Reason, validate_row

MAX_INVALID_KEPT = 100  # invalid rows listed in summary.json per source; all are in the file


class InvalidRow(BaseModel):
    """A rejected row: its number (data records counted from 1) and every reason."""

    row: int
    reasons: list[str]


class RowSink:
    """Where processed rows go: valid ones as JSON lines to `out`; invalid ones to
    `invalid` (if given) with their reasons and values, counted per kind of reason, and
    the first `keep` of them (all if None) kept in `invalid_rows`."""

    def __init__(
        self,
        out: IO[bytes],
        invalid: IO[bytes] | None = None,
        *,
        keep: int | None = MAX_INVALID_KEPT,
    ) -> None:
        self.out, self.invalid, self.keep = out, invalid, keep
        self.rows_out = self.rows_invalid = 0
        self.invalid_rows: list[InvalidRow] = []
        self.reason_counts: Counter[str] = Counter()

    @property
    def rows_in(self) -> int:
        """Rows seen so far, valid or not."""
        return self.rows_out + self.rows_invalid

    def write_lines(self, body: bytes, count: int) -> None:
        """`count` valid rows, already JSON lines."""
        self.out.write(body)
        self.rows_out += count

    def check(
        self,
        number: int,
        values: dict[str, Any] | None,
        problem: str | None,
        columns: list[Column] | None,
    ) -> None:
        """Validate one parsed row with `validate_row` and write it where it belongs."""
        if values is None:
            kind = getattr(problem, "kind", problem)
            self.reject(number, [Reason(f"row {problem}", f"row {kind}")])
            return
        row, reasons = validate_row(values, columns)
        if reasons:
            self.reject(number, reasons, values)
        else:
            self.write_lines(_json_line(row), 1)

    def reject(
        self,
        number: int,
        reasons: list[Reason],
        values: dict[str, Any] | None = None,
        *,
        values_json: str | None = None,
    ) -> None:
        """Record one invalid row; its values as parsed, or already as a JSON object."""
        self.rows_invalid += 1
        texts = [str(r) for r in reasons]
        self.reason_counts.update(r.kind for r in reasons)
        if self.keep is None or len(self.invalid_rows) < self.keep:
            self.invalid_rows.append(InvalidRow(row=number, reasons=texts))
        if self.invalid is not None:
            if values_json is None:
                values_json = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
            reasons_json = json.dumps(texts, ensure_ascii=False)
            line = f'{{"row":{number},"reasons":{reasons_json},"values":{values_json}}}\n'
            self.invalid.write(line.encode())


def _json_line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
