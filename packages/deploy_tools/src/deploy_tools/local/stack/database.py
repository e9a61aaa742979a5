"""The process stack's SQLite database (`.local/prefect.db`): checked before the server starts,
left complete in one file when the stack stops.

- `damage` opens the file read-only (a `-wal` left beside it is read too) and runs `PRAGMA quick_check`:
  a truncated file, an overwritten header and damaged pages are found in milliseconds, before
  anything is started. `damage_in_log` finds the same reasons in the server's log, for a
  database that breaks while the server opens it.
- `contents` is what `.local/stack.json` records at each `up` and `down` (its size, how many
  deployments it holds); `lost_data_warning` compares the next `up` with it, so a database that
  was emptied (0 bytes) or deleted is said instead of starting silently with no history.
- `checkpoint` folds the write-ahead log into the file once the server is stopped
  (`PRAGMA wal_checkpoint(TRUNCATE)`): `prefect.db-wal` and `-shm` are gone and a copy of
  `prefect.db` alone holds every change.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from deploy_tools.local.stack.interface import StackError

# What SQLite says of a damaged file (the server's log holds the same words).
DAMAGE_REASONS = (
    "database disk image is malformed",
    "file is not a database",
)


class DamagedDatabaseError(StackError):
    """The server's SQLite database is damaged; the message names it and the ways out."""


@dataclass(frozen=True)
class Contents:
    """What the database held: its size in bytes and its deployments (None: not readable)."""

    size: int
    deployments: int | None


def _read_only(db: Path) -> sqlite3.Connection:
    """`db` opened for reading only, creating no file beside it.

    With a write-ahead log left by a server that was killed, `mode=ro` reads it too (the
    database as the server would see it). Without one, `immutable=1`: `mode=ro` alone creates
    an empty `-wal` and a `-shm` that a read-only connection cannot remove.
    """
    wal = db.with_name(db.name + "-wal")
    query = "mode=ro" if wal.is_file() and wal.stat().st_size > 0 else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{db}?{query}", uri=True, timeout=5.0)


def damage(db: Path) -> str | None:
    """SQLite's reason when `db` is damaged, None when it is sound (or absent, or empty).

    Example: `database disk image is malformed`, or `PRAGMA quick_check: *** in database
    main *** Page 7: btreeInitPage() returns error code 11` when the check lists pages.
    """
    if not db.is_file() or db.stat().st_size == 0:
        return None
    try:
        conn = _read_only(db)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if rows == ["ok"]:
        return None
    more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
    return f"PRAGMA quick_check: {rows[0]}{more}"


def damage_in_log(log: Path) -> str | None:
    """The damage reason in the server's output since its last start, if any."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return None
    since_start = text.rpartition("\n== ")[2]
    return next((r for r in DAMAGE_REASONS if r in since_start), None)


def damaged_message(db: Path, shown: str, reason: str) -> str:
    """The one message for a damaged database: what, why, and the ways out (`shown`: its path
    as the user sees it)."""
    folder = shown.rpartition("/")[0] or "."
    wal = db.with_name(db.name + "-wal")
    extra = " (with the -wal beside it)" if wal.is_file() and wal.stat().st_size > 0 else ""
    return (
        f"the server's database at {shown} is damaged ({reason}); nothing of the stack is left running. "
        f"Keep it for inspection: back it up{extra} with "
        f"`mkdir -p {folder}/damaged-db && cp {shown}* {folder}/damaged-db/`; "
        "then start fresh with `hatch run deploy:down --volumes --yes` "
        "(`airnub stack down --volumes --yes`: every deployment, block, variable and run of "
        "this stack is deleted) and deploy again"
    )


def contents(db: Path) -> Contents:
    """The size of `db` and its deployment count (0 bytes or absent: `Contents(0, 0)`)."""
    size = db.stat().st_size if db.is_file() else 0
    if size == 0:
        return Contents(0, 0)
    try:
        conn = _read_only(db)
        try:
            (count,) = conn.execute("SELECT count(*) FROM deployment").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:  # damaged, or not a Prefect database yet
        return Contents(size, None)
    return Contents(size, int(count))


def lost_data_warning(shown: str, now: Contents, before: Contents | None) -> str | None:
    """A warning when `now` is empty where the last record (`before`) held deployments."""
    if before is None or not before.deployments or now.size > 0:
        return None
    return (
        f"warning: the server's database at {shown} is empty (0 bytes or missing), but the "
        f"last `up`/`down` recorded {before.deployments} deployment(s) and {before.size} bytes "
        "in it: the server starts with no history. If that is a mistake, stop the stack "
        "(`hatch run deploy:down`) and put the backup of prefect.db back"
    )


def checkpoint(db: Path, timeout: float = 10.0) -> bool:
    """Fold `db`'s write-ahead log into it and remove `-wal`/`-shm`; True when that was done.

    Call it once the server is stopped. A process still exiting can hold the file a moment
    (a server killed after its stop timeout): the checkpoint is retried until `timeout`. A
    damaged database is left as it is: the next `up` names it.
    """
    if not db.is_file() or db.stat().st_size == 0:
        return True
    beside = [db.with_name(db.name + s) for s in ("-wal", "-shm")]
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = sqlite3.connect(db, timeout=1.0)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.close()  # the last connection closing removes -wal and -shm
        except sqlite3.OperationalError:  # locked: another process still has it open
            pass
        except sqlite3.DatabaseError:  # damaged
            return False
        if not any(f.exists() for f in beside):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
