"""The compose stack's PostgreSQL password, for real: a value with `$ @ / % ? # ' " space \\`
reaches PostgreSQL and the server byte for byte; a line compose would change is refused before
anything starts; `.env` deleted while the stack runs does not hide it from status, logs and
down; a kept volume with another password is named, and restoring the password recovers.

Shares the session stack of `compose_stack` (this file runs before test_compose_stack.py):
every test leaves it up, with its data and its `.env`, as it found it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deploy_tools.local.stack.compose_password import password_line, read_password
from tests.checkout import clean_env
from tests.compose.conftest import AIRNUB, HAND_PICKED_PASSWORD, Checkout, compose_images
from tests.compose.test_compose_stack import snapshot, volumes_of
from tests.stack.test_local_stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.stack]

LONG_RANDOM = "".join(
    secrets.choice(string.ascii_letters + string.digits + string.punctuation + " ")
    for _ in range(200)
)
TIMES: dict[str, float] = {}  # seconds to recover, per fault (printed at the end)


def flat(text: str) -> str:
    """`text` with every run of whitespace as one space (the terminal wraps long lines)."""
    return " ".join(text.split())


def output(done: subprocess.CompletedProcess[str]) -> str:
    return flat(done.stdout + done.stderr)


def containers(stack: Checkout, *, running: bool = True) -> dict[str, str]:
    """The project's containers: name → start time (running ones, or all)."""
    cmd = ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={stack.project}"]
    ids = subprocess.run(
        cmd + ([] if running else ["--all"]), capture_output=True, text=True, timeout=60
    ).stdout.split()
    if not ids:
        return {}
    rows = json.loads(
        subprocess.run(
            ["docker", "inspect", *ids], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    return {r["Name"]: r["State"]["StartedAt"] for r in rows}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def psql(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@contextmanager
def env_file_restored(stack: Checkout) -> Iterator[Path]:
    """The copy's `.env`, put back as it was (bytes and mode) whatever the test did to it."""
    path = stack.root / ".env"
    saved = path.read_bytes()
    try:
        yield path
    finally:
        path.write_bytes(saved)
        path.chmod(0o600)


# -- the value reaches PostgreSQL and the server -------------------------------------------
def test_the_password_reaches_postgresql_and_the_server_byte_for_byte(
    compose_stack: Checkout,
) -> None:
    want = sha256(HAND_PICKED_PASSWORD)
    pg = compose_stack.compose(
        "exec", "-T", "postgres", "sh", "-c", 'printf %s "$POSTGRES_PASSWORD" | sha256sum'
    )
    assert pg.stdout.split()[0] == want, pg.stderr
    server = compose_stack.compose(
        "exec", "-T", "prefect-server", "python", "-c",
        "import hashlib, os; "
        "print(hashlib.sha256(os.environ['PREFECT_SERVER_DATABASE_PASSWORD'].encode()).hexdigest())",
    )  # fmt: skip
    assert server.stdout.strip() == want, server.stderr
    # PostgreSQL takes exactly that password over TCP (scram-sha-256), not one byte more.
    login = 'psql -h 127.0.0.1 -U prefect -d prefect -tAc "select count(*) from deployment"'
    ok = compose_stack.compose(
        "exec", "-T", "postgres", "sh", "-c", f'PGPASSWORD="$POSTGRES_PASSWORD" {login}'
    )
    assert int(psql(ok)) >= 3  # what the server wrote through its own login
    near = compose_stack.compose(
        "exec", "-T", "postgres", "sh", "-c", f'PGPASSWORD="${{POSTGRES_PASSWORD}}x" {login}'
    )
    assert near.returncode != 0 and "password authentication failed" in near.stderr
    # A write through the server's API lands in PostgreSQL: its engine logs in with it.
    compose_stack.api("POST", "/variables/", {"name": "credentials_probe", "value": "written"})
    select = "psql -h 127.0.0.1 -U prefect -d prefect -tAc \"select value from variable where name = 'credentials_probe'\""
    found = compose_stack.compose(
        "exec", "-T", "postgres", "sh", "-c", f'PGPASSWORD="$POSTGRES_PASSWORD" {select}'
    )
    assert psql(found) == '"written"'


def test_a_long_random_password_reaches_both_byte_for_byte(
    compose_stack: Checkout, tmp_path: Path
) -> None:
    """A fresh project of the copy (its own volume): PostgreSQL initialised with a 200-character
    random password of every printable ASCII character, and the server logging in with it."""
    env_file = tmp_path / "long.env"
    env_file.write_text(password_line(LONG_RANDOM) + "\n")
    project = f"{compose_stack.project}-long"
    env = {**os.environ, **{k: compose_stack.env[k] for k in ("AIRNUB_IMAGE", "AIRNUB_POSTGRES_IMAGE")},
           "AIRNUB_SERVER_PORT": str(free_port()), "STACK_DATA_DIR": str(compose_stack.root / "data")}  # fmt: skip
    env.pop("POSTGRES_PASSWORD", None)
    files = [a for f in compose_stack.compose_files() for a in ("-f", f)]
    base = ["docker", "compose", *files, "--env-file", str(env_file), "-p", project]

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], env=env, capture_output=True, text=True, timeout=300)

    try:
        started = time.monotonic()
        up = compose(
            "up", "--detach", "--wait", "--wait-timeout", "240", "postgres", "prefect-server"
        )
        assert up.returncode == 0, up.stderr[-3000:]
        print(f"fresh PostgreSQL + server with a 200-character random password: "
              f"{time.monotonic() - started:.0f} s")  # fmt: skip
        pg = compose(
            "exec", "-T", "postgres", "sh", "-c", 'printf %s "$POSTGRES_PASSWORD" | sha256sum'
        )
        assert pg.stdout.split()[0] == sha256(LONG_RANDOM)
        server = compose(
            "exec", "-T", "prefect-server", "python", "-c",
            "import hashlib, os, urllib.request as u; "
            "print(hashlib.sha256(os.environ['PREFECT_SERVER_DATABASE_PASSWORD'].encode()).hexdigest()); "
            "print(u.urlopen('http://127.0.0.1:4200/api/ready', timeout=10).status)",
        )  # fmt: skip
        assert server.stdout.split() == [sha256(LONG_RANDOM), "200"], server.stderr
        login = compose("exec", "-T", "postgres", "sh", "-c",
                        'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -U prefect -d prefect -tAc "select 1"')  # fmt: skip
        assert psql(login) == "1"
    finally:
        compose("down", "--volumes", "--timeout", "5")
    assert not containers(Checkout(compose_stack.root, {}, project), running=False)


def test_compose_reads_every_line_written_as_this_module_does(tmp_path: Path) -> None:
    """`docker compose config` (the value compose really uses) against `read_password`, for
    lines `password_line` writes and lines users write that are accepted."""
    compose_images()  # a Docker engine answers
    (tmp_path / "compose.yaml").write_text(
        "services:\n  x:\n    image: scratch\n    environment:\n"
        "      P: ${POSTGRES_PASSWORD:?unset}\n"
    )
    lines = [
        password_line(v) for v in (HAND_PICKED_PASSWORD, LONG_RANDOM, "it's", "\\'", "a\\", "$$")
    ]
    lines += ["POSTGRES_PASSWORD='back\\slash\\\\'  # note", "export POSTGRES_PASSWORD = plain",
              'POSTGRES_PASSWORD="a\\$b \\"q\\" \\\\"']  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    for line in lines:
        (tmp_path / ".env").write_text(line + "\n")
        entry = read_password(tmp_path / ".env")
        assert entry is not None, line
        done = subprocess.run(
            ["docker", "compose", "-f", str(tmp_path / "compose.yaml"), "--env-file",
             str(tmp_path / ".env"), "-p", "credentials-config", "config", "--format", "json"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 0, (line, done.stderr)
        assert done.stderr == "", (line, done.stderr)  # no warning either
        got = json.loads(done.stdout)["services"]["x"]["environment"]["P"].replace("$$", "$")
        assert got == entry.value, line


# -- refused before anything starts; compose's warnings shown ------------------------------
def test_a_line_compose_would_change_is_refused_before_anything_starts(
    compose_stack: Checkout,
) -> None:
    before = containers(compose_stack)
    assert len(before) >= 4
    with env_file_restored(compose_stack) as env_file:
        env_file.write_text('AIRNUB_TELEMETRY=0\nPOSTGRES_PASSWORD="a$b c"\n')
        started = time.monotonic()
        done = compose_stack.airnub("deploy", "local", "--mode", "compose", "--no-demo")
        TIMES["refused line (time to the message)"] = time.monotonic() - started
        assert done.returncode == 1, output(done)
        assert (
            f"{env_file} line 2: POSTGRES_PASSWORD would not reach PostgreSQL as written: "
            "compose replaces `$…` in double quotes with a variable's value. Write it between "
            "single quotes: POSTGRES_PASSWORD='<the password>' (nothing was started)"
        ) in output(done)
        assert "a$b c" not in output(done)  # the password is never shown
        assert containers(compose_stack) == before  # nothing restarted or recreated

        env_file.write_text(
            env_file.read_text().replace('"a$b c"', "'a$b c'")  # the line it said to write
        )
        assert read_password(env_file) is not None
    # Compose's own warnings are shown: an unset variable in another line of .env.
    with env_file_restored(compose_stack) as env_file:
        env_file.write_text(env_file.read_text() + 'OTHER_TOOL_SETTING="x$UNSET_IN_THIS_TEST"\n')
        up = compose_stack.airnub("stack", "up", "--mode", "compose")
        assert up.returncode == 0, output(up)
        assert (
            'docker compose: The "UNSET_IN_THIS_TEST" variable is not set. '
            "Defaulting to a blank string."
        ) in output(up)
    assert containers(compose_stack) == before


# -- .env deleted: the stack is still found; a kept volume is named -------------------------
def test_without_env_status_logs_and_down_find_the_stack_and_a_kept_volume_is_named(
    compose_stack: Checkout,
) -> None:
    before = snapshot(compose_stack)
    volume = f"{compose_stack.project}_pgdata-15"
    with env_file_restored(compose_stack) as env_file:
        env_file.unlink()
        status = compose_stack.airnub("stack", "status")
        assert status.returncode == 0, output(status)
        assert "not running" not in status.stdout
        assert output(status).count("healthy") >= 4
        logs = compose_stack.airnub("stack", "logs", "postgres", "--lines", "5")
        assert logs.returncode == 0 and "(no log yet)" not in logs.stdout, output(logs)

        started = time.monotonic()
        down = compose_stack.airnub("stack", "down")
        TIMES[".env deleted while running: down"] = time.monotonic() - started
        assert down.returncode == 0, output(down)
        stopped = set(
            down.stdout.split("stopped:", 1)[1].split("\n", 1)[0].replace(",", " ").split()
        )
        assert stopped >= {"server", "worker", "demo-data", "postgres"}, down.stdout
        assert containers(compose_stack) == {}  # all four stopped
        assert volume in volumes_of(compose_stack)  # the data stays

        # The volume is kept and .env has no password: refused at once, nothing generated.
        started = time.monotonic()
        refused = compose_stack.airnub("deploy", "local", "--mode", "compose", "--no-demo")
        TIMES["volume kept, .env gone: time to the message"] = time.monotonic() - started
        assert refused.returncode == 1, output(refused)
        assert (
            f"the PostgreSQL volume {volume} was initialised with a password, and {env_file} "
            "has no POSTGRES_PASSWORD"
        ) in output(refused)
        assert "restore the old password" in output(refused)
        assert "deploy:down --volumes --yes" in output(refused)
        assert not env_file.exists() and containers(compose_stack) == {}

        # Another password than the volume's: PostgreSQL refuses the server, and that is said.
        env_file.write_text(password_line(LONG_RANDOM) + "\n")
        started = time.monotonic()
        wrong = compose_stack.airnub("stack", "up", "--mode", "compose")
        TIMES["another password than the volume's: time to the message"] = (
            time.monotonic() - started
        )
        assert wrong.returncode == 1, output(wrong)
        assert (
            f"the PostgreSQL volume {volume} was initialised with another password than "
            f"POSTGRES_PASSWORD in {env_file} (password authentication failed)"
        ) in output(wrong)
        assert "deploy:down --volumes --yes" in output(wrong)
        assert "unhealthy" not in output(wrong)
        assert containers(compose_stack) == {}  # no server left restarting
        assert LONG_RANDOM not in output(wrong)

    # The first way out: the old password back in .env; every object is still there.
    started = time.monotonic()
    back = compose_stack.airnub("stack", "up", "--mode", "compose")
    TIMES["password restored: stack up to healthy"] = time.monotonic() - started
    assert back.returncode == 0, output(back)
    assert snapshot(compose_stack) == before
    assert len(containers(compose_stack)) >= 4
    for what, seconds in TIMES.items():
        print(f"{what}: {seconds:.1f} s")


def test_a_password_exported_in_the_shell_does_not_override_env(compose_stack: Checkout) -> None:
    """Compose prefers a POSTGRES_PASSWORD of the environment over `.env`; airnub does not pass
    one on, so `.env` stays the password's one source (nothing is recreated with another)."""
    before = containers(compose_stack)
    up = subprocess.run(
        [str(AIRNUB), "stack", "up", "--mode", "compose"],
        cwd=compose_stack.root,
        env=clean_env(**compose_stack.env, POSTGRES_PASSWORD="from-the-shell", COLUMNS="200"),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert up.returncode == 0, output(up)
    assert containers(compose_stack) == before
