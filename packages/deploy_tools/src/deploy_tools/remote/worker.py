"""What starts the remote's workers for the image `deploy remote` just deployed: the commands it
prints at its end, one block per pool type the deployments use.

Docker: `deploy/workers/docker/compose.yaml` (copy it to any Docker host) with the image by
digest. Kubernetes: `deploy/workers/kubernetes/` (kustomize) with the digest set in its
`images:` entry. Credentials are named, never their values: the commands read them from the
shell's environment (`$PREFECT_API_AUTH_STRING` or `$PREFECT_API_KEY`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from deploy_tools.setup import SetupPlan

COMPOSE_FILE = Path("deploy/workers/docker/compose.yaml")
KUBERNETES_DIR = Path("deploy/workers/kubernetes")
DEFAULT_DOCKER_POOL = "airnub-docker"  # compose.yaml's ${AIRNUB_WORKER_POOL:-…}
KUBERNETES_IMAGE = "airnub-worker"  # the name the Deployment uses, replaced by `images:`
KUBERNETES_CREDENTIALS = "airnub-prefect-api"  # deployment.yaml's secretKeyRef (a name, no value)


def credential(environ: dict[str, str]) -> tuple[str, str]:
    """(environment variable, Secret key) of the credentials this deploy used: a Prefect Cloud
    key when PREFECT_API_KEY is set, else the basic-auth string."""
    if environ.get("PREFECT_API_KEY"):
        return "PREFECT_API_KEY", "api-key"
    return "PREFECT_API_AUTH_STRING", "auth-string"


def docker_command(image_ref: str, api_url: str, pool: str) -> str:
    """`docker compose … up` of the shared compose file for `image_ref` (the auth variable is
    read from the environment by compose, so it is not on the line)."""
    env = [f"AIRNUB_WORKER_IMAGE={image_ref}", f"PREFECT_API_URL={api_url}"]
    if pool != DEFAULT_DOCKER_POOL:
        env.append(f"AIRNUB_WORKER_POOL={pool}")
    if urlsplit(api_url).hostname in ("127.0.0.1", "localhost", "::1"):
        env.append("AIRNUB_WORKER_NETWORK_MODE=host")  # the API is this host's loopback
    words = " ".join(shlex.quote(e) for e in env)
    return (f"{words} AIRNUB_DOCKER_GID=$(stat -c %g /var/run/docker.sock) "
            f"docker compose -f {COMPOSE_FILE} up -d --wait")  # fmt: skip


def kubernetes_namespace(project_dir: Path) -> str:
    """The namespace of deploy/workers/kubernetes/kustomization.yaml."""
    import yaml

    data = yaml.safe_load((project_dir / KUBERNETES_DIR / "kustomization.yaml").read_text())
    return str(data["namespace"])


def kubernetes_commands(image_ref: str, api_url: str, namespace: str, key: str) -> list[str]:
    """Pin the digest in the kustomization, apply it, then the Secret the worker reads."""
    var = {"auth-string": "PREFECT_API_AUTH_STRING", "api-key": "PREFECT_API_KEY"}[key]
    return [
        f"(cd {KUBERNETES_DIR} && kustomize edit set image "
        f"{KUBERNETES_IMAGE}={shlex.quote(image_ref)}) && kubectl apply -k {KUBERNETES_DIR}",
        f"kubectl -n {namespace} create secret generic {KUBERNETES_CREDENTIALS} "
        f'--from-literal=api-url={shlex.quote(api_url)} --from-literal={key}="${var}"',
    ]


def start_commands(
    project_dir: Path,
    pools: Iterable[tuple[str, str]],
    image_ref: str,
    api_url: str,
    environ: dict[str, str],
) -> list[str]:
    """Lines to print: for each (pool name, type) the deployments use, how to start its worker.

    Example:
        >>> start_commands(Path("."), [("airnub-docker", "docker")], "r/w@sha256:ab",
        ...                "https://p.example/api", {})[1]  # doctest: +ELLIPSIS
        '  AIRNUB_WORKER_IMAGE=r/w@sha256:ab PREFECT_API_URL=https://p.example/api AIRNUB_DOCKER_GID=...'
    """
    var, key = credential(environ)
    lines: list[str] = []
    for pool, kind in sorted(set(pools)):
        if kind == "docker":
            lines += [
                f"Worker for {pool} on any Docker host (copy {COMPOSE_FILE} there; {var} "
                "exported, as for this deploy):",
                f"  {docker_command(image_ref, api_url, pool)}",
            ]
        elif kind == "kubernetes":
            namespace = kubernetes_namespace(project_dir)
            lines += [
                f"Worker for {pool} in Kubernetes ({KUBERNETES_DIR}, namespace {namespace}; "
                f"{var} exported; the Secret once):",
                *(f"  {c}" for c in kubernetes_commands(image_ref, api_url, namespace, key)),
            ]
        else:
            lines.append(f"Worker for {pool}: prefect worker start --type {kind} --pool {pool}")
    return lines


def commands_for(
    project_dir: Path,
    plan: SetupPlan,
    deployments: dict[str, list[dict[str, Any]]],
    image_ref: str,
    api_url: str,
) -> list[str]:
    """`start_commands` for the pools `deployments` (each project's) use, with the digest
    deployed (`image_ref`) and the credentials of this process's environment."""
    used = {d["work_pool"]["name"] for entries in deployments.values() for d in entries}
    pools = [(p.name, p.type) for p in plan.work_pools if p.name in used]
    return start_commands(project_dir, pools, image_ref, api_url, dict(os.environ))
