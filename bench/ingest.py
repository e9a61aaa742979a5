"""Benchmark: the ingest flow against a bare asyncio + httpx downloader, same server, same run.

Serves N files of M bytes from a loopback HTTP server (a separate process), then times
(a) the `ingest` flow on a temporary Prefect server, (b) a bare downloader doing the same
work (stream, sha256, write to disk) at the same concurrency, and (c) an unchanged re-run
of the flow (conditional requests -> 304). Prints both wall times, a/b and c/a.

    hatch run bench:ingest -- --files 200 --size-mib 1
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


# A threaded HTTP/1.1 (keep-alive) file server; answers If-Modified-Since with 304.
SERVER = """
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops SYNs when 8 clients connect at once
h = functools.partial(H, directory=sys.argv[2])
S(("127.0.0.1", int(sys.argv[1])), h).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_files(folder: Path, count: int, size: int) -> None:
    for i in range(count):
        # distinct content per file, cheap to generate
        block = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
        (folder / f"f{i:04d}.bin").write_bytes(block[:size])


async def bare_download(urls: list[str], out: Path, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(url: str) -> None:
            async with gate, client.stream("GET", url) as response:
                response.raise_for_status()
                digest = hashlib.sha256()
                with open(out / url.rsplit("/", 1)[-1], "wb") as fh:
                    async for chunk in response.aiter_bytes(1024 * 1024):
                        digest.update(chunk)
                        fh.write(chunk)

        await asyncio.gather(*(one(u) for u in urls))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    served = work / "served"
    served.mkdir()
    make_files(served, args.files, int(args.size_mib * 1024 * 1024))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(served)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        urls = [f"{base}/f{i:04d}.bin" for i in range(args.files)]
        sources = [{"name": f"s{i:04d}", "url": u} for i, u in enumerate(urls)]
        os.environ["ALPHA_DATA_ROOT"] = str(work / "flow")
        os.environ["ALPHA_CONCURRENCY"] = str(args.concurrency)

        from prefect.testing.utilities import prefect_test_harness

        from flows_alpha.ingest import ingest
        from pipeline_core.ingestion import ingest_sources
        from pipeline_core.settings import AlphaSettings
        from pipeline_core.sources import parse_sources
        from pipeline_core.storage import LocalStorage

        with prefect_test_harness(server_startup_timeout=120):
            # warm-up: imports, client, DB; not measured
            asyncio.run(ingest(sources=sources[:1], return_state=True))
            shutil.rmtree(work / "flow")

            # Each step starts after a pause, so the Prefect server's background work for
            # the previous step (recording events, logs) does not bleed into the next timing.
            settle = 3.0
            (work / "bare").mkdir()
            time.sleep(settle)
            t0 = time.perf_counter()
            asyncio.run(bare_download(urls, work / "bare", args.concurrency))
            bare = time.perf_counter() - t0

            time.sleep(settle)
            t0 = time.perf_counter()
            state = asyncio.run(ingest(sources=sources, return_state=True))
            flow_first = time.perf_counter() - t0
            assert state.is_completed(), state.message

            time.sleep(settle)
            t0 = time.perf_counter()
            state = asyncio.run(ingest(sources=sources, return_state=True))
            flow_rerun = time.perf_counter() - t0
            assert state.is_completed(), state.message

            # the same pipeline_core code without Prefect: what the flow itself adds
            settings = AlphaSettings(data_root=work / "plain", concurrency=args.concurrency)
            storage = LocalStorage(settings.data_root)
            wanted = parse_sources(sources)
            time.sleep(settle)
            t0 = time.perf_counter()
            asyncio.run(ingest_sources(wanted, storage=storage, settings=settings, run_id="p1"))
            plain_first = time.perf_counter() - t0
            time.sleep(settle)
            t0 = time.perf_counter()
            asyncio.run(ingest_sources(wanted, storage=storage, settings=settings, run_id="p2"))
            plain_rerun = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    mib = args.files * args.size_mib
    print(
        f"files={args.files} size={args.size_mib} MiB total={mib:.0f} MiB concurrency={args.concurrency}"
    )
    print(f"(b) bare asyncio+httpx      : {bare:7.2f} s  ({mib / bare:6.1f} MiB/s)")
    print(f"(a) ingest flow, first run  : {flow_first:7.2f} s  ({mib / flow_first:6.1f} MiB/s)")
    print(f"(c) ingest flow, unchanged  : {flow_rerun:7.2f} s")
    print(
        f"(d) pipeline_core, no Prefect: {plain_first:7.2f} s first, {plain_rerun:.2f} s unchanged"
    )
    print(f"ratio a/b = {flow_first / bare:.2f}   (goal <= 1.5)")
    print(f"re-run c/a = {flow_rerun / flow_first:.3f} (goal <= 0.1)")


if __name__ == "__main__":
    main()
