"""Project Alpha as the Prefect integration sees it: its settings and its sources Variable."""

from __future__ import annotations

from flows_alpha.settings import AlphaSettings
from pipeline_core.integrations.prefect import PipelineProject

PROJECT = PipelineProject(
    name="alpha",
    title="Project Alpha",
    settings=AlphaSettings,
    sources_variable="alpha_sources",
)
