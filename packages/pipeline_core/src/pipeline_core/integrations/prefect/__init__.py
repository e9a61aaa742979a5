"""pipeline_core on Prefect: everything of pipeline_core that imports Prefect is reached here.

- `PipelineProject`, `ingest_run`, `process_run`, `pipeline_run`: the bodies of a project's
  flows (tasks, artifacts, final states), so a flows package only names its flows.
- `sources_flow`, `SourcesParam`, `SourcesFlow`: flows whose recorded parameters never hold
  a URL's credentials.
- `read_secret_block`: sources' `auth` secrets from Prefect `Secret` blocks.
- `BlockStorage`: pipeline files in any Prefect writable filesystem block (e.g. `S3Bucket`).
- `forward_to_prefect_run`: the structlog processor that stores each line as the current
  run's Prefect log (installed by `pipeline_core.logging.configure_logging`).

Example, a whole flows module:

    PROJECT = PipelineProject("beta", "Project Beta", BetaSettings, "beta_sources")

    @sources_flow("beta_ingest")
    async def ingest(sources: SourcesParam = None) -> State[Any]:
        return await ingest_run(PROJECT, sources)
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline_core.integrations.prefect._logging import forward_to_prefect_run
    from pipeline_core.integrations.prefect._params import SourcesFlow, SourcesParam, sources_flow
    from pipeline_core.integrations.prefect._runs import (
        PipelineProject,
        ingest_run,
        load_sources,
        pipeline_run,
        process_run,
    )
    from pipeline_core.integrations.prefect._secrets import read_secret_block
    from pipeline_core.integrations.prefect._storage import BlockStorage

# Names load on first use: `pipeline_core.logging` imports the bridge from here without
# importing Prefect (flows import Prefect themselves).
_WHERE = {
    "forward_to_prefect_run": "_logging",
    "SourcesFlow": "_params",
    "SourcesParam": "_params",
    "sources_flow": "_params",
    "PipelineProject": "_runs",
    "ingest_run": "_runs",
    "load_sources": "_runs",
    "pipeline_run": "_runs",
    "process_run": "_runs",
    "read_secret_block": "_secrets",
    "BlockStorage": "_storage",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "BlockStorage",
    "PipelineProject",
    "SourcesFlow",
    "SourcesParam",
    "forward_to_prefect_run",
    "ingest_run",
    "load_sources",
    "pipeline_run",
    "process_run",
    "read_secret_block",
    "sources_flow",
]
