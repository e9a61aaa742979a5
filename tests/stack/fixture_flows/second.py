"""The demo flow of a second project: proves one worker serves two projects, each with its
own data root (`SECOND_DATA_ROOT` from the worker) and its own `{{ $STACK_DATA_ROOT }}` in files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect import flow
from prefect.variables import Variable


@flow(name="second_demo")
def second_demo() -> str:
    """Write `done.json` into this project's data root, with what its variable file said."""
    root = Path(os.environ["SECOND_DATA_ROOT"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "done.json").write_text(json.dumps({"variable": Variable.get("second_root")}))
    return str(root)
