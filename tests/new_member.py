"""Add a workspace member to a copy of this checkout (tests/checkout.py's `git_copy`), the way
`airnub new project` adds one: a folder under packages/ that the root pyproject's
`[tool.uv.workspace] members` glob finds, then `uv lock`. Nothing else is edited, so whatever
picks the member up (the image build, the Nix flake) must find it on its own.
"""

from __future__ import annotations

from pathlib import Path

from tests.checkout import run


def add_member(root: Path, module: str, *, virtual: bool = False) -> str:
    """Write ``packages/<module>/`` (distribution ``airnub-<module>``); return the distribution
    name. A packaged member has one module ``<module>`` (``MARKER`` = its distribution name)
    that imports pipeline_core; a virtual one (``tool.uv.package = false``) has no package."""
    dist = "airnub-" + module.replace("_", "-")
    folder = root / "packages" / module
    folder.mkdir(parents=True)
    project = f'[project]\nname = "{dist}"\nversion = "0.3.0"\nrequires-python = ">=3.11"\n'
    if virtual:
        (folder / "pyproject.toml").write_text(
            f"{project}dependencies = []\n\n[tool.uv]\npackage = false\n"
        )
        return dist
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling>=1.26"]\nbuild-backend = "hatchling.build"\n\n'
        f'{project}dependencies = ["airnub-pipeline-core"]\n\n'
        "[tool.uv.sources]\nairnub-pipeline-core = { workspace = true }\n\n"
        f'[tool.hatch.build.targets.wheel]\npackages = ["src/{module}"]\n'
    )
    src = folder / "src" / module
    src.mkdir(parents=True)
    (src / "__init__.py").write_text(f'import pipeline_core  # noqa: F401\n\nMARKER = "{dist}"\n')
    return dist


def lock_and_commit(root: Path, message: str) -> None:
    """`uv lock` (as `airnub new project` runs it: the index may be asked, since uv's cache on a
    fresh machine need not hold every locked package's metadata for every Python split; no new
    third-party package is added) and commit everything at HEAD's time:
    the commit time stays the one `git_copy` gave, so the image's dependency layer (stamped
    with uv.lock's commit time) is still reused from the build cache."""
    run(["uv", "lock", "--quiet"], root)
    when = run(["git", "log", "-1", "--format=%cI"], root).strip()
    ident = ["-c", "user.email=t@t", "-c", "user.name=t"]
    run(["git", *ident, "add", "-A"], root)
    run(["git", *ident, "commit", "-qm", message], root,
        GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)  # fmt: skip
