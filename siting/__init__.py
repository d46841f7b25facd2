"""siting: where on a grid 5–20 MW AI-inference micro data centers can connect.

The stages chain as plain functions over plain data::

    from siting import load_grid, substation_capacity, select_sites, simulate, write_report
    grid = load_grid("hv-mixed")
    capacity = substation_capacity(grid)
    selection = select_sites(grid, capacity.table)
    fleet = simulate(grid, selection)
    write_report("reports/hv", grid, capacity=capacity, selection=selection, fleet=fleet)

Names are imported on first use, so ``import siting`` (and the ``siting`` command) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from siting.errors import DataError, GridError, SettingError, SitingError, UsageError

__version__ = "0.1.0"

_LAZY = {
    "Grid": "siting.sources.grid",
    "load_grid": "siting.sources.grid",
    "StudyLimits": "siting.limits",
    "CapacitySettings": "siting.capacity",
    "CapacityStudy": "siting.capacity",
    "substation_capacity": "siting.capacity",
    "flexible_capacity": "siting.flexible",
    "GeoRules": "siting.geography",
    "read_layers": "siting.geography",
    "SelectionSettings": "siting.selection",
    "Selection": "siting.selection",
    "select_sites": "siting.selection",
    "PowerModel": "siting.power",
    "FleetSettings": "siting.fleet",
    "FleetResult": "siting.fleet",
    "simulate": "siting.fleet",
    "write_report": "siting.report",
    "Study": "siting.study",
    "read_study": "siting.study",
    "run_study": "siting.study",
    "run_sweep": "siting.sweep",
}

__all__ = [
    "CapacitySettings",
    "CapacityStudy",
    "DataError",
    "FleetResult",
    "FleetSettings",
    "GeoRules",
    "Grid",
    "GridError",
    "PowerModel",
    "Selection",
    "SelectionSettings",
    "SettingError",
    "SitingError",
    "Study",
    "StudyLimits",
    "UsageError",
    "flexible_capacity",
    "load_grid",
    "read_layers",
    "read_study",
    "run_study",
    "run_sweep",
    "select_sites",
    "simulate",
    "substation_capacity",
    "write_report",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'siting' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from siting.capacity import CapacitySettings, CapacityStudy, substation_capacity
    from siting.fleet import FleetResult, FleetSettings, simulate
    from siting.flexible import flexible_capacity
    from siting.geography import GeoRules, read_layers
    from siting.limits import StudyLimits
    from siting.power import PowerModel
    from siting.report import write_report
    from siting.selection import Selection, SelectionSettings, select_sites
    from siting.sources.grid import Grid, load_grid
    from siting.study import Study, read_study, run_study
    from siting.sweep import run_sweep
