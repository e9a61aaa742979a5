"""`airnub new project <name>` and `airnub remove project <name>`: a project is a folder.

A project is a workspace member under `packages/` that says so in its own `pyproject.toml`
(`[tool.airnub.project]`), plus its setup files under `deploy/projects/<name>/`. Creating one
renders a template (`deploy_tools/scaffold/templates/<template>/`; file and folder names are templates
too) and runs `uv lock`; removing one deletes those two folders and runs `uv lock` again. No
other file is edited: the workspace, Hatch, ruff, mypy, the image and Nix find members by glob.
Every check runs before anything is written; if `uv lock` fails, every file is put back.
"""

from __future__ import annotations

import keyword
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from deploy_tools.settings import (
    DEPLOY_DIR,
    ProjectFileError,
    ProjectSettings,
    discover_projects,
    workspace_members,
)

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_NAMES = ("pipeline", "flow")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
LOCK_FILE = "uv.lock"


class ScaffoldError(ValueError):
    """The project cannot be created or removed; the message says why. Nothing was written."""


@dataclass(frozen=True)
class NewProject:
    """What the templates are rendered with."""

    name: str

    @property
    def context(self) -> dict[str, str]:
        """Template variables, e.g. for `beta`: `cls=Beta`, `prefix=BETA_`, `dist=beta`."""
        return {
            "name": self.name,
            "dist": self.name.replace("_", "-"),
            "cls": "".join(part.capitalize() for part in self.name.split("_")),
            "title": "Project " + " ".join(p.capitalize() for p in self.name.split("_")),
            "prefix": f"{self.name.upper()}_",
            "data_root": f"data/project_{self.name}_outputs",
        }

    @property
    def package(self) -> str:
        """The flows package's import name (and its folder under `packages/`)."""
        return f"flows_{self.name}"

    def folders(self, root: Path) -> tuple[Path, Path]:
        """The two folders that are the whole project."""
        return root / "packages" / self.package, root / "deploy" / "projects" / self.name


def _projects(root: Path) -> list[ProjectSettings]:
    try:
        return [ProjectSettings.model_validate(p).resolved(root) for p in discover_projects(root)]
    except ProjectFileError as exc:
        raise ScaffoldError(str(exc)) from None


def check_name(name: str, root: Path) -> NewProject:
    """Refuse an invalid identifier or a name already in use, saying which.

    Raises:
        ScaffoldError: the name cannot be used.
    """
    if not NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"invalid project name {name!r}: use a lower-case Python identifier of at most "
            "31 characters (letters, digits, '_'; a letter first), e.g. 'beta' or 'sales_eu'"
        )
    project = NewProject(name)
    for known in _projects(root):
        if known.name == name:
            raise ScaffoldError(
                f"a project named {name!r} exists already "
                f"({known.member_dir.relative_to(root)}/pyproject.toml)"
            )
    for taken in project.folders(root):
        if taken.exists():
            raise ScaffoldError(f"{taken.relative_to(root)} exists already: choose another name")
    return project


def check_clean(root: Path, paths: tuple[str, ...] = ("packages", "deploy", LOCK_FILE)) -> None:
    """Refuse when `paths` have uncommitted changes, so the change can be reviewed (and undone)
    on its own.

    Raises:
        ScaffoldError: naming the changed files (or saying git is missing).
    """
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--", *paths],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise ScaffoldError("git is not installed: cannot check the target is clean") from None
    if done.returncode != 0:
        raise ScaffoldError(f"{root} is not a git checkout: {done.stderr.strip()}")
    dirty = [line[3:] for line in done.stdout.splitlines()]
    if dirty:
        shown = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
        raise ScaffoldError(
            f"the target has uncommitted changes ({shown}): commit or stash them first, "
            "so this change can be reviewed (and undone) on its own"
        )


def render(project: NewProject, template: str = "pipeline") -> dict[Path, str]:
    """Every file of the new project, relative to the checkout, rendered in memory.

    Raises:
        ScaffoldError: no such template.
    """
    if template not in TEMPLATE_NAMES:
        raise ScaffoldError(f"no template {template!r} (known: {', '.join(TEMPLATE_NAMES)})")
    folder = TEMPLATES / template
    env = Environment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - Python, TOML and YAML, not HTML
    )
    files: dict[Path, str] = {}
    for source in sorted(folder.rglob("*.j2")):
        relative = source.relative_to(folder).as_posix()
        target = env.from_string(relative.removesuffix(".j2")).render(project.context)
        files[Path(target)] = env.get_template(relative).render(project.context)
    return files


def create_project(
    root: Path, name: str, *, template: str = "pipeline", lock: bool = True
) -> list[Path]:
    """Scaffold project `name` from `template` in the checkout at `root`; the paths written.

    Raises:
        ScaffoldError: an invalid or taken name, an unknown template, a dirty target, or a
            failed `uv lock` (then every file is as it was before).
    """
    project = check_name(name, root)
    files = render(project, template)
    check_clean(root)
    lock_before = _read(root / LOCK_FILE)
    try:
        for relative, body in files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
        if lock:
            _uv_lock(root)
    except BaseException:
        for folder in project.folders(root):
            shutil.rmtree(folder, ignore_errors=True)
        _restore(root / LOCK_FILE, lock_before)
        raise
    return [*files, *([Path(LOCK_FILE)] if lock else [])]


def find_project(root: Path, name: str) -> ProjectSettings:
    """The project called `name` in the checkout at `root`.

    Raises:
        ScaffoldError: there is none, naming the known ones.
    """
    projects = _projects(root)
    for p in projects:
        if p.name == name:
            return p
    known = ", ".join(p.name for p in projects) or "none"
    raise ScaffoldError(f"no project {name!r} in the workspace (known: {known})")


def remove_project(root: Path, name: str, *, lock: bool = True) -> list[Path]:
    """Delete project `name`'s package and deploy folders, then `uv lock`; the folders removed.

    Raises:
        ScaffoldError: no such project, a dirty target, a folder outside the checkout or
            holding what is not the project's, or a failed `uv lock` (then every file is as it
            was before).
    """
    project = find_project(root, name)
    folders = [project.member_dir, project.deploy_dir]
    for folder in folders:
        if not folder.resolve().is_relative_to(root.resolve()) or folder.resolve() == root:
            raise ScaffoldError(f"{folder} is not a folder of the checkout: not removed")
    _refuse_shared(root, project, folders)
    check_clean(root)
    lock_before = _read(root / LOCK_FILE)
    saved = {path: body for f in folders for path, body in _snapshot(f).items()}
    try:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        if lock:
            _uv_lock(root)
    except BaseException:
        for path, body in saved.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        _restore(root / LOCK_FILE, lock_before)
        raise
    return [f.relative_to(root) for f in folders]


def _refuse_shared(root: Path, project: ProjectSettings, folders: list[Path]) -> None:
    """Refuse to remove a folder that holds what is not `project`'s (a `deploy_dir` such as
    `deploy` or `packages`): another member, another project's deploy folder, or a shared file
    under `deploy/`.

    Raises:
        ScaffoldError: naming the folder and what it holds.
    """
    top = root.resolve()
    shared = root / DEPLOY_DIR
    kept = [m for m in workspace_members(root) if m.resolve() != project.member_dir.resolve()]
    kept += [p.deploy_dir for p in _projects(root) if p.name != project.name]
    kept += [p for p in sorted(shared.iterdir()) if p.name != "projects"] if shared.is_dir() else []
    for folder in folders:
        for other in kept:
            if other.resolve().is_relative_to(folder.resolve()):
                raise ScaffoldError(
                    f"{folder.resolve().relative_to(top)} holds "
                    f"{other.resolve().relative_to(top)}, not project {project.name}'s: nothing "
                    "was removed"
                )


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _restore(path: Path, body: bytes | None) -> None:
    if body is not None:
        path.write_bytes(body)


def _uv_lock(root: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        raise ScaffoldError("uv is not installed: `pip install uv`, then run the command again")
    done = subprocess.run([uv, "lock"], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ScaffoldError(f"`uv lock` failed; nothing was changed:\n{done.stderr.strip()}")
