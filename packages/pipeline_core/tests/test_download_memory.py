"""Memory is bounded by chunks, not by bodies: 8 concurrent gzip bombs in a child process.

Each body is ~1 MiB on the wire and inflates to 1 GiB (64 gzip members of 16 MiB of
zeros); the limit is 64 MiB decoded. The child process runs `ingest_sources` and reports
its peak RSS (VmHWM), which must stay under 300 MiB for the whole process.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

MEMBER = gzip.compress(b"\0" * (16 * 1024 * 1024), compresslevel=9)
LIMIT = 64 * 1024 * 1024

CHILD = """
import asyncio, json, sys
from pathlib import Path
from pipeline_core.ingestion import ingest_sources
from pipeline_core.settings import PipelineSettings
from pipeline_core.sources import Source
from pipeline_core.storage import LocalStorage

base, root, limit = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
settings = PipelineSettings(concurrency=8, max_bytes=limit, max_retries=0, total_timeout=120)
sources = [Source(name=f"bomb{i}", url=f"{base}/bomb{i}.csv") for i in range(8)]
sources.append(Source(name="stacked", url=f"{base}/stacked.csv"))
manifest = asyncio.run(
    ingest_sources(sources, storage=LocalStorage(root), settings=settings, run_id="r1")
)
status = Path("/proc/self/status").read_text()
peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
print(json.dumps({"peak_kib": peak, "errors": [e.error for e in manifest.entries]}))
"""


def _bomb(_request: Request) -> Response:
    def members() -> Iterator[bytes]:
        for _ in range(64):
            yield MEMBER

    return Response(members(), headers={"Content-Encoding": "gzip"})


def test_eight_concurrent_gzip_bombs_stay_under_300_mib(httpserver: HTTPServer, tmp_path: Path):
    for i in range(8):
        httpserver.expect_request(f"/bomb{i}.csv").respond_with_handler(_bomb)
    stacked = gzip.compress(MEMBER * 4)
    httpserver.expect_request("/stacked.csv").respond_with_data(
        stacked, headers={"Content-Encoding": "gzip, gzip"}
    )
    base = httpserver.url_for("/").rstrip("/")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, base, str(tmp_path / "data"), str(LIMIT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    errors = report["errors"]
    assert all(f"sent more than {LIMIT} bytes" in (e or "") for e in errors[:8]), errors
    assert "more than one coding is refused" in (errors[8] or "")
    peak_mib = report["peak_kib"] / 1024
    assert peak_mib < 300, f"peak RSS {peak_mib:.0f} MiB"
    assert not [p for p in (tmp_path / "data").rglob("*") if p.name.endswith(".part")]
    print(f"peak RSS of the child: {peak_mib:.0f} MiB")
