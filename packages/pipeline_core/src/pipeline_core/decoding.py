"""Decode an HTTP body's Content-Encoding incrementally, with a cap on the decoded size.

A compressed chunk is inflated at most `chunk` bytes at a time (zlib's `max_length`), so
memory stays bounded however well the body compresses (a 64 KiB gzip chunk of zeros
inflates to ~64 MiB), and every decoded byte counts against `limit`. Only one coding is
accepted: stacked codings (`gzip, gzip`) multiply the work for no benefit and are refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

ACCEPT_ENCODING = "gzip, deflate"
_GZIP = 16 + zlib.MAX_WBITS


class BodyDecoder:
    """Incremental decoder for `identity`, `gzip` (also multi-member) and `deflate` bodies.

    `feed(raw)` and `finish()` yield decoded pieces of at most `chunk` bytes; they raise
    `OverflowError` once more than `limit` bytes were decoded, and `ValueError` for corrupt
    or truncated data (then `truncated` says whether the stream just ended early).

    Example:
        >>> import gzip
        >>> d = BodyDecoder("gzip", limit=100, chunk=4)
        >>> b"".join(d.feed(gzip.compress(b"hello world"))) + b"".join(d.finish())
        b'hello world'
    """

    def __init__(self, content_encoding: str | None, *, limit: int, chunk: int = 64 * 1024):
        codings = [c for c in (p.strip().lower() for p in (content_encoding or "").split(",")) if c]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1:
            raise ValueError(
                f"Content-Encoding {content_encoding!r}: more than one coding is refused"
            )
        self.coding = codings[0] if codings else None
        if self.coding not in (None, "gzip", "x-gzip", "deflate"):
            raise ValueError(
                f"unsupported Content-Encoding {self.coding!r} (accepted: {ACCEPT_ENCODING})"
            )
        self.limit, self.chunk = limit, chunk
        self.decoded = 0
        self.truncated = False
        self._fed = False
        self._z = self._inflater() if self.coding else None

    def _inflater(self, *, raw_deflate: bool = False) -> zlib._Decompress:
        if self.coding == "deflate":  # zlib-wrapped per the RFC; some servers send it raw
            return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)
        return zlib.decompressobj(_GZIP)

    def _count(self, piece: bytes) -> bytes:
        self.decoded += len(piece)
        if self.decoded > self.limit:
            raise OverflowError(self.decoded)
        return piece

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """Decoded pieces of `raw`, the next bytes of the body."""
        if self._z is None:
            if raw:
                yield self._count(raw)
            return
        first, self._fed = not self._fed, self._fed or bool(raw)
        z, data = self._z, raw
        while data:
            try:
                piece = z.decompress(data, self.chunk)
            except zlib.error as exc:
                if first and self.coding == "deflate" and not self.decoded:
                    z = self._z = self._inflater(raw_deflate=True)
                    first = False
                    continue
                raise ValueError(f"corrupt {self.coding} body ({exc})") from None
            first = False
            if piece:
                yield self._count(piece)
            if z.eof:
                data = z.unused_data
                if data and self.coding == "deflate":
                    raise ValueError("data after the end of the deflate body")
                if data:  # another gzip member follows
                    z = self._z = self._inflater()
            else:
                data = z.unconsumed_tail

    def finish(self) -> Iterator[bytes]:
        """The last decoded bytes; raises ValueError if the compressed stream is incomplete."""
        if self._z is None or not self._fed:
            return
        while not self._z.eof:
            piece = self._z.decompress(b"", self.chunk)
            if not piece:
                self.truncated = True
                raise ValueError(f"truncated {self.coding} body: the stream ended early")
            yield self._count(piece)
