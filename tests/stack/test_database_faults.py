"""A damaged or emptied server database (process mode, `.local/prefect.db`) is named, and `down`
leaves the database complete in one file.

One project (a copy of this checkout) is brought up once, its setup applied, one more deployment
made through the API (the latest change, still in the write-ahead log), then stopped: that
`prefect.db` is the good copy each test starts from. Each fault is made on a copy of it, then
the real `airnub stack up --mode process` runs; how long it takes to answer is printed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.checkout import copy_project
from tests.stack.test_local_stack import airnub, free_port, post_json, processes_under

pytestmark = pytest.mark.stack

LATEST = "latest-before-down"


@dataclass
class Project:
    """The project, its ports, and the good database and `stack.json` it was left with."""

    root: Path
    server_port: int
    data_port: int
    good_db: Path
    good_record: str

    @property
    def db(self) -> Path:
        return self.root / ".local" / "prefect.db"

    def restore(self) -> None:
        """The good database alone (no -wal, -shm) and the `stack.json` that `down` wrote."""
        for suffix in ("-wal", "-shm"):
            self.db.with_name(self.db.name + suffix).unlink(missing_ok=True)
        shutil.copy(self.good_db, self.db)
        (self.root / ".local" / "stack.json").write_text(self.good_record)

    def up(self) -> tuple[float, str, str, int]:
        """`airnub stack up --mode process`: (seconds it took, stdout, stderr, exit code)."""
        started = time.monotonic()
        done = airnub(self.root, "stack", "up", "--mode", "process", "--server-port",
                      str(self.server_port), "--data-port", str(self.data_port), timeout=300)  # fmt: skip
        return time.monotonic() - started, done.stdout, done.stderr, done.returncode


def deployment_names(db: Path) -> list[str]:
    """The name of each deployment in `db` (several flows have a deployment called `local`)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [name for (name,) in conn.execute("SELECT name FROM deployment")]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("dbfaults")
    copy_project(root)
    p = Project(root, free_port(), free_port(), root.parent / f"{root.name}-good.db", "")
    try:
        _, out, err, code = p.up()
        assert code == 0, out + err
        applied = airnub(root, "setup", "apply", timeout=300)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        api = f"http://127.0.0.1:{p.server_port}/api"
        flow = post_json(f"{api}/flows/", {"name": "db_faults_marker"})
        post_json(f"{api}/deployments/", {"name": LATEST, "flow_id": flow["id"]})
        assert p.db.with_name("prefect.db-wal").stat().st_size > 0  # the change is in the WAL
        down = airnub(root, "stack", "down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        shutil.copy(p.db, p.good_db)  # prefect.db alone, as a user's backup copies it
        p.good_record = (root / ".local" / "stack.json").read_text()
        yield p
    finally:
        airnub(root, "stack", "down", timeout=120)
        assert processes_under(root) == []


def test_down_leaves_prefect_db_complete_on_its_own(project: Project) -> None:
    for suffix in ("-wal", "-shm"):
        extra = project.db.with_name(project.db.name + suffix)
        assert not extra.exists() or extra.stat().st_size == 0, suffix
    assert LATEST in deployment_names(project.good_db)  # the copy of prefect.db alone
    record = json.loads(project.good_record)["database"]
    assert record["deployments"] == len(deployment_names(project.good_db)) > 1
    assert record["bytes"] == project.good_db.stat().st_size


def _refused(project: Project, reason: str | None) -> str:
    """`up` on the damaged database: refused with the message and the ways out, nothing left
    running, the database untouched."""
    before = project.db.read_bytes()
    seconds, out, err, code = project.up()
    print(f"refused in {seconds:.2f} s: {err.strip()}")
    assert code == 1, out + err
    text = " ".join(err.split())  # the terminal wraps long lines
    assert "error: the server's database at .local/prefect.db is damaged (" in text
    if reason:
        assert f"is damaged ({reason})" in text
    assert "back it up" in text
    assert "cp .local/prefect.db* .local/damaged-db/" in text
    assert "hatch run deploy:down --volumes --yes" in text
    assert processes_under(project.root) == []  # neither the server nor the demo-data server
    assert not list((project.root / ".local" / "run").glob("*.json"))
    assert project.db.read_bytes() == before  # kept for inspection
    return text


def test_a_truncated_database_is_named(project: Project) -> None:
    project.restore()
    os.truncate(project.db, project.db.stat().st_size // 2)
    _refused(project, "database disk image is malformed")


def test_an_overwritten_header_is_named(project: Project) -> None:
    project.restore()
    with project.db.open("r+b") as f:
        f.write(b"\0" * 100)  # the 100-byte header, "SQLite format 3" and the page size
    _refused(project, "file is not a database")


def test_random_damaged_pages_are_found(project: Project) -> None:
    project.restore()
    page = 4096
    pages = project.db.stat().st_size // page
    conn = sqlite3.connect(f"file:{project.db}?mode=ro", uri=True)
    try:
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    finally:
        conn.close()
    assert size == page and free < pages // 4  # nearly every page is in use
    rng = random.Random(20)
    with project.db.open("r+b") as f:
        for n in rng.sample(range(1, pages), 6):  # not page 0: the header has its own test
            f.seek(n * page)
            f.write(rng.randbytes(page))
    _refused(project, None)


def test_an_emptied_database_is_a_warning(project: Project) -> None:
    project.restore()
    project.db.write_bytes(b"")  # 0 bytes: SQLite would take it as a new database
    try:
        seconds, out, err, code = project.up()
        print(f"warned and started in {seconds:.2f} s")
        assert code == 0, out + err
        text = " ".join(out.split())
        recorded = json.loads(project.good_record)["database"]["deployments"]
        assert (
            "warning: the server's database at .local/prefect.db is empty (0 bytes or missing), "
            f"but the last `up`/`down` recorded {recorded} deployment(s)"
        ) in text
    finally:
        airnub(project.root, "stack", "down", timeout=120)
    assert processes_under(project.root) == []


def test_a_server_that_dies_on_its_database_is_named_too(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damage the check before the start does not see (here: the check is skipped) is named
    from the server's log, and the demo-data server started with it is stopped."""
    from deploy_tools.local.stack import Ports, ProcessStack
    from deploy_tools.local.stack import database as db_module
    from deploy_tools.local.stack.database import DamagedDatabaseError
    from deploy_tools.settings import load_settings

    for name in [k for k in os.environ if k.startswith(("PREFECT_", "AIRNUB_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(db_module, "damage", lambda _db: None)
    project.restore()
    os.truncate(project.db, project.db.stat().st_size // 2)
    stack = ProcessStack(load_settings(project.root), Ports(project.server_port, project.data_port))
    started = time.monotonic()
    with pytest.raises(DamagedDatabaseError) as caught:
        stack.up(worker=False, timeout=120)
    print(f"named from the server's log in {time.monotonic() - started:.1f} s")
    assert "the server's database at .local/prefect.db is damaged (" in str(caught.value)
    assert "database disk image is malformed" in str(caught.value)
    assert processes_under(project.root) == []
