"""A grid's vital statistics and its base-case power flow, for `siting inspect`."""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandapower as pp
import pandas as pd

from siting.errors import SitingError
from siting.sources.grid import Grid


@dataclass(frozen=True)
class Extreme:
    """One extreme value of a power-flow result and the element where it occurs."""

    value: float
    element: str
    index: int


@dataclass(frozen=True)
class BaseCase:
    """Base-case AC power flow (pandapower runpp) of the model as loaded."""

    converged: bool
    min_vm_pu: Extreme | None = None
    max_vm_pu: Extreme | None = None
    max_line_loading_percent: Extreme | None = None
    max_trafo_loading_percent: Extreme | None = None
    load_mw: float = 0.0
    generation_mw: float = 0.0
    losses_mw: float = 0.0
    unsupplied_load_mw: float = 0.0  # load on buses no slack reaches (islands), not in load_mw
    unsupplied_buses: int = 0


def element_counts(grid: Grid) -> dict[str, int]:
    """In-service and total count of each element table that the model uses."""
    counts = {}
    for table in (
        "bus",
        "line",
        "trafo",
        "trafo3w",
        "impedance",
        "switch",
        "load",
        "sgen",
        "gen",
        "ext_grid",
        "shunt",
        "storage",
    ):
        frame = grid.net[table] if table in grid.net else pd.DataFrame()
        if len(frame):
            counts[table] = len(frame)
    return counts


def profile_span(grid: Grid) -> dict[str, object] | None:
    """First and last time step, step length and count of the grid's profiles."""
    if grid.profiles is None:
        return None
    index = grid.profiles.index
    step = (index[1] - index[0]) if len(index) > 1 else pd.Timedelta(0)
    return {
        "start": index[0].isoformat(),
        "end": index[-1].isoformat(),
        "step_minutes": step.total_seconds() / 60,
        "steps": len(index),
        "elements": int(grid.profiles.columns.droplevel("variable").nunique()),
    }


def base_case(grid: Grid) -> BaseCase:
    """Run pandapower's AC power flow on the model's own values and report the extremes.

    Runs on a copy: ``grid.net`` is not changed.
    """
    net = copy.deepcopy(grid.net)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=True)
    except pp.LoadflowNotConverged:
        return BaseCase(converged=False)
    except Exception as err:  # pandapower raises many kinds on unusable models
        raise SitingError(f"{grid.source}: base-case power flow failed ({str(err).splitlines()[0]})") from err
    vm = net.res_bus["vm_pu"].dropna()
    dark = net.res_bus.index[net.res_bus["vm_pu"].isna()]
    loads = net.load[net.load["in_service"].astype(bool) & net.load["bus"].isin(dark)]
    return BaseCase(
        converged=True,
        min_vm_pu=_extreme(net.bus, vm, np.argmin),
        max_vm_pu=_extreme(net.bus, vm, np.argmax),
        max_line_loading_percent=_extreme(net.line, net.res_line["loading_percent"].dropna(), np.argmax),
        max_trafo_loading_percent=_extreme(net.trafo, net.res_trafo["loading_percent"].dropna(), np.argmax),
        load_mw=float(net.res_load["p_mw"].sum()),
        generation_mw=float(
            net.res_ext_grid["p_mw"].sum() + net.res_gen["p_mw"].sum() + net.res_sgen["p_mw"].sum()
        ),
        losses_mw=float(net.res_line["pl_mw"].sum() + net.res_trafo["pl_mw"].sum()),
        unsupplied_load_mw=float((loads["p_mw"] * loads["scaling"]).sum()),
        unsupplied_buses=len(dark),
    )


def _extreme(table: pd.DataFrame, values: pd.Series, pick) -> Extreme | None:
    if values.empty:
        return None
    index = values.index[pick(values.to_numpy())]
    name = table.at[index, "name"]
    label = name if isinstance(name, str) and name else f"#{index}"
    return Extreme(value=float(values[index]), element=label, index=int(index))


def summary(grid: Grid, with_power_flow: bool = True) -> dict[str, object]:
    """Everything `siting inspect` shows, as plain JSON-ready data."""
    result: dict[str, object] = {
        "grid": grid.name,
        "source": grid.source,
        "description": grid.description,
        "elements": element_counts(grid),
        "profiles": profile_span(grid),
        "substations": grid.substations.drop(columns="geometry").to_dict(orient="records"),
    }
    if with_power_flow:
        result["base_case"] = asdict(base_case(grid))
    return result
