"""Fixtures of the batch tests: one local Ray session for every test that runs a job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """Ray on this machine, started once per module (it takes seconds) and shared by its jobs."""
    import ray  # the dev environment has it (pyproject.toml's batch extra): no skip when it is missing

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()
