"""POSTGRES_PASSWORD in the checkout's `.env`, read and written by docker compose's dotenv rules.

Compose reads `.env` in its own dialect (compose-go, measured with compose 2.26): an unquoted
value is trimmed, cut at ` #` and `$`-interpolated; a double-quoted one is `$`-interpolated and
`\\`-unescaped (`\\n` becomes a newline); a single-quoted one is literal except that `\\'` becomes
`'`. A password that any of these would change is not the one the user wrote: it is refused
before anything starts, naming the line and giving the line that says it literally.

Accepted, the password exactly as written:

    POSTGRES_PASSWORD=abc-123_X          no whitespace and none of $ # \\ ' " in it
    POSTGRES_PASSWORD='a b$c/#%"'        anything but ' (and \\' or \\\\)
    POSTGRES_PASSWORD="it's \\"x\\" \\$5 \\\\"  with \\\\ \\" \\$ as the only escapes, no bare $

`password_line` writes the first form that fits. A newline, carriage return or NUL cannot be
represented (nor be given to `initdb`, which reads one line): such a value is refused.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from deploy_tools.local.stack.interface import StackError

KEY = "POSTGRES_PASSWORD"
_LINE = re.compile(rf"^\s*(?:export\s+)?{KEY}\s*(?:[=:](?P<rest>.*))?$")
_BARE = re.compile(r"[A-Za-z0-9_.\-]+")  # written unquoted (what generate_password makes)
_UNREPRESENTABLE = ("\n", "\r", "\0")


class PasswordLineError(StackError):
    """POSTGRES_PASSWORD in `.env` is missing a value, or compose would not read it as written."""


@dataclass(frozen=True)
class PasswordEntry:
    """The POSTGRES_PASSWORD line of `.env`: its number (from 1) and the value compose reads."""

    line: int
    value: str


def password_line(value: str) -> str:
    """The `.env` line that gives compose exactly `value`.

    Raises:
        ValueError: `value` is empty or holds a newline, carriage return or NUL.

    Example:
        >>> password_line("it's $5")
        'POSTGRES_PASSWORD="it\\'s \\\\$5"'
    """
    if not value or any(c in value for c in _UNREPRESENTABLE):
        raise ValueError(
            "a PostgreSQL password must be non-empty and on one line (no newline, carriage "
            "return or NUL): initdb reads the first line only"
        )
    if _BARE.fullmatch(value):
        return f"{KEY}={value}"
    if "'" not in value and "\\" not in value:
        return f"{KEY}='{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'{KEY}="{escaped}"'


def generate_password() -> str:
    """A new random password (URL-safe characters: written unquoted)."""
    return secrets.token_urlsafe(32)


def read_password(env_file: Path) -> PasswordEntry | None:
    """The POSTGRES_PASSWORD of `env_file` (None: no such file or line).

    Raises:
        PasswordLineError: the line is there twice, has no value, or compose would read
            another value than written; the message names the line and gives the fix.
    """
    try:
        text = env_file.read_text()
    except FileNotFoundError:
        return None
    found = [(n, m) for n, line in enumerate(text.splitlines(), 1) if (m := _LINE.match(line))]
    if not found:
        return None
    where = f"{env_file} line {found[0][0]}"
    if len(found) > 1:
        lines = ", ".join(str(n) for n, _ in found)
        raise PasswordLineError(
            f"{env_file}: {KEY} is set on lines {lines}; compose uses the last one. Keep one line."
        )
    number, match = found[0]
    rest = match["rest"]
    if rest is None or not rest.strip():
        raise PasswordLineError(
            f"{where}: {KEY} has no value. Remove the line to have one generated, or give one."
        )
    value, problem = _parse(rest.strip())
    if problem is None:
        return PasswordEntry(number, value)
    try:
        fix = _fix(password_line(value))
    except ValueError as exc:
        fix = f"Choose another password: {exc}."
    raise PasswordLineError(
        f"{where}: {KEY} would not reach PostgreSQL as written: {problem}. {fix}\n"
        "(nothing was started)"
    )


def _fix(line: str) -> str:
    """How to write the line `line` would be, without showing the password (a terminal can be
    recorded: CI logs, screen shares)."""
    quote = line[len(KEY) + 1 : len(KEY) + 2]
    if quote == "'":
        return f"Write it between single quotes:\n  {KEY}='<the password>'"
    if quote == '"':
        return (
            'Write it between double quotes, with a \\ before each \\, " and $ in it:\n'
            f'  {KEY}="<the password, escaped>"'
        )
    return f"Write it unquoted:\n  {KEY}=<the password>"


def _parse(text: str) -> tuple[str, str | None]:
    """The password meant by `text` (the value part of the line, stripped) and, when compose
    would read something else, why."""
    if text[0] == "'":
        return _single_quoted(text)
    if text[0] == '"':
        return _double_quoted(text)
    value = re.split(r"\s#", text, maxsplit=1)[0].rstrip()
    for chars, why in (
        (" \t", "whitespace in an unquoted value (compose keeps it, other readers cut it)"),
        ("$", "compose replaces `$…` in an unquoted value with a variable's value"),
        ("#", "`#` in an unquoted value can start a comment"),
        ("\\'\"", "an unquoted value with \\ or quotes in it"),
    ):
        if any(c in value for c in chars):
            return value, why
    return value, None


def _single_quoted(text: str) -> tuple[str, str | None]:
    out: list[str] = []
    changed = False
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "'\\":
            changed = changed or text[i + 1] == "'"  # \' becomes ', \\ stays \\
            out.append("'" if text[i + 1] == "'" else "\\\\")
            i += 2
            continue
        if c == "'":
            why = "compose turns \\' inside single quotes into '" if changed else None
            return _closed("".join(out), text[i + 1 :], why)
        out.append(c)
        i += 1
    return text[1:], "the single quote is not closed on its line"


def _double_quoted(text: str) -> tuple[str, str | None]:
    out: list[str] = []
    problem = None
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            if text[i + 1] in '\\"$':
                out.append(text[i + 1])
            else:  # \n, \t, ... become control characters; others are kept: ambiguous
                problem = (
                    problem or f"compose reads `\\{text[i + 1]}` in double quotes as an escape"
                )
                out.append(text[i : i + 2])
            i += 2
            continue
        if c == "$":
            problem = problem or "compose replaces `$…` in double quotes with a variable's value"
        if c == '"':
            return _closed("".join(out), text[i + 1 :], problem)
        out.append(c)
        i += 1
    return text[1:], "the double quote is not closed on its line"


def _closed(value: str, after: str, problem: str | None) -> tuple[str, str | None]:
    if after.strip() and not re.match(r"\s+#", after):
        problem = problem or "text after the closing quote is dropped"
    if not value:
        problem = problem or "the value is empty"
    return value, problem


def append_password(env_file: Path, value: str) -> None:
    """Add the POSTGRES_PASSWORD line for `value` to `env_file` (made 0600), keeping the rest."""
    text = env_file.read_text() if env_file.exists() else ""
    if not text:
        text = "# Local settings of the compose stack (git-ignored). See .env.example.\n"
    elif not text.endswith("\n"):
        text += "\n"
    text += password_line(value) + "\n"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise; it now holds a secret
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def volume_mismatch(volume: str, env_file: Path, *, missing: bool = False) -> str:
    """The message for a kept PostgreSQL volume whose password is not the one in `.env`."""
    if missing:
        head = (
            f"the PostgreSQL volume {volume} was initialised with a password, and {env_file} "
            f"has no {KEY}: a new one would not open it (nothing was started)"
        )
    else:
        head = (
            f"the PostgreSQL volume {volume} was initialised with another password than "
            f"{KEY} in {env_file} (password authentication failed)"
        )
    return (
        f"{head}. Either restore the old password as {KEY} in {env_file}, or start fresh "
        "with `deploy:down --volumes --yes` (`airnub stack down --volumes --yes`), which "
        "deletes the server's data (deployments, blocks, variables, run history)."
    )


__all__ = [
    "KEY",
    "PasswordEntry",
    "PasswordLineError",
    "append_password",
    "generate_password",
    "password_line",
    "read_password",
    "volume_mismatch",
]
