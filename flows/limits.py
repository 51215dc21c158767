"""Prefect concurrency limits that keep runs of one flow from overlapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

from parkcast.logs import get_logger

__all__ = ["RunInProgressError", "exclusive_run", "limit_name"]


class RunInProgressError(RuntimeError):
    """Another run of the same flow held the slot for longer than this run would wait."""


def limit_name(flow_name: str) -> str:
    """Return the global concurrency limit name that guards `flow_name`."""
    return f"parkcast-{flow_name}"


@contextmanager
def exclusive_run(flow_name: str, wait_seconds: float) -> Iterator[None]:
    """Hold the one slot of the flow's global concurrency limit for the block.

    The limit (one slot) is created on first use. A second run waits up to
    `wait_seconds` for the slot, then raises RunInProgressError, so that
    scheduled and manual runs of one flow never overlap.
    """
    name = limit_name(flow_name)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    with ExitStack() as stack:
        try:
            stack.enter_context(concurrency(name, occupy=1, timeout_seconds=wait_seconds, strict=True))
        except TimeoutError:
            message = (
                f"another {flow_name} run is still in progress after waiting {wait_seconds:.0f} s; "
                "this run was skipped. Raise PARKCAST_RUN_WAIT_SECONDS to wait longer."
            )
            get_logger().error(message)
            raise RunInProgressError(message) from None
        yield
