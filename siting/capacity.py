"""Substation hosting capacity: N-0, firm N-1, hourly headroom, spare and flexible capacity.

Every capacity is an AC power flow answer from the bracketed search in ``siting.engine.search``:
all (operating state × substation) pairs of a question advance together on the resolution grid
(0.1 MW by default). A reported capacity was solved and found within limits at its value, and
solved and found outside them one step above (or it is the cap).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from siting.engine.flow import EngineOptions, FlowModel, Outage, solve
from siting.engine.search import (
    CRITERIA,
    HostingResult,
    StateLimits,
    States,
    coarse_to_fine,
    criterion_element_name,
    element_name,
    hosting_capacity,
    net_demand_mw,
    state_limits,
    worst_margin,
    worst_state,
)
from siting.errors import DataError, GridError, SettingError, UsageError, check_number
from siting.flexible import DEFAULT_LIMITS, flex_column
from siting.limits import ElementLimits, StudyLimits, deviation_band, element_limits, load_bus_positions
from siting.progress import Progress, silent
from siting.sources.contingencies import Contingencies
from siting.sources.grid import Grid

if TYPE_CHECKING:
    from pandapower.auxiliary import pandapowerNet

    from siting.sources.peak import OperatingPoint

Binding = tuple[str, str, str]  # what binds a capacity: criterion, element, outage ('' for none)


@dataclass(frozen=True)
class CapacitySettings:
    """How hosting capacity is defined and what the capacity stage computes.

    Parameters
    ----------
    pf : float
        Power factor of the added load, lagging, in (0, 1].
    cap_mw : float
        Largest added load searched for (MW).
    resolution_mw : float
        Step of the search grid (MW); a capacity is a multiple of it.
    limits : StudyLimits
        Limits applied where the model has none (voltage bands, thermal, emergency).
    at : str or None
        Operating point: ``case:<name>``, ``netpeak`` or a time (default: case hL, else netpeak).
    n1 : bool
        Compute firm (N-1) capacity over single outages.
    year : bool
        Compute the headroom at every profile step (and the flexible capacities from it).
    n1_hops : int or None
        Check each substation only against outages within this many branch hops (None: all).
    engine : EngineOptions
        Power-flow options (reactive limits, who balances added load).
    deviation_limit_pu : float or None
        Firm criterion option: largest post-outage voltage change at load buses (pu of the
        pre-outage voltage), e.g. 0.08 for TPL-001-WECC-CRT; None checks only the band.
    """

    pf: float = 0.95
    cap_mw: float = 100.0
    resolution_mw: float = 0.1
    limits: StudyLimits = field(default_factory=StudyLimits)
    at: str | None = None
    n1: bool = True
    year: bool = True
    n1_hops: int | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    # firm criterion option: post-contingency voltage deviation at load buses (pu of the
    # pre-outage voltage), e.g. 0.08 for WECC TPL-001-WECC-CRT; None leaves only the band
    deviation_limit_pu: float | None = None

    def __post_init__(self) -> None:
        check_number("pf", self.pf, above=0, at_most=1)
        check_number("cap_mw", self.cap_mw, above=0)
        check_number("resolution_mw", self.resolution_mw, above=0)
        if self.resolution_mw > self.cap_mw:
            raise SettingError(
                "resolution_mw", self.resolution_mw, f"must be at most cap_mw ({self.cap_mw:g} MW)"
            )
        if self.deviation_limit_pu is not None:
            check_number("deviation_limit_pu", self.deviation_limit_pu, above=0, below=2)
        if self.n1_hops is not None:
            check_number("n1_hops", self.n1_hops, at_least=0, whole=True)
        if self.at is not None and not isinstance(self.at, str):
            raise SettingError("at", self.at, "must be case:<name>, netpeak or a time")

    def record(self) -> dict[str, object]:
        """The settings as plain data, for manifests."""
        return {
            **{k: v for k, v in vars(self).items() if k not in ("limits", "engine")},
            "limits": self.limits.record(),
            "engine": self.engine.record(),
        }

    @property
    def q_per_mw(self) -> float:
        """Mvar drawn per MW of added load (lagging)."""
        return float(np.tan(np.arccos(self.pf)))

    @property
    def steps(self) -> int:
        """Resolution steps from zero to the cap: the search grid has ``steps + 1`` points."""
        return round(self.cap_mw / self.resolution_mw)


def normal_limits(model: FlowModel, settings: CapacitySettings) -> ElementLimits:
    """Pre-contingency limits per element of ``model``: the model's own, else the settings'."""
    return element_limits(model.net, settings.limits, contingency=False)


def contingency_limits(model: FlowModel, settings: CapacitySettings) -> ElementLimits:
    """Post-outage limits per element of ``model``: the contingency voltage band, emergency thermal limits."""
    return element_limits(model.net, settings.limits, contingency=True)


@dataclass(frozen=True)
class CapacityStudy:
    """Everything `siting capacity` reports for one grid.

    Attributes
    ----------
    table : DataFrame
        One row per substation, the columns of ``CAPACITY_COLUMNS`` (capacities in MW).
    headroom : DataFrame or None
        N-0 hosting capacity (MW) at every profile step, time × substation id; None without
        the year.
    operating_point : str
        The state capacity is judged at, e.g. ``case:hL``.
    base_violations : DataFrame
        Limits broken at the operating point before any load is added.
    skipped_outages : DataFrame
        Outages not studied (``outage``, ``reason``).
    unused_share_at_peak : float
        1 − peak load / the load the grid serves at ``load_margin``.
    load_margin : float
        Largest uniform factor λ with all existing loads × λ within limits.
    flows : int
        AC power flows run.
    limits_from_model : dict
        Per limit kind, how many elements carry their own.
    """

    table: pd.DataFrame  # one row per substation (see CAPACITY_COLUMNS)
    headroom: pd.DataFrame | None  # time × substation id, MW (N-0 hosting capacity per step)
    operating_point: str
    base_violations: pd.DataFrame  # at the operating point, before any load is added
    skipped_outages: pd.DataFrame  # outages not studied: element, reason
    unused_share_at_peak: float  # 1 − peak load / load the grid serves at a uniform growth margin
    load_margin: float  # that uniform growth factor λ (all existing loads × λ stay within limits)
    flows: int
    limits_from_model: dict[str, int]
    contingency_set: dict[str, object] = field(default_factory=dict)  # what N-1 studied (a record)

    def record(self) -> dict[str, object]:
        """The headline results as plain data, for manifests."""
        return {
            "operating_point": self.operating_point,
            "substations": len(self.table),
            "power_flows": self.flows,
            "load_margin": self.load_margin,
            "unused_share_at_peak": self.unused_share_at_peak,
            "base_violations": len(self.base_violations),
            "skipped_outages": len(self.skipped_outages),
            "limits_from_model": self.limits_from_model,
            "contingencies": self.contingency_set,
        }


CAPACITY_COLUMNS = [
    "substation",
    "name",
    "bus",
    "bus_name",
    "vn_kv",
    "lon",
    "lat",
    "load_mw",
    "hc_n0_mw",
    "hc_n1_mw",
    "hc_n0_year_min_mw",
    "binding_criterion",
    "binding_element",
    "binding_outage",
    "n0_binding_criterion",
    "n0_binding_element",
    "spare_peak_mw",
    "hours_ge_5mw",
    "hours_ge_10mw",
    "hours_ge_20mw",
    *(flex_column(limit) for limit in DEFAULT_LIMITS),
]


def substation_capacity(
    grid: Grid,
    settings: CapacitySettings | None = None,
    *,
    substations: list[int] | None = None,
    progress: Progress | None = None,
) -> CapacityStudy:
    """N-0 and firm N-1 hosting capacity at the operating point, and the year's headroom.

    Parameters
    ----------
    grid : Grid
        The network model, its substations and (optionally) profiles; not modified.
    settings : CapacitySettings, optional
        What to compute and against which limits (default: ``CapacitySettings()``).
    substations : list of int, optional
        Substation ids to study (default: all).
    progress : callable, optional
        Called with a line of text as each part starts.

    Returns
    -------
    CapacityStudy
        One row per substation (MW, with the binding criterion, element and outage), the
        headroom per step (MW) when ``settings.year``, and the base-case violations.

    Raises
    ------
    UsageError
        An unknown substation id or operating point.
    GridError
        The power flow at the operating point does not converge or leaves load unsupplied.
    """
    from siting.engine.flow import prepare
    from siting.sources.peak import operating_point

    say = progress or silent
    settings = settings or CapacitySettings()
    at, n1, year = settings.at, settings.n1, settings.year
    subs = _chosen(grid.substations, substations)
    point = operating_point(grid, at)
    model = prepare(copy.deepcopy(grid.net), subs["bus"].to_numpy(), grid.source, **vars(settings.engine))
    peak = States({k: v[None, :] for k, v in point.values.items()}, None, 1)
    peak_limits = state_limits(model, peak, normal_limits(model, settings))
    if not peak_limits.usable[0]:
        raise GridError(
            f"{grid.source}: the power flow at {point.label} does not converge or leaves load unsupplied"
        )
    say(f"N-0 hosting capacity at {point.label} for {len(subs)} substations")
    n0 = hosting_capacity(model, peak, peak_limits, settings)
    flows = n0.flows + 1
    table = _n0_table(model, subs, n0)
    skipped, count = _firm_columns(table, model, grid, point, settings, say)
    flows += count

    headroom = None
    if year and grid.profiles is not None:
        say(f"headroom at every step: {len(grid.profiles)} steps × {len(subs)} substations")
        headroom, count = _year_headroom(model, grid, settings, subs, say)
        flows += count
        _year_columns(table, headroom, grid.profiles, settings.cap_mw)
    else:
        table["spare_peak_mw"] = table["hc_n0_mw"]
    margin, count = load_margin(model, point, peak_limits)
    flows += count
    return CapacityStudy(
        table=table.reindex(columns=CAPACITY_COLUMNS),
        headroom=headroom,
        operating_point=point.label,
        base_violations=_named_states(peak_limits.violations, [point.label]),
        skipped_outages=skipped,
        unused_share_at_peak=1.0 - 1.0 / margin if margin > 0 else 0.0,
        load_margin=margin,
        flows=flows,
        limits_from_model=normal_limits(model, settings).from_model,
        contingency_set=_contingency_record(grid, n1),
    )


def _firm_columns(
    table: pd.DataFrame,
    model: FlowModel,
    grid: Grid,
    point: OperatingPoint,
    settings: CapacitySettings,
    say: Progress,
) -> tuple[pd.DataFrame, int]:
    """Add firm capacity (MW) and the binding criterion, element and outage to ``table``.

    Without ``settings.n1`` the firm column is NaN and the N-0 binding constraint stands.
    Returns the outages not studied (``outage``, ``reason``) and the power flows run.
    """
    skipped = pd.DataFrame(columns=["outage", "reason"])
    firm = table["hc_n0_mw"].to_numpy()
    binding = list(
        zip(table["n0_binding_criterion"], table["n0_binding_element"], [""] * len(table), strict=True)
    )
    count = 0
    if settings.n1:
        hops = settings.n1_hops
        outages = studied_outages(model.net, grid.contingencies)
        own = grid.contingencies
        kind = "single outages" if own is None else f"contingencies of {own.file}"
        say(
            f"firm (N-1) capacity over {len(outages[0])} {kind}"
            + (f", each substation against those within {hops} branch hops" if hops is not None else "")
        )
        firm, binding, skipped, count = _firm_capacity(
            model, point, settings, outages, firm, binding, hops, say
        )
    table["hc_n1_mw"] = firm if settings.n1 else np.nan
    table["binding_criterion"] = [b[0] for b in binding]
    table["binding_element"] = [b[1] for b in binding]
    table["binding_outage"] = [b[2] for b in binding]
    return skipped, count


def _n0_table(model: FlowModel, subs: pd.DataFrame, n0: HostingResult) -> pd.DataFrame:
    """The capacity table's substation and N-0 columns (MW, binding criterion and element)."""
    table = (
        subs[["id", "name", "bus", "bus_name", "vn_kv", "lon", "lat", "load_mw"]]
        .rename(columns={"id": "substation"})
        .reset_index(drop=True)
    )
    table["hc_n0_mw"] = _mw(n0.hc_mw[0])
    table["n0_binding_criterion"] = [CRITERIA[c] for c in n0.criterion[0]]
    table["n0_binding_element"] = [
        criterion_element_name(model, c, e) for c, e in zip(n0.criterion[0], n0.element[0], strict=True)
    ]
    return table


def _year_columns(table: pd.DataFrame, headroom: pd.DataFrame, profiles: pd.DataFrame, cap_mw: float) -> None:
    """Add the columns the year's headroom (time × substation, MW) gives to ``table``.

    Its minimum, the spare capacity at the net-load peak, hours per year above 5/10/20 MW, and
    the flexible capacities (MW, at most ``cap_mw``).
    """
    from siting.flexible import flexible_capacity
    from siting.sources.peak import net_peak_step

    table["hc_n0_year_min_mw"] = headroom.min().to_numpy()
    table["spare_peak_mw"] = headroom.iloc[net_peak_step(profiles)].to_numpy()
    for threshold in (5, 10, 20):
        table[f"hours_ge_{threshold}mw"] = _hours_per_year(headroom, threshold)
    loads = np.array(
        [flexible_capacity(headroom[c], DEFAULT_LIMITS)["load_mw"].to_numpy() for c in headroom.columns]
    )
    loads = np.minimum(loads, cap_mw)  # headroom stops at the cap, so must L
    for position, limit in enumerate(DEFAULT_LIMITS):
        table[flex_column(limit)] = loads[:, position]


def _contingency_record(grid: Grid, n1: bool) -> dict[str, object]:
    if not n1:
        return {"studied": "none (N-0 only)"}
    if grid.contingencies is None:
        return {"studied": "every in-service line and transformer, one at a time"}
    return {"studied": "the file's named contingencies", **grid.contingencies.record()}


def _chosen(substations: pd.DataFrame, chosen: list[int] | None) -> pd.DataFrame:
    if chosen is None:
        return substations
    unknown = sorted(set(chosen) - set(substations["id"]))
    if unknown:
        raise UsageError(f"substation id(s) {unknown} do not exist (ids run 0–{len(substations) - 1})")
    return substations[substations["id"].isin(chosen)]


def _mw(values: np.ndarray) -> np.ndarray:
    return np.round(values, 6)


def outage_name(net: pandapowerNet, outage: tuple[str, int]) -> str:
    """An outage as reports name it, e.g. 'line HV1 Line 58'."""
    table, index = outage
    return f"{table} {element_name(net[table], net[table].index.get_loc(index))}"


def net_outages(net: pandapowerNet) -> list[tuple[str, int]]:
    """Every in-service line and transformer, as single outages."""
    outages = [("line", int(i)) for i in net.line.index[net.line.in_service.astype(bool)]]
    return outages + [("trafo", int(i)) for i in net.trafo.index[net.trafo.in_service.astype(bool)]]


def studied_outages(
    net: pandapowerNet, contingencies: Contingencies | None = None
) -> tuple[list[Outage | tuple[Outage, ...]], list[str], pd.DataFrame]:
    """The outages a firm criterion checks, their names, and the contingencies left out.

    Parameters
    ----------
    net : pandapowerNet
        The model.
    contingencies : Contingencies, optional
        A planner's named set (``Grid.contingencies``). Without one: every in-service line and
        transformer on its own, named as in ``outage_name``.

    Returns
    -------
    outages : list
        Per outage, one ``("line" | "trafo", index)`` or the tuple of those opened together.
    names : list of str
        The name each outage has in outputs.
    left_out : DataFrame
        ``outage``, ``reason``: named contingencies that open nothing in service in the model.
    """
    if contingencies is None:
        outages = net_outages(net)
        return list(outages), [outage_name(net, o) for o in outages], _left_out([], "")
    kept: list[Outage | tuple[Outage, ...]] = []
    names, idle = [], []
    for name, elements in zip(contingencies.names, contingencies.outages, strict=True):
        # an element the case already has out of service is not opened again
        on = tuple(e for e in elements if bool(net[e[0]].at[e[1], "in_service"]))
        if not on:
            idle.append(name)
            continue
        kept.append(on[0] if len(on) == 1 else on)
        names.append(name)
    return kept, names, _left_out(idle, "opens nothing in service in the model")


def _left_out(names: list[str], reason: str) -> pd.DataFrame:
    return pd.DataFrame({"outage": names, "reason": [reason] * len(names)}, dtype=object)


def _firm_capacity(
    model: FlowModel,
    point: OperatingPoint,
    settings: CapacitySettings,
    studied: tuple[list[Outage | tuple[Outage, ...]], list[str], pd.DataFrame],
    hc_n0: np.ndarray,
    binding: list[Binding],
    n1_hops: int | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, list[Binding], pd.DataFrame, int]:
    net = model.net
    outages, names, left_out = studied
    near = None
    if n1_hops is not None:
        from siting.engine.topology import outages_near

        near = outages_near(net, outages, model.site_buses, n1_hops)
        keep = np.any(near, axis=1)
        outages = [o for o, k in zip(outages, keep, strict=True) if k]
        names = [n for n, k in zip(names, keep, strict=True) if k]
        near = near[keep]
    # an outage that cuts load off leaves an unusable state whatever its flow: on a radial
    # feeder that is almost every branch (2826 of EPRI ckt5's 2858), so skip them unsolved
    from siting.engine.topology import islanding_outages

    islands = islanding_outages(model, outages)
    solved = np.flatnonzero(~islands)
    outages = [outages[i] for i in solved]
    near = None if near is None else near[solved]
    values = {k: np.repeat(v[None, :], len(outages), axis=0) for k, v in point.values.items()}
    states = States(values, tuple(outages), len(outages))
    limits = state_limits(model, states, _firm_limits(model, point, settings))
    pairs = None if near is None else np.nonzero(near)
    result = hosting_capacity(
        model, states, limits, settings, pairs=pairs, progress=progress, label="(outage, substation) pairs"
    )
    reason = np.where(islands, "islands load", "").astype(object)
    reason[solved[~limits.usable & limits.converged]] = "islands load"
    reason[solved[~limits.converged]] = "no convergence without added load"
    not_usable = np.flatnonzero(reason != "")
    skipped = pd.DataFrame({"outage": [names[i] for i in not_usable], "reason": list(reason[not_usable])})
    names = [names[i] for i in solved]
    if len(left_out):
        skipped = pd.concat([skipped, left_out], ignore_index=True)
    lowest, state, code, element = worst_state(result)
    firm = hc_n0.copy()
    binding = list(binding)
    for site in np.flatnonzero(lowest < firm):
        firm[site] = lowest[site]
        name = criterion_element_name(model, code[site], element[site])
        binding[site] = (CRITERIA[code[site]], name, names[state[site]])
    return _mw(firm), binding, skipped, result.flows + len(outages)


def _firm_limits(model: FlowModel, point: OperatingPoint, settings: CapacitySettings) -> ElementLimits:
    """Contingency limits, with the deviation criterion at load buses when one is set."""
    limits = contingency_limits(model, settings)
    if settings.deviation_limit_pu is None:
        return limits
    state = States({k: v[None, :] for k, v in point.values.items()}, None, 1)
    pre = solve(model, state.scenarios(np.arange(1)))
    return deviation_band(limits, pre.vm_pu[0], load_bus_positions(model.net), settings.deviation_limit_pu)


# the year's headroom is searched in blocks of steps: states × (buses + lines + transformers) of
# per-step limits held at once (their arrays and the searches' inputs: about 1 GB), at least a week
YEAR_BLOCK_CELLS = 10_000_000
YEAR_MIN_BLOCK_STEPS = 168


def _year_headroom(
    model: FlowModel,
    grid: Grid,
    settings: CapacitySettings,
    subs: pd.DataFrame,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, int]:
    from siting.engine.flow import profile_scenarios

    if grid.profiles is None:  # the caller asks for a year only of a grid with profiles
        raise UsageError(f"{grid.name}: has no time-series profiles for the year's headroom")
    year = profile_scenarios(model.net, grid.profiles)
    net = model.net
    block = max(YEAR_MIN_BLOCK_STEPS, YEAR_BLOCK_CELLS // (len(net.bus) + len(net.line) + len(net.trafo)))
    hc_mw = np.empty((year.n, len(subs)))
    flows = year.n
    normal = normal_limits(model, settings)  # the same for every block
    # blocks of steps of like demand: each block's searches guide one another (coarse_to_fine)
    by_demand = np.argsort(net_demand_mw(model, States(year.element_values, None, year.n)), kind="stable")
    for start in range(0, year.n, block):
        steps = by_demand[start : start + block]
        # only one block's limits and searches are held at a time
        states = States({key: value[steps] for key, value in year.element_values.items()}, None, len(steps))
        limits = state_limits(model, states, normal)
        label = "(step, substation) pairs" + (
            f", steps of demand rank {start + 1:,}–{start + len(steps):,}" if block < year.n else ""
        )
        result = coarse_to_fine(model, states, limits, settings, progress=progress, label=label)
        hc_mw[steps] = result.hc_mw
        flows += result.flows
    headroom = pd.DataFrame(_mw(hc_mw), index=grid.profiles.index, columns=subs["id"].to_numpy())
    headroom.columns.name = "substation"
    return headroom, flows


def _hours_per_year(headroom: pd.DataFrame, threshold: float) -> np.ndarray:
    step_hours = (headroom.index[1] - headroom.index[0]) / pd.Timedelta(hours=1)
    counts = (headroom >= threshold).groupby(headroom.index.year).sum() * step_hours
    return counts.mean().to_numpy()


LOAD_MARGIN_CHUNK = 10  # growth factors solved together; the sweep stops at the first chunk that fails


def load_margin(
    model: FlowModel, point: OperatingPoint, limits: StateLimits, top: float = 4.0, step: float = 0.01
) -> tuple[float, int]:
    """Largest uniform growth λ (to ``step``) with every existing load × λ within ``limits``.

    ``limits`` are those of the operating point itself, from ``state_limits``. The factors 1,
    1 + ``step``, … up to ``top`` are solved in chunks of ``LOAD_MARGIN_CHUNK`` until one breaks
    a limit: λ is the factor before the first that does (the factors above it are not needed,
    and those far beyond the grid's limit are the slowest to fail). Returns λ and the number of
    power flows run.
    """
    net = model.net
    factors = np.arange(1.0, top + step / 2, step)
    base = {}
    for column in ("p_mw", "q_mvar"):
        given = point.values.get(("load", column), net.load[column].to_numpy(float))
        base[column] = np.where(np.isnan(given), net.load[column].to_numpy(float), given)
    flows = 0
    for start in range(0, len(factors), LOAD_MARGIN_CHUNK):
        chunk = factors[start : start + LOAD_MARGIN_CHUNK]
        values = {("load", column): np.outer(chunk, base[column]) for column in base}
        for key, value in point.values.items():
            if key[0] != "load":
                values[key] = np.repeat(value[None, :], len(chunk), axis=0)
        states = States(values, None, len(chunk))
        result = solve(model, states.scenarios(np.arange(len(chunk))))
        flows += len(chunk)
        margin, _, _ = worst_margin(result, limits, np.zeros(len(chunk), dtype=int))
        if not (margin >= 0).all():
            first_bad = start + int(np.argmin(margin >= 0))
            return (round(float(factors[first_bad - 1]), 4) if first_bad > 0 else 1.0), flows
    return round(float(factors[-1]), 4), flows


def _named_states(violations: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    named = violations.copy()
    named["state"] = [labels[i] for i in named["state"]]
    return named


def write_capacity(study: CapacityStudy, folder: Path) -> list[str]:
    """The capacity tables in ``folder``; returns the file names."""
    study.table.to_csv(folder / "capacity.csv", index=False)
    files = ["capacity.csv"]
    if study.headroom is not None:
        study.headroom.rename(columns=str).to_parquet(folder / "headroom.parquet")
        files.append("headroom.parquet")
    study.base_violations.to_csv(folder / "base_violations.csv", index=False)
    study.skipped_outages.to_csv(folder / "skipped_outages.csv", index=False)
    return [*files, "base_violations.csv", "skipped_outages.csv"]


def read_capacity_table(folder: Path, grid: Grid) -> pd.DataFrame:
    """The ``capacity.csv`` of a `siting capacity` output folder, checked to be of ``grid``.

    Raises
    ------
    UsageError
        The folder or its capacity.csv does not exist.
    DataError
        The file is not a capacity table, or it was computed on another grid (its substations'
        names or connection buses differ from ``grid``'s).
    """
    path = Path(folder) / "capacity.csv"
    if not path.is_file():
        raise UsageError(f"{folder}: no capacity.csv there; run siting capacity first")
    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({_first_line(err)})") from err
    missing = [c for c in ("substation", "name", "bus") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: not a siting capacity table (no column {', '.join(missing)})")
    if not pd.api.types.is_integer_dtype(table["substation"]) or not pd.api.types.is_integer_dtype(
        table["bus"]
    ):
        raise DataError(f"{path}: substation and bus must be whole numbers; is it a siting capacity table?")
    known = grid.substations.set_index("id")
    for row in table.itertuples():
        if row.substation not in known.index:
            raise DataError(
                f"{path}: substation {row.substation} is not in {grid.name}; computed on another grid?"
            )
        expected = known.loc[row.substation]
        if str(expected["name"]) != str(row.name) or int(expected["bus"]) != int(row.bus):
            raise DataError(
                f"{path}: substation {row.substation} is {row.name!s} at bus {row.bus} there but "
                f"{expected['name']} at bus {expected['bus']} in {grid.name}: computed on another grid; "
                "run siting capacity on this one"
            )
    return table


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
