"""Copies of this checkout for tests that change files or run stacks of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from deploy_tools.server_settings import telemetry_env
from deploy_tools.settings import workspace_members

REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without its PREFECT_*/AIRNUB_* settings (the caller's server, ports,
    image), with telemetry off as in every airnub stack, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}
    return {**env, **telemetry_env(), **extra}


def run(cmd: list[str], cwd: Path, timeout: float = 600, **env: str) -> str:
    """Run `cmd` without the caller's PREFECT_*/AIRNUB_* settings; assert it succeeds."""
    clean = clean_env(**env)
    clean.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def git_copy(dest: Path) -> Path:
    """This checkout's files (tracked and untracked, not ignored) as a fresh git repository.

    Its one commit has the time of this checkout's last change to `uv.lock`: the image's
    dependency layer is stamped with it, so images built from copies reuse that layer from the
    build cache until the lock changes.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    when = run(["git", "log", "-1", "--format=%cI", "--", "uv.lock"], REPO).strip()
    ident = ["-c", "user.email=t@t", "-c", "user.name=t"]
    run(["git", "init", "-q"], dest)
    run(["git", *ident, "add", "-A"], dest)
    run(["git", *ident, "commit", "-qm", "copy"], dest,
        GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)  # fmt: skip
    return dest


def copy_project(dest: Path) -> None:
    """What `airnub` needs of this checkout in `dest`: deploy/, the [tool.airnub] table, and each
    workspace member's pyproject.toml (the projects' own tables; their code is installed in
    this env)."""
    shutil.copytree(REPO / "deploy", dest / "deploy")
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    for member in workspace_members(REPO):
        (dest / member.relative_to(REPO)).mkdir(parents=True)
        shutil.copy(member / "pyproject.toml", dest / member.relative_to(REPO) / "pyproject.toml")
