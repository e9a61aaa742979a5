"""Typed settings of a pipeline: a base that each flows package gives its own prefix and defaults.

`pipeline_core` names no project. A flows package subclasses `PipelineSettings` with its
environment prefix and data root:

    class PipelineSettings(PipelineSettings):
        model_config = SettingsConfigDict(env_prefix="ALPHA_", env_file=".env", extra="ignore")
        data_root: Path = Path("data/project_alpha_demo_outputs")

and every field is then read from `ALPHA_<FIELD>` (e.g. `ALPHA_MAX_BYTES`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    """Download, storage and processing settings shared by every pipeline.

    Used as is it reads unprefixed variables (`DATA_ROOT`, ...); flows packages subclass it
    with their own `env_prefix`.

    Example:
        >>> PipelineSettings(concurrency=2).concurrency
        2
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    def env_name(self, field: str) -> str:
        """The environment variable that sets `field`, e.g. `ALPHA_MAX_BYTES`, for messages."""
        return f"{self.model_config.get('env_prefix', '')}{field}".upper()

    data_root: Path = Field(
        default=Path("data/outputs"),
        description="Where raw files, manifests and processed outputs are written.",
    )
    concurrency: PositiveInt = Field(default=8, description="Downloads running at once.")
    connect_timeout: PositiveFloat = Field(default=10.0, description="Seconds to connect.")
    read_timeout: PositiveFloat = Field(default=30.0, description="Seconds between two reads.")
    total_timeout: PositiveFloat = Field(
        default=300.0, description="Seconds for one whole download, retries included."
    )
    max_bytes: PositiveInt = Field(
        default=512 * 1024 * 1024, description="Largest body accepted per source."
    )
    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt.")
    backoff_seconds: float = Field(default=0.5, ge=0, description="First retry delay; doubles.")
    max_backoff_seconds: float = Field(default=30.0, ge=0, description="Cap on one retry delay.")
    max_redirects: int = Field(default=5, ge=0, description="Redirects followed per request.")
    user_agent: str = Field(default="airnub-pipeline/0.1 (+https://github.com/airnub)")
    stale_part_seconds: PositiveFloat = Field(
        default=3600.0,
        description="Temp files of interrupted runs older than this are removed by the next ingest.",
    )
    storage_block: str | None = Field(
        default=None,
        description=(
            "Name of a Prefect storage block (e.g. an S3Bucket) to write through; "
            "the local filesystem under data_root when unset."
        ),
    )
