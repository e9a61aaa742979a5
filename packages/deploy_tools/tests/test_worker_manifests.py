"""The remote workers as code (deploy/workers/), offline: every Kubernetes manifest validates
against Kubernetes' own schemas (kubernetes-validate), the Job the Kubernetes worker would
submit for each project's prefect.k8s.yaml (rendered by prefect-kubernetes' own code) too, and
the Docker host's compose file needs nothing but the image by digest and the environment.

These read this repository's deploy/ files (not the fixture checkout): they are what ships.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy_tools.remote import worker
from deploy_tools.remote.service import load_remote_file, remote_files, remote_setup_files
from deploy_tools.settings import load_settings
from deploy_tools.setup import load_plan
from deploy_tools.setup.pools import base_job_template, kubernetes_job

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "workers" / "kubernetes"
COMPOSE = REPO / "deploy" / "workers" / "docker" / "compose.yaml"
DIGEST = "sha256:" + "ab" * 32
IMAGE_REF = f"127.0.0.1:5000/airnub-worker@{DIGEST}"
K8S_VERSION = kubernetes_validate.latest_version()


def validate(resource: dict[str, Any], *, strict: bool = True) -> None:
    """Kubernetes' schema for the resource's apiVersion/kind; strict: no unknown field."""
    try:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=strict)
    except kubernetes_validate.ValidationError as exc:
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        raise AssertionError(f"{name}: {exc.message} at {list(exc.path)}") from None


def pools(kind: str) -> dict[str, dict[str, Any]]:
    """deploy/work_pools/*.yaml of `kind`, by name."""
    found = {}
    for path in sorted((REPO / "deploy" / "work_pools").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if spec["type"] == kind:
            found[spec["name"]] = spec
    return found


def pool_of(args: list[str]) -> str:
    return args[args.index("--pool") + 1]


# -- Kubernetes ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


@pytest.fixture(scope="module")
def rendered(kustomization: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The resources as `kubectl apply -k` sends them once the digest is set (`kustomize edit
    set image airnub-worker=<ref>`): the kustomization's namespace on each namespaced one, the
    image replaced by its `images:` entry. By kind."""
    (entry,) = kustomization["images"]
    out = {}
    for name in kustomization["resources"]:
        res = yaml.safe_load((K8S / name).read_text())
        if res["kind"] != "Namespace":
            res["metadata"]["namespace"] = kustomization["namespace"]
        if res["kind"] == "Deployment":
            for c in res["spec"]["template"]["spec"]["containers"]:
                if c["image"] == entry["name"]:
                    c["image"] = f"{IMAGE_REF.split('@')[0]}@{entry['digest']}"
        out[res["kind"]] = res
    return out


def test_every_kubernetes_manifest_validates_strictly(
    kustomization: dict[str, Any], rendered: dict[str, dict[str, Any]]
) -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk  # no manifest left out of the apply
    assert set(rendered) == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment"}
    for res in rendered.values():
        validate(res)


def test_the_image_is_pinned_by_digest_in_the_kustomization(
    kustomization: dict[str, Any], rendered: dict[str, dict[str, Any]]
) -> None:
    (entry,) = kustomization["images"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"])
    assert "newTag" not in entry
    (container,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    raw = yaml.safe_load((K8S / "deployment.yaml").read_text())
    assert raw["spec"]["template"]["spec"]["containers"][0]["image"] == entry["name"]
    assert container["image"].endswith("@" + entry["digest"])
    assert entry["name"] == worker.KUBERNETES_IMAGE  # what deploy:remote's command sets


def test_the_worker_deployment_is_non_root_probed_limited_and_reads_a_secret(
    kustomization: dict[str, Any], rendered: dict[str, dict[str, Any]]
) -> None:
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(c["resources"]) == {"requests", "limits"}
    for part in c["resources"].values():
        assert set(part) == {"cpu", "memory"}
    assert c["args"][:5] == ["prefect", "worker", "start", "--type", "kubernetes"]
    assert "--with-healthcheck" in c["args"]
    assert pool_of(c["args"]) in pools("kubernetes")
    env = {e["name"]: e for e in c["env"]}
    port = int(env["PREFECT_WORKER_WEBSERVER_PORT"]["value"])
    assert env["PREFECT_WORKER_WEBSERVER_HOST"]["value"] == "0.0.0.0"  # the kubelet's probes
    (named,) = [p for p in c["ports"] if p["containerPort"] == port]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": named["name"]}
    for name, key in [("PREFECT_API_URL", "api-url"), ("PREFECT_API_AUTH_STRING", "auth-string"),
                      ("PREFECT_API_KEY", "api-key")]:  # fmt: skip
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (worker.KUBERNETES_CREDENTIALS, key)
        assert "value" not in env[name]
    observed = env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["valueFrom"]
    assert observed == {"fieldRef": {"fieldPath": "metadata.namespace"}}  # not cluster-wide
    assert pod["serviceAccountName"] == rendered["ServiceAccount"]["metadata"]["name"]


def test_the_role_grants_what_the_kubernetes_worker_does_and_the_binding_names_it(
    kustomization: dict[str, Any], rendered: dict[str, dict[str, Any]]
) -> None:
    granted = {
        (group, res, verb)
        for rule in rendered["Role"]["rules"]
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete")}
    needed |= {("", "pods", v) for v in ("get", "list", "watch")}
    needed |= {("", "pods/log", "get"), ("", "events", "create")}
    assert needed <= granted, needed - granted
    assert not any(res == "secrets" or verb == "*" for _, res, verb in granted)
    binding = rendered["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": rendered["Role"]["metadata"]["name"]}  # fmt: skip
    assert binding["subjects"] == [{"kind": "ServiceAccount", "namespace": kustomization["namespace"],
                                    "name": rendered["ServiceAccount"]["metadata"]["name"]}]  # fmt: skip
    assert rendered["Namespace"]["metadata"]["name"] == kustomization["namespace"]


# -- the Job the Kubernetes worker submits --------------------------------------------------


_STEP = re.compile(r"\{\{\s*push\.image_ref\s*\}\}")
_ENV = re.compile(r"\{\{\s*\$\w+\s*\}\}")


def resolve(value: Any) -> Any:
    """A deployment's job variables as `prefect deploy` resolves them: the pushed image, and
    `{{ $VAR }}` of an unset variable empty."""
    if isinstance(value, str):
        return _ENV.sub("", _STEP.sub(IMAGE_REF, value))
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


@pytest.fixture(scope="module")
def kubernetes_pool() -> tuple[str, dict[str, Any]]:
    """The remote's Kubernetes pool as setup apply sends it: name, base job template."""
    settings = load_settings(REPO)
    shared = remote_setup_files(settings)[:1]  # deploy/ itself: the pools (not the projects')
    plan = load_plan(shared, base=settings.project_dir, target="remote")
    (pool,) = [p for p in plan.work_pools if p.type == "kubernetes"]
    return pool.name, base_job_template(pool)


def job_values() -> list[tuple[str, dict[str, Any]]]:
    """(where, job variables): one built here, then every deployment of every project's
    prefect.k8s.yaml."""
    out = [("built", {"image": IMAGE_REF, "cpu_request": "100m", "cpu_limit": "500m",
                      "memory_request": "128Mi", "memory_limit": "256Mi"})]  # fmt: skip
    for project, path in remote_files(load_settings(REPO), "prefect.k8s.yaml").items():
        for i, d in enumerate(load_remote_file(path)["deployments"]):
            out.append((f"{project} deployments[{i}]", resolve(d["work_pool"]["job_variables"])))
    return out


def test_the_job_the_worker_submits_is_a_valid_non_root_job_of_the_digest(
    kubernetes_pool: tuple[str, dict[str, Any]],
    kustomization: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [k for k in os.environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(name)  # prepare_for_flow_run copies this process's PREFECT_* settings
    _, template = kubernetes_pool
    for where, values in job_values():
        job = kubernetes_job(template, values)
        assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job"), where
        # prefect-kubernetes' default template puts completions and parallelism (Job fields)
        # in the pod spec; the API server drops them. Everything else is strictly valid.
        pod = job["spec"]["template"]["spec"]
        assert (pod.pop("completions"), pod.pop("parallelism")) == (1, 1)
        validate(job)
        # the worker's Role covers its own namespace only: the Jobs must be created there
        assert job["metadata"]["namespace"] == kustomization["namespace"], where
        (c,) = pod["containers"]
        assert c["image"] == IMAGE_REF, where
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}  # fmt: skip
        for part in ("requests", "limits"):
            assert set(c["resources"][part]) == {"cpu", "memory"}, where
        assert c["resources"]["limits"]["memory"] == values["memory_limit"]
        assert not any("AUTH" in e["name"] or "KEY" in e["name"] for e in c["env"]), where


def test_the_job_without_a_digest_is_still_rendered_so_the_assertion_above_means_something(
    kubernetes_pool: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(name)
    job = kubernetes_job(kubernetes_pool[1], {"image": "airnub-worker:latest"})
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "airnub-worker:latest"
    with pytest.raises(AssertionError, match="Job/"):
        validate({**job, "spec": {**job["spec"], "no_such_field": 1}})


# -- Docker --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_the_compose_worker_needs_only_the_image_by_digest_and_the_environment(
    compose: dict[str, Any],
) -> None:
    text = yaml.safe_dump(compose)  # what compose reads (not the comments)
    (svc,) = compose["services"].values()
    assert svc["image"].startswith("${AIRNUB_WORKER_IMAGE:?")
    assert "name@sha256:" in svc["image"]  # the error says what to give
    assert svc["pull_policy"] == "missing"
    assert svc["restart"] == "unless-stopped"
    for nothing_local in ("env_file", "build", "ports", "extends"):
        assert nothing_local not in svc
    for word in (".local", "server.env", "worker.env", "POSTGRES_PASSWORD", "alpha"):
        assert word not in text
    env = svc["environment"]
    assert env["PREFECT_API_URL"].startswith("${PREFECT_API_URL:?")
    assert env["PREFECT_API_AUTH_STRING"] is None and env["PREFECT_API_KEY"] is None  # pass-through
    assert svc["group_add"] == [
        "${AIRNUB_DOCKER_GID:?AIRNUB_DOCKER_GID is not set - the group id of the Docker socket, "
        "from stat -c %g /var/run/docker.sock}"
    ]
    assert any(v.endswith(":/var/run/docker.sock") for v in svc["volumes"])
    assert svc["mem_limit"] and svc["cpus"]
    assert env["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
    assert "/health" in " ".join(svc["healthcheck"]["test"])


def test_the_compose_worker_starts_a_docker_worker_for_a_pool_a_file_defines(
    compose: dict[str, Any],
) -> None:
    (svc,) = compose["services"].values()
    cmd = svc["command"]
    assert cmd[:5] == ["prefect", "worker", "start", "--type", "docker"]
    assert "--with-healthcheck" in cmd
    default = re.fullmatch(r"\$\{AIRNUB_WORKER_POOL:-(.+)\}", pool_of(cmd))
    assert default and default.group(1) in pools("docker")
    assert default.group(1) == worker.DEFAULT_DOCKER_POOL


def test_the_image_default_command_names_a_docker_pool_a_file_defines() -> None:
    (line,) = [ln for ln in (REPO / "Dockerfile.worker").read_text().splitlines()
               if ln.startswith("CMD ")]  # fmt: skip
    assert pool_of(json.loads(line[4:])) in pools("docker")


# -- what deploy:remote prints ------------------------------------------------------------
def test_the_printed_commands_name_the_digest_and_never_a_secret(
    kustomization: dict[str, Any],
) -> None:
    secret = "airnub:s3cr3t-value"
    env = {"PREFECT_API_AUTH_STRING": secret}
    lines = worker.start_commands(
        REPO, [("airnub-docker", "docker"), ("airnub-kubernetes", "kubernetes")],
        IMAGE_REF, "https://prefect.example/api", env,
    )  # fmt: skip
    text = "\n".join(lines)
    assert secret not in text
    docker = next(ln.strip() for ln in lines if "docker compose" in ln)
    assert docker.startswith(
        f"AIRNUB_WORKER_IMAGE={IMAGE_REF} PREFECT_API_URL=https://prefect.example/api "
    )
    assert docker.endswith("docker compose -f deploy/workers/docker/compose.yaml up -d --wait")
    assert "AIRNUB_WORKER_NETWORK_MODE" not in docker and "AIRNUB_WORKER_POOL" not in docker
    assert f"kustomize edit set image airnub-worker={IMAGE_REF}" in text
    assert "kubectl apply -k deploy/workers/kubernetes" in text
    assert (f"kubectl -n {kustomization['namespace']} create secret generic airnub-prefect-api "
            '--from-literal=api-url=https://prefect.example/api '
            '--from-literal=auth-string="$PREFECT_API_AUTH_STRING"') in text  # fmt: skip
    cloud = worker.start_commands(REPO, [("airnub-kubernetes", "kubernetes")], IMAGE_REF,
                                  "https://api.prefect.cloud/api/x", {"PREFECT_API_KEY": "pnu_x"})  # fmt: skip
    assert '--from-literal=api-key="$PREFECT_API_KEY"' in "\n".join(cloud)
    assert "pnu_x" not in "\n".join(cloud)
    local = worker.docker_command(IMAGE_REF, "http://127.0.0.1:4200/api", "other-pool")
    assert "AIRNUB_WORKER_NETWORK_MODE=host" in local and "AIRNUB_WORKER_POOL=other-pool" in local
