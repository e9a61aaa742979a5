"""The Kubernetes variant, offline: its job variables are the worker type's, and the Job
manifest prefect-kubernetes renders from them (exactly as its worker does) runs the image by
digest, non-root, with requests and limits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from deploy_tools.remote.service import load_remote_file, remote_setup_files
from deploy_tools.settings import load_settings
from deploy_tools.setup import load_plan
from deploy_tools.setup.pools import base_job_template, kubernetes_job

IMAGE_REF = "127.0.0.1:5000/airnub-worker@sha256:" + "ab" * 32


@pytest.fixture
def k8s(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The pool's template as setup apply sends it, and the deployments' job variables (the
    fixture project alpha's prefect.k8s.yaml)."""
    monkeypatch.setenv("AIRNUB_DEMO_DATA_URL", "https://files.example.com")
    settings = load_settings(checkout)
    plan = load_plan(remote_setup_files(settings), base=settings.project_dir, target="remote")
    (pool,) = [p for p in plan.work_pools if p.type == "kubernetes"]
    spec = load_remote_file(settings.project("alpha").deploy_dir / "prefect.k8s.yaml")
    jobs = []
    for d in spec["deployments"]:
        assert d["work_pool"]["name"] == pool.name
        jv = dict(d["work_pool"]["job_variables"])
        assert jv["image"] == "{{ push.image_ref }}"
        jobs.append({**jv, "image": IMAGE_REF, "env": {**jv["env"], "ALPHA_STORAGE_BLOCK": ""}})
    return base_job_template(pool), jobs


def test_the_template_keeps_every_variable_of_prefect_kubernetes_default(
    k8s: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    from prefect_kubernetes.worker import KubernetesWorker

    template, jobs = k8s
    default = KubernetesWorker.get_default_base_job_template()["variables"]["properties"]
    ours = template["variables"]["properties"]
    assert set(default) <= set(ours)
    assert set(ours) - set(default) == {"run_as_user"}
    for jv in jobs:
        assert set(jv) <= set(default), set(jv) - set(default)  # validated against the default


def test_the_job_manifest_runs_the_digest_non_root_with_resources(
    k8s: tuple[dict[str, Any], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(name)  # prepare_for_flow_run copies this process's PREFECT_* settings
    template, jobs = k8s
    for jv in jobs:
        job = kubernetes_job(template, jv)
        assert job["kind"] == "Job"
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == IMAGE_REF
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["args"] == ["prefect", "flow-run", "execute"]
        assert container["resources"] == {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["ALPHA_DATA_ROOT"] == "/app/data/project_alpha_outputs"
        assert not any("AUTH" in k or "KEY" in k for k in env)
    assert (
        kubernetes_job(template, {**jobs[0], "run_as_user": 20002})["spec"]["template"]["spec"][
            "securityContext"
        ]["runAsUser"]
        == 20002
    )
