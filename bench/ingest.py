"""Benchmark: the ingest flow against a bare asyncio + httpx downloader, same server, same run.

Serves N files of M bytes from a loopback HTTP server (a separate process), then times
(a) the `ingest` flow on a temporary Prefect server, (b) a bare downloader doing the same
work (stream, sha256, write to disk) at the same concurrency, and (c) an unchanged re-run
of the flow (conditional requests -> 304); then the same pipeline_core code without Prefect.
Every step starts with dirty pages flushed (`os.sync`) and runs `--repeat` times; prints
the runs, their medians, a/b and c/a.

    hatch run bench:ingest -- --files 200 --size-mib 1
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


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
                    async for chunk in response.aiter_bytes():  # as the socket delivers
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
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step; medians")
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
        os.environ["ALPHA_CONCURRENCY"] = str(args.concurrency)
        times: dict[str, list[float]] = {k: [] for k in "abcde"}

        from prefect.testing.utilities import prefect_test_harness

        from flows_alpha.ingest import ingest
        from pipeline_core.ingestion import ingest_sources
        from pipeline_core.settings import AlphaSettings
        from pipeline_core.sources import parse_sources
        from pipeline_core.storage import LocalStorage

        def settle() -> None:
            # Each step starts from the same state: the previous step's dirty pages written
            # out (otherwise writeback of 200 MiB throttles whichever step comes next) and
            # the Prefect server's background work (events, logs) given time to finish.
            os.sync()
            time.sleep(2.0)

        def timed(
            step: Callable[..., Coroutine[Any, Any, Any]], *step_args: Any, **step_kwargs: Any
        ) -> float:
            settle()
            t0 = time.perf_counter()
            result = asyncio.run(step(*step_args, **step_kwargs))
            elapsed = time.perf_counter() - t0
            if hasattr(result, "is_completed"):  # a flow's final state
                assert result.is_completed(), result.message
            return elapsed

        def flow_run() -> Coroutine[Any, Any, Any]:
            return ingest(sources=sources, return_state=True)  # type: ignore[no-any-return]

        wanted = parse_sources(sources)
        with prefect_test_harness(server_startup_timeout=120):
            # warm-up: imports, client, DB; not measured
            os.environ["ALPHA_DATA_ROOT"] = str(work / "warm")
            asyncio.run(ingest(sources=sources[:1], return_state=True))
            for r in range(args.repeat):
                bare_dir = work / f"bare{r}"
                bare_dir.mkdir()
                times["b"].append(timed(bare_download, urls, bare_dir, args.concurrency))
                os.environ["ALPHA_DATA_ROOT"] = str(work / f"flow{r}")
                times["a"].append(timed(flow_run))
                times["c"].append(timed(flow_run))
                # the same pipeline_core code without Prefect: what the flow itself adds
                settings = AlphaSettings(data_root=work / f"plain{r}", concurrency=args.concurrency)
                plain = functools.partial(
                    ingest_sources,
                    wanted,
                    storage=LocalStorage(settings.data_root),
                    settings=settings,
                )
                times["d"].append(timed(plain, run_id="p1"))
                times["e"].append(timed(plain, run_id="p2"))
                for folder in (bare_dir, work / f"flow{r}", work / f"plain{r}"):
                    shutil.rmtree(folder)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    mib = args.files * args.size_mib

    def row(label: str, key: str) -> str:
        runs = " ".join(f"{t:.2f}" for t in times[key])
        return f"{label:<30}: {med[key]:6.2f} s median  [{runs}]"

    print(
        f"files={args.files} size={args.size_mib} MiB total={mib:.0f} MiB "
        f"concurrency={args.concurrency} repeat={args.repeat}"
    )
    print(row("(b) bare asyncio+httpx", "b") + f"  {mib / med['b']:6.1f} MiB/s")
    print(row("(a) ingest flow, first run", "a") + f"  {mib / med['a']:6.1f} MiB/s")
    print(row("(c) ingest flow, unchanged", "c"))
    print(row("(d) pipeline_core, first run", "d"))
    print(row("(e) pipeline_core, unchanged", "e"))
    print(f"ratio a/b  = {med['a'] / med['b']:.2f}   (goal <= 1.5)")
    print(f"re-run c/a = {med['c'] / med['a']:.3f}  (goal <= 0.1)")
    print(f"Prefect's share: a-d = {med['a'] - med['d']:.2f} s, c-e = {med['c'] - med['e']:.2f} s")


if __name__ == "__main__":
    main()
