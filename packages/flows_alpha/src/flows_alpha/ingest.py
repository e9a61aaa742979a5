"""Stub: replaced by the real ingest flow."""
from prefect import flow


@flow(name="ingest")
def ingest() -> None:
    """Download every configured source (stub)."""
