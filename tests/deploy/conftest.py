"""Fixtures of the deployment-topology tests: process fleets that are always stopped, whatever happens."""
from __future__ import annotations

import pytest

from tests.deploy.topology import Fleet


@pytest.fixture()
def fleet():
    """Processes started by one test; stopped (or killed) when it ends."""
    started = Fleet()
    yield started
    started.close()


@pytest.fixture(scope="module")
def module_fleet():
    """Processes shared by the tests of one module; stopped (or killed) when the module ends."""
    started = Fleet()
    yield started
    started.close()
