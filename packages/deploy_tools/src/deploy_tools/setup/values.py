"""The values the stack supplies to the setup files, as `{{ $STACK_* }}` (never AIRNUB_*: those
are settings).

- `STACK_PROJECT_DIR`: the folder the flows run in (the checkout, or `/app` in an image);
- `STACK_POOL`: the local pool (`local_pool` of `[tool.airnub]`);
- per project: `STACK_DATA_ROOT`, its data root as the flows see it (projects with one), and
  `STACK_DEMO_DATA_URL`, its folder on the demo-data server.

Each runner (the process stack, the compose stack, `deploy remote`) differs only in where the
flows see those: that is what it passes.
"""

from __future__ import annotations

from collections.abc import Callable

from deploy_tools.settings import AirnubSettings, ProjectSettings


def apply_env(
    settings: AirnubSettings,
    project: ProjectSettings | None,
    *,
    project_dir: str,
    data_root: Callable[[ProjectSettings], str],
    demo_data_url: str | None,
) -> dict[str, str]:
    """The shared values, plus `project`'s own when given.

    `data_root(project)` maps a project's data root to the flows' view of it; `demo_data_url`
    is the demo-data server's base (each project's files under `/<name>/`; None: not served).
    """
    env = {"STACK_PROJECT_DIR": project_dir, "STACK_POOL": settings.local_pool}
    if project is not None:
        if project.data_root is not None:
            env["STACK_DATA_ROOT"] = data_root(project)
        if demo_data_url:
            env["STACK_DEMO_DATA_URL"] = f"{demo_data_url.rstrip('/')}/{project.name}"
    return env
