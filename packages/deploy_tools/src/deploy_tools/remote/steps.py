"""Deployment steps for `deploy/prefect.yaml`: the reproducible image build and a push that
returns the pushed digest.

Prefect's `prefect deploy --all` runs `build:` and `push:` once per deployment, so both steps
remember their result for the process (three deployments: one build, one push). Under `airnub
deploy remote`, which has built and pushed the image already, they do neither: that command
hands its two results to `prefect deploy` in STACK_STEPS_DONE, and a step asked for the same
image returns them as they are (saying so in one line). prefect-docker's
`build_docker_image` is not used: it always adds an `io.prefect.version` label (another digest
than `airnub image build`) and cannot load an OCI-exported build. Its `push_docker_image`
returns no digest, and the deployments must name the image by digest.

In prefect.yaml::

    build:
      - deploy_tools.remote.steps.build_image:
          id: build
          tag: "{{ $AIRNUB_IMAGE }}"
    push:
      - deploy_tools.remote.steps.push_image:
          id: push
          image: "{{ build.image }}"
          registry: "{{ $AIRNUB_REGISTRY }}"
    … job_variables: {image: "{{ push.image_ref }}"}

A file whose pull steps run Prefect's `git_clone` (git in the flow-run container) sets
`with_git: true` on its build step: the image then has git (`airnub image build --with-git`).
`airnub deploy remote` checks that (`git_problems`) and builds with git when a file asks.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
DONE_ENV = "STACK_STEPS_DONE"  # {"build": build_image's outputs, "push": push_image's} (JSON)
BUILD_STEP = "deploy_tools.remote.steps.build_image"
GIT_CLONE_STEPS = (
    "prefect.deployments.steps.git_clone",
    "prefect.deployments.steps.pull.git_clone",
)


class StepError(RuntimeError):
    """A build or push step cannot go on; the message says what to set or fix."""


def _done() -> dict[str, dict[str, str]]:
    """The outputs `airnub deploy remote` got from these steps before running `prefect deploy`."""
    done: dict[str, dict[str, str]] = json.loads(os.environ.get(DONE_ENV) or "{}")
    return done


def _require(value: str, what: str, hint: str) -> str:
    # A `{{ $VAR }}` whose variable is unset reaches a step as "" (Prefect does not complain).
    if not value or not value.strip():
        raise StepError(f"{what} is empty: {hint}")
    return value.strip()


def _steps(steps: object) -> list[tuple[int, str, Any]]:
    """`(index, step name, its arguments)` of a prefect.yaml step list (anything else: none)."""
    if not isinstance(steps, list):
        return []
    return [(i, name, args) for i, step in enumerate(steps) if isinstance(step, Mapping)
            for name, args in step.items()]  # fmt: skip


def _asks_git(build: object) -> bool:
    return any(
        name == BUILD_STEP and isinstance(args, Mapping) and args.get("with_git") is True
        for _, name, args in _steps(build)
    )


def wants_git(doc: Mapping[str, Any]) -> bool:
    """Whether a prefect.yaml's build step (the file's or a deployment's) says `with_git: true`."""
    deployments = [d for d in doc.get("deployments") or [] if isinstance(d, Mapping)]
    return _asks_git(doc.get("build")) or any(_asks_git(d.get("build")) for d in deployments)


def git_problems(doc: Mapping[str, Any], where: str) -> list[str]:
    """Each deployment of a prefect.yaml whose pull steps run `git_clone` (git in the image)
    while its build step does not say `with_git: true`: one line naming file and keys."""
    problems = []
    for i, dep in enumerate(doc.get("deployments") or []):
        if not isinstance(dep, Mapping):
            continue
        # A deployment's own `pull`/`build` replaces the file's (Prefect's rule).
        pull_key = f"deployments[{i}].pull" if "pull" in dep else "pull"
        build_key = f"deployments[{i}].build" if "build" in dep else "build"
        pull = dep["pull"] if "pull" in dep else doc.get("pull")
        build = dep["build"] if "build" in dep else doc.get("build")
        clones = [f"{pull_key}[{j}].{name}" for j, name, _ in _steps(pull)
                  if name in GIT_CLONE_STEPS]  # fmt: skip
        if clones and not _asks_git(build):
            problems.append(
                f"{where}: {clones[0]} runs git in the image, but {build_key} has no "
                f"{BUILD_STEP} with `with_git: true` (deployment {dep.get('name')}): add it"
            )
    return problems


@functools.cache
def build_image(
    tag: str, base_image: str = "", project: str = ".", with_git: bool = False
) -> dict[str, str]:
    """Build the worker image reproducibly (as `airnub image build`), unless the local `tag`
    already holds this checkout (its revision label is HEAD, nothing under its inputs changed,
    and it has git exactly when `with_git`).

    Returns `{"image": tag, "digest": "sha256:…", "built": "yes"|"no", "os_packages":
    "git"|""}`.

    `tag` empty (AIRNUB_IMAGE unset): the `image` of `[tool.airnub]`. `with_git`: git in the
    image, for a `git_clone` pull step.

    Raises:
        StepError: the build failed (with its output), or `airnub deploy remote` built the
            image without git for a step that asks for it.
    """
    from deploy_tools.image.build import GIT_PACKAGES, BuildOptions, ensure_image
    from deploy_tools.settings import load_settings

    settings = load_settings(Path(project))
    tag = tag.strip() or settings.image  # `{{ $AIRNUB_IMAGE }}` unset: [tool.airnub]'s image
    if (done := _done()) and done["build"]["image"] == tag:
        # One image for every file airnub deploys: with git when any of them asked for it.
        if with_git and done["build"].get("os_packages") != GIT_PACKAGES:
            raise StepError(f"build_image: airnub built {tag} without git; this step asks "
                            "`with_git: true`")  # fmt: skip
        print(f"build_image: reusing {tag} ({done['build']['digest']}), built by airnub just now")
        return done["build"]
    opts = BuildOptions(
        project=settings.project_dir,
        tag=tag,
        base_image=base_image or settings.base_image,
        with_git=with_git,
        quiet=True,
        source=settings.image_source,
    )
    try:
        result, why = ensure_image(opts)
    except RuntimeError as exc:
        raise StepError(f"the worker image did not build: {exc}") from None
    return {"image": tag, "digest": result.digest, "built": "no" if why is None else "yes",
            "os_packages": GIT_PACKAGES if with_git else ""}  # fmt: skip


@functools.cache
def push_image(image: str, registry: str, repository: str = "", tag: str = "") -> dict[str, str]:
    """Tag the local `image` as `<registry>/<repository>:<tag>` and push it.

    `repository` defaults to the image's name, `tag` to its tag. Returns `{"image":
    "<registry>/<repository>:<tag>", "digest": "sha256:…", "image_ref":
    "<registry>/<repository>@sha256:…"}` — the digest the registry stored, checked against the
    local image's.

    Raises:
        StepError: an empty input, a tag or push that failed, or a digest that does not match.
    """
    from deploy_tools.image.build import local_digest

    image = _require(image, "push_image: image", "the build step's `image` output is missing")
    registry = _require(
        registry, "push_image: registry", "set AIRNUB_REGISTRY (e.g. 127.0.0.1:5000)"
    ).rstrip("/")
    name, _, own_tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    repository = repository or name.split("/")[-1]
    target = f"{registry}/{repository}:{tag or own_tag or 'latest'}"
    if (done := _done()) and (done["build"]["image"], done["push"]["image"]) == (image, target):
        print(f"push_image: reusing {done['push']['image_ref']}, pushed by airnub just now")
        return done["push"]
    try:
        local = local_digest(image)
    except RuntimeError as exc:
        raise StepError(f"push_image: {exc}") from None
    for cmd in (["docker", "tag", image, target], ["docker", "push", target]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            out = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise StepError(f"`{' '.join(cmd)}` failed: {' '.join(out)}")
    found = _DIGEST.findall(proc.stdout)
    if not found:
        raise StepError(f"`docker push {target}` printed no digest:\n{proc.stdout[-500:]}")
    digest = found[-1]
    if digest != local:
        raise StepError(f"the registry stored {digest} for {target}, the local image is {local}")
    repo = target.rsplit(":", 1)[0]
    return {"image": target, "digest": digest, "image_ref": f"{repo}@{digest}"}
