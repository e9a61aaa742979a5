"""Time to first green: `airnub deploy local --mode process` vs. the bare Prefect CLI sequence,
or (`--mode compose`) `airnub deploy local --mode compose` vs. the process mode.

Both start from an empty state folder (fresh SQLite database) in warm environments (same venv,
imports already compiled), on random free ports, with the same server and worker settings
(deploy_tools.server_settings). Each side ends when the demo `alpha_pipeline` run is Completed.

    python bench/first_green.py [--repeat N] [--mode process|compose]

The bare sequence: demo-data server, `prefect server start` (waited until healthy),
`prefect work-pool create`, `prefect variable set`, `prefect deploy --all`, `prefect worker start`,
`prefect deployment run --watch`. It creates no blocks, so it does a little less than airnub.

`--mode compose` times the compose stack with its images built (the worker image is built
before the clock starts, as `airnub-worker:bench`; PostgreSQL from AIRNUB_POSTGRES_IMAGE or the
official one): a `git clone` of this checkout's HEAD, a fresh PostgreSQL volume, every
container started, setup applied, the demo run Completed. The baseline in the same run is the
process mode's first green.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from deploy_tools import server_settings
from deploy_tools.local.stack.processes import ManagedProcess
from deploy_tools.settings import workspace_members
from flows_alpha.demo_data import demo_data_dir, demo_sources

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIRNUB_"))}
    env.update(extra)
    return env


def _airnub(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN / "airnub", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip


def _time_deploy(cwd: Path, env: dict[str, str], mode: str, *ports: str) -> float:
    """Seconds for `airnub deploy local --mode <mode>` to demo Completed; then a second
    `deploy local` (timed, printed) and `stack down --volumes --yes`."""
    start = time.monotonic()
    result = _airnub(cwd, env, "deploy", "local", "--mode", mode, *ports)
    elapsed = time.monotonic() - start
    try:
        if result.returncode != 0 or "Completed" not in result.stdout:
            raise SystemExit(f"airnub deploy local failed:\n{result.stdout}\n{result.stderr}")
        rerun_start = time.monotonic()
        again = _airnub(cwd, env, "deploy", "local", "--mode", mode)
        rerun = time.monotonic() - rerun_start
        if again.returncode != 0 or "setup: nothing changed" not in again.stdout:
            raise SystemExit(f"second deploy local failed:\n{again.stdout}\n{again.stderr}")
        print(
            f"  {mode}: first green {elapsed:.1f} s, second deploy:local on the running stack "
            f"{rerun:.1f} s"
        )
    finally:
        _airnub(cwd, env, "stack", "down", "--volumes", "--yes")
    return elapsed


def airnub_first_green(work: Path) -> float:
    """Seconds for `airnub deploy local --mode process` in a fresh project (then stack down)."""
    shutil.copytree(REPO / "deploy", work / "deploy")
    shutil.copy(REPO / "pyproject.toml", work / "pyproject.toml")  # the [tool.airnub] table
    for member in workspace_members(REPO):  # each project's own table
        (work / member.relative_to(REPO)).mkdir(parents=True)
        shutil.copy(member / "pyproject.toml", work / member.relative_to(REPO) / "pyproject.toml")
    ports = ("--server-port", str(free_port()), "--data-port", str(free_port()))
    return _time_deploy(work, _env(), "process", *ports)


def compose_first_green(work: Path) -> float:
    """Seconds for `airnub deploy local --mode compose` in a fresh clone, images built."""
    clone = work / "checkout"
    subprocess.run(["git", "clone", "-q", "--local", str(REPO), str(clone)], check=True)
    keep = ("AIRNUB_BASE_IMAGE", "AIRNUB_POSTGRES_IMAGE")
    env = _env(
        **{k: v for k, v in os.environ.items() if k in keep},
        AIRNUB_IMAGE="airnub-worker:bench",
        AIRNUB_SERVER_PORT=str(free_port()),
        AIRNUB_DATA_PORT=str(free_port()),
        BUILDX_NO_DEFAULT_ATTESTATIONS="1",
    )
    built = _airnub(clone, env, "image", "build")
    if built.returncode != 0:
        raise SystemExit(f"airnub image build failed:\n{built.stderr}")
    return _time_deploy(clone, env, "compose")


def _bare_deploy_file(work: Path) -> Path:
    deployments = [
        {"name": "local", "entrypoint": ep, "work_pool": {"name": "alpha-local"}, "schedules": []}
        for ep in (
            "flows_alpha.ingest:ingest",
            "flows_alpha.process:process",
            "flows_alpha.pipeline:alpha_pipeline",
        )
    ]
    doc = {
        "name": "bench",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": str(work)}}],
        "deployments": deployments,
    }
    path = work / "prefect.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def bare_first_green(work: Path) -> float:
    """Seconds for the bare Prefect CLI sequence doing the same steps by hand."""
    port, data_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    data_root = work / "data" / "project_alpha_demo_outputs"
    home = work / "prefect-home"
    base = _env(PREFECT_HOME=str(home))
    server_env = {
        **base,
        **server_settings.server_env(
            host="127.0.0.1",
            port=port,
            database_url=server_settings.sqlite_url(work / "prefect.db"),
        ),
    }
    client_env = {**base, **server_settings.client_env(api_url=api)}
    worker_env = {
        **base,
        **server_settings.worker_env(api_url=api, data_roots={"ALPHA_DATA_ROOT": data_root}),
    }
    prefect = str(BIN / "prefect")
    deploy_file = _bare_deploy_file(work)
    procs: list[ManagedProcess] = []

    def background(name: str, cmd: list[str], env: dict[str, str]) -> None:
        procs.append(ManagedProcess(name, work))
        procs[-1].start(cmd, env=env, cwd=work)

    def run(*args: str) -> None:
        subprocess.run([prefect, *args], env=client_env, cwd=work, check=True, capture_output=True)

    start = time.monotonic()
    try:
        background(
            "data",
            [sys.executable, "-m", "http.server", str(data_port), "--bind", "127.0.0.1",
             "--directory", str(demo_data_dir())],
            base,
        )  # fmt: skip
        background(
            "server",
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            server_env,
        )
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        run("work-pool", "create", "alpha-local", "--type", "process", "--overwrite")
        sources = demo_sources(f"http://127.0.0.1:{data_port}")
        run("variable", "set", "alpha_sources", json.dumps(sources), "--overwrite")
        run("deploy", "--all", "--prefect-file", str(deploy_file))
        background("worker", [prefect, "worker", "start", "--pool", "alpha-local"], worker_env)
        run("deployment", "run", "alpha_pipeline/local", "--watch")
        return time.monotonic() - start
    finally:
        for p in procs:
            p.stop()


def main() -> None:
    """Alternate both sides `--repeat` times; print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--mode", choices=["process", "compose"], default="process")
    args = parser.parse_args()
    if args.mode == "compose":
        ours_name, base_name = "airnub deploy local --mode compose", "--mode process"
        ours_side, base_side = compose_first_green, airnub_first_green
    else:
        ours_name, base_name = "airnub deploy local", "bare Prefect CLI sequence"
        ours_side, base_side = airnub_first_green, bare_first_green
    ours, base = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            ours.append(ours_side(Path(a)))
            base.append(base_side(Path(b)))
        print(f"round {i + 1}: {ours_name} {ours[-1]:.1f} s, {base_name} {base[-1]:.1f} s")
    o, b = statistics.median(ours), statistics.median(base)
    print(
        f"first green, median of {args.repeat}: {ours_name} {o:.1f} s; "
        f"{base_name} {b:.1f} s; ratio {o / b:.2f}"
    )


if __name__ == "__main__":
    main()
