"""Substation hosting capacity: N-0, firm N-1, hourly headroom, spare and flexible capacity.

Every capacity is an AC power flow answer from the bracketed search in ``siting.engine.search``:
all (operating state × substation) pairs of a question advance together on the resolution grid
(0.1 MW by default). A reported capacity was solved and found within limits at its value, and
solved and found outside them one step above (or it is the cap).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from siting.engine.flow import FlowModel, solve
from siting.engine.search import (
    CRITERIA,
    StateLimits,
    States,
    criterion_element_name,
    element_name,
    hosting_capacity,
    state_limits,
    worst_margin,
)
from siting.errors import GridError, UsageError
from siting.limits import ElementLimits, StudyLimits, deviation_band, element_limits, load_bus_positions
from siting.sources.grid import Grid


@dataclass(frozen=True)
class CapacitySettings:
    """How hosting capacity is defined: the added load, its cap and resolution, the limits."""

    pf: float = 0.95  # power factor of the added load, lagging
    cap_mw: float = 100.0
    resolution_mw: float = 0.1
    limits: StudyLimits = field(default_factory=StudyLimits)
    # firm criterion option: post-contingency voltage deviation at load buses (pu of the
    # pre-outage voltage), e.g. 0.08 for WECC TPL-001-WECC-CRT; None leaves only the band
    deviation_limit_pu: float | None = None

    def __post_init__(self) -> None:
        if self.deviation_limit_pu is not None and not 0 < self.deviation_limit_pu < 2:
            raise UsageError(f"--deviation {self.deviation_limit_pu}: a deviation in pu must be in (0, 2)")
        if not 0 < self.pf <= 1:
            raise UsageError(f"--pf {self.pf}: a power factor must be in (0, 1]")
        if self.cap_mw <= 0:
            raise UsageError(f"--cap {self.cap_mw}: the cap must be more than 0 MW")
        if self.resolution_mw <= 0 or self.resolution_mw > self.cap_mw:
            raise UsageError(f"resolution {self.resolution_mw} MW must be in (0, cap]")

    @property
    def q_per_mw(self) -> float:
        """Mvar drawn per MW of added load (lagging)."""
        return float(np.tan(np.arccos(self.pf)))

    @property
    def steps(self) -> int:
        return round(self.cap_mw / self.resolution_mw)


def normal_limits(model: FlowModel, settings: CapacitySettings) -> ElementLimits:
    return element_limits(model.net, settings.limits, contingency=False)


def contingency_limits(model: FlowModel, settings: CapacitySettings) -> ElementLimits:
    return element_limits(model.net, settings.limits, contingency=True)


@dataclass(frozen=True)
class CapacityStudy:
    """Everything `siting capacity` reports for one grid."""

    table: pd.DataFrame  # one row per substation (see CAPACITY_COLUMNS)
    headroom: pd.DataFrame | None  # time × substation id, MW (N-0 hosting capacity per step)
    operating_point: str
    base_violations: pd.DataFrame  # at the operating point, before any load is added
    skipped_outages: pd.DataFrame  # outages not studied: element, reason
    unused_share_at_peak: float  # 1 − peak load / load the grid serves at a uniform growth margin
    load_margin: float  # that uniform growth factor λ (all existing loads × λ stay within limits)
    flows: int
    limits_from_model: dict[str, int]


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
    "flex_0.25pct_mw",
    "flex_0.5pct_mw",
    "flex_1pct_mw",
    "flex_5pct_mw",
]


def substation_capacity(
    grid: Grid,
    settings: CapacitySettings | None = None,
    at: str | None = None,
    n1: bool = True,
    year: bool = True,
    substations: list[int] | None = None,
    progress: Callable[[str], None] | None = None,
    n1_hops: int | None = None,
) -> CapacityStudy:
    """N-0 and firm N-1 hosting capacity at the operating point, and the year's headroom.

    ``n1_hops`` screens contingencies: each substation is checked only against outages of
    branches within that many branch hops of its connection bus (default: every outage).
    """
    from siting.flexible import flexible_capacity

    say = progress or (lambda _message: None)
    from siting.engine.flow import prepare
    from siting.sources.peak import net_peak_step, operating_point

    settings = settings or CapacitySettings()
    subs = _chosen(grid.substations, substations)
    point = operating_point(grid, at)
    model = prepare(copy.deepcopy(grid.net), subs["bus"].to_numpy(), grid.source)
    peak = States({k: v[None, :] for k, v in point.values.items()}, None, 1)
    peak_limits = state_limits(model, peak, normal_limits(model, settings))
    if not peak_limits.usable[0]:
        raise GridError(
            f"{grid.source}: the power flow at {point.label} does not converge or leaves load unsupplied"
        )
    say(f"N-0 hosting capacity at {point.label} for {len(subs)} substations")
    n0 = hosting_capacity(model, peak, peak_limits, settings)
    flows = n0.flows + 1
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
    skipped = pd.DataFrame(columns=["outage", "reason"])
    firm = table["hc_n0_mw"].to_numpy()
    binding = list(
        zip(table["n0_binding_criterion"], table["n0_binding_element"], [""] * len(table), strict=True)
    )
    if n1:
        say(
            f"firm (N-1) capacity over {len(net_outages(model.net))} single outages"
            + (f", each substation against those within {n1_hops} branch hops" if n1_hops is not None else "")
        )
        firm, binding, skipped, count = _firm_capacity(
            model, point, settings, table["hc_n0_mw"].to_numpy(), binding, n1_hops
        )
        flows += count
    table["hc_n1_mw"] = firm if n1 else np.nan
    table["binding_criterion"] = [b[0] for b in binding]
    table["binding_element"] = [b[1] for b in binding]
    table["binding_outage"] = [b[2] for b in binding]

    headroom = None
    if year and grid.profiles is not None:
        say(f"headroom at every step: {len(grid.profiles)} steps × {len(subs)} substations")
        headroom, count = _year_headroom(model, grid, settings, subs)
        flows += count
        peak_step = net_peak_step(grid.profiles)
        table["hc_n0_year_min_mw"] = headroom.min().to_numpy()
        table["spare_peak_mw"] = headroom.iloc[peak_step].to_numpy()
        for threshold in (5, 10, 20):
            table[f"hours_ge_{threshold}mw"] = _hours_per_year(headroom, threshold)
        limits = (0.0025, 0.005, 0.01, 0.05)
        loads = np.array(
            [flexible_capacity(headroom[c], limits)["load_mw"].to_numpy() for c in headroom.columns]
        )
        loads = np.minimum(loads, settings.cap_mw)  # headroom stops at the cap, so must L
        for position, column in enumerate(
            ("flex_0.25pct_mw", "flex_0.5pct_mw", "flex_1pct_mw", "flex_5pct_mw")
        ):
            table[column] = loads[:, position]
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
    )


def _chosen(substations: pd.DataFrame, chosen: list[int] | None) -> pd.DataFrame:
    if chosen is None:
        return substations
    unknown = sorted(set(chosen) - set(substations["id"]))
    if unknown:
        raise UsageError(f"substation id(s) {unknown} do not exist (ids run 0–{len(substations) - 1})")
    return substations[substations["id"].isin(chosen)]


def _mw(values: np.ndarray) -> np.ndarray:
    return np.round(values, 6)


def outage_name(net, outage: tuple[str, int]) -> str:
    """An outage as reports name it, e.g. 'line HV1 Line 58'."""
    table, index = outage
    return f"{table} {element_name(net[table], net[table].index.get_loc(index))}"


def net_outages(net) -> list[tuple[str, int]]:
    """Every in-service line and transformer, as single outages."""
    outages = [("line", int(i)) for i in net.line.index[net.line.in_service.astype(bool)]]
    return outages + [("trafo", int(i)) for i in net.trafo.index[net.trafo.in_service.astype(bool)]]


def _firm_capacity(model, point, settings, hc_n0, binding, n1_hops=None):
    net = model.net
    outages = net_outages(net)
    near = None
    if n1_hops is not None:
        from siting.engine.topology import outages_near

        near = outages_near(net, outages, model.site_buses, n1_hops)
        outages = [o for o, keep in zip(outages, near.any(axis=1), strict=True) if keep]
        near = near[near.any(axis=1)]
    values = {k: np.repeat(v[None, :], len(outages), axis=0) for k, v in point.values.items()}
    states = States(values, tuple(outages), len(outages))
    limits = state_limits(model, states, _firm_limits(model, point, settings))
    pairs = None if near is None else np.nonzero(near)
    result = hosting_capacity(model, states, limits, settings, pairs=pairs)
    names = [outage_name(net, outage) for outage in outages]
    not_usable = np.flatnonzero(~limits.usable)
    reasons = [
        "islands load" if limits.converged[i] else "no convergence without added load" for i in not_usable
    ]
    skipped = pd.DataFrame({"outage": [names[i] for i in not_usable], "reason": reasons})
    hc = np.where(np.isnan(result.hc_mw), np.inf, result.hc_mw)
    worst = hc.argmin(axis=0)
    firm = hc_n0.copy()
    binding = list(binding)
    for site, state in enumerate(worst):
        value = hc[state, site]
        if value < firm[site]:
            firm[site] = value
            criterion = result.criterion[state, site]
            binding[site] = (
                CRITERIA[criterion],
                criterion_element_name(model, criterion, result.element[state, site]),
                names[state],
            )
    return _mw(firm), binding, skipped, result.flows + len(outages)


def _firm_limits(model, point, settings: CapacitySettings) -> ElementLimits:
    """Contingency limits, with the deviation criterion at load buses when one is set."""
    limits = contingency_limits(model, settings)
    if settings.deviation_limit_pu is None:
        return limits
    state = States({k: v[None, :] for k, v in point.values.items()}, None, 1)
    pre = solve(model, state.scenarios(np.arange(1)))
    return deviation_band(limits, pre.vm_pu[0], load_bus_positions(model.net), settings.deviation_limit_pu)


def _year_headroom(model, grid, settings, subs):
    from siting.engine.flow import profile_scenarios

    scenarios = profile_scenarios(model.net, grid.profiles)
    states = States(scenarios.element_values, None, scenarios.n)
    limits = state_limits(model, states, normal_limits(model, settings))
    result = hosting_capacity(model, states, limits, settings)
    headroom = pd.DataFrame(_mw(result.hc_mw), index=grid.profiles.index, columns=subs["id"].to_numpy())
    headroom.columns.name = "substation"
    return headroom, result.flows + scenarios.n


def _hours_per_year(headroom: pd.DataFrame, threshold: float) -> np.ndarray:
    step_hours = (headroom.index[1] - headroom.index[0]) / pd.Timedelta(hours=1)
    counts = (headroom >= threshold).groupby(headroom.index.year).sum() * step_hours
    return counts.mean().to_numpy()


def load_margin(
    model: FlowModel, point, limits: StateLimits, top: float = 4.0, step: float = 0.01
) -> tuple[float, int]:
    """Largest λ (to ``step``) with every existing load × λ within ``limits`` (those of the
    operating point itself, from ``state_limits``)."""
    net = model.net
    factors = np.arange(1.0, top + step / 2, step)
    values = {}
    for column in ("p_mw", "q_mvar"):
        base = point.values.get(("load", column), net.load[column].to_numpy(float))
        base = np.where(np.isnan(base), net.load[column].to_numpy(float), base)
        values[("load", column)] = np.outer(factors, base)
    for key, value in point.values.items():
        if key[0] != "load":
            values[key] = np.repeat(value[None, :], len(factors), axis=0)
    states = States(values, None, len(factors))
    base_state = np.zeros(len(factors), dtype=int)
    result = solve(model, states.scenarios(np.arange(len(factors))))
    margin, _, _ = worst_margin(result, limits, base_state)
    ok = margin >= 0
    first_bad = int(np.argmin(ok)) if not ok.all() else len(factors)
    return (round(float(factors[first_bad - 1]), 4) if first_bad > 0 else 1.0), len(factors)


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
