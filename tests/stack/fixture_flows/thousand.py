"""A flow of many tiny tasks: checks that the server records every task run."""

from __future__ import annotations

from prefect import flow, task


@task
def square(i: int) -> int:
    """i squared."""
    return i * i


@flow(name="thousand_tasks")
def thousand_tasks(n: int = 1000) -> int:
    """Run `n` tasks at once and sum their results."""
    return sum(f.result() for f in square.map(range(n)))
