"""Electrical neighbourhoods: which outages are near which buses, and which island load."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pandapower.auxiliary import pandapowerNet
from power_grid_model import ComponentType
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from siting.engine.flow import FlowModel, Outage, outage_elements


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


def islanding_outages(model: FlowModel, outages: Sequence[Outage | tuple[Outage, ...]]) -> np.ndarray:
    """(outages,) True where taking the outage's branches out leaves load without supply.

    "Load" is what ``siting.engine.search.state_limits`` asks to be supplied: every in-service
    load with a nonzero ``p_mw``; "supplied" is a path to an in-service source through the
    in-service branches of the converted model (closed bus-bus switches are already merged
    into its nodes), which is where power-grid-model reports a voltage. Such an outage makes
    the state unusable whatever its power flow does, so it can be skipped unsolved.

    A single branch islands load only if it is a bridge of the network graph, and then it
    cuts off exactly the part below it in a spanning tree grown from the sources; so one
    tree and one pass decide every single outage of a radial feeder. Outages of several
    branches are tested by connected components each.

    Parameters
    ----------
    model : FlowModel
        The prepared grid.
    outages : sequence
        Per outage one ``("line" | "trafo", index)`` or a tuple of them taken out together.

    Returns
    -------
    numpy.ndarray
        Boolean, one per outage.
    """
    import networkx as nx

    pgm, net = model.pgm, model.net
    data = pgm.input_data
    node_ids = data[ComponentType.node]["id"]
    order = np.argsort(node_ids)

    def position(ids: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(node_ids, ids, sorter=order)]

    n = len(node_ids)
    root = n  # one extra node joined to every in-service source
    branch = data[ComponentType.generic_branch]
    on = (branch["from_status"] == 1) & (branch["to_status"] == 1)
    ends_a, ends_b = position(branch["from_node"]), position(branch["to_node"])
    source = data[ComponentType.source]
    source_nodes = position(source["node"][source["status"] == 1])
    loads = net.load[net.load["in_service"].astype(bool) & (net.load["p_mw"] != 0)]
    load_bus = net.bus.index.get_indexer(loads["bus"])
    if not pgm.bus_in_model[load_bus].all():
        return np.ones(len(outages), dtype=bool)  # load on a bus left out of the model: never supplied
    load_node = np.zeros(n + 1, dtype=bool)
    load_node[pgm.bus_to_node[load_bus]] = True

    # base topology: edges keyed by branch position; parallel branches are never bridges
    graph = nx.MultiGraph()
    graph.add_nodes_from(range(n + 1))
    live = np.flatnonzero(on)
    graph.add_edges_from((int(ends_a[b]), int(ends_b[b]), int(b)) for b in live)
    graph.add_edges_from((root, int(s), -1 - i) for i, s in enumerate(source_nodes))
    supplied = nx.node_connected_component(graph, root)
    if not all(int(x) in supplied for x in np.flatnonzero(load_node)):
        return np.ones(len(outages), dtype=bool)  # some load is cut off even without an outage

    simple = nx.Graph(graph)
    multiplicity: dict[frozenset, int] = {}
    for a, b in graph.edges():
        key = frozenset((a, b))
        multiplicity[key] = multiplicity.get(key, 0) + 1
    bridges = {frozenset(e) for e in nx.bridges(simple, root=root) if multiplicity[frozenset(e)] == 1}
    # load below each node of a breadth-first tree from the sources
    tree = list(nx.bfs_edges(simple, root))
    parent = {child: up for up, child in tree}
    below = load_node.astype(np.int64)
    for up, child in reversed(tree):  # children before parents
        below[up] += below[child]

    branch_of = {"line": pgm.line_branch, "trafo": pgm.trafo_branch}
    index_of = {"line": net.line.index, "trafo": net.trafo.index}
    result = np.zeros(len(outages), dtype=bool)
    for row, outage in enumerate(outages):
        taken = [
            int(branch_of[table][index_of[table].get_loc(index)]) for table, index in outage_elements(outage)
        ]
        taken = [b for b in taken if on[b]]
        if len(taken) == 1:
            a, b = int(ends_a[taken[0]]), int(ends_b[taken[0]])
            if frozenset((a, b)) in bridges:
                child = a if parent.get(a) == b else b
                result[row] = below[child] > 0
        elif taken:
            cut = graph.copy()
            cut.remove_edges_from((int(ends_a[b]), int(ends_b[b]), b) for b in taken)
            reach = nx.node_connected_component(cut, root)
            result[row] = not all(int(x) in reach for x in np.flatnonzero(load_node))
    return result
