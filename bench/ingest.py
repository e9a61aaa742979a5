"""Benchmark: the ingest flow against a bare asyncio + httpx downloader, same server, same run.

Serves N files of M bytes from a loopback HTTP server (a separate process), then times
(a) the `ingest` flow on a temporary Prefect server, (b) a bare downloader doing the same
work (stream, sha256, write to disk) at the same concurrency, and (c) an unchanged re-run
of the flow (conditional requests -> 304); then (d, e) the same pipeline_core code without
Prefect. Every step starts with dirty pages flushed (`os.sync`) and runs `--repeat` times.

Prints only its figures: the runs, their medians, a/b, c - e (Prefect's share of the
unchanged run), c/a, peak RSS per step and the load average. Every log line (Prefect's,
structlog's, the temporary Prefect server's) goes to the log file it names.

    hatch run bench:ingest -- --files 200 --size-mib 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Any

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


def capture_output(log_file: Path) -> IO[str]:
    """Send file descriptors 1 and 2 to `log_file`; returns a stream on the former stdout.

    At the descriptor level, so Prefect's console handler, structlog, warnings and child
    processes (the temporary Prefect server) all write to the file, not the terminal.
    """
    figures = os.fdopen(os.dup(1), "w", buffering=1)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return figures


def reset_peak_rss() -> None:
    """Restart this process's peak-RSS counter (Linux >= 4.0; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """Peak RSS since the last `reset_peak_rss` (VmHWM), else since the process began."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def children_cpu_seconds(skip: int) -> float:
    """CPU seconds used so far by this process's live children except `skip` (the file
    server): the temporary Prefect server. Linux only; 0 elsewhere."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        kids = {
            int(pid)
            for children in Path("/proc/self/task").glob("*/children")
            for pid in children.read_text().split()
        }
        for pid in kids - {skip}:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    except OSError:
        pass
    return total


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
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="where every log line goes (default: a new bench-ingest-*.log in the temp dir)",
    )
    args = parser.parse_args()
    if args.log_file is None:
        fd, name = tempfile.mkstemp(prefix="bench-ingest-", suffix=".log")
        os.close(fd)
        args.log_file = Path(name)
    log_file = args.log_file.resolve()
    print(f"logs: {log_file}", flush=True)
    out = capture_output(log_file)
    try:
        run(args, out, log_file)
    except BaseException:
        out.write(f"bench failed; the traceback is in {log_file}\n")
        raise


def run(args: argparse.Namespace, out: IO[str], log_file: Path) -> None:
    """The steps and the figures; stdout/stderr already point at the log file."""
    load_before = os.getloadavg()

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
        peaks: dict[str, list[float]] = {k: [] for k in "abcde"}
        # CPU seconds, much less sensitive than wall time to other work on the machine:
        # this process, and the Prefect server (counted until 1.5 s after the step, as it
        # records events and logs in the background).
        cpu: dict[str, list[float]] = {k: [] for k in "abcde"}
        server_cpu: dict[str, list[float]] = {k: [] for k in "abcde"}

        from prefect.testing.utilities import prefect_test_harness

        from flows_alpha.ingest import ingest
        from pipeline_core.ingestion import ingest_sources
        from pipeline_core.settings import PipelineSettings
        from pipeline_core.sources import parse_sources
        from pipeline_core.storage import LocalStorage

        def settle() -> None:
            # Each step starts from the same state: the previous step's dirty pages written
            # out (otherwise writeback of 200 MiB throttles whichever step comes next) and
            # the Prefect server's background work (events, logs) given time to finish.
            os.sync()
            time.sleep(2.0)

        def timed(
            key: str,
            step: Callable[..., Coroutine[Any, Any, Any]],
            *step_args: Any,
            **step_kwargs: Any,
        ) -> None:
            settle()
            reset_peak_rss()
            server0 = children_cpu_seconds(skip=server.pid)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            result = asyncio.run(step(*step_args, **step_kwargs))
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - cpu0)
            peaks[key].append(peak_rss_mib())
            time.sleep(1.5)
            server_cpu[key].append(children_cpu_seconds(skip=server.pid) - server0)
            if hasattr(result, "is_completed"):  # a flow's final state
                assert result.is_completed(), result.message

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
                timed("b", bare_download, urls, bare_dir, args.concurrency)
                os.environ["ALPHA_DATA_ROOT"] = str(work / f"flow{r}")
                timed("a", flow_run)
                timed("c", flow_run)
                # the same pipeline_core code without Prefect: what the flow itself adds
                settings = PipelineSettings(
                    data_root=work / f"plain{r}", concurrency=args.concurrency
                )
                plain = functools.partial(
                    ingest_sources,
                    wanted,
                    storage=LocalStorage(settings.data_root),
                    settings=settings,
                )
                timed("d", plain, run_id="p1")
                timed("e", plain, run_id="p2")
                for folder in (bare_dir, work / f"flow{r}", work / f"plain{r}"):
                    shutil.rmtree(folder)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    mib = args.files * args.size_mib
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def row(label: str, key: str) -> str:
        runs = " ".join(f"{t:.2f}" for t in times[key])
        return (
            f"{label:<30}: {med[key]:6.2f} s median  [{runs}]"
            f"  CPU {statistics.median(cpu[key]):5.2f} s + server {statistics.median(server_cpu[key]):4.2f} s"
            f"  peak RSS {statistics.median(peaks[key]):4.0f} MiB"
        )

    def goal(value: float, limit: float) -> str:
        return "met" if value <= limit else "missed"

    per_run = " ".join(f"{a / b:.2f}" for a, b in zip(times["a"], times["b"], strict=True))
    a_b = med["a"] / med["b"]
    c_e = med["c"] - med["e"]
    lines = [
        f"files={args.files} size={args.size_mib} MiB total={mib:.0f} MiB "
        f"concurrency={args.concurrency} repeat={args.repeat}",
        row("(b) bare asyncio+httpx", "b") + f"  {mib / med['b']:6.1f} MiB/s",
        row("(a) ingest flow, first run", "a") + f"  {mib / med['a']:6.1f} MiB/s",
        row("(c) ingest flow, unchanged", "c"),
        row("(d) pipeline_core, first run", "d"),
        row("(e) pipeline_core, unchanged", "e"),
        f"a/b   = {a_b:.2f}    (goal <= 1.3: {goal(a_b, 1.3)})  per run [{per_run}]",
        f"c - e = {c_e:.2f} s  (goal <= 0.1 s: {goal(c_e, 0.1)})  Prefect's share of the unchanged run",
        f"a - d = {med['a'] - med['d']:.2f} s  Prefect's share of the first run",
        "Prefect's CPU in the unchanged run (c - e): "
        f"{statistics.median(cpu['c']) - statistics.median(cpu['e']):.2f} s in this process "
        f"+ {statistics.median(server_cpu['c']) - statistics.median(server_cpu['e']):.2f} s "
        "in the Prefect server",
        f"c/a   = {med['c'] / med['a']:.2f}",
        f"peak RSS of this process: {process_peak:.0f} MiB (Prefect client, flows, bare downloader)",
        "load average (1, 5, 15 min): "
        f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.2f}' for x in load_after)} after",
        f"logs: {log_file}",
    ]
    out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
