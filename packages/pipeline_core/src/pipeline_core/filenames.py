"""Safe file names from URLs and Content-Disposition headers."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit

MAX_NAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_filename(raw: str, *, default: str = "data") -> str:
    """A name that is one path component of safe ASCII, at most 100 characters.

    Directory parts are dropped, so the result can never leave its folder.

    Example:
        >>> sanitize_filename("../../etc/passwd")
        'passwd'
        >>> sanitize_filename("résumé 2026.csv")
        'resume_2026.csv'
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = _UNSAFE.sub("_", name).strip("._-")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        name = name[: MAX_NAME - len(ext) - 1].rstrip("._-") + (f".{ext}" if ext else "")
    return name or default


def content_disposition_filename(header: str | None) -> str | None:
    """The filename of a Content-Disposition header (RFC 6266; `filename*` preferred)."""
    if not header:
        return None
    star = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", header, re.IGNORECASE)
    if star:
        charset = star.group(1) or "utf-8"
        try:
            return unquote(star.group(2).strip().strip('"'), encoding=charset, errors="replace")
        except LookupError:
            return unquote(star.group(2).strip().strip('"'), errors="replace")
    plain = re.search(r'filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]+)', header, re.IGNORECASE)
    if plain:
        return plain.group(1).strip().strip('"')
    return None


def pick_filename(url: str, content_disposition: str | None) -> str:
    """The stored name: Content-Disposition's filename, else the URL's last path segment."""
    raw = content_disposition_filename(content_disposition)
    if not raw:
        raw = unquote(urlsplit(url).path.rsplit("/", 1)[-1], errors="replace")
    return sanitize_filename(raw)
