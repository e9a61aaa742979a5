"""The compose worker's container entry (`airnub stack worker`): end what an earlier worker left,
then become `prefect worker start`.

The compose worker is its data folder's only writer and its pool's only worker, so what a
killed container left behind cannot belong to a live run: its temp files go, whatever their
age, and its runs end Crashed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NoReturn

from deploy_tools.local.runs import CRASHED_MESSAGE, end_interrupted_runs, sweep_temp_files
from deploy_tools.reporting import Reporter
from deploy_tools.settings import AirnubSettings


def run_worker(
    settings: AirnubSettings,
    reporter: Reporter,
    worker_args: Sequence[str],
    *,
    api_url: str,
    sweep_older_than: float = 0,
) -> NoReturn:
    """Sweep the data roots, end the pool's interrupted runs as Crashed, set umask 002, then
    exec `prefect worker start <worker_args>`."""
    sweep_temp_files(settings, reporter.info, max_age=sweep_older_than)
    crashed = end_interrupted_runs(api_url, settings.local_pool, CRASHED_MESSAGE, "CRASHED")
    for run in crashed:
        reporter.info(f"flow run {run.name}: {run.previous} → Crashed (its worker had stopped)")
    os.umask(0o002)  # group-writable files: the host user's group (docs/local-stack.md)
    # exec: the worker becomes the container's main process and gets its stop signal.
    os.execvp("prefect", ["prefect", "worker", "start", *worker_args])  # noqa: S606
