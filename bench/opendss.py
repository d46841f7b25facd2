"""OpenDSS feeders: `python bench/opendss.py [--feeders ieee13 ieee123 ...] [--speed]`.

Prints the README's quality table (OpenDSS's own solution against the balanced model:
feeder-head P and Q, losses, lowest/highest primary voltage) and, per feeder, the hosting
capacity at the substation and at three three-phase primary buses along the feeder (a
quarter, half and three quarters of the way out in branches), balanced against
OpenDSS-verified. With ``--speed`` it also times, per EPRI feeder, firm capacity at the
substation and N-0 capacity at every three-phase primary bus, OpenDSS verification included,
and the year of hourly headroom at the substation.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pandapower as pp
import pandapower.topology as top
import pandas as pd

from siting.capacity import CapacitySettings, substation_capacity
from siting.sources.grid import load_grid
from siting.sources.opendss import feeder_candidates, read_opendss
from siting.verify_dss import verify_capacities

FEEDERS = ("ieee13", "ieee123", "epri-ckt5", "epri-ckt24", "ieee9500")


def quality(name: str) -> dict:
    grid = load_grid(name)
    circuit = read_opendss(Path(grid.source))
    net = circuit.net
    pp.runpp(net)
    primary = (net.bus["vn_kv"] >= 1.0).to_numpy()
    vm = net.res_bus["vm_pu"].to_numpy()[primary]
    dss = circuit.vm_pu[primary]
    losses = net.res_line["pl_mw"].sum() + net.res_trafo["pl_mw"].sum()
    return {
        "feeder": name,
        "P MW (OpenDSS / balanced)": f"{circuit.head_p_mw:.3f} / {net.res_ext_grid['p_mw'].sum():.3f}",
        "Q Mvar": f"{circuit.head_q_mvar:.3f} / {net.res_ext_grid['q_mvar'].sum():.3f}",
        "losses MW": f"{circuit.losses_mw:.4f} / {losses:.4f}",
        "lowest primary V pu (worst phase, phase mean / balanced)": (
            f"{dss['min'].min():.4f}, {dss['mean'].min():.4f} / {vm.min():.4f}"
        ),
        "highest primary V pu": f"{dss['max'].max():.4f}, {dss['mean'].max():.4f} / {vm.max():.4f}",
        "max abs dV 3-phase primary (phase mean)": f"{_max_dv(circuit, vm, primary):.4f}",
        "unrepresented": len(circuit.unrepresented),
    }


def _max_dv(circuit, vm: np.ndarray, primary: np.ndarray) -> float:
    three = (circuit.net.bus["phases"] == 3).to_numpy()[primary]
    return float(np.abs(vm - circuit.vm_pu["mean"].to_numpy()[primary])[three].max())


def along(grid, count: int = 3) -> pd.DataFrame:
    """The substation row plus ``count`` candidate buses at quantiles of their hop distance out."""
    candidates = feeder_candidates(grid)
    graph = top.create_nxgraph(grid.net, respect_switches=True)
    hops = nx.single_source_shortest_path_length(graph, int(grid.substations["bus"].iloc[0]))
    distance = candidates["bus"].map(hops).fillna(-1).to_numpy()
    order = np.argsort(distance, kind="stable")
    picks = [order[int(q * (len(order) - 1))] for q in np.linspace(0, 1, count + 2)[1:-1]]
    rows = pd.concat([grid.substations, candidates.iloc[picks]], ignore_index=True)
    rows["id"] = np.arange(len(rows))
    return rows


def capacities(name: str) -> pd.DataFrame:
    grid = load_grid(name)
    sites = along(grid)
    table = substation_capacity(
        dataclasses.replace(grid, substations=sites), CapacitySettings(n1=False, year=False)
    ).table
    check = verify_capacities(Path(grid.source), table["bus_name"].tolist(), table["hc_n0_mw"].to_numpy())
    check.insert(0, "feeder", name)
    check["balanced binding"] = table["n0_binding_element"].to_numpy()
    return check


def speed(name: str) -> dict:
    out = {"feeder": name}
    start = time.perf_counter()
    grid = load_grid(name)
    out["load s"] = time.perf_counter() - start
    start = time.perf_counter()
    firm = substation_capacity(grid, CapacitySettings(n1=True, year=False)).table
    verify_capacities(Path(grid.source), firm["bus_name"].tolist(), firm["hc_n0_mw"].to_numpy())
    out["firm at substation + OpenDSS check s"] = time.perf_counter() - start
    start = time.perf_counter()
    cands = dataclasses.replace(grid, substations=feeder_candidates(grid))
    table = substation_capacity(cands, CapacitySettings(n1=False, year=False)).table
    balanced = time.perf_counter() - start
    check = verify_capacities(Path(grid.source), table["bus_name"].tolist(), table["hc_n0_mw"].to_numpy())
    out["N-0 at every 3-phase primary bus + OpenDSS check s"] = time.perf_counter() - start
    out["of which OpenDSS check s"] = time.perf_counter() - start - balanced
    out["buses"] = len(table)
    out["agree"] = f"{check['agrees'].mean():.0%}"
    out["OpenDSS solves"] = int(check["solves"].sum())
    start = time.perf_counter()
    substation_capacity(grid, CapacitySettings(n1=False, year=True))
    out["year of hourly headroom at substation s"] = time.perf_counter() - start
    # other work on a shared machine inflates every time: the load average says how much
    out["load average (1 min)"] = round(os.getloadavg()[0], 1)
    return out


def markdown(frame: pd.DataFrame) -> str:
    """A table as Markdown (numbers to three significant digits)."""

    def cell(value) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeders", nargs="+", default=list(FEEDERS))
    parser.add_argument("--speed", action="store_true")
    args = parser.parse_args()
    print(markdown(pd.DataFrame([quality(f) for f in args.feeders])), end="\n\n", flush=True)
    print(markdown(pd.concat([capacities(f) for f in args.feeders])), end="\n\n", flush=True)
    if args.speed:
        epri = [f for f in args.feeders if f.startswith("epri")]
        print(markdown(pd.DataFrame([speed(f) for f in epri])), flush=True)


if __name__ == "__main__":
    main()
