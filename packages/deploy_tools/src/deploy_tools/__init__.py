"""deploy_tools: local stack, setup-as-code, image and deploy commands.

Layers: `cli/` (thin commands), `local/` and `remote/` (the two use cases), `setup/`, `image/`
and `scaffold/`; `reporting` and `prefect_api` are what both use cases share.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airnub-deploy-tools")
except PackageNotFoundError:  # run from the source tree (PYTHONPATH=…/src), not installed
    __version__ = "0+unknown"

APP_DIR = "/app"  # the worker image's WORKDIR: /app/pyproject.toml, the flows' working directory
