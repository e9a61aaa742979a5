"""Read a CSV file in pieces of whole records, without holding the file in memory.

`RecordChunks` reads a binary file in blocks and cuts each block after its last newline
that is outside quotes (an even number of `"` before it), so each piece holds whole
records; `rest()` gives back every byte not yet handed out, for a reader that takes over.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Protocol

BOM = b"\xef\xbb\xbf"


class Readable(Protocol):
    """A binary file open for reading."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes; `b""` at the end."""
        ...


class CsvFormatError(ValueError):
    """The bytes cannot be cut into records (e.g. one record over the size limit)."""


def records_end(buf: bytes, start: int = 0) -> int:
    """Length of the longest prefix of `buf` made of whole records: just after the last
    newline preceded by an even number of quotes; 0 if there is none.

    Example:
        >>> records_end(b'a,"x\\ny"\\nb,"z\\n')
        8
    """
    end = buf.rfind(b"\n", start)
    quotes = buf.count(b'"', 0, end) if end >= 0 else 0
    while end >= 0 and quotes % 2:
        before = buf.rfind(b"\n", 0, end)
        quotes -= buf.count(b'"', before + 1, end)
        end = before
    return end + 1


def first_record_end(buf: bytes) -> int:
    """Length of the first record of `buf` with its newline; 0 if it is not complete yet."""
    at = buf.find(b"\n")
    while at >= 0 and buf.count(b'"', 0, at) % 2:
        at = buf.find(b"\n", at + 1)
    return at + 1


def check_utf8(data: bytes, offset: int) -> None:
    """Check that `data`, found at `offset` in a file, is UTF-8.

    Raises:
        CsvFormatError: `not UTF-8 text: byte 0xfc at offset 6 (invalid start byte)`.
    """
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {offset + exc.start} "
            f"({exc.reason})"
        ) from None


class HashingReader(io.RawIOBase):
    """A read-only view of `source` that computes the sha256 of what was read."""

    def __init__(self, source: Readable) -> None:
        self.source, self.sha256 = source, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.source.read(len(buffer))
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha256.update(data)
        return data


class _Prefixed(io.RawIOBase):
    """`head`, then the rest of `tail`."""

    def __init__(self, head: bytes, tail: Readable) -> None:
        self.head, self.tail = memoryview(head), tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.tail.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class RecordChunks:
    """Pieces of whole records from `source`, about `size` bytes each.

    `offset` is the file offset of the next piece; `lines` the newlines handed out so far.
    """

    def __init__(self, source: Readable, size: int, max_record: int) -> None:
        self.source, self.size, self.max_record = source, size, max_record
        self.buffer, self.offset, self.lines = b"", 0, 0

    def head(self) -> bytes:
        """The header record (BOM dropped), or what there is of the file if it has no newline.

        Raises:
            CsvFormatError: no record end within `max_record` bytes.
        """
        while not (end := first_record_end(self.buffer)):
            more = self.source.read(self.size)
            if not more:
                end = len(self.buffer)
                break
            self.buffer += more
            if len(self.buffer) > self.max_record:
                raise CsvFormatError(f"line 1: no end of record in {self.max_record} bytes")
        if self.buffer.startswith(BOM):
            self.buffer, self.offset, end = self.buffer[3:], 3, end - 3
        return self._take(end)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            more = self.source.read(self.size)
            self.buffer += more
            end = records_end(self.buffer) if more else len(self.buffer)
            if end:
                yield self._take(end)
            elif len(self.buffer) > self.max_record:
                raise CsvFormatError(
                    f"line {self.lines + 1}: no end of record in {self.max_record} bytes"
                )
            if not more and not self.buffer:
                return

    def _take(self, end: int) -> bytes:
        piece, self.buffer = self.buffer[:end], self.buffer[end:]
        self.offset += len(piece)
        self.lines += piece.count(b"\n")
        return piece

    def rest(self, piece: bytes) -> io.BufferedReader:
        """`piece` (handed out, not used) followed by every byte not handed out yet."""
        self.offset -= len(piece)
        self.lines -= piece.count(b"\n")
        head, self.buffer = piece + self.buffer, b""
        return io.BufferedReader(_Prefixed(head, self.source))
