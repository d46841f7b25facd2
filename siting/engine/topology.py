"""Electrical neighbourhoods: which outages are near which buses (branch hops)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pandapower.auxiliary import pandapowerNet
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from siting.engine.flow import Outage, outage_elements


def bus_hops(net: pandapowerNet, buses: np.ndarray, limit: int) -> np.ndarray:
    """Branch hops from each of ``buses`` to every bus (inf beyond ``limit``), shape (buses, all).

    In-service lines and transformers are one hop; closed bus-bus switches are zero.
    """
    position = {bus: i for i, bus in enumerate(net.bus.index)}
    rows, cols, weight = [], [], []
    for table, a, b in (("line", "from_bus", "to_bus"), ("trafo", "hv_bus", "lv_bus")):
        on = net[table][net[table]["in_service"].astype(bool)]
        rows += [position[x] for x in on[a]]
        cols += [position[x] for x in on[b]]
        weight += [1.0] * len(on)
    switch = net.switch[(net.switch["et"] == "b") & net.switch["closed"].astype(bool)]
    rows += [position[x] for x in switch["bus"]]
    cols += [position[int(x)] for x in switch["element"]]
    weight += [1e-9] * len(switch)  # csgraph drops explicit zeros: a hair above zero is "same busbar"
    n = len(net.bus)
    graph = coo_matrix((weight, (rows, cols)), shape=(n, n)).tocsr()
    sources = [position[int(b)] for b in buses]
    return dijkstra(graph, directed=False, indices=sources, limit=limit + 0.5)


def outages_near(
    net: pandapowerNet, outages: Sequence[Outage | tuple[Outage, ...]], buses: np.ndarray, hops: int
) -> np.ndarray:
    """(outages × buses) True where an outaged branch has an end within ``hops`` of the bus.

    An outage is one ``("line" | "trafo", index)`` or several taken out together (a planner's
    contingency); it is near a bus when any of its branches is.
    """
    distance = bus_hops(net, buses, hops)
    position = {bus: i for i, bus in enumerate(net.bus.index)}
    ends = {"line": ("from_bus", "to_bus"), "trafo": ("hv_bus", "lv_bus")}
    near = np.zeros((len(outages), len(buses)), dtype=bool)
    for row, outage in enumerate(outages):
        for table, index in outage_elements(outage):
            a, b = (position[int(net[table].at[index, end])] for end in ends[table])
            near[row] |= np.minimum(distance[:, a], distance[:, b]) <= hops
    return near
