"""The workspace members installed in an image's venv, found by their distribution names.

Dockerfile.worker installs every wheel of the context's ``wheels/workspace/`` and then runs
``compile`` with those wheels' distribution names: hash-based ``.pyc`` for exactly the ``.py``
files those distributions installed (their RECORD), not the whole site-packages again (the
third-party layer below is compiled and cached on its own). The Nix check runs ``check``: every
member's top-level modules import, and every extra asked for is installed.

    python -m deploy_tools.image.members compile NAME...
    python -m deploy_tools.image.members check NAME[EXTRA,...]...
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import importlib.metadata
import py_compile
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def python_files(name: str) -> list[Path]:
    """The ``.py`` files distribution ``name`` installed (its RECORD), sorted."""
    dist = importlib.metadata.distribution(name)
    files = dist.files
    if files is None:
        raise RuntimeError(f"{name} has no RECORD: cannot tell which files it installed")
    return sorted(Path(str(dist.locate_file(f))) for f in files if f.suffix == ".py")


def compile_members(names: list[str]) -> list[Path]:
    """Byte-compile the files of ``names`` (forced, unchecked-hash .pyc); return the failures."""
    failed = []
    for name in names:
        for path in python_files(name):
            ok = compileall.compile_file(
                path, force=True, quiet=1,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )  # fmt: skip
            if not ok:
                failed.append(path)
    return failed


def top_level_modules(name: str) -> list[str]:
    """The importable top-level packages and modules of distribution ``name``."""
    found = set()
    for f in importlib.metadata.distribution(name).files or []:
        top = f.parts[0] if f.parts else ""
        if f.suffix != ".py" or top in ("..", "__pycache__") or top.endswith(".dist-info"):
            continue
        found.add(top if len(f.parts) > 1 else top.removesuffix(".py"))
    return sorted(m for m in found if m.isidentifier())


def missing_for_extras(name: str, extras: set[str]) -> list[str]:
    """The requirements of ``name``'s ``extras`` (markers true here) that are not installed."""
    missing = []
    for line in importlib.metadata.requires(name) or []:
        req = Requirement(line)
        wanted = req.marker is not None and any(
            req.marker.evaluate({"extra": extra}) for extra in extras
        )
        if not wanted:
            continue
        try:
            importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{name}[{','.join(sorted(extras))}]: {req}")
    return missing


def check(specs: list[str]) -> list[str]:
    """Problems with ``specs`` (``name`` or ``name[extra,...]``): empty when every member
    imports and every extra's requirements are installed."""
    problems = []
    for spec in specs:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        try:
            modules = top_level_modules(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed")
            continue
        if not modules:
            problems.append(f"{name}: installs no importable module")
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as exc:
                problems.append(f"{name}: import {module} failed: {exc!r}")
        problems += missing_for_extras(name, set(req.extras))
    return problems


def main(argv: list[str] | None = None) -> int:
    """CLI: ``compile NAME...`` or ``check SPEC...``; exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("compile", help="byte-compile what these distributions installed")
    comp.add_argument("names", nargs="+")
    chk = sub.add_parser("check", help="import each member; its extras' requirements installed")
    chk.add_argument("specs", nargs="+", metavar="NAME[EXTRA,...]")
    args = parser.parse_args(argv)
    if args.command == "compile":
        failed = compile_members(args.names)
        for path in failed:
            print(f"error: cannot compile {path}", file=sys.stderr)
        return 1 if failed else 0
    problems = check(args.specs)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if not problems:
        print(f"ok: {' '.join(args.specs)}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
