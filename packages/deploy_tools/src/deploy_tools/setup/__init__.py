"""Setup as code: validate the files under `deploy/`, then make the server match them."""

from deploy_tools.setup.apply import Change, PartialApplyError, apply_plan
from deploy_tools.setup.entrypoints import check_entrypoints
from deploy_tools.setup.plan import SetupFiles, SetupFilesError, SetupPlan, load_plan

__all__ = [
    "Change",
    "PartialApplyError",
    "SetupFiles",
    "SetupFilesError",
    "SetupPlan",
    "apply_plan",
    "check_entrypoints",
    "load_plan",
]
