"""Stub: replaced by the real process flow."""
from prefect import flow


@flow(name="process")
def process() -> None:
    """Process the latest manifest (stub)."""
