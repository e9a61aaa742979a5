"""Stub: replaced by the real pipeline flow."""
from prefect import flow


@flow(name="alpha_pipeline")
def alpha_pipeline() -> None:
    """Ingest then process (stub)."""
