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


def bridges(n_nodes: int, from_node: np.ndarray, to_node: np.ndarray) -> np.ndarray:
    """Per edge of the undirected multigraph: True where taking it out splits its component.

    Tarjan's low-link search, iterative (deep radial feeders would overflow Python's stack);
    parallel edges are told apart by their position, so a doubled circuit is no bridge.
    """
    n_edges = len(from_node)
    ends = np.concatenate([from_node, to_node]).astype(np.int64)
    others = np.concatenate([to_node, from_node]).astype(np.int64)
    edge = np.concatenate([np.arange(n_edges), np.arange(n_edges)])
    order = np.argsort(ends, kind="stable")
    start = np.searchsorted(ends[order], np.arange(n_nodes + 1))
    neighbour, via = others[order].tolist(), edge[order].tolist()
    start = start.tolist()
    discovered = [-1] * n_nodes
    low = [0] * n_nodes
    bridge = np.zeros(n_edges, dtype=bool)
    clock = 0
    for root in range(n_nodes):
        if discovered[root] >= 0:
            continue
        discovered[root] = low[root] = clock
        clock += 1
        stack = [(root, -1, start[root])]  # node, edge it was reached by, next adjacency slot
        while stack:
            node, parent_edge, slot = stack[-1]
            if slot < start[node + 1]:
                stack[-1] = (node, parent_edge, slot + 1)
                if via[slot] == parent_edge:
                    continue
                other = neighbour[slot]
                if discovered[other] < 0:
                    discovered[other] = low[other] = clock
                    clock += 1
                    stack.append((other, via[slot], start[other]))
                else:
                    low[node] = min(low[node], discovered[other])
                continue
            stack.pop()
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[node])
                if low[node] > discovered[parent]:
                    bridge[parent_edge] = True
    return bridge
