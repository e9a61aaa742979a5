"""The worker image is also the Kubernetes worker (deploy/workers/kubernetes/): prefect-kubernetes
is installed in it, at the version whose default base job template the Kubernetes pool's
template extends (deploy/work_pools/kubernetes-job-template.json). All offline."""

from __future__ import annotations

import json
from pathlib import Path

from tests.image.conftest import RunInImage


def test_the_image_starts_a_kubernetes_worker(run_in_image: RunInImage) -> None:
    proc = run_in_image("prefect", "worker", "start", "--type", "kubernetes", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--with-healthcheck" in proc.stdout


def test_the_pool_template_extends_the_image_s_prefect_kubernetes_default(
    run_in_image: RunInImage, repo_root: Path
) -> None:
    proc = run_in_image(
        "python", "-c",
        "import json; from prefect_kubernetes.worker import KubernetesWorker as W; "
        "print(json.dumps(W.get_default_base_job_template()))",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    default = json.loads(proc.stdout)["variables"]["properties"]
    ours = json.loads((repo_root / "deploy/work_pools/kubernetes-job-template.json").read_text())
    ours = ours["variables"]["properties"]
    assert set(ours) - set(default) == {"run_as_user"}
    assert set(default) <= set(ours)
