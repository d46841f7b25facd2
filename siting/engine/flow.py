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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet
from power_grid_model import (
    CalculationMethod,
    ComponentType,
    DatasetType,
    PowerGridModel,
    initialize_array,
)
from power_grid_model.errors import PowerGridBatchError, PowerGridError
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import splu

from siting.engine.pgm_model import MEGA, PgmModel, base_power_flow, build_model, element_demand_map
from siting.errors import GridError, UsageError
from siting.sources.grid import check_network

log = logging.getLogger(__name__)

TOLERANCE_PU = 1e-9  # Newton-Raphson stop: largest voltage change between iterations
MAX_ITERATIONS = 30
PV_TOLERANCE_MW = 1e-3  # outer loop stop: largest active-power mismatch of a PV generator
PV_MAX_ROUNDS = 40
PV_PROBE_RAD = 1e-3
# scenarios × (nodes + branches) per PGM call: small enough to stay in cache-friendly,
# reused memory (a year in one call is twice as slow), large enough to keep PGM's threads busy
MAX_CELLS_PER_CHUNK = 1_000_000


@dataclass(frozen=True)
class Scenarios:
    """A batch of ``n`` power-flow scenarios on one prepared grid.

    ``element_values`` maps ``(table, column)`` — ``("load", "p_mw")``, ``("load", "q_mvar")``,
    ``("sgen", "p_mw")``, ``("sgen", "q_mvar")``, ``("storage", "p_mw")``, ``("gen", "p_mw")``,
    ``("ext_grid", "vm_pu")`` — to
    an array (n, rows of that table) of absolute values; NaN keeps the model's value.
    ``site_p_mw``/``site_q_mvar`` (n, sites) are loads added at ``FlowModel.site_buses`` (MW,
    Mvar). ``outages`` holds, per scenario, ``None`` or a ``("line" | "trafo", index)`` taken out
    of service.
    """

    n: int
    element_values: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    site_p_mw: np.ndarray | None = None
    site_q_mvar: np.ndarray | None = None
    outages: tuple[tuple[str, int] | None, ...] | None = None
    pv_angle_offset: np.ndarray | None = None  # (n, PV buses) warm start: FlowResult.pv_angle_offset

    def take(self, rows: slice) -> Scenarios:
        """The scenarios in ``rows`` as a batch of their own."""
        index = np.arange(self.n)[rows]
        return Scenarios(
            n=len(index),
            element_values={key: value[index] for key, value in self.element_values.items()},
            site_p_mw=None if self.site_p_mw is None else self.site_p_mw[index],
            site_q_mvar=None if self.site_q_mvar is None else self.site_q_mvar[index],
            outages=None if self.outages is None else tuple(self.outages[i] for i in index),
            pv_angle_offset=None if self.pv_angle_offset is None else self.pv_angle_offset[index],
        )


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
    # PV-bus source angles the outer loop settled on, less its DC first guess (rad). Passed
    # back as Scenarios.pv_angle_offset for similar scenarios (the same state with a little
    # load added), it starts them next to their answer.
    pv_angle_offset: np.ndarray | None = None


@dataclass(frozen=True)
class DcAnglePredictor:
    """DC power flow on the case's reactances: a first guess of how PV-bus angles move."""

    lu: object  # scipy SuperLU of the reduced susceptance matrix
    buses: np.ndarray  # ppc buses in the reduced system (not slack, not isolated)
    pv_rows: np.ndarray  # rows of the PV buses in that system

    @classmethod
    def of(cls, pgm: PgmModel) -> DcAnglePredictor | None:
        branch = pgm.input_data[ComponentType.generic_branch]
        on = branch["from_status"] == 1
        node = pgm.input_data[ComponentType.node]
        f, t = branch["from_node"][on], branch["to_node"][on]
        z_base = node["u_rated"][t] ** 2 / MEGA  # ohm on a 1 MVA base: MW injections give radians
        b = 1.0 / (branch["x1"][on] / z_base)
        n = len(node)
        susceptance = csr_matrix(
            (np.concatenate([b, b, -b, -b]), (np.concatenate([f, t, f, t]), np.concatenate([f, t, t, f]))),
            shape=(n, n),
        )
        slack = pgm.input_data[ComponentType.source]["node"][: pgm.n_slack]
        connected = np.zeros(n, bool)
        connected[f] = connected[t] = True
        connected[slack] = False
        buses = np.flatnonzero(connected)
        try:
            lu = splu(susceptance[buses][:, buses].tocsc())
        except RuntimeError:  # singular: islands without a slack; go without a guess
            return None
        rows = np.searchsorted(buses, pgm.pv_bus)
        if not (buses[np.clip(rows, 0, len(buses) - 1)] == pgm.pv_bus).all():
            return None
        return cls(lu=lu, buses=buses, pv_rows=rows)

    def shift(self, pgm: PgmModel, demand_p: np.ndarray, pv_p: np.ndarray, site_p: np.ndarray) -> np.ndarray:
        """Predicted change of each PV bus angle (rad) from the base case, per scenario."""
        injection = np.zeros((len(demand_p), len(pgm.input_data[ComponentType.node])))
        injection[:, pgm.demand_bus] -= demand_p - pgm.demand_p_mw
        injection[:, pgm.pv_bus] += pv_p - pgm.pv_p_mw
        np.subtract.at(injection, (slice(None), pgm.site_node), site_p)
        theta = self.lu.solve(np.ascontiguousarray(injection[:, self.buses].T))
        return theta[self.pv_rows].T


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
    pv_sensitivity: np.ndarray | None  # dP_pv / dθ_pv (MW per rad), pv × pv
    angle_predictor: DcAnglePredictor | None
    line_rating_ka: np.ndarray
    trafo_rating_mva: np.ndarray
    islanded_buses: pd.Index


def prepare(net: pandapowerNet, site_buses: np.ndarray | list[int] = (), source: str = "grid") -> FlowModel:
    """Convert ``net`` for batch power flows, with an added (zero) load at each of ``site_buses``."""
    check_network(net, source)
    _check_model(net, source)
    base_power_flow(net, source)
    site_buses = np.asarray(site_buses, dtype=np.int64)
    pgm = build_model(net, site_buses, source)
    try:
        solver = PowerGridModel(pgm.input_data, system_frequency=float(net.f_hz))
    except PowerGridError as err:
        raise GridError(f"{source}: power-grid-model refuses the converted model ({err})") from err
    demand_maps = {table: element_demand_map(net, pgm, table) for table in ("load", "sgen", "storage")}
    gen_pv_row, gen_factor = _gen_map(net, pgm)
    islanded = net.bus.index[~pgm.bus_in_model & net.bus["in_service"].astype(bool).to_numpy()]
    if len(islanded):
        log.warning(
            "%s: %d bus(es) are not connected to a slack; their results are NaN", source, len(islanded)
        )
    model = FlowModel(
        net=net,
        pgm=pgm,
        solver=solver,
        site_buses=site_buses,
        demand_maps=demand_maps,
        gen_pv_row=gen_pv_row,
        ext_grid_source=_ext_grid_sources(net, pgm),
        gen_factor=gen_factor,
        pv_sensitivity=None,
        angle_predictor=DcAnglePredictor.of(pgm) if len(pgm.pv_bus) else None,
        line_rating_ka=(net.line["max_i_ka"] * net.line["df"] * net.line["parallel"]).to_numpy(float),
        trafo_rating_mva=(net.trafo["sn_mva"] * net.trafo["df"] * net.trafo["parallel"]).to_numpy(float),
        islanded_buses=islanded,
    )
    if len(pgm.pv_bus):
        object.__setattr__(model, "pv_sensitivity", _pv_sensitivity(model))
    return model


def solve(model: FlowModel, scenarios: Scenarios, chunk_size: int | None = None) -> FlowResult:
    """Run every scenario; large batches go through PGM in chunks so memory stays bounded."""
    net, n = model.net, scenarios.n
    result = FlowResult(
        vm_pu=np.empty((n, len(net.bus))),
        va_degree=np.empty((n, len(net.bus))),
        line_loading_percent=np.empty((n, len(net.line))),
        trafo_loading_percent=np.empty((n, len(net.trafo))),
        converged=np.empty(n, dtype=bool),
        bus_index=net.bus.index,
        line_index=net.line.index,
        trafo_index=net.trafo.index,
        pv_angle_offset=np.zeros((n, len(model.pgm.pv_bus))),
    )
    groups, mixed = _outage_groups(scenarios.outages)
    for outage, rows in groups:
        # one outage in many scenarios: a model with that branch out keeps PGM's topology cached
        part = dataclasses.replace(scenarios.take(rows), outages=None)
        _scatter(result, rows, solve(_with_outage(model, outage), part, chunk_size))
    if len(groups):
        _scatter(result, mixed, solve(model, scenarios.take(mixed), chunk_size))
        return result
    size = chunk_size or _default_chunk(model)
    for start in range(0, n, size):
        rows = slice(start, min(start + size, n))
        _solve_chunk(model, scenarios.take(rows), result, rows)
    return result


MIN_OUTAGE_GROUP = 8  # scenarios sharing one outage that are worth a model of their own


def _outage_groups(
    outages: tuple[tuple[str, int] | None, ...] | None,
) -> tuple[list[tuple[tuple[str, int], np.ndarray]], np.ndarray]:
    """Outages shared by at least MIN_OUTAGE_GROUP scenarios, with their positions, and the
    positions of every other scenario (none when no outage repeats enough)."""
    if outages is None:
        return [], np.arange(0)
    positions: dict[tuple[str, int], list[int]] = {}
    for row, outage in enumerate(outages):
        if outage is not None:
            positions.setdefault(outage, []).append(row)
    groups = [(o, np.array(rows)) for o, rows in positions.items() if len(rows) >= MIN_OUTAGE_GROUP]
    if not groups:
        return [], np.arange(0)
    grouped = np.zeros(len(outages), dtype=bool)
    for _, rows in groups:
        grouped[rows] = True
    return groups, np.flatnonzero(~grouped)


def _with_outage(model: FlowModel, outage: tuple[str, int]) -> FlowModel:
    solver = model.solver.copy()
    solver.update(update_data={ComponentType.generic_branch: _outage_update(model, (outage,))["data"]})
    return dataclasses.replace(model, solver=solver)


def _scatter(result: FlowResult, rows: np.ndarray, part: FlowResult) -> None:
    for name in ("vm_pu", "va_degree", "line_loading_percent", "trafo_loading_percent", "converged"):
        getattr(result, name)[rows] = getattr(part, name)
    result.pv_angle_offset[rows] = part.pv_angle_offset


def profile_scenarios(net: pandapowerNet, profiles: pd.DataFrame) -> Scenarios:
    """One scenario per time step of a grid's profiles (``Grid.profiles``)."""
    values = {}
    for element, variable in profiles.columns.droplevel("index").unique():
        frame = profiles[(element, variable)]
        values[(element, variable)] = frame.reindex(columns=net[element].index).to_numpy(float)
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
    slack_nodes = pgm.input_data[ComponentType.source]["node"][: pgm.n_slack]
    position = {int(node): i for i, node in enumerate(slack_nodes)}
    nodes = net._pd2ppc_lookups["bus"][net.ext_grid["bus"].to_numpy()]
    on = net.ext_grid["in_service"].astype(bool).to_numpy()
    found = [position.get(int(node), -1) if used else -1 for node, used in zip(nodes, on, strict=True)]
    return np.array(found, dtype=int)


def _default_chunk(model: FlowModel) -> int:
    cells = len(model.pgm.input_data[ComponentType.node]) + len(
        model.pgm.input_data[ComponentType.generic_branch]
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


def _update(model: FlowModel, scenarios: Scenarios) -> tuple[dict, np.ndarray]:
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
    update = {ComponentType.sym_load: loads}
    slack_vm = scenarios.element_values.get(("ext_grid", "vm_pu"))
    if len(pgm.pv_bus) or slack_vm is not None:
        given = pgm.input_data[ComponentType.source]
        sources = initialize_array(DatasetType.update, ComponentType.source, (n, len(given)))
        sources["id"] = given["id"]
        sources["u_ref"] = given["u_ref"]
        sources["u_ref_angle"] = given["u_ref_angle"]
        if slack_vm is not None:
            slack_vm = np.asarray(slack_vm, dtype=float)
            for row, position in enumerate(model.ext_grid_source):
                if position >= 0:
                    column = slack_vm[:, row]
                    base = given["u_ref"][position]
                    sources["u_ref"][:, position] = np.where(np.isnan(column), base, column)
        if len(pgm.pv_bus) and model.angle_predictor is not None:
            shift = model.angle_predictor.shift(pgm, demand_p, pv_p, site_p)
            sources["u_ref_angle"][:, pgm.n_slack :] += shift
        if len(pgm.pv_bus) and scenarios.pv_angle_offset is not None:
            sources["u_ref_angle"][:, pgm.n_slack :] += np.nan_to_num(scenarios.pv_angle_offset)
        update[ComponentType.source] = sources
    if scenarios.outages is not None:
        update[ComponentType.generic_branch] = _outage_update(model, scenarios.outages)
    return update, pv_p


def _outage_update(model: FlowModel, outages: tuple[tuple[str, int] | None, ...]) -> dict:
    branch_of = {"line": model.pgm.line_branch, "trafo": model.pgm.trafo_branch}
    index_of = {"line": model.net.line.index, "trafo": model.net.trafo.index}
    ids = model.pgm.input_data[ComponentType.generic_branch]["id"]
    chosen = []
    for outage in outages:
        if outage is None:
            continue
        table, index = outage
        if table not in branch_of:
            raise GridError(f"outage of '{table}' is not supported; use 'line' or 'trafo'")
        position = index_of[table].get_indexer([index])[0]
        if position < 0:
            raise GridError(f"outage of unknown {table} {index}")
        chosen.append(branch_of[table][position])
    data = initialize_array(DatasetType.update, ComponentType.generic_branch, len(chosen))
    data["id"] = ids[np.asarray(chosen, dtype=int)]
    data["from_status"] = 0
    data["to_status"] = 0
    has = np.array([o is not None for o in outages], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(has)]).astype(np.int64)
    return {"data": data, "indptr": indptr}


def _run_pgm(model: FlowModel, update: dict, outputs: dict) -> tuple[dict, np.ndarray]:
    """Iterative current first (its factorised matrix is reused across scenarios, so it is
    fastest); scenarios it cannot solve go to Newton-Raphson, which is what decides."""
    result, converged = _run_method(model, update, outputs, CalculationMethod.iterative_current)
    failed = np.flatnonzero(~converged)
    if len(failed):
        retry, retry_converged = _run_method(
            model, _take_update(update, failed), outputs, CalculationMethod.newton_raphson
        )
        for component, columns in retry.items():
            for attribute, values in columns.items():
                result[component][attribute][failed] = values
        converged[failed] = retry_converged
    return result, converged


def batch_threads() -> int:
    """Threads per batch calculation: ``SITING_THREADS`` (0, the default, uses every core).
    A sweep's worker processes set it so that together they fill the machine, not each."""
    text = os.environ.get("SITING_THREADS", "0")
    try:
        threads = int(text)
    except ValueError:
        raise UsageError(f"SITING_THREADS={text}: give a whole number of threads (0: every core)") from None
    if threads < 0:
        raise UsageError(f"SITING_THREADS={text}: must be 0 (every core) or more")
    return threads


def _run_method(
    model: FlowModel, update: dict, outputs: dict, method: CalculationMethod
) -> tuple[dict, np.ndarray]:
    n = next(iter(update.values()))
    n = len(n["indptr"]) - 1 if isinstance(n, dict) else n.shape[0]
    result = model.solver.calculate_power_flow(
        update_data=update,
        calculation_method=method,
        error_tolerance=TOLERANCE_PU,
        max_iterations=MAX_ITERATIONS,
        threading=batch_threads(),
        output_component_types=outputs,
        continue_on_batch_error=True,
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
    update, pv_p = _update(model, scenarios)
    if len(pgm.pv_bus):
        outputs[ComponentType.source] = ["p"]
        guess = update[ComponentType.source]["u_ref_angle"][:, pgm.n_slack :].copy()
        if scenarios.pv_angle_offset is not None:
            guess -= np.nan_to_num(scenarios.pv_angle_offset)
    result, converged = _run_pgm(model, update, outputs)
    if len(pgm.pv_bus):
        result, converged = _deliver_pv_power(model, update, pv_p, result, converged, outputs)
        out.pv_angle_offset[rows] = update[ComponentType.source]["u_ref_angle"][:, pgm.n_slack :] - guess
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


def _pv_power_mw(model: FlowModel, result: dict) -> np.ndarray:
    n_slack = model.pgm.n_slack
    return result[ComponentType.source]["p"][:, n_slack:] / MEGA


def _deliver_pv_power(
    model: FlowModel, update: dict, pv_p: np.ndarray, result: dict, converged: np.ndarray, outputs: dict
) -> tuple[dict, np.ndarray]:
    """Turn PV source angles until each delivers its generators' MW (quasi-Newton on dP/dθ).

    Each round re-solves only the scenarios still off by more than the tolerance.
    """
    angle = update[ComponentType.source]["u_ref_angle"][:, model.pgm.n_slack :]
    step = np.linalg.inv(model.pv_sensitivity)
    mismatch = _pv_mismatch(model, result, pv_p, converged)
    for _ in range(PV_MAX_ROUNDS):
        active = np.flatnonzero(np.abs(mismatch).max(axis=1, initial=0.0) >= PV_TOLERANCE_MW)
        if len(active) == 0:
            return result, converged
        angle[active] += mismatch[active] @ step.T
        partial, partial_converged = _run_pgm(model, _take_update(update, active), outputs)
        for component, columns in partial.items():
            for attribute, values in columns.items():
                result[component][attribute][active] = values
        converged[active] &= partial_converged
        mismatch[active] = _pv_mismatch(model, partial, pv_p[active], converged[active])
    stuck = np.abs(mismatch).max(axis=1, initial=0.0) >= PV_TOLERANCE_MW
    return result, converged & ~stuck


def _pv_mismatch(model: FlowModel, result: dict, pv_p: np.ndarray, converged: np.ndarray) -> np.ndarray:
    energized = result[ComponentType.node]["u_pu"][:, model.pgm.pv_bus] > 0
    return np.where(energized & converged[:, None], pv_p - _pv_power_mw(model, result), 0.0)


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


def _pv_sensitivity(model: FlowModel) -> np.ndarray:
    """dP at each PV source per radian of each PV source's angle, by probing the base case."""
    n_pv = len(model.pgm.pv_bus)
    update, _ = _update(model, Scenarios(n=n_pv + 1))
    update[ComponentType.source]["u_ref_angle"][1:, model.pgm.n_slack :] += np.eye(n_pv) * PV_PROBE_RAD
    result, converged = _run_pgm(model, update, {ComponentType.source: ["p"]})
    if not converged.all():
        raise GridError("the base case does not converge on power-grid-model")
    p = _pv_power_mw(model, result)
    return ((p[1:] - p[0]) / PV_PROBE_RAD).T
