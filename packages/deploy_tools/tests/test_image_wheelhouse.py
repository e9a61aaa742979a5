"""Wheelhouse logic: parsing uv's export, markers for the image's interpreter, the hash cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

from deploy_tools.image import wheelhouse
from deploy_tools.image.wheelhouse import Requirement, Target

EXPORT = """\
aiohttp==3.14.5 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via prefect
async-timeout==5.0.1 ; python_full_version < '3.11.3' \\
    --hash=sha256:cccc
    # via aiohttp
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:dddd
"""


def _target(full: str) -> Target:
    markers = {
        "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
        "platform_machine": "x86_64", "platform_release": "6.1", "platform_system": "Linux",
        "platform_version": "#1", "python_full_version": full,
        "platform_python_implementation": "CPython", "python_version": "3.11",
        "sys_platform": "linux",
    }  # fmt: skip
    return Target(markers=markers, glibc="2.36")


def test_parse_uv_export() -> None:
    reqs = wheelhouse.parse_requirements(EXPORT)
    assert [(r.name, r.version, r.hashes) for r in reqs] == [
        ("aiohttp", "3.14.5", ("aaaa", "bbbb")),
        ("async-timeout", "5.0.1", ("cccc",)),
        ("colorama", "0.4.6", ("dddd",)),
    ]
    assert reqs[1].marker == "python_full_version < '3.11.3'"
    assert reqs[0].line() == "aiohttp==3.14.5 --hash=sha256:aaaa --hash=sha256:bbbb"


def test_markers_follow_the_image_interpreter_not_the_host() -> None:
    reqs = wheelhouse.parse_requirements(EXPORT)
    debian = {r.name for r in wheelhouse.select(reqs, _target("3.11.2"))}
    newer = {r.name for r in wheelhouse.select(reqs, _target("3.11.7"))}
    assert debian == {"aiohttp", "async-timeout"}
    assert newer == {"aiohttp"}


def test_target_key_and_platforms() -> None:
    target = _target("3.11.2")
    assert target.key == "cp3.11.2-x86_64-glibc2.36"
    args = target.pip_args()
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in platforms
    assert "manylinux2014_x86_64" in platforms
    assert not any("2_37" in p for p in platforms)
    assert args[args.index("--abi") + 1] == "cp311"


def _wheel(folder: Path, name: str, body: bytes) -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(body)
    return path, hashlib.sha256(body).hexdigest()


def test_cached_wheels_are_reused_only_when_the_hash_matches(tmp_path: Path) -> None:
    target = _target("3.11.2")
    cache = tmp_path / "cache" / target.key
    cache.mkdir(parents=True)
    _, good = _wheel(cache, "six-1.17.0-py2.py3-none-any.whl", b"six wheel")
    _wheel(cache, "idna-3.20-py3-none-any.whl", b"tampered")
    six = Requirement("six", "1.17.0", (good,), None)
    idna = Requirement("idna", "3.20", ("0" * 64,), None)
    found = wheelhouse._cached(cache, [six, idna])
    assert set(found) == {"six"}

    dest = tmp_path / "ctx"
    out = wheelhouse.fetch([six], target, tmp_path / "cache", dest)  # all cached: no download
    assert [p.name for p in out] == ["six-1.17.0-py2.py3-none-any.whl"]
    assert (dest / out[0].name).read_bytes() == b"six wheel"
