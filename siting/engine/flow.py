"""Many AC power flows at once: time steps × added loads × outages, on power-grid-model.

``prepare(net, site_buses)`` converts a pandapower net once; ``solve(model, scenarios)``
runs a batch and returns bus voltages and line/transformer loadings per scenario, mapped
back to the pandapower tables. pandapower's ``runpp`` is the reference: the same net gives
the same numbers (tests prove |ΔV| ≤ 1e-4 pu and |Δloading| ≤ 0.1 point on every shipped
grid). Every other stage gets its power flows from here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet
from pandapower.pypower.idx_bus import VA
from power_grid_model import (
    CalculationInitialization,
    CalculationMethod,
    ComponentType,
    DatasetType,
    PowerGridModel,
    initialize_array,
)
from power_grid_model.errors import PowerGridBatchError, PowerGridError
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from siting.engine.pgm_model import (
    MEGA,
    Compensators,
    PgmModel,
    base_power_flow,
    build_compensators,
    build_model,
    element_demand_map,
    with_start_guides,
)
from siting.errors import GridError, UsageError
from siting.sources.grid import check_network

log = logging.getLogger(__name__)

TOLERANCE_PU = 1e-9  # Newton-Raphson stop: largest voltage change between iterations
MAX_ITERATIONS = 30
Q_LIMIT_ROUNDS = 30  # PV→PQ switching rounds; each switches at least one bus or stops
# scenarios × (nodes + branches) per PGM call: small enough to stay in cache-friendly,
# reused memory (a year in one call is twice as slow), large enough to keep PGM's threads busy
MAX_CELLS_PER_CHUNK = 1_000_000
Q_RANGE_EPS = 2.220446049250313e-16  # pandapower's EPS in its split of a bus's Q among generators

Outage = tuple[str, int]


@dataclass(frozen=True)
class Scenarios:
    """A batch of ``n`` power-flow scenarios on one prepared grid.

    ``element_values`` maps ``(table, column)`` — ``("load", "p_mw")``, ``("load", "q_mvar")``,
    ``("sgen", "p_mw")``, ``("sgen", "q_mvar")``, ``("storage", "p_mw")``, ``("gen", "p_mw")``,
    ``("ext_grid", "vm_pu")`` — to
    an array (n, rows of that table) of absolute values; NaN keeps the model's value.
    ``site_p_mw``/``site_q_mvar`` (n, sites) are loads added at ``FlowModel.site_buses`` (MW,
    Mvar). ``outages`` holds, per scenario, ``None``, one ``("line" | "trafo", index)`` taken out
    of service, or a tuple of such pairs taken out together (``(("line", 3), ("trafo", 1))``).
    """

    n: int
    element_values: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    site_p_mw: np.ndarray | None = None
    site_q_mvar: np.ndarray | None = None
    outages: tuple[Outage | tuple[Outage, ...] | None, ...] | None = None

    def take(self, rows: slice | np.ndarray) -> Scenarios:
        """The scenarios in ``rows`` as a batch of their own."""
        index = np.arange(self.n)[rows]
        return Scenarios(
            n=len(index),
            element_values={key: value[index] for key, value in self.element_values.items()},
            site_p_mw=None if self.site_p_mw is None else self.site_p_mw[index],
            site_q_mvar=None if self.site_q_mvar is None else self.site_q_mvar[index],
            outages=None if self.outages is None else tuple(self.outages[i] for i in index),
        )

    @property
    def added_mw(self) -> np.ndarray:
        """Load added at the sites per scenario (MW, shape (n,))."""
        if self.site_p_mw is None:
            return np.zeros(self.n)
        return np.asarray(self.site_p_mw, dtype=float).sum(axis=1)


def outage_elements(outage: Outage | tuple[Outage, ...] | None) -> tuple[Outage, ...]:
    """The branches an ``Scenarios.outages`` entry takes out, as a sorted tuple of pairs."""
    if outage is None:
        return ()
    if len(outage) == 2 and isinstance(outage[0], str):
        return ((str(outage[0]), int(outage[1])),)
    return tuple(sorted({(str(table), int(index)) for table, index in outage}))


@dataclass(frozen=True)
class FlowResult:
    """Per scenario: bus voltage (pu, NaN where unsupplied), line and transformer loading (%).

    Columns follow ``bus_index``/``line_index``/``trafo_index`` (the pandapower indices).
    """

    vm_pu: np.ndarray
    va_degree: np.ndarray
    line_loading_percent: np.ndarray
    trafo_loading_percent: np.ndarray
    converged: np.ndarray
    bus_index: pd.Index
    line_index: pd.Index
    trafo_index: pd.Index


# participation: the slack's output within this of its base case. 100 kW: on 300 of ACTIVSg2000's
# outages at its net-load peak with 20 MW added, voltages within 1.3e-6 pu and loadings within
# 6.4e-3 points of a 10 W balance (10 kW: 1.3e-7 pu, 6.6e-4 points), far inside the agreement
# with runpp (1e-4 pu, 0.1 point), for 2.0 solves a flow instead of 2.6 at 10 kW
BALANCE_TOLERANCE_MW = 0.1
BALANCE_ROUNDS = 30


@dataclass(frozen=True)
class Balance:
    """Who supplies load added or changed in a scenario.

    ``"slack"``: the slack bus (pandapower's default). ``"participation"``: the generators at
    voltage-controlled buses, each in proportion to its weight — ``weights`` (net.gen index →
    weight ≥ 0) or, by default, its active-power headroom ``max_p_mw − p_mw``; the slack keeps
    its output of the model's base case. It is ``runpp(distributed_slack=True)`` with those
    ``slack_weight``s on the generators, none on the slack, and the slack's base-case output
    held at its bus as a fixed injection.
    """

    mode: str = "slack"
    weights: dict[int, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("slack", "participation"):
            raise UsageError(f"balance = {self.mode!r}: use 'slack' or 'participation'")
        if self.weights is not None and self.mode != "participation":
            raise UsageError("balance weights are for balance = 'participation'; drop them or switch mode")
        if self.weights is not None:
            values = np.array(list(self.weights.values()), dtype=float)
            if not np.isfinite(values).all() or (values < 0).any():
                raise UsageError("balance weights: every generator's weight must be a number ≥ 0")
            if not (values > 0).any():
                raise UsageError("balance weights are all zero: give one generator a positive weight")


def participation_weights(net: pandapowerNet, balance: Balance) -> pd.Series:
    """Each generator's share of the balance (net.gen index → share, summing to 1)."""
    if balance.weights is None:
        if "max_p_mw" not in net.gen or not np.isfinite(net.gen["max_p_mw"].to_numpy(float)).any():
            raise UsageError(
                "balance = 'participation': the model's generators have no max_p_mw to share by "
                "headroom; give weights per generator"
            )
        headroom = (net.gen["max_p_mw"] - net.gen["p_mw"] * net.gen["scaling"]).clip(lower=0).fillna(0.0)
        weights = headroom.where(net.gen["in_service"].astype(bool), 0.0)
    else:
        unknown = [g for g in balance.weights if g not in net.gen.index]
        if unknown:
            raise UsageError(
                f"balance weights name unknown generator(s) {unknown[:3]}: use indices of the gen table"
            )
        weights = pd.Series(0.0, index=net.gen.index)
        weights[list(balance.weights)] = list(balance.weights.values())
        weights = weights.where(net.gen["in_service"].astype(bool), 0.0)
    if not (weights > 0).any():
        raise UsageError("balance = 'participation': no in-service generator has a positive weight")
    return weights / weights.sum()


@dataclass(frozen=True)
class FlowModel:
    """A grid converted once for batches of power flows."""

    net: pandapowerNet
    pgm: PgmModel
    solver: PowerGridModel
    site_buses: np.ndarray
    demand_maps: dict[str, pd.DataFrame]
    gen_pv_row: np.ndarray  # per net.gen row: position in pgm.pv_bus, or -1
    ext_grid_source: np.ndarray  # per net.ext_grid row: position of its slack source, or -1
    gen_factor: np.ndarray
    line_rating_ka: np.ndarray
    trafo_rating_mva: np.ndarray
    islanded_buses: pd.Index
    enforce_q_lims: bool  # PV buses turn PQ at their generators' reactive limits, as runpp's
    # why enforce_q_lims is what it is, for the manifest ("" when as asked)
    q_lims_note: str = ""
    balance: Balance = Balance()
    pv_share: np.ndarray | None = None  # participation: share of each PV bus in the balance
    slack_p_mw: float = 0.0  # participation: the slacks' output in the model's base case
    # participation: MW the slacks' output falls per MW the participants add, in the base case
    # (not 1: moving generation changes losses)
    balance_gain: float = 1.0
    # outages solved on the compensated model (pgm_model.build_compensators) instead of by status
    compensated: bool = False
    # built on first use and shared by the model's copies: the compensated model, its bridges
    outage_cache: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class EngineOptions:
    """How the stages' power flows treat generators.

    Parameters
    ----------
    enforce_q_lims : bool
        Switch PV buses to PQ at their generators' reactive limits (``runpp(enforce_q_lims=True)``).
        Off by default: on the ACTIVSg cases the hourly profiles solve with limits only near the
        peak (at light load most generators sit beyond Qmin even without limits).
    balance : Balance
        Who supplies added load: the slack (default) or participating generators.
    """

    enforce_q_lims: bool = False
    balance: Balance = field(default_factory=Balance)

    def record(self) -> dict[str, object]:
        """The options as plain data, for manifests."""
        return {"enforce_q_lims": self.enforce_q_lims, **dataclasses.asdict(self.balance)}


def q_limits_default(net: pandapowerNet) -> bool:
    """Whether reactive limits should be enforced by default.

    Yes where the model's in-service voltage-controlled generators carry them (MATPOWER, PSS/E
    cases), as planning tools do; not for SimBench or distribution models, whose generators have none.
    """
    return _has_q_limits(net)


def _has_q_limits(net: pandapowerNet) -> bool:
    gen = net.gen[net.gen["in_service"].astype(bool) & ~net.gen.get("slack", False)]
    columns = [c for c in ("min_q_mvar", "max_q_mvar") if c in gen.columns]
    return bool(len(gen) and columns and np.isfinite(gen[columns].to_numpy(float)).any())


def prepare(
    net: pandapowerNet,
    site_buses: np.ndarray | Sequence[int] = (),
    source: str = "grid",
    enforce_q_lims: bool = False,
    balance: Balance = Balance(),
) -> FlowModel:
    """Convert ``net`` for batch power flows, with an added (zero) load at each of ``site_buses``.

    ``enforce_q_lims``: switch PV buses to PQ at their generators' reactive limits, as
    ``runpp(enforce_q_lims=True)`` (a study decides its default with ``q_limits_default``).
    Asked for on a model whose generators carry no limits, it is off, with a warning and
    ``q_lims_note``.
    """
    check_network(net, source)
    _check_model(net, source)
    note = ""
    if enforce_q_lims and not _has_q_limits(net):
        note = "the model's generators carry no reactive limits: solved without them"
        log.warning("%s: enforce_q_lims is on but %s", source, note)
        enforce_q_lims = False
    base_power_flow(net, source)
    site_buses = np.asarray(site_buses, dtype=np.int64)
    pgm = build_model(net, site_buses, source)
    solver = _solver(pgm, net, source)
    if len(pgm.pv_bus) and not _solves_flat(solver):
        # the base case's angles are too far from the flat start (ACTIVSg10k): start from them
        pgm = with_start_guides(pgm, np.deg2rad(net._ppc["bus"][:, VA]))
        solver = _solver(pgm, net, source)
    demand_maps = {table: element_demand_map(net, pgm, table) for table in ("load", "sgen", "storage")}
    gen_pv_row, gen_factor = _gen_map(net, pgm)
    islanded = net.bus.index[~pgm.bus_in_model & net.bus["in_service"].astype(bool).to_numpy()]
    if len(islanded):
        log.warning(
            "%s: %d bus(es) are not connected to a slack; their results are NaN", source, len(islanded)
        )
    pv_share, slack_p = None, 0.0
    if balance.mode == "participation":
        share = participation_weights(net, balance).to_numpy()
        keep = gen_pv_row >= 0
        pv_share = np.bincount(gen_pv_row[keep], share[keep], len(pgm.pv_bus))
        if not pv_share.sum() > 0:
            raise UsageError("balance = 'participation': no weighted generator at a voltage-controlled bus")
        pv_share /= pv_share.sum()  # type: ignore[misc]  # numpy types bincount as int; weighted, it is float
        slack_p = float(net.res_ext_grid["p_mw"].sum())
    model = FlowModel(
        net=net,
        pgm=pgm,
        solver=solver,
        site_buses=site_buses,
        demand_maps=demand_maps,
        gen_pv_row=gen_pv_row,
        ext_grid_source=_ext_grid_sources(net, pgm),
        gen_factor=gen_factor,
        line_rating_ka=(net.line["max_i_ka"] * net.line["df"] * net.line["parallel"]).to_numpy(float),
        trafo_rating_mva=(net.trafo["sn_mva"] * net.trafo["df"] * net.trafo["parallel"]).to_numpy(float),
        islanded_buses=islanded,
        enforce_q_lims=bool(enforce_q_lims) and len(pgm.pv_bus) > 0,
        q_lims_note=note,
        balance=balance,
        pv_share=pv_share,
        slack_p_mw=slack_p,
    )
    if pv_share is None:
        return model
    return dataclasses.replace(model, balance_gain=_balance_gain(model, pv_share))


GAIN_PROBE_MW = 10.0  # participants' shift that measures the balance gain
GAIN_RANGE = (0.2, 5.0)  # a secant slope outside this is not trusted: the balance falls back to 1


def _balance_gain(model: FlowModel, share: np.ndarray) -> float:
    """``FlowModel.balance_gain``: the base case with the participants ``GAIN_PROBE_MW`` up.

    ``share``: each PV bus's share of the balance.
    """
    update = _update(model, Scenarios(1))
    update[ComponentType.sym_gen]["p_specified"] += GAIN_PROBE_MW * share * MEGA
    result, converged = _run_pgm(model, update, {ComponentType.source: ["p"]})
    gain = (model.slack_p_mw - result[ComponentType.source]["p"].sum() / MEGA) / GAIN_PROBE_MW
    return float(gain) if converged[0] and GAIN_RANGE[0] < gain < GAIN_RANGE[1] else 1.0


def _solver(pgm: PgmModel, net: pandapowerNet, source: str) -> PowerGridModel:
    try:
        return PowerGridModel(pgm.solver_input(), system_frequency=float(net.f_hz))
    except PowerGridError as err:
        raise GridError(f"{source}: power-grid-model refuses the converted model ({err})") from err


def _solves_flat(solver: PowerGridModel) -> bool:
    """Whether Newton-Raphson solves the model's own case from PGM's flat start."""
    try:
        solver.calculate_power_flow(
            calculation_method=CalculationMethod.newton_raphson,
            calculation_initialization=CalculationInitialization.flat,
            error_tolerance=TOLERANCE_PU,
            max_iterations=MAX_ITERATIONS,
            output_component_types={ComponentType.node: ["u_pu"]},
        )
    except PowerGridError:
        return False
    return True


def solve(model: FlowModel, scenarios: Scenarios, chunk_size: int | None = None) -> FlowResult:
    """Run every scenario; large batches go through PGM in chunks so memory stays bounded.

    Outages that leave every node connected go to the compensated model in one batch (no
    topology rebuild per scenario); outages of bridges, which island part of the grid, and
    branches without a compensator go by status (``_solve_by_status``).
    """
    if scenarios.outages is None or model.compensated:
        return _solve_by_status(model, scenarios, chunk_size)
    path = outage_paths(model, scenarios.outages)
    if (path == BY_STATUS).all():
        return _solve_by_status(model, scenarios, chunk_size)
    result = _empty_result(model.net, scenarios.n)
    for code in (NO_OUTAGE, COMPENSATED, BY_STATUS):
        rows = np.flatnonzero(path == code)
        if not len(rows):
            continue
        part = scenarios.take(rows)
        if code == NO_OUTAGE:
            part = dataclasses.replace(part, outages=None)
        target = _compensated(model) if code == COMPENSATED else model
        _scatter(result, rows, _solve_by_status(target, part, chunk_size))
    return result


NO_OUTAGE, COMPENSATED, BY_STATUS = 0, 1, 2


def outage_paths(model: FlowModel, outages: tuple[Outage | tuple[Outage, ...] | None, ...]) -> np.ndarray:
    """Per scenario: NO_OUTAGE, COMPENSATED or BY_STATUS.

    COMPENSATED: every branch out has a compensator and the rest stays connected.
    """
    compensation = _compensation(model)
    path = np.empty(len(outages), dtype=np.int8)
    decided: dict[tuple[Outage, ...], int] = {}
    for row, outage in enumerate(outages):
        elements = outage_elements(outage)
        if not elements:
            path[row] = NO_OUTAGE
            continue
        if elements not in decided:
            branches = _outage_branches(model, elements)
            ok = bool((compensation.compensators.transformer_id[branches] >= 0).all())
            if ok and len(branches) == 1:
                ok = not compensation.bridge[branches[0]]
            elif ok:
                ok = not _splits(compensation, branches)
            decided[elements] = COMPENSATED if ok else BY_STATUS
        path[row] = decided[elements]
    return path


@dataclass(frozen=True)
class _Compensation:
    solver: PowerGridModel
    compensators: Compensators
    bridge: np.ndarray  # per generic_branch: taking it out alone splits the grid
    from_node: np.ndarray  # in-service generic_branch ends (positions), for several branches out
    to_node: np.ndarray
    n_nodes: int
    n_components: int  # connected parts of the grid with every branch in


def _compensation(model: FlowModel) -> _Compensation:
    from siting.engine.topology import bridges  # here: topology imports this module

    cached = model.outage_cache.get("compensation")
    if cached is not None:
        return cached
    compensators = build_compensators(model.pgm)
    try:
        solver = PowerGridModel(
            model.pgm.solver_input(compensators.input_data), system_frequency=float(model.net.f_hz)
        )
    except PowerGridError as err:
        raise GridError(f"power-grid-model refuses the outage model ({err})") from err
    branch = model.pgm.input_data[ComponentType.generic_branch]
    n_nodes = len(model.pgm.input_data[ComponentType.node])
    on = (branch["from_status"] == 1) & (branch["to_status"] == 1)
    bridge = np.zeros(len(branch), dtype=bool)
    bridge[on] = bridges(n_nodes, branch["from_node"][on], branch["to_node"][on])
    from_node, to_node = branch["from_node"].copy(), branch["to_node"].copy()
    from_node[~on] = to_node[~on] = -1
    components = _components(n_nodes, from_node, to_node)
    cached = _Compensation(solver, compensators, bridge, from_node, to_node, n_nodes, components)
    model.outage_cache["compensation"] = cached
    return cached


def _components(n_nodes: int, from_node: np.ndarray, to_node: np.ndarray) -> int:
    keep = from_node >= 0
    graph = coo_matrix((np.ones(keep.sum()), (from_node[keep], to_node[keep])), shape=(n_nodes, n_nodes))
    return int(connected_components(graph, directed=False)[0])


def _splits(compensation: _Compensation, branches: np.ndarray) -> bool:
    """Whether taking ``branches`` out together leaves more connected parts than before."""
    from_node = compensation.from_node.copy()
    from_node[branches] = -1
    parts = _components(compensation.n_nodes, from_node, compensation.to_node)
    return parts > compensation.n_components


def _compensated(model: FlowModel) -> FlowModel:
    return dataclasses.replace(model, solver=_compensation(model).solver, compensated=True)


def _empty_result(net: pandapowerNet, n: int) -> FlowResult:
    return FlowResult(
        vm_pu=np.empty((n, len(net.bus))),
        va_degree=np.empty((n, len(net.bus))),
        line_loading_percent=np.empty((n, len(net.line))),
        trafo_loading_percent=np.empty((n, len(net.trafo))),
        converged=np.empty(n, dtype=bool),
        bus_index=net.bus.index,
        line_index=net.line.index,
        trafo_index=net.trafo.index,
    )


def _solve_by_status(model: FlowModel, scenarios: Scenarios, chunk_size: int | None) -> FlowResult:
    """Every scenario on ``model``'s own solver.

    Outages by compensator on a compensated model, else by status: scenarios sharing an outage
    on a model with it out, the rest mixed.
    """
    n = scenarios.n
    result = _empty_result(model.net, n)
    groups, mixed = _outage_groups(None if model.compensated else scenarios.outages)
    for outage, rows in groups:
        # one outage in many scenarios: a model with those branches out keeps PGM's topology cached
        part = dataclasses.replace(scenarios.take(rows), outages=None)
        _scatter(result, rows, solve(_with_outage(model, outage), part, chunk_size))
    if len(groups):
        _scatter(result, mixed, solve(model, scenarios.take(mixed), chunk_size))
        return result
    size = chunk_size or batch_size(model)
    for start in range(0, n, size):
        chunk = slice(start, min(start + size, n))
        _solve_chunk(model, scenarios.take(chunk), result, chunk)
    return result


MIN_OUTAGE_GROUP = 8  # scenarios sharing one outage that are worth a model of their own


def _outage_groups(
    outages: tuple[Outage | tuple[Outage, ...] | None, ...] | None,
) -> tuple[list[tuple[tuple[Outage, ...], np.ndarray]], np.ndarray]:
    """Outages shared by at least MIN_OUTAGE_GROUP scenarios, with their positions.

    Also the positions of every other scenario (none when no outage repeats enough).
    """
    if outages is None:
        return [], np.arange(0)
    positions: dict[tuple[Outage, ...], list[int]] = {}
    for row, outage in enumerate(outages):
        elements = outage_elements(outage)
        if elements:
            positions.setdefault(elements, []).append(row)
    groups = [(o, np.array(rows)) for o, rows in positions.items() if len(rows) >= MIN_OUTAGE_GROUP]
    if not groups:
        return [], np.arange(0)
    grouped = np.zeros(len(outages), dtype=bool)
    for _, rows in groups:
        grouped[rows] = True
    return groups, np.flatnonzero(~grouped)


def _with_outage(model: FlowModel, outage: tuple[Outage, ...]) -> FlowModel:
    solver = model.solver.copy()
    solver.update(update_data={ComponentType.generic_branch: _outage_update(model, (outage,))["data"]})
    return dataclasses.replace(model, solver=solver)


def _scatter(result: FlowResult, rows: np.ndarray, part: FlowResult) -> None:
    for name in ("vm_pu", "va_degree", "line_loading_percent", "trafo_loading_percent", "converged"):
        getattr(result, name)[rows] = getattr(part, name)


def profile_scenarios(net: pandapowerNet, profiles: pd.DataFrame) -> Scenarios:
    """One scenario per time step of a grid's profiles (``Grid.profiles``)."""
    values = {}
    for element, variable in profiles.columns.droplevel("index").unique():
        frame = profiles[(element, variable)]
        if not frame.columns.equals(net[element].index):
            frame = frame.reindex(columns=net[element].index)
        # where the profiles cover the table in its order this is a view, not a copy of the year
        values[(element, variable)] = frame.to_numpy(float)
    return Scenarios(n=len(profiles), element_values=values)


def _check_model(net: pandapowerNet, source: str) -> None:
    """Refuse, naming the element, what no power flow can solve or no loading can be computed for."""
    line, trafo = net.line, net.trafo
    zero = {
        "line": line["in_service"].astype(bool)
        & (((line["r_ohm_per_km"] == 0) & (line["x_ohm_per_km"] == 0)) | (line["length_km"] <= 0)),
        "trafo": trafo["in_service"].astype(bool) & (trafo["vk_percent"] == 0),
    }
    for table, bad in zero.items():
        if bad.any():
            index = bad.idxmax()
            raise GridError(
                f"{source}: {int(bad.sum())} {table}(s) have zero impedance (e.g. {table} {index} "
                f"'{net[table].at[index, 'name']}'); model a zero-impedance tie as a closed bus-bus switch"
            )
    for table, column in (("line", "max_i_ka"), ("trafo", "sn_mva")):
        values = net[table][column]
        bad = net[table]["in_service"].astype(bool) & ~(values > 0)
        if bad.any():
            index = bad.idxmax()
            raise GridError(
                f"{source}: {int(bad.sum())} {table}(s) have a missing, zero or negative {column} "
                f"(e.g. {table} {index} '{net[table].at[index, 'name']}'); give every {table} a rating"
            )


def _gen_map(net: pandapowerNet, pgm: PgmModel) -> tuple[np.ndarray, np.ndarray]:
    node = net._pd2ppc_lookups["bus"][net.gen["bus"].to_numpy()] if len(net.gen) else np.zeros(0, int)
    row = np.searchsorted(pgm.pv_bus, node)
    row = np.clip(row, 0, max(len(pgm.pv_bus) - 1, 0))
    found = (pgm.pv_bus[row] == node) if len(pgm.pv_bus) else np.zeros(len(node), bool)
    factor = (net.gen["scaling"] * net.gen["in_service"]).to_numpy(float) if len(net.gen) else np.zeros(0)
    return np.where(found, row, -1), factor


def _ext_grid_sources(net: pandapowerNet, pgm: PgmModel) -> np.ndarray:
    slack_nodes = pgm.input_data[ComponentType.source]["node"]
    position = {int(node): i for i, node in enumerate(slack_nodes)}
    nodes = net._pd2ppc_lookups["bus"][net.ext_grid["bus"].to_numpy()]
    on = net.ext_grid["in_service"].astype(bool).to_numpy()
    found = [position.get(int(node), -1) if used else -1 for node, used in zip(nodes, on, strict=True)]
    return np.array(found, dtype=int)


def batch_size(model: FlowModel) -> int:
    """Scenarios per PGM batch (``solve``'s chunks), so one batch's results stay bounded."""
    data = model.pgm.input_data  # start guides, if any, are in every scenario's results too
    cells = (
        len(data[ComponentType.node]) + len(data[ComponentType.generic_branch]) + len(model.pgm.start_guides)
    )
    return max(1, MAX_CELLS_PER_CHUNK // max(cells, 1))


def _injections(model: FlowModel, scenarios: Scenarios) -> tuple[np.ndarray, ...]:
    """Demand P/Q at every demand bus, site P/Q and PV-generator P, per scenario (MW, Mvar)."""
    pgm, n = model.pgm, scenarios.n
    demand_p = np.tile(pgm.demand_p_mw, (n, 1))
    demand_q = np.tile(pgm.demand_q_mvar, (n, 1))
    pv_p = np.tile(pgm.pv_p_mw, (n, 1))
    for (table, column), values in scenarios.element_values.items():
        if table == "ext_grid":
            continue  # a source set-point, not an injection: see _update
        values = np.asarray(values, dtype=float)
        base = model.net[table][column].to_numpy(float)
        delta = np.where(np.isnan(values), 0.0, values - base)
        if table == "gen":
            if column != "p_mw":
                raise GridError(
                    "generators take only p_mw in a scenario (their Q follows the voltage set-point)"
                )
            keep = model.gen_pv_row >= 0
            matrix = _spread(model.gen_pv_row[keep], model.gen_factor[keep], len(pgm.pv_bus))
            pv_p += delta[:, keep] @ matrix
            continue
        if table not in model.demand_maps:
            raise GridError(f"a scenario cannot change {table}.{column}; use load, sgen, storage or gen")
        mapping = model.demand_maps[table]
        matrix = _spread(mapping["row"].to_numpy(), mapping["factor"].to_numpy(), len(pgm.demand_bus))
        target = demand_p if column == "p_mw" else demand_q
        target += (matrix.T @ delta.T).T
    n_sites = len(model.site_buses)
    site_p = _site_values(scenarios.site_p_mw, n, n_sites)
    site_q = _site_values(scenarios.site_q_mvar, n, n_sites)
    return demand_p, demand_q, site_p, site_q, pv_p


def _spread(rows: np.ndarray, factor: np.ndarray, n_rows: int) -> csr_matrix:
    """Sparse (elements × rows) matrix that sums element values into their bus rows."""
    return csr_matrix((factor, (np.arange(len(rows)), rows)), shape=(len(rows), n_rows))


def _site_values(values: np.ndarray | None, n: int, n_sites: int) -> np.ndarray:
    if values is None:
        return np.zeros((n, n_sites))
    values = np.asarray(values, dtype=float)
    if values.shape != (n, n_sites):
        raise GridError(f"site values have shape {values.shape}; expected {(n, n_sites)} (scenarios × sites)")
    return values


def _update(model: FlowModel, scenarios: Scenarios) -> dict:
    pgm, n = model.pgm, scenarios.n
    demand_p, demand_q, site_p, site_q, pv_p = _injections(model, scenarios)
    n_loads = pgm.load_ids.size + len(pgm.site_ids)
    loads = initialize_array(DatasetType.update, ComponentType.sym_load, (n, n_loads))
    loads["id"] = np.concatenate([pgm.load_ids.T.ravel(), pgm.site_ids])
    loads["p_specified"] = (
        np.concatenate([(demand_p[:, None, :] * pgm.zip_p.T[None]).reshape(n, -1), site_p], axis=1) * MEGA
    )
    loads["q_specified"] = (
        np.concatenate([(demand_q[:, None, :] * pgm.zip_q.T[None]).reshape(n, -1), site_q], axis=1) * MEGA
    )
    update: dict[ComponentType, np.ndarray | dict[str, np.ndarray]] = {ComponentType.sym_load: loads}
    if len(pgm.pv_bus):
        gens = initialize_array(DatasetType.update, ComponentType.sym_gen, (n, len(pgm.pv_bus)))
        gens["id"] = pgm.pv_gen_ids
        gens["p_specified"] = pv_p * MEGA
        gens["q_specified"] = 0.0
        update[ComponentType.sym_gen] = gens
        if model.enforce_q_lims:
            regulators = initialize_array(
                DatasetType.update, ComponentType.voltage_regulator, (n, len(pgm.pv_bus))
            )
            regulators["id"] = pgm.pv_regulator_ids
            regulators["status"] = 1
            update[ComponentType.voltage_regulator] = regulators
    slack_vm = scenarios.element_values.get(("ext_grid", "vm_pu"))
    if slack_vm is not None:
        given = pgm.input_data[ComponentType.source]
        sources = initialize_array(DatasetType.update, ComponentType.source, (n, len(given)))
        sources["id"] = given["id"]
        sources["u_ref"] = given["u_ref"]
        slack_vm = np.asarray(slack_vm, dtype=float)
        for row, position in enumerate(model.ext_grid_source):
            if position >= 0:
                column = slack_vm[:, row]
                sources["u_ref"][:, position] = np.where(np.isnan(column), given["u_ref"][position], column)
        update[ComponentType.source] = sources
    if scenarios.outages is not None and model.compensated:
        update.update(_compensation_update(model, scenarios.outages))
    elif scenarios.outages is not None:
        update[ComponentType.generic_branch] = _outage_update(model, scenarios.outages)
    return update


def _outage_branches(model: FlowModel, elements: tuple[Outage, ...]) -> np.ndarray:
    """generic_branch positions of the pandapower lines and transformers in ``elements``."""
    position = model.outage_cache.get("branch_position")
    if position is None:  # a dict, not an index look-up per element: searches run 10⁵ outages
        position = {
            (table, int(index)): int(branch)
            for table, branches in (("line", model.pgm.line_branch), ("trafo", model.pgm.trafo_branch))
            for index, branch in zip(model.net[table].index, branches, strict=True)
        }
        model.outage_cache["branch_position"] = position
    chosen = []
    for table, index in elements:
        if table not in ("line", "trafo"):
            raise GridError(f"outage of '{table}' is not supported; use 'line' or 'trafo'")
        if (table, index) not in position:
            raise GridError(f"outage of unknown {table} {index}")
        chosen.append(position[table, index])
    return np.asarray(chosen, dtype=np.int64)


def _outage_positions(
    model: FlowModel, outages: tuple[Outage | tuple[Outage, ...] | None, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Branch positions out in each scenario, flat, and the scenario of each."""
    branches = [_outage_branches(model, outage_elements(outage)) for outage in outages]
    counts = [len(b) for b in branches]
    flat = np.concatenate(branches) if branches else np.zeros(0, dtype=np.int64)
    return flat, np.repeat(np.arange(len(outages)), counts)


def _sparse(data: np.ndarray, scenario: np.ndarray, n: int) -> dict:
    """A PGM sparse batch update: ``data`` rows sorted by their ``scenario``."""
    indptr = np.concatenate([[0], np.cumsum(np.bincount(scenario, minlength=n))]).astype(np.int64)
    return {"data": data, "indptr": indptr}


def _outage_update(model: FlowModel, outages: tuple[Outage | tuple[Outage, ...] | None, ...]) -> dict:
    branches, scenario = _outage_positions(model, outages)
    ids = model.pgm.input_data[ComponentType.generic_branch]["id"][branches]
    # a branch's start guide goes out with it: left in, it would hold an island to the grid
    guides = model.pgm.guide_id[branches]
    ids = np.concatenate([ids, guides[guides >= 0]])
    scenario = np.concatenate([scenario, scenario[guides >= 0]])
    order = np.argsort(scenario, kind="stable")
    data = initialize_array(DatasetType.update, ComponentType.generic_branch, len(ids))
    data["id"] = ids[order]
    data["from_status"] = 0
    data["to_status"] = 0
    return _sparse(data, scenario[order], len(outages))


def _compensation_update(model: FlowModel, outages: tuple[Outage | tuple[Outage, ...] | None, ...]) -> dict:
    """Each outage as its compensators at tap 0 and their nodes' charging cancelled.

    Parameter changes only, so PGM keeps its topology (see pgm_model.build_compensators).
    """
    compensators = _compensation(model).compensators
    branches, scenario = _outage_positions(model, outages)
    n = len(outages)
    taps = initialize_array(DatasetType.update, ComponentType.transformer, len(branches))
    taps["id"] = compensators.transformer_id[branches]
    taps["tap_pos"] = 0
    # branches out together may share a node: one shunt update per (scenario, node), summed
    generic = model.pgm.input_data[ComponentType.generic_branch]
    nodes = np.concatenate([generic["from_node"][branches], generic["to_node"][branches]])
    values = np.concatenate([compensators.from_shunt_s[branches], compensators.to_shunt_s[branches]])
    at = np.concatenate([scenario, scenario])
    keep = compensators.shunt_id[nodes] >= 0
    key = at[keep] * len(compensators.shunt_id) + nodes[keep]
    unique, inverse = np.unique(key, return_inverse=True)
    shunts = initialize_array(DatasetType.update, ComponentType.shunt, len(unique))
    shunts["id"] = compensators.shunt_id[unique % len(compensators.shunt_id)]
    shunts["g1"] = np.bincount(inverse, values[keep].real, len(unique))
    shunts["b1"] = np.bincount(inverse, values[keep].imag, len(unique))
    return {
        ComponentType.transformer: _sparse(taps, scenario, n),
        ComponentType.shunt: _sparse(shunts, unique // len(compensators.shunt_id), n),
    }


def _run_pgm(model: FlowModel, update: dict, outputs: dict) -> tuple[dict, np.ndarray]:
    """Solve a batch update with the fastest PGM method that converges.

    Without PV buses: iterative current first (its factorised matrix is reused across
    scenarios, so it is fastest), and Newton-Raphson for scenarios it cannot solve. With PV
    buses (voltage regulators, which only Newton-Raphson models): Newton-Raphson from a flat
    start, since PGM's default linear start diverges on large transmission cases
    (ACTIVSg2000's base case among them); where the base case fails even from there, the
    model's start guides make that start the base case's angles (``pgm_model.with_start_guides``).
    """
    if len(model.pgm.pv_bus):
        return _run_method(
            model, update, outputs, CalculationMethod.newton_raphson, CalculationInitialization.flat
        )
    result, converged = _run_method(model, update, outputs, CalculationMethod.iterative_current)
    failed = np.flatnonzero(~converged)
    if len(failed):
        retry, retry_converged = _run_method(
            model, _take_update(update, failed), outputs, CalculationMethod.newton_raphson
        )
        _put(result, failed, retry)
        converged[failed] = retry_converged
    return result, converged


def _run_balanced(model: FlowModel, update: dict, outputs: dict) -> tuple[dict, np.ndarray]:
    """``_run_pgm``, and with participation the outer balance loop.

    The participating generators, in their shares, take over whatever the slack gives beyond its
    base-case output, until that is within ``BALANCE_TOLERANCE_MW``. The first solve already has
    them carrying the scenario's net change of injections; losses leave an excess that each
    round removes by a secant step on the slack's response to the shift, the first with the
    model's ``balance_gain`` (each round one solve of the scenarios still out of balance).
    """
    if model.pv_share is None:
        return _run_pgm(model, update, outputs)
    outputs = {**outputs, ComponentType.source: ["p"]}
    gens = update[ComponentType.sym_gen]
    base_p = gens["p_specified"].copy()
    shift = _injection_change_mw(model, update)  # MW the participants add in each scenario, in total
    gens["p_specified"] = base_p + shift[:, None] * model.pv_share * MEGA
    result, converged = _run_pgm(model, update, outputs)
    active = np.flatnonzero(converged)
    last_shift, last_excess = np.full(len(shift), np.nan), np.full(len(shift), np.nan)
    for _ in range(BALANCE_ROUNDS):
        excess = result[ComponentType.source]["p"][active].sum(axis=1) / MEGA - model.slack_p_mw
        unsettled = np.abs(excess) > BALANCE_TOLERANCE_MW
        active, excess = active[unsettled], excess[unsettled]
        if not len(active):
            return result, converged
        # the excess falls by about a MW per MW moved, give or take the losses the move changes
        # (ACTIVSg2000: 1.08): the secant through the last two rounds measures it
        slope = (last_excess[active] - excess) / (shift[active] - last_shift[active])
        trusted = np.isfinite(slope) & (slope > GAIN_RANGE[0]) & (slope < GAIN_RANGE[1])
        slope = np.where(trusted, slope, model.balance_gain)
        last_shift, last_excess = shift.copy(), np.full(len(shift), np.nan)
        last_excess[active] = excess
        shift[active] += excess / slope
        gens["p_specified"][active] = base_p[active] + shift[active, None] * model.pv_share * MEGA
        partial, partial_converged = _run_pgm(model, _take_update(update, active), outputs)
        _put(result, active, partial)
        converged[active] &= partial_converged
        active = active[partial_converged]
    converged[active] = False  # the balance did not settle
    return result, converged


def _injection_change_mw(model: FlowModel, update: dict) -> np.ndarray:
    """Each scenario's demand minus generation, against the base case's (MW).

    What the slack would add without participation, before losses; outages that island
    generation or demand are not in it (the balance rounds take them up).
    """
    given = model.pgm.input_data
    load = update[ComponentType.sym_load]["p_specified"].sum(axis=1)
    generation = update[ComponentType.sym_gen]["p_specified"].sum(axis=1)
    base_load = given[ComponentType.sym_load]["p_specified"].sum()
    base_generation = given[ComponentType.sym_gen]["p_specified"].sum()
    return ((load - base_load) - (generation - base_generation)) / MEGA


def _put(result: dict, rows: np.ndarray, part: dict) -> None:
    for component, columns in part.items():
        for attribute, values in columns.items():
            result[component][attribute][rows] = values


def batch_threads() -> int:
    """Threads per batch calculation: ``SITING_THREADS`` (0, the default, uses every core).

    A sweep's worker processes set it so that together they fill the machine, not each.
    """
    text = os.environ.get("SITING_THREADS", "0")
    try:
        threads = int(text)
    except ValueError:
        raise UsageError(f"SITING_THREADS={text}: give a whole number of threads (0: every core)") from None
    if threads < 0:
        raise UsageError(f"SITING_THREADS={text}: must be 0 (every core) or more")
    return threads


def _run_method(
    model: FlowModel,
    update: dict,
    outputs: dict,
    method: CalculationMethod,
    initialization: CalculationInitialization = CalculationInitialization.default,
) -> tuple[dict, np.ndarray]:
    n = next(iter(update.values()))
    n = len(n["indptr"]) - 1 if isinstance(n, dict) else n.shape[0]
    result = model.solver.calculate_power_flow(
        update_data=update,
        calculation_method=method,
        calculation_initialization=initialization,
        error_tolerance=TOLERANCE_PU,
        max_iterations=MAX_ITERATIONS,
        threading=batch_threads(),
        output_component_types=outputs,
        continue_on_batch_error=True,
    )
    guides = len(model.pgm.start_guides)
    if ComponentType.generic_branch in result and guides:  # the guides come first: drop them
        branches = result[ComponentType.generic_branch]
        result[ComponentType.generic_branch] = (
            {name: value[:, guides:] for name, value in branches.items()}
            if isinstance(branches, dict)  # columnar, as the attributes asked for above give it
            else branches[:, guides:]
        )
    converged = np.ones(n, dtype=bool)
    error = model.solver.batch_error
    if isinstance(error, PowerGridBatchError) and error.failed_scenarios is not None:
        converged[error.failed_scenarios] = False
    return result, converged


def _solve_chunk(model: FlowModel, scenarios: Scenarios, out: FlowResult, rows: slice) -> None:
    pgm, net = model.pgm, model.net
    outputs = {
        ComponentType.node: ["u_pu", "u_angle"],
        ComponentType.generic_branch: ["i_from", "i_to"],
    }
    update = _update(model, scenarios)
    if model.enforce_q_lims:
        outputs[ComponentType.sym_gen] = ["q"]
    result, converged = _run_balanced(model, update, outputs)
    if model.enforce_q_lims:
        converged = _enforce_q_limits(model, update, result, converged, outputs)
    node = result[ComponentType.node]
    energized = node["u_pu"] > 0  # PGM reports 0 pu at nodes no source reaches
    energized[~converged] = False
    inside = pgm.bus_in_model
    node_of_bus = pgm.bus_to_node[inside]
    out.converged[rows] = converged
    out.vm_pu[rows] = np.nan
    out.va_degree[rows] = np.nan
    out.vm_pu[rows, inside] = np.where(energized, node["u_pu"], np.nan)[:, node_of_bus]
    # a failed scenario's angles are whatever the solver left, possibly huge: convert only the rest
    angle = np.rad2deg(np.where(energized, node["u_angle"], 0.0))
    out.va_degree[rows, inside] = np.where(energized, angle, np.nan)[:, node_of_bus]

    branch = result[ComponentType.generic_branch]
    # a failed scenario's currents may be any bit pattern; they are masked below
    failed = ~converged[:, None]
    i_from_ka = np.where(failed, np.nan, branch["i_from"]) / 1e3
    i_to_ka = np.where(failed, np.nan, branch["i_to"]) / 1e3
    if model.compensated and scenarios.outages is not None:
        # a branch out still carries its current, which its compensator cancels: report it
        # as out of service, as the status path and runpp do
        branches, scenario = _outage_positions(model, scenarios.outages)
        i_from_ka[scenario, branches] = np.where(converged[scenario], 0.0, np.nan)
        i_to_ka[scenario, branches] = i_from_ka[scenario, branches]
    line = np.maximum(i_from_ka[:, pgm.line_branch], i_to_ka[:, pgm.line_branch]) / model.line_rating_ka * 100
    vn_hv = net.trafo["vn_hv_kv"].to_numpy(float)
    vn_lv = net.trafo["vn_lv_kv"].to_numpy(float)
    trafo = (
        np.maximum(i_from_ka[:, pgm.trafo_branch] * vn_hv, i_to_ka[:, pgm.trafo_branch] * vn_lv)
        * np.sqrt(3)
        / model.trafo_rating_mva
        * 100
    )
    line[~converged] = np.nan
    trafo[~converged] = np.nan
    out.line_loading_percent[rows] = line
    out.trafo_loading_percent[rows] = trafo


def _enforce_q_limits(
    model: FlowModel, update: dict, result: dict, converged: np.ndarray, outputs: dict
) -> np.ndarray:
    """PV→PQ switching as ``runpp(enforce_q_lims=True)`` does it, for every scenario at once.

    After each solve, a bus's reactive power is split among its generators as pandapower
    splits it (in proportion to their reactive ranges); a bus where any generator is beyond a
    limit turns PQ for good, injecting the violators at their limits and the others at their
    share. Only the scenarios that switched a bus are solved again. PGM's own limits on the
    voltage regulator are not used: in 1.13.213 they leave most regulators at a limit and
    voltages far above runpp's (see the README's engine section).
    """
    pgm = model.pgm
    gens = update[ComponentType.sym_gen]
    regulators = update[ComponentType.voltage_regulator]
    q_min, q_max = pgm.pv_gen_q_min_mvar, pgm.pv_gen_q_max_mvar
    n_pv = len(pgm.pv_bus)
    bus_min = np.bincount(pgm.pv_gen_bus, q_min, n_pv)
    bus_max = np.bincount(pgm.pv_gen_bus, q_max, n_pv)
    count = np.bincount(pgm.pv_gen_bus, minlength=n_pv)
    flat = bus_min[pgm.pv_gen_bus] == bus_max[pgm.pv_gen_bus]  # no range: an equal split
    active = np.flatnonzero(converged)
    q_bus = result[ComponentType.sym_gen]["q"] / MEGA
    for _ in range(Q_LIMIT_ROUNDS):
        if not len(active):
            break
        q = q_bus[active][:, pgm.pv_gen_bus]  # the bus total at each of its generators
        position = (q - bus_min[pgm.pv_gen_bus]) / (bus_max - bus_min + Q_RANGE_EPS)[pgm.pv_gen_bus]
        share = np.where(flat, q / count[pgm.pv_gen_bus], q_min + position * (q_max - q_min))
        regulated = regulators["status"][active][:, pgm.pv_gen_bus] == 1
        above, below = regulated & (share > q_max), regulated & (share < q_min)
        fixed = np.where(above, q_max, np.where(below, q_min, share))
        switch = np.zeros((len(active), n_pv), dtype=bool)
        rows, columns = np.nonzero(above | below)
        switch[rows, pgm.pv_gen_bus[columns]] = True
        q_fixed = np.zeros((len(active), n_pv))
        # numpy's stubs refuse a (slice, array) index for ufunc.at; numpy takes it
        np.add.at(q_fixed, (slice(None), pgm.pv_gen_bus), fixed)  # type: ignore[arg-type]
        gens["q_specified"][active] = np.where(switch, q_fixed * MEGA, gens["q_specified"][active])
        regulators["status"][active] = np.where(switch, 0, regulators["status"][active])
        active = active[switch.any(axis=1)]
        if not len(active):
            break
        partial, partial_converged = _run_balanced(model, _take_update(update, active), outputs)
        _put(result, active, partial)
        converged[active] &= partial_converged
        q_bus[active] = partial[ComponentType.sym_gen]["q"] / MEGA
        active = active[partial_converged]
    else:
        converged[active] = False  # still switching after every round
    return converged


def _take_update(update: dict, rows: np.ndarray) -> dict:
    """The scenarios ``rows`` of a batch update (dense arrays and sparse data/indptr alike)."""
    taken = {}
    for component, value in update.items():
        if isinstance(value, dict):
            indptr = value["indptr"]
            pieces = [value["data"][indptr[r] : indptr[r + 1]] for r in rows]
            counts = np.array([len(p) for p in pieces], dtype=np.int64)
            taken[component] = {
                "data": np.concatenate(pieces) if pieces else value["data"][:0],
                "indptr": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            }
        else:
            taken[component] = value[rows]
    return taken
