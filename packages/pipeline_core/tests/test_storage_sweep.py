"""Temp files of interrupted runs are swept: only `stage`'s own names, only old ones."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from pytest_httpserver import HTTPServer

from pipeline_core.ingestion import ingest_sources
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source
from pipeline_core.storage import LocalStorage, sweep_stale

HOUR = 3600.0


def _part(folder: Path, age: float) -> Path:
    """A leftover temp file named exactly as `LocalStorage.stage` names them, `age` s old."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    os.write(fd, b"half a download")
    os.close(fd)
    return _age(Path(name), age)


def _age(path: Path, age: float) -> Path:
    then = time.time() - age
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def _file(path: Path, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"keep me")
    return _age(path, age)


def test_only_old_temp_files_named_like_ours_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    storage = LocalStorage(root)
    old = [_part(root, 2 * HOUR), _part(root / "raw" / "cities" / "abc", 5 * HOUR)]
    young = _part(root / "raw" / "cities", 60)
    outside = _file(tmp_path / "elsewhere.txt", 5 * HOUR)
    keep = [
        _file(root / "manifests" / "latest.json", 5 * HOUR),
        _file(root / "data.part", 5 * HOUR),  # not a dot file
        _file(root / ".abc.part", 5 * HOUR),  # wrong length
        _file(root / ".ABCDEFGH.part", 5 * HOUR),  # mkstemp never uses capitals
        _file(root / ".abcdefgh.part.bak", 5 * HOUR),
        _file(root / "raw" / ".abcdefgh.partial", 5 * HOUR),
    ]
    link = root / ".lnkabcde.part"  # a symlink with our name: the link and its target stay
    link.symlink_to(outside)
    _age(link, 5 * HOUR)
    (root / ".dirabcde.part").mkdir()  # a folder with our name stays
    _age(root / ".dirabcde.part", 5 * HOUR)

    removed = storage.sweep_stale(max_age=HOUR)

    assert sorted(removed) == sorted(old)
    assert not any(p.exists() for p in old)
    assert young.exists()
    assert all(p.exists() for p in keep)
    assert link.is_symlink() and outside.exists()
    assert (root / ".dirabcde.part").is_dir()
    assert storage.sweep_stale(max_age=HOUR) == []  # nothing left to do


async def test_the_names_stage_uses_are_swept(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    async with storage.stage("raw/x") as staged:
        staged.file.write(b"partial")
        staged.file.flush()
        (tmp,) = (tmp_path / "raw" / "x").iterdir()
        _age(tmp, 2 * HOUR)  # as if its run had been killed long ago
        assert await sweep_stale(storage, HOUR) == 1
    assert list((tmp_path / "raw" / "x").iterdir()) == []


async def test_a_missing_root_sweeps_nothing(tmp_path: Path) -> None:
    assert await sweep_stale(LocalStorage(tmp_path / "not-yet"), HOUR) == 0


async def test_the_next_ingest_sweeps_old_temp_files(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    old = _part(root / "raw" / "alpha" / ("0" * 64), 3 * HOUR)
    young = _part(root / "raw" / "alpha", 10)
    other = _file(root / "notes.part", 3 * HOUR)
    httpserver.expect_request("/a.csv").respond_with_data(b"id\n1\n", content_type="text/csv")
    settings = PipelineSettings(data_root=root, stale_part_seconds=HOUR, max_retries=0)

    manifest = await ingest_sources(
        [Source(name="alpha", url=httpserver.url_for("/a.csv"))],
        storage=LocalStorage(root),
        settings=settings,
        run_id="r1",
    )

    assert not manifest.failed
    assert not old.exists()
    assert young.exists()
    assert other.exists()


def test_the_threshold_is_a_setting(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pydantic_settings import SettingsConfigDict

    class BetaSettings(PipelineSettings):
        model_config = SettingsConfigDict(env_prefix="BETA_")

    assert BetaSettings().stale_part_seconds == HOUR
    monkeypatch.setenv("BETA_STALE_PART_SECONDS", "120")
    assert BetaSettings().stale_part_seconds == 120
