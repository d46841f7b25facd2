"""Grids shared by the tests: each is loaded once per session."""

from __future__ import annotations

import pytest

from siting import Grid, load_grid


@pytest.fixture(scope="session")
def hv_mixed() -> Grid:
    return load_grid("simbench:1-HV-mixed--0-sw")


@pytest.fixture(scope="session")
def oberrhein() -> Grid:
    return load_grid("pandapower:mv_oberrhein")


@pytest.fixture(scope="session")
def texas() -> Grid:
    return load_grid("texas2000")


@pytest.fixture(scope="session")
def illinois() -> Grid:
    return load_grid("illinois200")
