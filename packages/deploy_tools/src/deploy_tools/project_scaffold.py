"""`airnub new project <name>`: a flows package and its deploy files, registered in the workspace.

Renders the Jinja2 templates under `deploy_tools/templates/project/` (file and folder names
are templates too), then registers the package: the root `pyproject.toml` (dependency, uv
source, `[[tool.airnub.projects]]` entry, ruff/mypy/coverage lists), `hatch.toml` (explicit
workspace member lists) and `uv.lock` (through `uv lock`). Every check runs before anything
is written; if `uv lock` fails, every file is put back as it was.
"""

from __future__ import annotations

import keyword
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates" / "project"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
REGISTRY_FILES = ("pyproject.toml", "hatch.toml", "uv.lock")


class ScaffoldError(ValueError):
    """The project cannot be created; the message says why. Nothing was written."""


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
        """The flows package's import name."""
        return f"flows_{self.name}"

    @property
    def distribution(self) -> str:
        """The flows package's distribution name."""
        return f"airnub-flows-{self.context['dist']}"


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
    pyproject = tomlkit.parse((root / "pyproject.toml").read_text())
    known = [p.get("name") for p in _table(pyproject, "tool", "airnub").get("projects", [])]
    if name in known:
        raise ScaffoldError(f"a project named {name!r} exists already ([[tool.airnub.projects]])")
    for taken in (root / "packages" / project.package, root / "deploy" / "projects" / name):
        if taken.exists():
            raise ScaffoldError(f"{taken.relative_to(root)} exists already: choose another name")
    return project


def check_clean(root: Path) -> None:
    """Refuse when the files the scaffold edits have uncommitted changes.

    Raises:
        ScaffoldError: naming the changed files (or saying git is missing).
    """
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--", *REGISTRY_FILES, "packages", "deploy"],
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
            "so the scaffold's own changes can be reviewed (and undone) on their own"
        )


def render(project: NewProject) -> dict[Path, str]:
    """Every file of the new project, relative to the checkout, rendered in memory."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - Python, TOML and YAML, not HTML
    )
    files: dict[Path, str] = {}
    for template in sorted(TEMPLATES.rglob("*.j2")):
        relative = template.relative_to(TEMPLATES).as_posix()
        target = env.from_string(relative.removesuffix(".j2")).render(project.context)
        files[Path(target)] = env.get_template(relative).render(project.context)
    return files


def _table(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.setdefault(key, tomlkit.table())
    return doc


def _append(array: Any, value: str) -> None:
    if value not in array:
        array.append(value)


def register_pyproject(text: str, project: NewProject) -> str:
    """The root pyproject.toml with the new package added everywhere the workspace lists one."""
    doc = tomlkit.parse(text)
    _append(doc["project"]["dependencies"], project.distribution)
    source = tomlkit.inline_table()
    source["workspace"] = True
    _table(doc, "tool", "uv", "sources")[project.distribution] = source
    entry = tomlkit.table()
    ctx = project.context
    entry.update(
        {
            "name": project.name,
            "flows_package": project.package,
            "env_prefix": ctx["prefix"],
            "data_root": ctx["data_root"],
            "demo_deployment": f"{project.name}_pipeline/local",
            "demo_data": f"{project.package}.demo_data",
            "deploy_dir": f"deploy/projects/{project.name}",
        }
    )
    airnub = _table(doc, "tool", "airnub")
    if "projects" not in airnub:
        airnub["projects"] = tomlkit.aot()
    airnub["projects"].append(entry)
    tool = doc["tool"]
    if "ruff" in tool:
        _append(
            _table(tool, "ruff", "lint", "isort").setdefault("known-first-party", []),
            project.package,
        )
    if "mypy" in tool:
        _append(tool["mypy"].setdefault("mypy_path", []), f"packages/{project.package}/src")
        _append(tool["mypy"].setdefault("packages", []), project.package)
    if "coverage" in tool:
        _append(_table(tool, "coverage", "run").setdefault("source_pkgs", []), project.package)
    return tomlkit.dumps(doc)


def register_hatch(text: str, project: NewProject) -> str:
    """hatch.toml with the package in every explicit `workspace.members` list."""
    doc = tomlkit.parse(text)
    member = f"packages/{project.package}"
    for env in doc.get("envs", {}).values():
        members = env.get("workspace", {}).get("members")
        if members is None:
            continue
        paths = [m if isinstance(m, str) else m.get("path") for m in members]
        if member not in paths and "packages/*" not in paths:
            members.append(member)
    return tomlkit.dumps(doc)


def create_project(root: Path, name: str, *, lock: bool = True) -> list[Path]:
    """Scaffold and register project `name` in the checkout at `root`; the paths written.

    Raises:
        ScaffoldError: an invalid or taken name, a dirty target, or a failed `uv lock`
            (then every file is as it was before).
    """
    project = check_name(name, root)
    check_clean(root)
    files = render(project)
    before = {f: (root / f).read_bytes() for f in REGISTRY_FILES if (root / f).is_file()}
    created_dirs = [root / "packages" / project.package, root / "deploy" / "projects" / name]
    try:
        for relative, body in files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
        (root / "pyproject.toml").write_text(
            register_pyproject((root / "pyproject.toml").read_text(), project)
        )
        if (root / "hatch.toml").is_file():
            (root / "hatch.toml").write_text(
                register_hatch((root / "hatch.toml").read_text(), project)
            )
        if lock:
            _uv_lock(root)
    except BaseException:
        for folder in created_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        for name, saved in before.items():
            (root / name).write_bytes(saved)
        raise
    return [*files, *(Path(f) for f in REGISTRY_FILES if (root / f).is_file())]


def _uv_lock(root: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        raise ScaffoldError("uv is not installed: `pip install uv`, then run the command again")
    done = subprocess.run([uv, "lock"], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ScaffoldError(f"`uv lock` failed; nothing was changed:\n{done.stderr.strip()}")
