"""Brute-force hosting capacity: pandapower ``runpp`` one flow at a time, plain bisection.

Slow on purpose and kept simple: it is the yardstick the batched capacity search in
``siting.capacity`` is tested and benchmarked against, applying the same limits and the same
rule for limits the base case already violates.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandapower as pp
from pandapower.auxiliary import pandapowerNet

from siting.capacity import CapacitySettings
from siting.engine.flow import Outage, outage_elements
from siting.engine.search import binding_limits
from siting.limits import element_limits


def reference_hosting_capacity(
    net: pandapowerNet,
    bus: int,
    settings: CapacitySettings,
    values: dict[tuple[str, str], np.ndarray] | None = None,
    outage: tuple[str, int] | None = None,
) -> float:
    """Largest load (MW, on the resolution grid, up to the cap) at ``bus`` within limits."""
    state = scenario_net(net, values, outage)
    limits = element_limits(state, settings.limits, contingency=outage is not None)
    base = _run(state)
    if base is None:
        raise ValueError("the base case does not converge")
    bounds = dict(zip(("vmin", "vmax", "line", "trafo"), binding_limits(limits, *base), strict=True))
    load = pp.create_load(state, bus, 0.0, 0.0)

    def thermal(p_mw: float) -> tuple[np.ndarray, np.ndarray]:
        if limits.pre_existing != "contribution":
            return bounds["line"], bounds["trafo"]
        per_line, per_trafo = limits.line_percent_per_mw, limits.trafo_percent_per_mw
        if per_line is None or per_trafo is None:  # element_limits sets both under "contribution"
            raise ValueError("the contribution policy's limits come without their loading per MW")
        # an element the base overloads may rise by what the cutoff distribution factor adds
        with np.errstate(invalid="ignore"):
            over_line = np.where(base[1] > limits.line_percent + 1e-6, base[1], np.nan)
            over_trafo = np.where(base[2] > limits.trafo_percent + 1e-6, base[2], np.nan)
        return (
            np.fmax(bounds["line"], over_line + per_line * p_mw),
            np.fmax(bounds["trafo"], over_trafo + per_trafo * p_mw),
        )

    def feasible(k: int) -> bool:
        p_mw = k * settings.resolution_mw
        state.load.loc[load, ["p_mw", "q_mvar"]] = [p_mw, p_mw * settings.q_per_mw]
        result = _run(state)
        if result is None:
            return False
        vm, line, trafo = result
        line_bound, trafo_bound = thermal(p_mw)
        with np.errstate(invalid="ignore"):
            return not (
                (vm < bounds["vmin"]).any()
                or (vm > bounds["vmax"]).any()
                or (line > line_bound).any()
                or (trafo > trafo_bound).any()
            )

    lo, hi = 0, settings.steps
    if feasible(hi):
        return hi * settings.resolution_mw
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo * settings.resolution_mw


def scenario_net(
    net: pandapowerNet,
    values: dict[tuple[str, str], np.ndarray] | None = None,
    outage: Outage | tuple[Outage, ...] | None = None,
) -> pandapowerNet:
    """A copy of ``net`` changed the way a ``siting.engine.flow.Scenarios`` row changes it."""
    state = copy.deepcopy(net)
    for (table, column), row in (values or {}).items():
        keep = ~np.isnan(row)
        state[table].loc[state[table].index[keep], column] = row[keep]
    for table, index in outage_elements(outage):
        state[table].at[index, "in_service"] = False
    return state


def _run(net: pandapowerNet) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pp.runpp(net)
        except pp.LoadflowNotConverged:
            return None
    return (
        net.res_bus.vm_pu.to_numpy(),
        net.res_line.loading_percent.to_numpy(),
        net.res_trafo.loading_percent.to_numpy(),
    )
