"""Project Alpha's pipeline settings: `ALPHA_*` environment variables (and `.env`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pipeline_core.settings import PipelineSettings


class AlphaSettings(PipelineSettings):
    """Download, storage and processing settings of Project Alpha.

    Example:
        >>> AlphaSettings(concurrency=2).concurrency
        2
    """

    model_config = SettingsConfigDict(env_prefix="ALPHA_", env_file=".env", extra="ignore")

    data_root: Path = Field(
        default=Path("data/project_alpha_demo_outputs"),
        description="Where raw files, manifests and processed outputs are written.",
    )
