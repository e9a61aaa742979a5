"""Where a project's files live: `deploy/`, the `.local/` state folder and the data root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOCAL_DEPLOY_FILE = "prefect.local.yaml"
REMOTE_DEPLOY_FILE = "prefect.yaml"


class ProjectNotFoundError(RuntimeError):
    """No folder holding `deploy/prefect.local.yaml` was found."""


@dataclass(frozen=True)
class Project:
    """A project folder: holds `deploy/`, and gets `.local/` and `data/` when the stack runs."""

    root: Path

    @property
    def deploy_dir(self) -> Path:
        """Setup-as-code files: deployments, variables, blocks, work pools."""
        return self.root / "deploy"

    @property
    def local_dir(self) -> Path:
        """State of the embedded stack: SQLite database, PIDs, logs (kept across down/up)."""
        return self.root / ".local"

    @property
    def data_root(self) -> Path:
        """Where the local stack's flow runs write their outputs."""
        return self.root / "data" / "project_alpha_demo_outputs"

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The project at `AIRNUB_PROJECT_DIR`, else the nearest folder above `start` with deploy/.

        Raises:
            ProjectNotFoundError: nothing found.
        """
        explicit = os.environ.get("AIRNUB_PROJECT_DIR")
        if explicit:
            root = Path(explicit).resolve()
            if not (root / "deploy" / LOCAL_DEPLOY_FILE).is_file():
                raise ProjectNotFoundError(
                    f"AIRNUB_PROJECT_DIR={explicit}: no deploy/{LOCAL_DEPLOY_FILE}"
                )
            return cls(root)
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "deploy" / LOCAL_DEPLOY_FILE).is_file():
                return cls(folder)
        raise ProjectNotFoundError(
            f"no deploy/{LOCAL_DEPLOY_FILE} in {here} or above; run from the project folder "
            "or set AIRNUB_PROJECT_DIR"
        )
