"""pipeline_core on Prefect: everything of pipeline_core that imports Prefect is reached here.

- `PipelineProject`, `ingest_run`, `process_run`, `pipeline_run`: the bodies of a project's
  flows (tasks, artifacts, final states), so a flows package only names its flows.
- `sources_flow`, `SourcesParam`, `SourcesFlow`: flows whose recorded parameters never hold
  a URL's credentials.
- `read_secret_block`: sources' `auth` secrets from Prefect `Secret` blocks.
- `BlockStorage`: pipeline files in any Prefect writable filesystem block (e.g. `S3Bucket`);
  `open_storage`: that block if one is configured, else the local data root.
- `forward_to_prefect_run`: the structlog processor that stores each line as the current
  run's Prefect log (added to `pipeline_core.logging.RUN_BRIDGES` by importing this package).

Example, a whole flows module:

    PROJECT = PipelineProject("beta", "Project Beta", BetaSettings, "beta_sources")

    @sources_flow("beta_ingest")
    async def ingest(sources: SourcesParam = None) -> State[Any]:
        return await ingest_run(PROJECT, sources)
"""

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
from pipeline_core.integrations.prefect._storage import BlockStorage, open_storage

__all__ = [
    "BlockStorage",
    "PipelineProject",
    "SourcesFlow",
    "SourcesParam",
    "forward_to_prefect_run",
    "ingest_run",
    "load_sources",
    "open_storage",
    "pipeline_run",
    "process_run",
    "read_secret_block",
    "sources_flow",
]
