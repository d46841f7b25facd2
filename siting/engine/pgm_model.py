"""The pandapower net as a power-grid-model input, built from pandapower's own bus-branch model.

pandapower turns a net into a MATPOWER-style case (``net._ppc``: fused buses, every branch as
a π-model with tap ratio and phase shift, ZIP load fractions, shunts). Building the
power-grid-model input from that case, rather than from the element tables, means both
engines solve the same equations: pandapower's branch π-model is exactly PGM's
``generic_branch`` (series admittance and total shunt split half and half, ideal
transformer on the from side), so agreement does not depend on re-deriving each element.

Voltage-controlled (PV) buses are PGM's own (≥ 1.13): one ``sym_gen`` per PV bus carrying
the active power of every in-service generator there, and one ``voltage_regulator`` holding
the bus at the generators' set-point, so PGM's Newton-Raphson solves PV buses as pandapower's
does. One per bus rather than one per generator: pandapower gives a bus a single set-point
and splits its reactive power among the generators there in proportion to their ranges, so
they reach their limits together; a bus-level regulator is the same equations with fewer
unknowns and never two regulators on one node. The generators' own reactive limits are kept
(``pv_gen_*``) for ``siting.engine.flow``'s PV→PQ switching.

Models with PV buses are solved by Newton-Raphson from PGM's flat start, which sets every node
to the source voltage turned by the phase shifts met on a depth-first walk from the source.
On large transmission cases that start is too far from the answer (ACTIVSg10k spreads its
angles over 108°; neither PGM nor pandapower converges from it), so each in-service branch
gets a *start guide* (``START_GUIDE_FACTOR``): a parallel branch of negligible admittance whose
phase shift is the base case's angle difference across it. Listed before the branches, the
guides are the edges the walk takes, so the flat start is the base case's angles. Only grids
whose base case fails from the plain flat start get them (``siting.engine.flow.prepare``): on
ACTIVSg2000 they leave the iterations as they were (the start's magnitudes stay flat) and cost
their share of the admittance matrix.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandapower as pp
import pandapower.pd2ppc
import pandas as pd
from pandapower.auxiliary import pandapowerNet
from pandapower.pypower.idx_brch import (
    BR_B,
    BR_B_ASYM,
    BR_G,
    BR_G_ASYM,
    BR_R,
    BR_R_ASYM,
    BR_STATUS,
    BR_X,
    BR_X_ASYM,
    F_BUS,
    SHIFT,
    T_BUS,
    TAP,
)
from pandapower.pypower.idx_bus import BASE_KV, BS, BUS_TYPE, CID_P, CID_Q, CZD_P, CZD_Q, GS, PD, QD, VA, VM
from pandapower.pypower.idx_gen import GEN_BUS, GEN_STATUS, PG, QMAX, QMIN, VG
from power_grid_model import (
    BranchSide,
    ComponentType,
    DatasetType,
    LoadGenType,
    WindingType,
    initialize_array,
)

from siting.errors import GridError

PV_BUS, REF_BUS, ISOLATED_BUS = 2, 3, 4
SOURCE_SK_VA = 1e15  # effectively infinite: no drop behind the slack (PGM's default is 1e10)
MEGA = 1e6

# Elements whose P/Q a scenario may change, with the sign of their demand on the bus.
DEMAND_SIGN = {"load": 1.0, "sgen": -1.0, "storage": 1.0}


@dataclass(frozen=True)
class PgmModel:
    """A PGM input dataset plus the maps between it and the pandapower tables."""

    input_data: dict
    bus_to_node: np.ndarray  # position of each net.bus row → PGM node position (ppc bus)
    bus_in_model: np.ndarray  # False for buses pandapower leaves out (out of service)
    line_branch: np.ndarray  # position of each net.line row → generic_branch position
    trafo_branch: np.ndarray
    demand_bus: np.ndarray  # ppc buses whose demand is modelled by three sym_loads (P, I, Z)
    demand_p_mw: np.ndarray  # base demand at those buses
    demand_q_mvar: np.ndarray
    zip_p: np.ndarray  # (len(demand_bus), kinds): constant power[, current][, impedance] shares of P
    zip_q: np.ndarray
    load_ids: np.ndarray  # (len(demand_bus), kinds) sym_load ids
    pv_bus: np.ndarray  # ppc buses held at a voltage set-point by generators
    pv_p_mw: np.ndarray  # active power of the PV generators at each PV bus
    pv_gen_ids: np.ndarray  # sym_gen id of each PV bus (its regulator follows in regulator_ids)
    pv_regulator_ids: np.ndarray
    pv_gen_bus: np.ndarray  # per PV generator (ppc gen row at a PV bus): its position in pv_bus
    pv_gen_q_min_mvar: np.ndarray  # its reactive limits (±1e9 where the model gives none)
    pv_gen_q_max_mvar: np.ndarray
    site_ids: np.ndarray  # sym_load ids of added loads, one per requested site bus
    site_node: np.ndarray
    # generic_branch rows solved ahead of the model's own (see the module docstring), and per
    # generic_branch position the id of its guide (-1: none)
    start_guides: np.ndarray
    guide_id: np.ndarray

    def solver_input(self, data: dict | None = None) -> dict:
        """``data`` (default ``input_data``) with the start guides ahead of its generic branches.

        A solver built from it reports the guides first in its generic_branch results.
        """
        data = self.input_data if data is None else data
        branches = np.concatenate([self.start_guides, data[ComponentType.generic_branch]])
        return {**data, ComponentType.generic_branch: branches}


def base_power_flow(net: pandapowerNet, source: str) -> None:
    """Pandapower runpp on the net as it is: it builds ``net._ppc`` and the base-case angles.

    numba stays off: one flow does not repay its compile time (seconds). The per-bus ZIP
    shares of voltage-dependent loads are computed by ``_bus_zip_shares`` (the same values).
    """
    with warnings.catch_warnings(), _grouped_zip_shares():
        warnings.simplefilter("ignore")
        try:
            pp.runpp(net, numba=False)
        except pp.LoadflowNotConverged as err:
            raise GridError(
                f"{source}: the base-case power flow does not converge; check the model's "
                "loads, generation and slack voltage"
            ) from err


@contextmanager
def _grouped_zip_shares() -> Iterator[None]:
    """The conversion of loads to ``_ppc`` by pandapower, with the ZIP shares grouped, not looped.

    pandapower (3.5) finds each load bus's constant-current and constant-impedance shares
    with a Python loop that compares every load's bus with each load bus in turn: quadratic,
    20-30 s of a run on EPRI ckt24's 3,900 load buses. Its conversion runs here with that
    loop switched off and ``_bus_zip_shares`` writes the same numbers; the power flow still
    treats the loads as voltage-dependent.
    """
    original = pandapower.pd2ppc._calc_pq_elements_and_add_on_ppc

    def grouped(net: pandapowerNet, ppc: dict, sequence: int | None = None) -> None:
        options = net["_options"]
        if not options["voltage_depend_loads"] or not len(net.load):
            original(net, ppc, sequence=sequence)
            return
        options["voltage_depend_loads"] = False
        try:
            original(net, ppc, sequence=sequence)
        finally:
            options["voltage_depend_loads"] = True
        _bus_zip_shares(net, ppc)

    pandapower.pd2ppc._calc_pq_elements_and_add_on_ppc = grouped
    try:
        yield
    finally:
        pandapower.pd2ppc._calc_pq_elements_and_add_on_ppc = original


def _bus_zip_shares(net: pandapowerNet, ppc: dict) -> None:
    """Per load bus, the mean constant-current and constant-impedance shares of its in-service loads.

    pandapower's own rule and arithmetic: unweighted means of ``const_*_percent / 100``,
    summed in table order, written bus by bus in the order of ``set(load.bus)`` (buses fused
    into one ``_ppc`` bus keep the last one written).
    """
    tab = net.load
    columns = {
        CID_P: "const_i_p_percent",
        CZD_P: "const_z_p_percent",
        CID_Q: "const_i_q_percent",
        CZD_Q: "const_z_q_percent",
    }
    if ((tab["const_z_p_percent"] + tab["const_i_p_percent"]) > 100).any() or (
        (tab["const_z_q_percent"] + tab["const_i_q_percent"]) > 100
    ).any():
        raise ValueError(
            "const_z_p_percent + const_i_p_percent need to be less or equal to 100%! "
            "The same applies to const_z_q_percent + const_i_q_percent!"
        )
    bus = tab["bus"].to_numpy()
    active = np.flatnonzero(net["_is_elements"]["load"].astype(bool))
    order = active[np.argsort(bus[active], kind="stable")]  # in-service loads, by bus, in table order
    first = np.searchsorted(bus[order], np.unique(bus[order]))
    groups = dict(zip(bus[order][first].tolist(), np.split(order, first[1:]), strict=True))
    shares = {column: tab[name].to_numpy(float) / 100.0 for column, name in columns.items()}
    lookup = net["_pd2ppc_lookups"]["bus"]
    for b in set(tab["bus"]):
        rows = groups.get(b)
        if rows is None:
            continue
        for column, values in shares.items():
            ppc["bus"][lookup[b], column] = sum(values[rows]) / len(rows)


def build_model(net: pandapowerNet, site_buses: np.ndarray, source: str) -> PgmModel:
    """Convert ``net._ppc`` (after ``base_power_flow``) into PGM input with sites at ``site_buses``."""
    ppc = net._ppc
    bus, branch, gen = ppc["bus"], ppc["branch"], ppc["gen"]
    base_mva = float(ppc["baseMVA"])
    n_bus = len(bus)
    _check_branches(net, branch, source)
    ids = _Ids()  # every component's ids in one sequence, in the order they are made below

    u_rated = bus[:, BASE_KV] * 1e3
    node = initialize_array(DatasetType.input, ComponentType.node, n_bus)
    node["id"] = ids.take(n_bus)
    node["u_rated"] = u_rated
    generic = _generic_branches(branch, u_rated, base_mva, ids)

    ref = np.flatnonzero(bus[:, BUS_TYPE] == REF_BUS)
    source_arr = initialize_array(DatasetType.input, ComponentType.source, len(ref))
    source_arr["id"] = ids.take(len(ref))
    source_arr["node"] = ref
    source_arr["status"] = 1
    source_arr["u_ref"] = bus[ref, VM]
    source_arr["u_ref_angle"] = np.deg2rad(bus[ref, VA])
    source_arr["sk"] = SOURCE_SK_VA

    has_shunt = np.flatnonzero((bus[:, GS] != 0) | (bus[:, BS] != 0))
    shunt = initialize_array(DatasetType.input, ComponentType.shunt, len(has_shunt))
    shunt["id"] = ids.take(len(has_shunt))
    shunt["node"] = has_shunt
    shunt["status"] = 1
    shunt["g1"] = bus[has_shunt, GS] * MEGA / u_rated[has_shunt] ** 2
    shunt["b1"] = bus[has_shunt, BS] * MEGA / u_rated[has_shunt] ** 2
    shunt["g0"] = 0.0
    shunt["b0"] = 0.0

    demand = _demand(net, bus, ids)

    site_node = _bus_to_node(net)[_bus_positions(net, site_buses)]
    sites = initialize_array(DatasetType.input, ComponentType.sym_load, len(site_node))
    sites["id"] = ids.take(len(site_node))
    sites["node"] = site_node
    sites["status"] = 1
    sites["type"] = LoadGenType.const_power
    sites["p_specified"] = 0.0
    sites["q_specified"] = 0.0

    pv = _pv_generation(bus, gen)
    pv_gens, regulators = _voltage_regulated(pv, ids)

    input_data = {
        ComponentType.node: node,
        ComponentType.generic_branch: generic,
        ComponentType.source: source_arr,
        ComponentType.shunt: shunt,
        ComponentType.sym_load: np.concatenate([demand.loads, sites]),
        ComponentType.sym_gen: pv_gens,
        ComponentType.voltage_regulator: regulators,
    }
    lookups = net._pd2ppc_lookups["branch"]
    return PgmModel(
        input_data=input_data,
        bus_to_node=_bus_to_node(net),
        bus_in_model=_bus_in_model(net, bus),
        line_branch=_branch_range(lookups, "line", len(net.line)),
        trafo_branch=_branch_range(lookups, "trafo", len(net.trafo)),
        demand_bus=demand.bus,
        demand_p_mw=bus[demand.bus, PD].copy(),
        demand_q_mvar=bus[demand.bus, QD].copy(),
        zip_p=demand.zip_p,
        zip_q=demand.zip_q,
        load_ids=demand.load_ids,
        pv_bus=pv.bus,
        pv_p_mw=pv.p_mw,
        pv_gen_ids=pv_gens["id"].copy(),
        pv_regulator_ids=regulators["id"].copy(),
        pv_gen_bus=pv.gen_bus,
        pv_gen_q_min_mvar=pv.q_min_mvar,
        pv_gen_q_max_mvar=pv.q_max_mvar,
        site_ids=sites["id"].copy(),
        site_node=site_node,
        start_guides=generic[:0].copy(),
        guide_id=np.full(len(generic), -1, dtype=np.int64),
    )


class _Ids:
    """Consecutive PGM ids across all components of one model."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> np.ndarray:
        block = np.arange(self.next, self.next + count, dtype=np.int32)
        self.next += count
        return block


def _generic_branches(branch: np.ndarray, u_rated: np.ndarray, base_mva: float, ids: _Ids) -> np.ndarray:
    """One ``generic_branch`` per ppc branch (impedances in ohm, referred to the to side as PGM does)."""
    from_bus = branch[:, F_BUS].real.astype(int)
    to_bus = branch[:, T_BUS].real.astype(int)
    z_base_to = u_rated[to_bus] ** 2 / (base_mva * MEGA)
    tap = branch[:, TAP].real.copy()
    tap[tap == 0] = 1.0
    status = branch[:, BR_STATUS].real.astype(np.int8)
    generic = initialize_array(DatasetType.input, ComponentType.generic_branch, len(branch))
    generic["id"] = ids.take(len(branch))
    generic["from_node"] = from_bus
    generic["to_node"] = to_bus
    generic["from_status"] = status
    generic["to_status"] = status
    generic["r1"] = branch[:, BR_R].real * z_base_to
    generic["x1"] = branch[:, BR_X].real * z_base_to
    generic["g1"] = branch[:, BR_G].real / z_base_to
    generic["b1"] = branch[:, BR_B].real / z_base_to
    generic["k"] = tap
    generic["theta"] = np.deg2rad(branch[:, SHIFT].real)
    generic["sn"] = np.nan
    return generic


START_GUIDE_FACTOR = 1e10  # a guide's impedance in multiples of its branch's: 1e-10 of its admittance


def with_start_guides(pgm: PgmModel, angle_rad: np.ndarray) -> PgmModel:
    """``pgm`` with a start guide beside each in-service branch (see the module docstring).

    ``angle_rad``: the base case's voltage angle at each node (rad). PGM turns the voltage by
    −shift from a branch's from node to its to node, so a shift of from − to makes the walk
    reach each node at its base-case angle. A guide's series impedance is START_GUIDE_FACTOR ×
    its branch's, without charging or ratio, so it carries 1e-10 of the branch's current: the
    answers move by ~1e-11 pu (tests/test_flow.py).
    """
    generic = pgm.input_data[ComponentType.generic_branch]
    guided = np.flatnonzero(generic["from_status"] == 1)
    guides = generic[guided].copy()
    next_id = max(int(table["id"].max()) for table in pgm.input_data.values() if len(table)) + 1
    guides["id"] = np.arange(next_id, next_id + len(guided))
    guides["r1"] *= START_GUIDE_FACTOR
    guides["x1"] *= START_GUIDE_FACTOR
    guides["g1"] = 0.0
    guides["b1"] = 0.0
    guides["k"] = 1.0
    guides["theta"] = angle_rad[guides["from_node"]] - angle_rad[guides["to_node"]]
    guide_id = np.full(len(generic), -1, dtype=np.int64)
    guide_id[guided] = guides["id"]
    return dataclasses.replace(pgm, start_guides=guides, guide_id=guide_id)


@dataclass(frozen=True)
class _Demand:
    """The model's demand as PGM loads: per demand bus one load per ZIP kind in use."""

    bus: np.ndarray  # ppc buses with demand (or an element whose values vary)
    zip_p: np.ndarray  # (buses, kinds) shares of constant power, current, impedance
    zip_q: np.ndarray
    load_ids: np.ndarray  # (buses, kinds)
    loads: np.ndarray  # the sym_load input rows


def _demand(net: pandapowerNet, bus: np.ndarray, ids: _Ids) -> _Demand:
    n_bus = len(bus)
    varying = _buses_of_varying_elements(net)
    demand_bus = np.flatnonzero((bus[:, PD] != 0) | (bus[:, QD] != 0) | np.isin(np.arange(n_bus), varying))
    demand_bus = demand_bus[bus[demand_bus, BUS_TYPE] != ISOLATED_BUS]
    zip_p = _zip_shares(bus[demand_bus, CID_P], bus[demand_bus, CZD_P])
    zip_q = _zip_shares(bus[demand_bus, CID_Q], bus[demand_bus, CZD_Q])
    # constant-current and constant-impedance loads only where some load is of that kind
    kinds = [k for k in range(3) if k == 0 or zip_p[:, k].any() or zip_q[:, k].any()]
    zip_p, zip_q = zip_p[:, kinds], zip_q[:, kinds]
    load_types = np.array([LoadGenType.const_power, LoadGenType.const_current, LoadGenType.const_impedance])
    load_ids = ids.take(len(kinds) * len(demand_bus)).reshape(len(kinds), -1).T
    loads = initialize_array(DatasetType.input, ComponentType.sym_load, len(kinds) * len(demand_bus))
    loads["id"] = load_ids.T.ravel()
    loads["node"] = np.tile(demand_bus, len(kinds))
    loads["status"] = 1
    loads["type"] = np.repeat(load_types[kinds], len(demand_bus))
    loads["p_specified"] = (zip_p * bus[demand_bus, PD][:, None]).T.ravel() * MEGA
    loads["q_specified"] = (zip_q * bus[demand_bus, QD][:, None]).T.ravel() * MEGA
    return _Demand(demand_bus, zip_p, zip_q, load_ids, loads)


def _voltage_regulated(pv: _PvGeneration, ids: _Ids) -> tuple[np.ndarray, np.ndarray]:
    """One ``sym_gen`` and one ``voltage_regulator`` holding its set-point (pu) per PV bus."""
    pv_gens = initialize_array(DatasetType.input, ComponentType.sym_gen, len(pv.bus))
    pv_gens["id"] = ids.take(len(pv.bus))
    pv_gens["node"] = pv.bus
    pv_gens["status"] = 1
    pv_gens["type"] = LoadGenType.const_power
    pv_gens["p_specified"] = pv.p_mw * MEGA
    pv_gens["q_specified"] = 0.0
    regulators = initialize_array(DatasetType.input, ComponentType.voltage_regulator, len(pv.bus))
    regulators["id"] = ids.take(len(pv.bus))
    regulators["regulated_object"] = pv_gens["id"]
    regulators["status"] = 1
    regulators["u_ref"] = pv.vm_pu
    return pv_gens, regulators


def _check_branches(net: pandapowerNet, branch: np.ndarray, source: str) -> None:
    lookups = net._pd2ppc_lookups["branch"]
    names = _branch_names(net, lookups, len(branch))
    in_service = branch[:, BR_STATUS].real > 0
    zero = in_service & (branch[:, BR_R].real == 0) & (branch[:, BR_X].real == 0)
    if zero.any():
        raise GridError(
            f"{source}: {int(zero.sum())} branch(es) have zero impedance (e.g. {names[np.argmax(zero)]}); "
            "model them as a closed bus-bus switch instead"
        )
    asym = (branch[:, [BR_R_ASYM, BR_X_ASYM, BR_G_ASYM, BR_B_ASYM]].real != 0).any(axis=1) & in_service
    if asym.any():
        raise GridError(
            f"{source}: {int(asym.sum())} branch(es) have different from/to-side parameters "
            f"(e.g. {names[np.argmax(asym)]}), which the fast engine does not model"
        )


def _branch_names(net: pandapowerNet, lookups: dict, n_branch: int) -> list[str]:
    names = [f"ppc branch {i}" for i in range(n_branch)]
    for table, (start, stop) in lookups.items():
        if table in net and len(net[table]) == stop - start:
            for offset, name in enumerate(net[table]["name"].astype(str)):
                names[start + offset] = f"{table} '{name}'"
    return names


def _branch_range(lookups: dict, table: str, count: int) -> np.ndarray:
    if table not in lookups:
        return np.zeros(0, dtype=int)
    start, stop = lookups[table]
    if stop - start != count:
        raise GridError(f"pandapower's case has {stop - start} {table} branches for {count} {table}s")
    return np.arange(start, stop)


def _zip_shares(current: np.ndarray, impedance: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - current - impedance, current, impedance])


@dataclass(frozen=True)
class _PvGeneration:
    bus: np.ndarray  # ppc PV buses
    vm_pu: np.ndarray  # their set-points
    p_mw: np.ndarray  # their generators' active power
    gen_bus: np.ndarray  # per generator there: position in ``bus``
    q_min_mvar: np.ndarray
    q_max_mvar: np.ndarray


def _pv_generation(bus: np.ndarray, gen: np.ndarray) -> _PvGeneration:
    on = gen[:, GEN_STATUS] > 0
    gen_bus = gen[on, GEN_BUS].real.astype(int)
    at_pv = bus[gen_bus, BUS_TYPE] == PV_BUS
    gen_bus, rows = gen_bus[at_pv], gen[on][at_pv]
    pv_bus = np.unique(gen_bus)
    position = np.searchsorted(pv_bus, gen_bus)
    vm = np.zeros(len(pv_bus))
    vm[position] = rows[:, VG].real
    return _PvGeneration(
        bus=pv_bus,
        vm_pu=vm,
        p_mw=np.bincount(position, rows[:, PG].real, len(pv_bus)),
        gen_bus=position,
        q_min_mvar=rows[:, QMIN].real.copy(),
        q_max_mvar=rows[:, QMAX].real.copy(),
    )


def _bus_positions(net: pandapowerNet, buses: np.ndarray) -> np.ndarray:
    position = net.bus.index.get_indexer(np.asarray(buses, dtype=np.int64))
    if (position < 0).any():
        unknown = np.asarray(buses)[position < 0][:3].tolist()
        raise GridError(f"unknown bus index(es) {unknown}: use indices of net.bus")
    return position


def _bus_to_node(net: pandapowerNet) -> np.ndarray:
    lookup = net._pd2ppc_lookups["bus"]
    return lookup[net.bus.index.to_numpy()].astype(int)


def _bus_in_model(net: pandapowerNet, bus: np.ndarray) -> np.ndarray:
    node = _bus_to_node(net)
    inside = (node >= 0) & (node < len(bus))
    inside[inside] &= bus[node[inside], BUS_TYPE] != ISOLATED_BUS
    return inside & net.bus["in_service"].astype(bool).to_numpy()


def _buses_of_varying_elements(net: pandapowerNet) -> np.ndarray:
    lookup = net._pd2ppc_lookups["bus"]
    buses = [lookup[net[table]["bus"].to_numpy()] for table in DEMAND_SIGN if len(net[table])]
    return np.unique(np.concatenate(buses)) if buses else np.zeros(0, dtype=int)


def element_demand_map(net: pandapowerNet, model: PgmModel, table: str) -> pd.DataFrame:
    """Rows of ``table`` with the demand row (in ``model.demand_bus``) each feeds and its factor.

    The factor turns the element's MW (Mvar) into demand at that bus: sign × scaling, zero
    for elements out of service or on buses left out of the model.
    """
    frame = net[table]
    node = net._pd2ppc_lookups["bus"][frame["bus"].to_numpy()]
    row = np.searchsorted(model.demand_bus, node)
    row = np.clip(row, 0, max(len(model.demand_bus) - 1, 0))
    found = model.demand_bus[row] == node if len(model.demand_bus) else np.zeros(len(frame), bool)
    factor = DEMAND_SIGN[table] * frame["scaling"].to_numpy() * frame["in_service"].to_numpy()
    return pd.DataFrame({"row": row, "factor": np.where(found, factor, 0.0)}, index=frame.index)


# Outages without a topology change. Taking a branch out by its status makes power-grid-model
# rebuild its topology and sparse structure for that scenario (about 30–50 ms on ACTIVSg2000,
# more than the Newton-Raphson solve itself). Instead each branch gets a parallel
# compensator: a transformer whose impedance depends on its tap (uk_max/pk_max), idle at tap 1
# (IDLE_FACTOR × the branch's impedance, a 1e-10 share of its admittance) and at tap 0 exactly
# the branch's negative (−r − jx, same ratio and phase shift), so that the pair carries
# nothing; the branch's charging is cancelled by shunts at its two nodes. Tap positions and
# shunt values are parameters, which PGM updates per scenario without touching its topology.
IDLE_FACTOR = 1e10
COMPENSATOR_SN_VA = 1e8  # the compensators' rating: any value, their uk and pk follow it


@dataclass(frozen=True)
class Compensators:
    """The model's input plus a compensator per branch and a compensation shunt per node.

    ``transformer_id`` (per generic_branch position, −1 where a branch has none: out of
    service or a phase shift that is no multiple of 30°); ``shunt_id`` (per node id, which
    ``build_model`` makes its position; −1 where none); ``from_shunt_s``/``to_shunt_s``: per
    branch, the shunt admittance (S, complex) that cancels its charging at its from and to node.
    """

    input_data: dict
    transformer_id: np.ndarray
    shunt_id: np.ndarray
    from_shunt_s: np.ndarray
    to_shunt_s: np.ndarray


def build_compensators(pgm: PgmModel) -> Compensators:
    """The compensated input of ``pgm`` (see IDLE_FACTOR)."""
    data = pgm.input_data
    branch, node = data[ComponentType.generic_branch], data[ComponentType.node]
    u_from = node["u_rated"][branch["from_node"]]
    u_to = node["u_rated"][branch["to_node"]]
    clock_real = branch["theta"] / (np.pi / 6)
    clock = np.round(clock_real).astype(int)
    usable = (
        (branch["from_status"] == 1)
        & (branch["to_status"] == 1)
        & (np.abs(clock_real - clock) < 1e-12)
        & ((branch["r1"] != 0) | (branch["x1"] != 0))
    )
    rows = np.flatnonzero(usable)
    next_id = max(int(table["id"].max()) for table in pgm.solver_input().values() if len(table)) + 1

    r, x, u2 = branch["r1"][rows], branch["x1"][rows], u_to[rows]
    z_scale = COMPENSATOR_SN_VA / u2**2  # ohm → uk
    clock = np.mod(clock[rows], 12)
    compensator = initialize_array(DatasetType.input, ComponentType.transformer, len(rows))
    compensator["id"] = np.arange(next_id, next_id + len(rows))
    next_id += len(rows)
    compensator["from_node"] = branch["from_node"][rows]
    compensator["to_node"] = branch["to_node"][rows]
    compensator["from_status"] = 1
    compensator["to_status"] = 1
    compensator["u1"] = u_from[rows] * branch["k"][rows]  # the branch's off-nominal ratio
    compensator["u2"] = u2
    compensator["sn"] = COMPENSATOR_SN_VA
    # active (tap 0, the nominal tap, where PGM takes uk and pk as given): −r − jx; the sign of
    # uk is the sign of the reactance PGM derives from |uk| and pk
    compensator["uk"] = np.where(x >= 0, -1.0, 1.0) * np.hypot(r, x) * z_scale
    compensator["pk"] = -r * z_scale * COMPENSATOR_SN_VA
    compensator["uk_min"] = compensator["uk"]
    compensator["pk_min"] = compensator["pk"]
    # idle (tap 1): IDLE_FACTOR × (r + j|x|); reached from the nominal values by PGM's linear
    # interpolation, exact to rounding because the idle values dwarf the active ones
    compensator["uk_max"] = IDLE_FACTOR * np.hypot(r, x) * z_scale
    compensator["pk_max"] = IDLE_FACTOR * r * z_scale * COMPENSATOR_SN_VA
    compensator["i0"] = 0.0
    compensator["p0"] = 0.0
    compensator["winding_from"] = WindingType.wye_n
    # PGM accepts odd clocks only between a wye and a delta side
    compensator["winding_to"] = np.where(clock % 2 == 1, WindingType.delta, WindingType.wye_n)
    compensator["clock"] = clock
    compensator["tap_side"] = BranchSide.from_side  # with tap_size 0 the tap moves only uk and pk
    compensator["tap_size"] = 0.0
    compensator["tap_min"] = 0
    compensator["tap_nom"] = 0
    compensator["tap_max"] = 1
    compensator["tap_pos"] = 1
    transformer_id = np.full(len(branch), -1, dtype=np.int64)
    transformer_id[rows] = compensator["id"]

    # half the charging at each end: at the to node as given, at the from node through the ratio
    half = (branch["g1"] + 1j * branch["b1"]) / 2
    to_shunt = np.where(usable, -half, 0.0)
    from_shunt = np.where(usable, -half / branch["k"] ** 2 * (u_to / u_from) ** 2, 0.0)
    charged = usable & (half != 0)
    shunt_nodes = np.unique(np.concatenate([branch["from_node"][charged], branch["to_node"][charged]]))
    shunts = initialize_array(DatasetType.input, ComponentType.shunt, len(shunt_nodes))
    shunts["id"] = np.arange(next_id, next_id + len(shunt_nodes))
    shunts["node"] = shunt_nodes
    shunts["status"] = 1
    for column in ("g1", "b1", "g0", "b0"):
        shunts[column] = 0.0
    shunt_id = np.full(len(node), -1, dtype=np.int64)
    shunt_id[shunt_nodes] = shunts["id"]

    input_data = {
        **data,
        ComponentType.transformer: compensator,
        ComponentType.shunt: np.concatenate([data[ComponentType.shunt], shunts]),
    }
    return Compensators(input_data, transformer_id, shunt_id, from_shunt, to_shunt)
