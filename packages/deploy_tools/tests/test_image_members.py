"""deploy_tools.image.members: byte-compile exactly what the workspace wheels installed, and the
import check the Nix flake runs on its venv."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy_tools.image import members

NAME = "airnub-test-member"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site-packages on sys.path holding one installed member (RECORD lists its files) and a
    stray package that no RECORD names."""
    site = tmp_path / "site-packages"
    pkg = site / "airnub_test_member_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    (pkg / "sub.py").write_text("X = 2\n")
    (pkg / "data.txt").write_text("not python\n")
    (site / "airnub_test_member_mod.py").write_text("Y = 3\n")
    (site / "stray").mkdir()
    (site / "stray" / "mod.py").write_text("Z = 4\n")
    info = site / "airnub_test_member-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 1.0\n"
        "Provides-Extra: aws\n"
        'Requires-Dist: packaging; extra == "aws"\n'
        'Requires-Dist: airnub-not-installed-anywhere; extra == "gcp"\n'
    )
    files = ["airnub_test_member_pkg/__init__.py", "airnub_test_member_pkg/sub.py",
             "airnub_test_member_pkg/data.txt", "airnub_test_member_mod.py",
             f"{info.name}/METADATA", f"{info.name}/RECORD"]  # fmt: skip
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))
    monkeypatch.syspath_prepend(str(site))
    yield site
    for module in ("airnub_test_member_pkg", "airnub_test_member_mod"):
        sys.modules.pop(module, None)


def _flags(pyc: Path) -> int:
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_compile_writes_unchecked_hash_pyc_for_the_members_files_only(site: Path) -> None:
    assert members.compile_members([NAME]) == []
    pycs = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.pyc"))
    tag = sys.implementation.cache_tag
    assert pycs == [
        f"__pycache__/airnub_test_member_mod.{tag}.pyc",
        f"airnub_test_member_pkg/__pycache__/__init__.{tag}.pyc",
        f"airnub_test_member_pkg/__pycache__/sub.{tag}.pyc",
    ]  # not stray/mod.py: no installed RECORD names it
    assert {_flags(site / p) for p in pycs} == {1}  # PEP 552: hash-based, unchecked


def test_compile_fails_on_a_file_that_does_not_compile(site: Path) -> None:
    (site / "airnub_test_member_pkg" / "sub.py").write_text("def (:\n")
    assert members.compile_members([NAME]) == [site / "airnub_test_member_pkg" / "sub.py"]
    assert members.main(["compile", NAME]) == 1


def test_check_imports_the_top_level_modules_and_checks_extras(site: Path) -> None:
    assert members.top_level_modules(NAME) == ["airnub_test_member_mod", "airnub_test_member_pkg"]
    assert members.check([NAME, f"{NAME}[aws]"]) == []
    assert "airnub_test_member_pkg" in sys.modules
    assert members.main(["check", f"{NAME}[aws]"]) == 0
    problems = members.check([f"{NAME}[gcp]", "airnub-no-such-member"])
    assert problems == [
        f'{NAME}[gcp]: airnub-not-installed-anywhere; extra == "gcp"',
        "airnub-no-such-member: not installed",
    ]


def test_check_reports_a_member_that_fails_to_import(site: Path) -> None:
    (site / "airnub_test_member_mod.py").write_text("raise RuntimeError('boom')\n")
    problems = members.check([NAME])
    assert len(problems) == 1
    assert problems[0].startswith(f"{NAME}: import airnub_test_member_mod failed: RuntimeError")
