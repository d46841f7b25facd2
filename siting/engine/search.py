"""The bracketed hosting-capacity search: the largest load each (state, site) pair can take.

The operating states and their limits are defined here too.

All (operating state × site) pairs of a question advance together. Each pair keeps a bracket on
the resolution grid — the largest load known to be feasible and the smallest known to be
infeasible — and narrows it by estimating where the normalised margins cross zero (each
criterion's on the secant through the last two feasible loads, or the binding criterion's on
the line between the two ends) and testing the two grid points around the estimate, or by
halving where the estimates stall (and always in the last half of the rounds, so it ends). A
reported capacity was solved and found within limits at its value, and solved and found outside
them one resolution step above (or it is the cap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from siting.engine.flow import FlowModel, FlowResult, Outage, Scenarios, batch_size, solve
from siting.limits import ElementLimits
from siting.progress import Progress, tally

CRITERIA = ("none", "undervoltage", "overvoltage", "line thermal", "transformer thermal", "non-convergence")
CAP_REACHED = 0
UNDERVOLTAGE, OVERVOLTAGE, LINE_THERMAL, TRAFO_THERMAL, NON_CONVERGENCE = 1, 2, 3, 4, 5
MARGIN_CRITERIA = (UNDERVOLTAGE, OVERVOLTAGE, LINE_THERMAL, TRAFO_THERMAL)  # margin column c: code c + 1
VOLTAGE_SCALE_PU = 0.01  # 1 % of voltage weighs as much as 1 point of loading in the margin
BASE_TOLERANCE = 1e-6  # a base-case value beyond its limit by less than this is not a violation
MAX_PAIRS_PER_BATCH = 20_000
# (state, site) pairs × result columns (bus voltages and angles, line and transformer loadings)
# per round: each array of a round's results and margins is at most 8 bytes × this (160 MB)
MAX_RESULT_CELLS = 20_000_000


class SearchGrid(Protocol):
    """The added load a search places: its resolution (MW), number of steps to the cap, Mvar per MW."""

    @property
    def resolution_mw(self) -> float:
        """Step of the search grid (MW)."""
        ...

    @property
    def steps(self) -> int:
        """Resolution steps from zero to the cap."""
        ...

    @property
    def q_per_mw(self) -> float:
        """Mvar drawn per MW of added load."""
        ...


@dataclass(frozen=True)
class States:
    """Operating states to add load to: element values per state and an optional outage each."""

    values: dict[tuple[str, str], np.ndarray]  # (table, column) → (states, table rows); NaN = model
    outages: tuple[Outage | tuple[Outage, ...] | None, ...] | None
    n: int
    # load already placed at each site (MW): (sites,) the same in every state, or (states, sites)
    fixed_site_mw: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> States:
        """The states at positions ``rows``."""
        fixed = self.fixed_site_mw
        return dataclasses.replace(
            self,
            values={key: value[rows] for key, value in self.values.items()},
            outages=None if self.outages is None else tuple(self.outages[i] for i in rows),
            n=len(rows),
            fixed_site_mw=fixed[rows] if fixed is not None and np.ndim(fixed) == 2 else fixed,
        )

    def scenarios(
        self,
        state: np.ndarray,
        sites: np.ndarray | None = None,
        p_mw: np.ndarray | None = None,
        n_sites: int = 0,
        q_per_mw: float = 0.0,
    ) -> Scenarios:
        """One scenario per state: the fixed site loads, plus ``p_mw`` (MW) at ``sites`` if given."""
        site_p = None
        fixed = self.fixed_site_mw
        if fixed is not None:
            fixed = np.asarray(fixed, dtype=float)
            site_p = fixed[state].copy() if fixed.ndim == 2 else np.tile(fixed, (len(state), 1))
        if sites is not None:
            site_p = np.zeros((len(state), n_sites)) if site_p is None else site_p
            site_p[np.arange(len(state)), sites] += p_mw
        return Scenarios(
            n=len(state),
            element_values={key: value[state] for key, value in self.values.items()},
            site_p_mw=site_p,
            site_q_mvar=None if site_p is None else site_p * q_per_mw,
            outages=None if self.outages is None else tuple(self.outages[i] for i in state),
        )


@dataclass(frozen=True)
class StateLimits:
    """Limits per state after the base-case rule: a limit already violated binds only if worse."""

    vmin: np.ndarray  # (states, buses)
    vmax: np.ndarray
    line: np.ndarray  # (states, lines)
    trafo: np.ndarray
    usable: np.ndarray  # (states,) the base case converged and supplies every load
    converged: np.ndarray  # (states,) the base case converged
    # (states, MARGIN_CRITERIA) each criterion's worst normalised margin without added load (≥ 0)
    base_margin: np.ndarray
    violations: pd.DataFrame  # base-case violations: state, element, criterion, value, limit
    # pre-existing policy "contribution": the base loading (%) of each line and transformer the
    # state already overloads (NaN elsewhere), and the loading (%) per MW added at the cutoff
    # distribution factor; None for the other policies
    line_base: np.ndarray | None = None  # (states, lines)
    trafo_base: np.ndarray | None = None  # (states, trafos)
    line_per_mw: np.ndarray | None = None  # (lines,)
    trafo_per_mw: np.ndarray | None = None  # (trafos,)

    def take(self, rows: np.ndarray) -> StateLimits:
        """The limits of the states at positions ``rows`` (violations renumbered to match)."""
        new_position = {int(old): new for new, old in enumerate(rows)}
        violations = self.violations[self.violations["state"].isin(new_position)].copy()
        violations["state"] = violations["state"].map(new_position)
        return dataclasses.replace(
            self,
            vmin=_take_rows(self.vmin, rows),
            vmax=_take_rows(self.vmax, rows),
            line=_take_rows(self.line, rows),
            trafo=_take_rows(self.trafo, rows),
            usable=self.usable[rows],
            converged=self.converged[rows],
            base_margin=self.base_margin[rows],
            violations=violations,
            line_base=None if self.line_base is None else _take_rows(self.line_base, rows),
            trafo_base=None if self.trafo_base is None else _take_rows(self.trafo_base, rows),
        )

    def thermal(self, state: np.ndarray, added_mw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Line and transformer limits (%, one row per scenario of states ``state``).

        With ``added_mw`` (MW per scenario) added: under "contribution" an element the state
        already overloads may rise by what the cutoff distribution factor would add.
        """
        line, trafo = self.line[state], self.trafo[state]
        if self.line_base is None or added_mw is None:
            return line, trafo
        if self.trafo_base is None or self.line_per_mw is None or self.trafo_per_mw is None:
            raise ValueError("the contribution policy's limits come with all four of their fields")
        added = np.asarray(added_mw, dtype=float).reshape(-1, 1)
        return (
            np.fmax(line, self.line_base[state] + self.line_per_mw * added),
            np.fmax(trafo, self.trafo_base[state] + self.trafo_per_mw * added),
        )


@dataclass(frozen=True)
class HostingResult:
    """Hosting capacity per (state, site) pair, with what binds 0.1 MW above it."""

    hc_mw: np.ndarray  # (states, sites); NaN where the state is not usable
    criterion: np.ndarray  # codes into CRITERIA
    element: np.ndarray  # index into the bus/line/trafo table of the criterion, -1 if none
    flows: int  # power flows run
    # how fast the worst margin falls per MW added, between the answer and a step above it
    # (NaN where the search did not end between two converged flows)
    margin_slope: np.ndarray | None = None


def state_limits(
    model: FlowModel,
    states: States,
    limits: ElementLimits,
    tally: Callable[[pd.DataFrame, np.ndarray], None] | None = None,
) -> StateLimits:
    """Solve each state without added load; relax limits it already violates to its own value.

    The states are solved in blocks (``solved_blocks``): only the limits are kept whole, not a
    whole year of base results (a year of 15-minute steps on the default grid: 1.6 GB).
    ``tally``, if given, is handed each block's base-case violations per element and criterion
    (``violation_groups``, states as positions in all states) in place of keeping them: a year
    of a grid that breaks its own limits has one row per step and element (14.6 million
    overvoltages on the default grid's hourly year), and ``StateLimits.violations`` is then
    empty.
    """
    net = model.net
    n = states.n
    names = ["vmin", "vmax", "line", "trafo"]
    widths = [len(net.bus), len(net.bus), len(net.line), len(net.trafo)]
    if limits.pre_existing == "contribution":  # the base loadings of what each state overloads
        names += ["line_base", "trafo_base"]
        widths += [len(net.line), len(net.trafo)]
    stores = {name: _Rows(n, width) for name, width in zip(names, widths, strict=True)}
    usable, converged = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    margin = np.empty((n, len(MARGIN_CRITERIA)))
    load_buses = net.bus.index.get_indexer(net.load.loc[net.load.in_service & (net.load.p_mw != 0), "bus"])
    found = []
    for rows, base in solved_blocks(model, states):
        vm = base.vm_pu
        supplied = ~np.isnan(vm[:, load_buses]).any(axis=1) if len(load_buses) else np.ones(len(rows), bool)
        usable[rows] = base.converged & supplied
        converged[rows] = base.converged
        bounds = binding_limits(limits, vm, base.line_loading_percent, base.trafo_loading_percent)
        base_loadings: dict = _contribution(limits, base)
        for name, values in zip(names, (*bounds, *(base_loadings[name] for name in names[4:])), strict=True):
            stores[name].put(rows, values)
        block_limits = StateLimits(
            *bounds, usable[rows], converged[rows], margin[rows], pd.DataFrame(), **base_loadings
        )
        margin[rows] = _margins(base, block_limits, np.arange(len(rows)))[3]
        if tally is None:
            found_block = _violations(model, base, limits, usable[rows])
            found_block["state"] += rows[0]
            found.append(found_block)
        else:
            groups, steps = violation_groups(
                model, base, *_element_bounds(limits), tolerance=BASE_TOLERANCE, usable=usable[rows]
            )
            tally(groups.assign(first_state=groups["first_state"] + rows[0]), steps + rows[0])
    contribution: dict = {name: stores[name].array() for name in names[4:]}
    if contribution:
        contribution["line_per_mw"] = limits.line_percent_per_mw
        contribution["trafo_per_mw"] = limits.trafo_percent_per_mw
    return StateLimits(
        stores["vmin"].array(),
        stores["vmax"].array(),
        stores["line"].array(),
        stores["trafo"].array(),
        usable,
        converged,
        np.maximum(margin, 0.0),
        in_unblocked_order(found),
        **contribution,
    )


class _Rows:
    """A (states × elements) array filled block by block in state order, one row while all agree.

    Most states of a year share a limit row (one differs only where its state already breaks
    that limit), so the array is then that row broadcast, read-only: 0.26 GB less a year on the
    default grid at hourly steps.
    """

    def __init__(self, n: int, width: int) -> None:
        self.shape = (n, width)
        self.row: np.ndarray | None = None
        self.full: np.ndarray | None = None

    def put(self, rows: np.ndarray, values: np.ndarray) -> None:
        """The values of states ``rows``, the next block after those already put."""
        if self.full is None and len(values):
            if self.row is None:
                self.row = values[0].copy()
            if _all_rows_equal(values, self.row):
                return
            self.full = np.empty(self.shape)
            self.full[: rows[0]] = self.row
        if self.full is not None:
            self.full[rows] = values

    def array(self) -> np.ndarray:
        if self.full is not None:
            return self.full
        row = np.full(self.shape[1], np.nan) if self.row is None else self.row
        return np.broadcast_to(row, self.shape)


def _take_rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]``; one row broadcast stays one row broadcast (``_Rows``)."""
    if values.ndim == 2 and values.strides[0] == 0:
        return np.broadcast_to(values[0], (len(rows), values.shape[1]))
    return values[rows]


def _all_rows_equal(values: np.ndarray, row: np.ndarray) -> bool:
    """Whether every row of ``values`` is ``row``, NaN equal to NaN."""
    same = (values == row) | (np.isnan(values) & np.isnan(row))
    return bool(same.all())


# scenarios × result columns solved per block when states are streamed (``solved_blocks``):
# about 40 MB of results a block, whatever the number of states
BLOCK_RESULT_CELLS = 5_000_000


def solved_blocks(
    model: FlowModel, states: States, q_per_mw: float = 0.0, cells: int | None = None
) -> Iterator[tuple[np.ndarray, FlowResult]]:
    """``(rows, FlowResult)`` for consecutive blocks of the states (positions ``rows``).

    Each block is solved with the states' fixed site loads, so a caller keeps only what it
    reduces them to.

    Without outages a block is a whole number of ``solve``'s own batches, so every scenario is
    solved in the same PGM batch as when all states go at once; states with outages go in one
    block, so that ``solve`` groups their shared outages as it would.
    """
    for rows in block_rows(model, states, cells):
        yield rows, solve(model, states.scenarios(rows, q_per_mw=q_per_mw))


def block_rows(model: FlowModel, states: States, cells: int | None = None) -> list[np.ndarray]:
    """The positions of each block of states ``solved_blocks`` solves, in order."""
    net = model.net
    columns = 2 * len(net.bus) + len(net.line) + len(net.trafo)
    if states.outages is None:
        inner = batch_size(model)
        size = max(1, (cells or BLOCK_RESULT_CELLS) // max(columns, 1) // inner) * inner
    else:
        size = max(states.n, 1)
    return [np.arange(start, min(start + size, states.n)) for start in range(0, states.n, size)]


def in_unblocked_order(found: list[pd.DataFrame]) -> pd.DataFrame:
    """``violations_of`` rows of consecutive blocks of states in the order of one call on all.

    ``state`` is already the position in all states; the order is by criterion, then state,
    then element.
    """
    found = [f for f in found if len(f)]
    if not found:
        return pd.DataFrame(columns=VIOLATION_COLUMNS)
    joined = pd.concat(found, ignore_index=True)
    rank = joined["criterion"].map({c: i for i, c in enumerate(CRITERIA)})
    return joined.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


def _contribution(limits: ElementLimits, base: FlowResult) -> dict[str, np.ndarray | None]:
    """StateLimits' "contribution" fields: base loadings of the elements each state overloads."""
    if limits.pre_existing != "contribution":
        return {}
    with np.errstate(invalid="ignore"):
        line = base.line_loading_percent
        trafo = base.trafo_loading_percent
        return {
            "line_base": np.where(line > limits.line_percent + BASE_TOLERANCE, line, np.nan),
            "trafo_base": np.where(trafo > limits.trafo_percent + BASE_TOLERANCE, trafo, np.nan),
            "line_per_mw": limits.line_percent_per_mw,
            "trafo_per_mw": limits.trafo_percent_per_mw,
        }


def binding_limits(
    limits: ElementLimits, vm: np.ndarray, line: np.ndarray, trafo: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper voltage, line and transformer limits that bind added load.

    They follow from the base values (per state, or one base) and the limits'
    pre-existing-violation policy.
    """
    du, dp = limits.worsening_pu, limits.worsening_percent
    bounds = (
        relaxed_limit(limits.vmin_pu, vm, -du),
        relaxed_limit(limits.vmax_pu, vm, du),
        relaxed_limit(limits.line_percent, line, dp),
        relaxed_limit(limits.trafo_percent, trafo, dp),
    )
    if limits.pre_existing in ("no-worse", "contribution"):  # contribution: see StateLimits.thermal
        return bounds
    # "ignore": a limit the base already violates never binds; one it sits at keeps the tolerance
    with np.errstate(invalid="ignore"):
        return (
            np.where(vm < limits.vmin_pu - BASE_TOLERANCE, -np.inf, bounds[0]),
            np.where(vm > limits.vmax_pu + BASE_TOLERANCE, np.inf, bounds[1]),
            np.where(line > limits.line_percent + BASE_TOLERANCE, np.inf, bounds[2]),
            np.where(trafo > limits.trafo_percent + BASE_TOLERANCE, np.inf, bounds[3]),
        )


def relaxed_limit(limit: np.ndarray, base: np.ndarray, worsening: float) -> np.ndarray:
    """The limit that binds added load, for one or many base states.

    It is the model's limit, or the base value moved by ``worsening`` (< 0 for a lower limit) if
    that is beyond it. So a limit the base case violates binds only if added load makes it worse,
    and one the base case sits at binds only beyond numerical noise; the rule is continuous.
    """
    if worsening > 0:
        return np.fmax(limit, base + worsening)
    return np.fmin(limit, base + worsening)


def _violations(
    model: FlowModel, base: FlowResult, limits: ElementLimits, usable: np.ndarray
) -> pd.DataFrame:
    found = violations_of(model, base, *_element_bounds(limits), tolerance=BASE_TOLERANCE)
    return found[usable[found["state"].to_numpy(dtype=np.int64)]].reset_index(drop=True)


def _element_bounds(limits: ElementLimits) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lower and upper voltage (pu), line and transformer (%) limit of every element."""
    return limits.vmin_pu, limits.vmax_pu, limits.line_percent, limits.trafo_percent


VIOLATION_COLUMNS = ["state", "criterion", "element", "value", "limit"]


def violations_of(
    model: FlowModel,
    result: FlowResult,
    vmin: np.ndarray,
    vmax: np.ndarray,
    line: np.ndarray,
    trafo: np.ndarray,
    tolerance: float,
) -> pd.DataFrame:
    """Every value of ``result`` beyond its limit by more than ``tolerance``, one row each.

    Limits are per element (1-D) or per scenario and element (2-D); ``state`` is the scenario's
    position in ``result``; scenarios that did not converge get one ``non-convergence`` row.
    """
    net = model.net
    frames = []
    for criterion, table, values, limit, sign in _checks(result, vmin, vmax, line, trafo):
        with np.errstate(invalid="ignore"):
            state, column = np.nonzero(sign * (values - limit) > tolerance)
        names = element_names(net[table])
        frames.append(
            pd.DataFrame(
                {
                    "state": state,
                    "criterion": criterion,
                    "element": names[column] if len(names) else [],
                    "value": values[state, column],
                    "limit": limit[state, column],
                }
            )
        )
    failed = np.flatnonzero(~result.converged)
    frames.append(
        pd.DataFrame(
            {"state": failed, "criterion": "non-convergence", "element": "", "value": np.nan, "limit": np.nan}
        )
    )
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=VIOLATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[VIOLATION_COLUMNS]


def _checks(
    result: FlowResult, vmin: np.ndarray, vmax: np.ndarray, line: np.ndarray, trafo: np.ndarray
) -> tuple[tuple[str, str, np.ndarray, np.ndarray, int], ...]:
    """(criterion, table, values, limits broadcast to them, sign of beyond) of each limit check."""
    return tuple(
        (criterion, table, values, np.broadcast_to(limit, values.shape), sign)
        for criterion, table, values, limit, sign in (
            ("undervoltage", "bus", result.vm_pu, vmin, -1),
            ("overvoltage", "bus", result.vm_pu, vmax, 1),
            ("line thermal", "line", result.line_loading_percent, line, 1),
            ("transformer thermal", "trafo", result.trafo_loading_percent, trafo, 1),
        )
    )


GROUP_COLUMNS = ["criterion", "element", "steps", "first_state", "severity", "value", "limit"]


def violation_groups(
    model: FlowModel,
    result: FlowResult,
    vmin: np.ndarray,
    vmax: np.ndarray,
    line: np.ndarray,
    trafo: np.ndarray,
    tolerance: float,
    usable: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """``violations_of``'s rows reduced per criterion and element, without making the rows.

    A grid that breaks its own limits has a row per step and element (1.5 million in a block
    of the default grid's year); this gives per element the count, the first state, and the
    worst value (severity: the value, negated for undervoltage; of equal ones the first) with
    its limit, in the order of their first rows. Elements that share a name stay apart here
    (``ViolationTally`` joins them). Only states ``usable`` (all by default) count. Also
    returned: the positions of the states with any violation.
    """
    net = model.net
    usable = np.ones(len(result.converged), dtype=bool) if usable is None else usable
    parts, any_state = [], np.zeros(len(usable), dtype=bool)
    for criterion, table, values, limit, sign in _checks(result, vmin, vmax, line, trafo):
        with np.errstate(invalid="ignore"):
            beyond = (sign * (values - limit) > tolerance) & usable[:, None]
        hit = np.flatnonzero(beyond.any(axis=0))
        if not len(hit):
            continue
        beyond = beyond[:, hit]
        any_state |= beyond.any(axis=1)
        severity = np.where(beyond, sign * values[:, hit], -np.inf)
        worst = severity.argmax(axis=0)  # the first state of the highest
        first = beyond.argmax(axis=0)
        frame = pd.DataFrame(
            {
                "element": element_names(net[table])[hit],
                "steps": beyond.sum(axis=0),
                "first_state": first,
                "first_row": first * values.shape[1] + hit,  # rows go state by state, then element
                "severity": severity[worst, np.arange(len(hit))],
                "value": values[worst, hit],
                "limit": limit[worst, hit],
            }
        )
        parts.append(frame.sort_values("first_row", kind="stable").assign(criterion=criterion))
    failed = np.flatnonzero(~result.converged & usable)
    if len(failed):
        any_state[failed] = True
        parts.append(
            pd.DataFrame(
                {
                    "criterion": ["non-convergence"],
                    "element": [""],
                    "steps": [len(failed)],
                    "first_state": [failed[0]],
                    "severity": [-np.inf],  # no value: never the worst unless all are, then the first
                    "value": [np.nan],
                    "limit": [np.nan],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=GROUP_COLUMNS), np.flatnonzero(any_state)
    return pd.concat(parts, ignore_index=True)[GROUP_COLUMNS], np.flatnonzero(any_state)


def element_names(table: pd.DataFrame) -> np.ndarray:
    """``element_name`` of every row of ``table``, as an object array."""
    return np.array(
        [
            str(name) if isinstance(name, str) and name else f"#{index}"
            for name, index in zip(table["name"].tolist(), table.index, strict=True)
        ],
        dtype=object,
    )


def element_name(table: pd.DataFrame, position: int) -> str:
    """The element at ``position`` of a pandapower table: its name, or ``#<index>`` without one."""
    name = table["name"].iloc[position]
    return str(name) if isinstance(name, str) and name else f"#{table.index[position]}"


def every_pair(states: np.ndarray, n_sites: int) -> tuple[np.ndarray, np.ndarray]:
    """(state, site) positions pairing every state in ``states`` (a mask) with every site."""
    on_grid = np.meshgrid(np.flatnonzero(states), np.arange(n_sites), indexing="ij")
    return on_grid[0].ravel(), on_grid[1].ravel()


def hosting_capacity(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    settings: SearchGrid,
    sites: np.ndarray | None = None,
    pairs: tuple[np.ndarray, ...] | None = None,
    progress: Progress | None = None,
    label: str = "(state, site) pairs",
    guess_mw: np.ndarray | None = None,
    guess_slope: np.ndarray | None = None,
) -> HostingResult:
    """Largest added load (MW, on the resolution grid, up to the cap) per usable state and site.

    ``sites`` are positions in ``model.site_buses`` (default all); results have one column
    each. ``pairs`` (state positions, column positions) limits the search to those pairs
    (others stay NaN); by default every usable state is paired with every site. ``guess_mw``
    (states × columns, NaN for none) is where each pair's search starts instead of the cap: a
    good guess closes the bracket in two flows, a bad one costs a flow or two; the answer is the
    same either way. ``guess_slope`` (states × columns, per MW, NaN for none), e.g. a neighbouring
    state's ``margin_slope``, turns the margin found at the guess into a step straight to where
    it crosses zero.
    """
    n_sites = len(model.site_buses)
    sites = np.arange(n_sites) if sites is None else np.asarray(sites)
    hc = np.full((states.n, len(sites)), np.nan)
    criterion = np.full((states.n, len(sites)), CAP_REACHED, dtype=np.int8)
    element = np.full((states.n, len(sites)), -1, dtype=np.int64)
    slope = np.full((states.n, len(sites)), np.nan)
    if pairs is None:
        state_of, site_col = every_pair(limits.usable, len(sites))
    else:
        state_of, site_col = (np.asarray(p, dtype=np.int64) for p in pairs)
        keep = limits.usable[state_of]
        state_of, site_col = state_of[keep], site_col[keep]
    flows = 0
    net = model.net
    columns = 2 * len(net.bus) + len(net.line) + len(net.trafo)
    batch = max(1, min(MAX_PAIRS_PER_BATCH, MAX_RESULT_CELLS // max(columns, 1)))
    for start in range(0, len(state_of), batch):
        chunk = slice(start, start + batch)
        guess = step_slope = None
        if guess_mw is not None:
            start_mw = guess_mw[state_of[chunk], site_col[chunk]]
            guess = np.where(
                np.isfinite(start_mw), np.floor(np.nan_to_num(start_mw) / settings.resolution_mw + 1e-9), -1
            ).astype(np.int64)
        if guess_slope is not None:
            step_slope = guess_slope[state_of[chunk], site_col[chunk]] * settings.resolution_mw
        k, code, where, pair_slope, count = _bracket(
            model,
            states,
            limits,
            settings,
            state_of[chunk],
            sites[site_col[chunk]],
            n_sites,
            guess,
            step_slope,
        )
        hc[state_of[chunk], site_col[chunk]] = k * settings.resolution_mw
        criterion[state_of[chunk], site_col[chunk]] = code
        element[state_of[chunk], site_col[chunk]] = where
        slope[state_of[chunk], site_col[chunk]] = pair_slope / settings.resolution_mw
        flows += count
        if progress is not None:
            tally(progress, label, min(start + batch, len(state_of)), len(state_of))
    return HostingResult(hc, criterion, element, flows, slope)


GUIDE_STRIDES = (24, 6, 2, 1)  # coarse to fine: every 24th state first, then every 6th, 2nd, all


def coarse_to_fine(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    settings: SearchGrid,
    sites: np.ndarray | None = None,
    progress: Progress | None = None,
    label: str = "(state, site) pairs",
) -> HostingResult:
    """:func:`hosting_capacity` of every usable state and site, searched coarse to fine.

    The states are taken in order of net demand (``net_demand_mw``), along which the capacity
    moves slowly from one to the next (more slowly than from hour to hour: a year's morning and
    evening of the same demand are neighbours). A search from the cap at every 24th usable
    state, then at every 6th, 2nd and every state, each started at the value interpolated from
    the states already known, closes most brackets in two or three flows instead of ten or more:
    the guess is placed between the known neighbours by net demand, and their margin slopes step
    from the margin at the guess to where it crosses zero. The answers are those of a search
    from the cap.
    """
    n_columns = len(model.site_buses) if sites is None else len(sites)
    demand = net_demand_mw(model, states)
    by_demand = np.argsort(demand, kind="stable")
    usable = by_demand[limits.usable[by_demand]]  # usable states, lowest demand first
    hc = np.full((states.n, n_columns), np.nan)
    criterion = np.full((states.n, n_columns), CAP_REACHED, dtype=np.int8)
    element = np.full((states.n, n_columns), -1, dtype=np.int64)
    slope = np.full((states.n, n_columns), np.nan)
    known = np.zeros(states.n, dtype=bool)
    flows = 0
    for stride in GUIDE_STRIDES:
        rows = np.zeros(states.n, dtype=bool)
        rows[usable[::stride]] = True
        rows[usable[-1:]] = True
        rows &= ~known
        if not rows.any():
            continue
        guess = guess_slope = None
        if known.any():
            known_ranks = np.flatnonzero(known[by_demand])
            guess, guess_slope = np.empty_like(hc), np.empty_like(slope)
            guess[by_demand] = interpolated_rows(hc[by_demand], known_ranks, demand[by_demand])
            guess_slope[by_demand] = interpolated_rows(slope[by_demand], known_ranks, demand[by_demand])
        result = hosting_capacity(
            model, states, limits, settings, sites=sites, pairs=every_pair(rows, n_columns),
            progress=progress, guess_mw=guess, guess_slope=guess_slope,
            label=f"{label}, every {_ordinal(stride)} first" if stride > 1 else f"{label}, the rest",
        )  # fmt: skip
        hc[rows] = result.hc_mw[rows]
        criterion[rows] = result.criterion[rows]
        element[rows] = result.element[rows]
        if result.margin_slope is not None:
            slope[rows] = result.margin_slope[rows]
        known |= rows
        flows += result.flows
    return HostingResult(hc, criterion, element, flows, slope)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def interpolated_rows(values: np.ndarray, known: np.ndarray, along: np.ndarray | None = None) -> np.ndarray:
    """Every row of ``values`` interpolated linearly between the ``known`` rows around it.

    ``known``: sorted positions. Rows before the first known row take its values, rows after the
    last the last's, as ``np.interp`` does, for all columns at once. ``along`` (one number per
    row, e.g. each state's demand) places a row between its two known neighbours by that
    number instead of by position, clipped to them; where both neighbours have the same
    number, by position.
    """
    rows = np.arange(len(values))
    right = np.minimum(np.searchsorted(known, rows), len(known) - 1)
    left = np.maximum(right - 1, 0)
    x0, x1 = known[left], known[right]
    weight = (rows - x0) / np.where(x1 > x0, x1 - x0, 1)
    if along is not None:
        span = along[x1] - along[x0]
        by_value = (along - along[x0]) / np.where(span != 0, span, 1)
        weight = np.where(span != 0, by_value, weight)
    weight = np.clip(weight, 0.0, 1.0)[:, None]
    return values[x0] * (1 - weight) + values[x1] * weight


def net_demand_mw(model: FlowModel, states: States) -> np.ndarray:
    """Each state's demand less its static generation, with any load fixed at the sites (MW)."""
    net = model.net
    demand = np.zeros(states.n)
    for table, sign in (("load", 1.0), ("sgen", -1.0)):
        if not len(net[table]):
            continue
        given = net[table]["p_mw"].to_numpy(float) * net[table]["in_service"].to_numpy(float)
        value = states.values.get((table, "p_mw"))
        rows = (
            np.broadcast_to(given, (states.n, len(given)))
            if value is None
            else np.where(np.isnan(value), given, value)
        )
        demand += sign * (rows * net[table]["scaling"].to_numpy(float)).sum(axis=1)
    if states.fixed_site_mw is not None:
        fixed = np.asarray(states.fixed_site_mw, dtype=float)
        demand += fixed.sum(axis=-1) if fixed.ndim == 2 else fixed.sum()
    return demand


def worst_state(result: HostingResult) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per site (column): the lowest capacity over the states, and what gives it.

    Returns that capacity (MW; inf where no state was searched), the state that gives it, and
    that state's binding criterion code and element.
    """
    hc = np.where(np.isnan(result.hc_mw), np.inf, result.hc_mw)
    if not len(hc):  # no state searched (e.g. every outage of a radial feeder islands load)
        none = np.zeros(hc.shape[1], dtype=np.int64)
        return np.full(hc.shape[1], np.inf), none, np.full(hc.shape[1], CAP_REACHED, dtype=np.int8), none - 1
    state = hc.argmin(axis=0)
    column = np.arange(hc.shape[1])
    return hc[state, column], state, result.criterion[state, column], result.element[state, column]


def _bracket(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    settings: SearchGrid,
    state: np.ndarray,
    site: np.ndarray,
    n_sites: int,
    guess: np.ndarray | None = None,
    guess_slope: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Narrow [feasible, infeasible] brackets on the resolution grid for every pair at once.

    The first probe is the cap, or where a pair has a ``guess`` (grid steps, −1: none) that
    value and then the step ``_step_from_guess`` takes from it (with ``guess_slope``, the
    margin fall per grid step, straight to where the margin crosses zero). Then each round
    probes, per pair, where the margins cross zero and the grid value above it: when the last
    round raised the feasible end, the first crossing of any criterion's margin on the secant
    through the last two feasible values (the margins near the answer are close to linear in
    the added load, so this usually lands on it within a round or two); else, if the last round
    at least halved the bracket, where the margin of the criterion that binds at the infeasible
    end crosses zero on the line between the ends; otherwise (interpolation stalling) the round
    halves the bracket. Each criterion's margin is followed on its own because their worst is
    not smooth: a limit whose margin does not move (the source bus's voltage) hides the one that
    falls until it takes over. The second half of the rounds only halve, so every bracket
    closes. On margins that fall as load is added (feasibility monotone in the added load) the
    answer is the same whatever the order of probes: the largest feasible grid value. Also
    returns each pair's fall over its last grid step of the margin that binds above it (NaN
    where that step was not between two converged flows).
    """
    top = settings.steps
    n = len(state)
    lo = np.zeros(n, dtype=np.int64)
    hi = np.full(n, top + 1, dtype=np.int64)  # top + 1: nothing infeasible known yet
    m_lo = limits.base_margin[state]  # each criterion's margin at lo (a copy: indexed)
    g_hi = np.full(n, np.nan)  # the worst margin at hi: the binding criterion's
    before = np.full(n, -1, dtype=np.int64)  # the feasible value tried before lo (-1: none)
    m_before = np.full(m_lo.shape, np.nan)
    code = np.zeros(n, dtype=np.int8)
    where = np.full(n, -1, dtype=np.int64)
    flows = 0

    def probe(rows: np.ndarray, k: np.ndarray) -> None:
        nonlocal flows
        g, crit, elem, by_criterion = _margin(
            model, states, limits, settings, state[rows], site[rows], k * settings.resolution_mw, n_sites
        )
        flows += len(rows)
        ok = g >= 0
        # a pair probed twice keeps its larger feasible and its smaller infeasible value:
        # written last in these orders
        up = np.flatnonzero(ok & (k > lo[rows]))
        up = up[np.argsort(k[up], kind="stable")]
        before[rows[up]] = lo[rows[up]]
        m_before[rows[up]] = m_lo[rows[up]]
        lo[rows[up]] = k[up]
        m_lo[rows[up]] = by_criterion[up]
        down = np.flatnonzero(~ok & (k < hi[rows]))
        down = down[np.argsort(-k[down], kind="stable")]
        hi[rows[down]] = k[down]
        g_hi[rows[down]] = g[down]
        code[rows[down]] = crit[down]
        where[rows[down]] = elem[down]

    start = np.full(n, top) if guess is None else np.where(guess >= 0, np.clip(guess, 0, top), top)
    probe(np.arange(n), start)
    upward = np.zeros(n, dtype=bool)
    if guess is not None:
        at_guess = np.where(lo == start, m_lo.min(axis=1), g_hi)
        upward = _step_from_guess(probe, guess, start, lo, hi, at_guess, guess_slope)
    rounds = 4 * int(np.ceil(np.log2(top + 1))) + 4
    width = np.full(n, 2 * top + 4)  # each pair's bracket width before the last round (none yet)
    # the last round raised the feasible end; after stepping up from a guess, the secant
    # through its last two feasible values
    raised = upward & (lo > 0)
    for round_number in range(rounds):
        active = np.flatnonzero(hi - lo > 1)
        if len(active) == 0:
            break
        a_lo, a_hi = lo[active], hi[active]
        at_lo = _binding_at(m_lo[active], code[active])
        with np.errstate(invalid="ignore", divide="ignore"):
            root = a_lo + (a_hi - a_lo) * at_lo / (at_lo - g_hi[active])
            fall = m_before[active] - m_lo[active]
            crossing = a_lo[:, None] + (a_lo - before[active])[:, None] * m_lo[active] / fall
        secant = np.where(fall > 0, crossing, np.inf).min(axis=1)
        use_secant = raised[active] & (before[active] >= 0) & np.isfinite(secant)
        use_secant &= (secant > a_lo) & (secant < a_hi)
        root = np.where(use_secant, secant, root)
        halve = ~use_secant & (2 * (a_hi - a_lo) > width[active]) | ~np.isfinite(root)
        if 2 * round_number >= rounds:
            halve[:] = True
        width[active] = a_hi - a_lo
        first = np.clip(np.floor(np.where(halve, 0, root)).astype(np.int64), a_lo + 1, a_hi - 1)
        first = np.where(halve, (a_lo + a_hi) // 2, first)
        second = np.minimum(first + 1, a_hi - 1)
        both = (second > first) & ~halve
        raised[:] = False
        old_lo = lo[active]
        probe(np.concatenate([active, active[both]]), np.concatenate([first, second[both]]))
        raised[active] = lo[active] > old_lo
    code[hi > top] = CAP_REACHED
    where[hi > top] = -1
    slope = np.where((hi == lo + 1) & np.isfinite(g_hi), _binding_at(m_lo, code) - g_hi, np.nan)
    return lo, code, where, slope, flows


def _binding_at(margins: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Per pair, the margin (of ``margins``, pairs × ``MARGIN_CRITERIA``) of criterion ``code``.

    The worst margin where the code is none or non-convergence.
    """
    column = np.clip(code.astype(np.int64) - 1, 0, len(MARGIN_CRITERIA) - 1)
    of_code = margins[np.arange(len(code)), column]
    return np.where((code >= UNDERVOLTAGE) & (code <= TRAFO_THERMAL), of_code, margins.min(axis=1))


def _step_from_guess(
    probe: Callable[[np.ndarray, np.ndarray], None],
    guess: np.ndarray,
    start: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    at_guess: np.ndarray,
    slope: np.ndarray | None = None,
) -> np.ndarray:
    """From a probed guess, probe next to where the margin crosses zero.

    Where a ``slope`` (margin fall per grid step, > 0) is known, the crossing is the guess plus
    its margin (``at_guess``) over the slope: the grid value there and the one above close the
    bracket if the margin is as straight as the slope says (one probe if that value is the
    guess). Elsewhere, feasible at the guess, the value above; infeasible, the one below. A
    guess that is the answer (or one step off) is bracketed in these two flows; otherwise the
    secant through the probes is where the rounds go next. ``lo``/``hi`` (the brackets) are
    narrowed by ``probe``. Returns the pairs that went up. (Galloping 1, 2, 4, … steps from the
    guess took more flows on a year of headroom and on the grid-aware dispatch.)
    """
    upward = (guess >= 0) & (lo == start)
    live = np.flatnonzero((guess >= 0) & (hi - lo > 1))
    step = np.where(upward[live], 1, -1)
    first = start[live] + np.minimum(step, 0)  # the pair of values [first, first + 1] to probe
    if slope is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            crossing = np.floor(start[live] + at_guess[live] / slope[live])
        steered = np.isfinite(crossing) & (slope[live] > 0)
        first = np.where(steered, np.clip(crossing, lo[live], hi[live] - 1), first).astype(np.int64)
    rows = np.concatenate([live, live])
    k = np.concatenate([first, first + 1])
    wanted = (k > lo[rows]) & (k < hi[rows])  # not the guess itself, nor beyond the bracket
    if wanted.any():
        probe(rows[wanted], k[wanted])
    return upward


def _margin(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    settings: SearchGrid,
    state: np.ndarray,
    site: np.ndarray,
    p_mw: np.ndarray,
    n_sites: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per scenario: the worst normalised margin (≥ 0 feasible), its criterion and element.

    With them, each criterion's worst margin (``_margins``).
    """
    scenarios = states.scenarios(state, site, p_mw, n_sites, settings.q_per_mw)
    return _margins(solve(model, scenarios), limits, state, scenarios.added_mw)


MARGIN_BLOCK_CELLS = 5_000_000  # scenarios × columns per block of worst_margin's temporaries (40 MB each)


def state_margins(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    rows: np.ndarray,
    power_mw: np.ndarray,
    q_per_mw: float,
) -> np.ndarray:
    """Worst normalised margin (≥ 0: within limits) at states ``rows``, sites at ``power_mw``.

    ``power_mw`` is each site's load (MW, ``rows`` × sites).
    """
    if not len(rows):
        return np.empty(0)
    probe = dataclasses.replace(states.take(rows), fixed_site_mw=power_mw)
    result = solve(model, probe.scenarios(np.arange(len(rows)), q_per_mw=q_per_mw))
    return worst_margin(result, limits.take(rows), np.arange(len(rows)), power_mw.sum(axis=1))[0]


def worst_margin(
    result: FlowResult, limits: StateLimits, state: np.ndarray, added_mw: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scenario: the worst normalised margin to ``limits`` of its state, and what it is.

    The margin is ≥ 0 within every limit and −inf if the scenario did not converge; with it come
    that limit's criterion code and element position.

    ``added_mw`` (MW per scenario, the load the sites add) matters only under the
    "contribution" policy (``StateLimits.thermal``); without it that policy binds as "no-worse".
    Scenarios go in blocks, so its temporaries stay small next to a year of results.
    """
    return _margins(result, limits, state, added_mw)[:3]


def _margins(
    result: FlowResult, limits: StateLimits, state: np.ndarray, added_mw: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``worst_margin`` and each criterion's worst margin (scenarios × ``MARGIN_CRITERIA``).

    A criterion without elements has margin inf; a scenario that did not converge −inf in all.
    """
    n = len(state)
    worst = np.full(n, np.inf)
    criterion = np.zeros(n, dtype=np.int8)
    element = np.full(n, -1, dtype=np.int64)
    by_criterion = np.full((n, len(MARGIN_CRITERIA)), np.inf)
    loadings = result.line_loading_percent.shape[1] + result.trafo_loading_percent.shape[1]
    columns = 2 * result.vm_pu.shape[1] + loadings
    block = max(1, MARGIN_BLOCK_CELLS // max(columns, 1))
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        added = None if added_mw is None else np.asarray(added_mw)[rows]
        _worst_margin_block(
            result, limits, state[rows], rows, added, worst[rows], criterion[rows], element[rows],
            by_criterion[rows],
        )  # fmt: skip
    failed = ~result.converged
    worst[failed] = -np.inf
    criterion[failed] = NON_CONVERGENCE
    element[failed] = -1
    by_criterion[failed] = -np.inf
    return worst, criterion, element, by_criterion


def _worst_margin_block(
    result: FlowResult,
    limits: StateLimits,
    state: np.ndarray,
    rows: slice,
    added_mw: np.ndarray | None,
    worst: np.ndarray,
    criterion: np.ndarray,
    element: np.ndarray,
    by_criterion: np.ndarray,
) -> None:
    """_margins for the scenarios ``rows`` (of states ``state``), into the given views."""
    line, trafo = limits.thermal(state, added_mw)
    checks = (
        (UNDERVOLTAGE, lambda: (result.vm_pu[rows] - limits.vmin[state]) / VOLTAGE_SCALE_PU),
        (OVERVOLTAGE, lambda: (limits.vmax[state] - result.vm_pu[rows]) / VOLTAGE_SCALE_PU),
        (LINE_THERMAL, lambda: line - result.line_loading_percent[rows]),
        (TRAFO_THERMAL, lambda: trafo - result.trafo_loading_percent[rows]),
    )
    for code, margin_of in checks:
        with np.errstate(invalid="ignore"):
            margin = margin_of()
        if margin.shape[1] == 0:
            continue
        margin[np.isnan(margin)] = np.inf
        column = margin.argmin(axis=1)
        value = margin[np.arange(len(state)), column]
        by_criterion[:, code - 1] = value
        better = value < worst
        worst[better] = value[better]
        criterion[better] = code
        element[better] = column[better]


def criterion_element_name(model: FlowModel, criterion: int, element: int) -> str:
    """The name of the element a criterion code points at ('' for none)."""
    table = {UNDERVOLTAGE: "bus", OVERVOLTAGE: "bus", LINE_THERMAL: "line", TRAFO_THERMAL: "trafo"}.get(
        int(criterion)
    )
    if table is None or element < 0:
        return ""
    return element_name(model.net[table], int(element))
