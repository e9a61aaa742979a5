"""Fixtures for pipeline_core tests: a local store, fast settings and a raw TCP server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline_core.settings import PipelineSettings
from pipeline_core.storage import LocalStorage


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def storage(data_root: Path) -> LocalStorage:
    return LocalStorage(data_root)


@pytest.fixture
def settings(data_root: Path) -> PipelineSettings:
    # Fast policy for tests: short timeouts, quick backoff.
    return PipelineSettings(
        data_root=data_root,
        concurrency=4,
        connect_timeout=2,
        read_timeout=1,
        total_timeout=20,
        max_bytes=1024 * 1024,
        max_retries=2,
        backoff_seconds=0.05,
        max_backoff_seconds=2,
        max_redirects=3,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def raw_server() -> Iterator[Callable[[bytes, float], str]]:
    """Serve one canned raw HTTP response (then hang for `hold` seconds) on 127.0.0.1.

    For responses a well-behaved HTTP server refuses to send: bodies shorter than their
    Content-Length, or a server that stops sending mid-body.
    """
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, threading.Thread]] = []

    def start(response: bytes, hold: float = 0.0) -> str:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        port_box: list[int] = []
        stop = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), hold)
            writer.close()

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port_box.append(server.sockets[0].getsockname()[1])
            ready.set()
            async with server:
                await stop.wait()

        thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
        thread.start()
        ready.wait(5)
        running.append((loop, stop, thread))
        return f"http://127.0.0.1:{port_box[0]}"

    yield start
    for loop, stop, thread in running:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
