"""Distributed inference across the selected sites: demand → dispatch → site power → AC check.

Each step, fleet demand (tokens/s, with the step's prefill share) plus what waits in the
queue is shared among the sites by a policy:

- ``blind``: in proportion to site size (a grid-unaware scheduler), up to each site's GPUs;
- ``grid-aware``: no site draws more than its substation's headroom at that step given the
  grid's own profile and every other site's power. Steps where the ``blind`` share stays
  within limits are shared like ``blind``; at the others, sites are filled one by one in a
  fixed order, each up to the power a batched hosting-capacity search finds with the sites
  before it at their filled power and those after it at their idle floor — so the state
  checked for the last site is the dispatched state itself. Work held back there reaches later
  steps; those it makes break a limit are filled in order too.

Demand that cannot be served waits up to ``max_delay_minutes`` (oldest first) and is then
dropped. A latency limit lets demand from each load bus go only to sites within
``latency_km``. Site power then goes through the year's AC power flow with the grid's own
profiles; a limit counts as violated only where the fleet makes it worse than the grid alone
(the capacity stage's rule), so the grid's own violations are reported apart.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd

from siting.capacity import CapacitySettings, normal_limits
from siting.engine.flow import EngineOptions, FlowModel, prepare, profile_scenarios, solve
from siting.engine.search import (
    BASE_TOLERANCE,
    CRITERIA,
    StateLimits,
    States,
    block_rows,
    coarse_to_fine,
    state_limits,
    state_margins,
    violation_groups,
    worst_margin,
)
from siting.errors import DataError, SettingError, UsageError, check_number
from siting.geography import local_crs
from siting.limits import StudyLimits
from siting.power import (
    PowerModel,
    default_model,
    gpus_for_site,
    packed_power_mw,
    packed_served_for_power,
    served_for_power,
    site_capacity_tokens_per_s,
    site_power_mw,
)
from siting.progress import Progress, silent
from siting.selection import Selection, grid_demand
from siting.sources.grid import Grid
from siting.sources.profiles import profile_step_minutes
from siting.workload import DEMAND_COLUMNS

POLICIES = ("blind", "grid-aware")
HEADROOM_STEP_MW = 0.01  # headroom search step: fine against a 5–20 MW site
# searches of one step's headroom at most: a step searched again within its dispatch gets what
# it is searched at unless the work reaching it changes again
HEADROOM_SEARCHES = 3

# Demonstrated flexibility: Colangelo et al., "Turning AI Data Centers into Grid-Interactive
# Assets: Results from a Field Demonstration in Phoenix, Arizona" (Emerald AI, NVIDIA, Oracle,
# SRP, EPRI; arXiv:2507.00909, 2025): a 256-GPU cluster cut its power 25 % for 3 h during peak
# grid events with its quality of service kept. Used as the default bounds on how deep and how
# long the fleet may hold work back.
PHOENIX_DEPTH = 0.25
PHOENIX_HOURS = 3.0
# nvidia-smi / Redfish power-limit range of a DGX H100/H200 GPU: 200–700 W (NVIDIA DGX user
# guide, "Managing Power Capping": PowerLimitWatts AllowableMin 200, AllowableMax 700).
H200_MIN_POWER_LIMIT_W = 200.0
# Power-on to serving of a GPU server: boot and GPU driver start (~1.5–2.5 min) plus loading
# the model's weights (~2–5 min for multi-GB models); published cold-start breakdowns put the
# total at 3–10 min. 10 min keeps a woken server inside one 15-minute step.
WAKE_MINUTES = 10.0
# GPUs kept powered and idle while others are off, as a share of the site's GPUs: the margin
# that serves a rise in demand while servers wake (an assumption; set it to the forecast error).
WARM_RESERVE = 0.1


@dataclass(frozen=True)
class PowerModes:
    """What the grid-aware policy may do at a site where the grid binds, besides moving work.

    Elsewhere every server stays powered and serves its share.

    Parameters
    ----------
    cap : bool
        Power capping (below).
    min_cap_w : float
        Lowest power limit of a GPU (W).
    shutdown : bool
        Idle servers power down (below).
    wake_minutes : float
        Minutes a powered-down server takes to serve again.
    warm_reserve : float
        Share of a site's GPUs kept powered and idle, in [0, 1].
    max_depth : float
        Most of the fleet's work that may be held back at a step, as a share of what it has
        GPUs for, in [0, 1].
    max_hours : float
        Most consecutive hours work may be held back.
    backup_hours : float
        Hours a year each site may run from its own supply (h); 0: never.

    Notes
    -----
    - ``cap``: power capping. A site's power is budgeted below what its work needs and the
      work left over waits (or is dropped after ``max_delay_minutes``); the budget becomes
      served tokens/s through the measured H200 curve (its exact inverse). A GPU is never
      capped below ``min_cap_w``: a budget under that serves nothing. Without it work may only
      migrate: the fleet serves all it has GPUs for, wherever that breaks a limit.
    - ``shutdown``: idle servers power down. The work is packed onto the fewest GPUs at full
      load, ``warm_reserve`` of the site's GPUs stay powered and idle, the rest are off, which
      cuts the idle floor (idle GPUs and their hosts draw ~56 % of a site's rating). A server
      takes ``wake_minutes`` to serve again: one that wakes within a step serves in it (the
      reserve covers the wait); a longer wake keeps it powered, idle, over the steps before.
    - ``max_depth`` and ``max_hours``: how much of the fleet's work may be held back at a step
      (share of what it has GPUs for) and for how many consecutive hours, as demonstrated in
      the field. A step that needs more is still kept within the grid's limits but counted in
      ``beyond_bound_steps``: there the plan relies on flexibility beyond what was shown.
      Without capping nothing may be held back: the fleet serves all it has GPUs for, and a
      step that needs less counts there too.
    - ``backup_hours``: on-site supply (emergency generators sized for the site's load). Only at
      a step where even every site at its lowest power breaks a limit, the fewest sites that
      leave the rest within limits (the last in order first) run from their own supply: they
      draw nothing from the grid and keep serving on all their GPUs. Each site runs so at most
      ``backup_hours`` a year, steps taken in time order; a step it would need more for stays on
      the grid and counts in ``idle_floor_steps``. The US "50-hour rule" allows 50 h (40 CFR
      63.6640(f)(4)(ii), RICE NESHAP: emergency engines dispatched by the local balancing
      authority or T&D operator against a local limitation; EPA fact sheet of 1 May 2025 on
      data-centre generators). Off by default: it needs the generators, their permit and that
      agreement.
    """

    cap: bool = True
    min_cap_w: float = H200_MIN_POWER_LIMIT_W
    shutdown: bool = True
    wake_minutes: float = WAKE_MINUTES
    warm_reserve: float = WARM_RESERVE
    max_depth: float = PHOENIX_DEPTH
    max_hours: float = PHOENIX_HOURS
    backup_hours: float = 0.0

    def __post_init__(self) -> None:
        check_number("min_cap_w", self.min_cap_w, above=0)
        check_number("wake_minutes", self.wake_minutes, at_least=0)
        check_number("warm_reserve", self.warm_reserve, at_least=0, at_most=1)
        check_number("max_depth", self.max_depth, at_least=0, at_most=1)
        check_number("max_hours", self.max_hours, at_least=0)
        check_number("backup_hours", self.backup_hours, at_least=0)

    def lowest_share(self, power: PowerModel) -> float:
        """Share of its rating a site draws at a grid-bound step with no work to serve (MW/MW).

        The auxiliary load and the idle warm reserve with ``shutdown``; else every GPU idle:
        :func:`siting.power.packed_power_mw` of no work over the rating, in a form that stays
        finite for any host power.
        """
        powered = self.warm_reserve if self.shutdown else 1.0
        idle_share = (power.curve.idle_w + power.host_w_per_gpu) / (
            power.curve.full_load_w + power.host_w_per_gpu
        )
        return power.aux_fraction + (1 - power.aux_fraction) * powered * idle_share

    def wake_steps(self, step_minutes: float) -> int:
        """Whole steps before the one it serves in that a woken server is already powered."""
        steps = int(np.ceil(self.wake_minutes / step_minutes - 1e-9)) - 1
        if self.shutdown and steps > 0 and self.warm_reserve == 0:
            raise SettingError(
                "wake_minutes",
                self.wake_minutes,
                f"is longer than a {step_minutes:g}-minute step with no warm reserve: "
                "keep a warm reserve or give a shorter delay",
            )
        return max(steps, 0)


MIGRATE_ONLY = PowerModes(cap=False, shutdown=False)


@dataclass(frozen=True)
class FleetSettings:
    """How the fleet is sized, dispatched and checked.

    Parameters
    ----------
    policies : tuple of str
        Dispatch policies to simulate, from ``POLICIES`` (blind, grid-aware).
    power : PowerModel
        How GPU power becomes facility power.
    peak_utilisation : float
        Modelled demand at its peak as a share of what the fleet serves with every GPU busy.
    max_delay_minutes : float
        Unserved demand waits at most this long (min), then is dropped.
    latency_km : float or None
        Demand goes only to sites this close (km) to where it arises; None: any site.
    pf : float
        Power factor of the sites, lagging, in (0, 1].
    seed : int
        Seed of the modelled workload's randomness.
    limits : StudyLimits
        Limits where the model has none.
    modes : PowerModes
        What the grid-aware policy may do at a site.
    engine : EngineOptions
        Power-flow options.
    """

    policies: tuple[str, ...] = POLICIES
    power: PowerModel = field(default_factory=default_model)
    peak_utilisation: float = 0.9  # modelled demand at its peak, as a share of the fleet's capacity
    max_delay_minutes: float = 15.0  # unserved demand waits this long, then is dropped
    latency_km: float | None = None  # demand goes only to sites this close (None: any site)
    pf: float = 0.95  # power factor of the sites, lagging
    seed: int = 0
    limits: StudyLimits = field(default_factory=StudyLimits)
    modes: PowerModes = field(default_factory=PowerModes)
    engine: EngineOptions = field(default_factory=EngineOptions)

    def __post_init__(self) -> None:
        idle = self.power.curve.idle_w
        if self.modes.cap and self.modes.min_cap_w < idle:
            raise SettingError(
                "min_cap_w",
                self.modes.min_cap_w,
                f"is below a powered GPU's idle draw ({idle:.1f} W); give a cap at or above it",
            )
        unknown = sorted(str(p) for p in set(self.policies) - set(POLICIES))
        if unknown or not self.policies:
            raise SettingError(
                "policies", ",".join(unknown) or "(none)", f"choose from {', '.join(POLICIES)}"
            )
        check_number("peak_utilisation", self.peak_utilisation, above=0, at_most=1)
        check_number("max_delay_minutes", self.max_delay_minutes, at_least=0)
        if self.latency_km is not None:
            check_number("latency_km", self.latency_km, above=0)
        check_number("pf", self.pf, above=0, at_most=1)
        check_number("seed", self.seed, at_least=0, whole=True)

    def record(self) -> dict[str, object]:
        """The settings as plain data, for manifests (the GPU curve is named by its data files)."""
        return {
            **{k: v for k, v in vars(self).items() if k not in ("power", "limits", "modes", "engine")},
            "engine": self.engine.record(),
            "power": {k: v for k, v in vars(self.power).items() if k != "curve"},
            "limits": self.limits.record(),
            "modes": vars(self.modes),
        }


@dataclass(frozen=True)
class Dispatch:
    """One policy's year: per step (rows) and site (columns)."""

    policy: str
    served: np.ndarray  # tokens/s served at each site
    power_mw: np.ndarray  # facility power of each site (MW)
    late: np.ndarray  # (steps,) tokens/s served this step that had waited
    dropped: np.ndarray  # (steps,) tokens/s dropped this step (waited too long or no site in reach)
    grid_limited_steps: int  # steps where the grid, not the GPUs, limited what the sites could take
    idle_floor_steps: int  # steps where even the sites' lowest power breaks a limit
    waiting: float  # tokens/s still queued after the last step (neither served nor dropped)
    beyond_bound_steps: int  # steps holding back more work, or longer, than the bounds (see PowerModes)
    held_gpus: np.ndarray  # (steps,) GPU-equivalents of work held back by power budgets
    off_gpus: np.ndarray  # (steps, sites) GPUs powered down
    own_supply: np.ndarray  # (steps, sites) True where the site runs from its own supply
    own_supply_mw: np.ndarray  # (steps, sites) facility power (MW) from the site's own supply


@dataclass(frozen=True)
class FleetResult:
    """A simulated year of the fleet: per policy its summary, sites, violations and power (MW).

    Attributes
    ----------
    summary : DataFrame
        One row per policy: tokens served, deferred and dropped, energy (MWh), peak (MW),
        violations.
    sites : DataFrame
        One row per policy and site: energy (MWh), peak (MW), load factor, utilisation.
    violations : DataFrame
        One row per policy, element and criterion the fleet makes worse (``FLEET_VIOLATION_COLUMNS``).
    site_power : DataFrame
        Long table: time, policy, substation, bus, ``p_mw`` (MW from the grid), ``own_supply_mw``
        (MW from the site's own supply), ``served_tokens_per_s``.
    grid_violations : DataFrame
        What the grid alone, without the fleet, already breaks, per element and criterion.
    demand : DataFrame
        Fleet demand (tokens/s, ``DEMAND_COLUMNS``) at each step.
    dispatches : tuple of Dispatch
        Each policy's dispatch, step by step.
    flows : int
        AC power flows run.
    line_peak_percent : DataFrame
        Highest loading (%) of each line (net.line index) over the year, one column per policy.
    """

    summary: pd.DataFrame  # one row per policy
    sites: pd.DataFrame  # one row per policy and site
    violations: pd.DataFrame  # one row per policy, element and criterion
    site_power: pd.DataFrame  # long: time, policy, substation, bus, p_mw, own_supply_mw, served_tokens_per_s
    grid_violations: pd.DataFrame  # the grid alone, without the fleet, per element and criterion
    demand: pd.DataFrame  # fleet demand (DEMAND_COLUMNS) at each step
    dispatches: tuple[Dispatch, ...]
    flows: int
    line_peak_percent: pd.DataFrame  # highest loading of each line (net.line index) over the year, per policy

    def record(self) -> dict[str, object]:
        """The headline results per policy as plain data, for manifests."""
        return {
            "power_flows": self.flows,
            **{
                row.policy: {
                    "served_share": row.served_share,
                    "violations": row.violations,
                    "violation_steps": row.violation_steps,
                }
                for row in self.summary.itertuples()
            },
        }


def read_sites(path: Path, grid: Grid) -> pd.DataFrame:
    """A sites file (``siting select``'s sites.csv: ``substation``, ``size_mw``), checked against the grid."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--sites {path}: no such file; give the sites.csv that siting select wrote")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as err:
        raise DataError(f"--sites {path}: not a readable CSV ({err})") from err
    missing = [c for c in ("substation", "size_mw") if c not in table]
    if missing:
        raise DataError(f"--sites {path}: missing column(s) {', '.join(missing)}")
    return fleet_sites(table, grid, source=str(path))


def fleet_sites(table: pd.DataFrame, grid: Grid, source: str = "sites") -> pd.DataFrame:
    """Sites joined to the grid's substations: bus, name, lon/lat, in the file's order."""
    if not len(table):
        raise DataError(f"{source}: lists no sites")
    ids = pd.to_numeric(table["substation"], errors="coerce")
    sizes = pd.to_numeric(table["size_mw"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any():
        raise DataError(f"{source}: substation must be a substation id number on every row")
    if sizes.isna().any() or (sizes <= 0).any():
        raise DataError(f"{source}: size_mw must be a positive number on every row")
    known = grid.substations.set_index("id")
    unknown = sorted(set(ids.astype(int)) - set(known.index))
    if unknown:
        raise DataError(
            f"{source}: substation id(s) {unknown} are not substations of {grid.name} "
            f"(ids run 0–{len(known) - 1}; see siting inspect)"
        )
    if ids.duplicated().any():
        raise DataError(f"{source}: substation {int(ids[ids.duplicated()].iloc[0])} is listed twice")
    chosen = known.loc[ids.astype(int)]
    return pd.DataFrame(
        {
            "substation": ids.astype(int).to_numpy(),
            "name": chosen["name"].to_numpy(),
            "bus": chosen["bus"].to_numpy(),
            "lon": chosen["lon"].to_numpy(),
            "lat": chosen["lat"].to_numpy(),
            "size_mw": sizes.to_numpy(float),
        }
    )


def fleet_capacity_tokens_per_s(sites: pd.DataFrame, power: PowerModel, prefill_share: float) -> float:
    """Tokens/s the whole fleet serves with every GPU busy, at a prefill share of tokens."""
    return float(
        sum(
            site_capacity_tokens_per_s(gpus_for_site(size, power), prefill_share, power)
            for size in sites["size_mw"]
        )
    )


@dataclass(frozen=True)
class GridYear:
    """The grid alone over its profile year: the states and their limits.

    They do not depend on where the sites are, so several fleets on one grid can share them.
    """

    grid: str  # the grid's source
    limits_of: StudyLimits  # the study limits they were computed with
    states: States
    limits: StateLimits  # their violations are in ``violations`` instead (see state_limits)
    violations: ViolationTally  # the grid's own violations at each step


def grid_year(grid: Grid, settings: FleetSettings, model: FlowModel | None = None) -> GridYear:
    """Solve the grid alone at every step of its profiles (one batch) under ``settings.limits``."""
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to simulate a year on")
    model = model or prepare(copy.deepcopy(grid.net), [], grid.source, **vars(settings.engine))
    year = profile_scenarios(model.net, grid.profiles)
    states = States(year.element_values, None, year.n)
    cap_settings = CapacitySettings(pf=settings.pf, limits=settings.limits)
    tally = ViolationTally(grid.profiles.index)
    limits = state_limits(model, states, normal_limits(model, cap_settings), tally=tally.add)
    return GridYear(grid.source, settings.limits, states, limits, tally)


class ViolationTally:
    """``violation_table`` of a year's violation rows, built from blocks of consecutive steps.

    The blocks are tallied as they are solved, each already reduced per criterion and element
    (``violation_groups``), so the rows themselves are never made (a grid that breaks its own
    limits has one for every step and element).

    Blocks come in step order; per criterion and element name the tally keeps the count, the
    worst value (the first of equal ones, as ``idxmax`` does) with its limit, the first time,
    and where it first appeared, so the table lists the groups in the order ``violation_table``
    of all rows would. (One difference: two elements of one name with exactly equal worst
    values in a block give the worst of the one beyond its limit first.)
    """

    def __init__(self, index: pd.DatetimeIndex) -> None:
        self.index = index
        self.steps = np.zeros(len(index), dtype=bool)  # steps with any violation
        self._groups: dict[tuple[str, str], list] = {}
        self._blocks = 0

    def add(self, groups: pd.DataFrame, states: np.ndarray) -> None:
        """The next block's violations per element and criterion, and the steps with any.

        ``groups`` and ``states`` as ``violation_groups`` gives them, states as steps of the year.
        """
        block = self._blocks
        self._blocks += 1
        self.steps[states] = True
        rank = {criterion: i for i, criterion in enumerate(CRITERIA)}
        first_time = self.index[groups["first_state"].to_numpy(dtype=np.int64)]
        for position, (row, first) in enumerate(zip(groups.itertuples(index=False), first_time, strict=True)):
            known = self._groups.get((row.criterion, row.element))
            if known is None:
                order = (rank[row.criterion], block, position)
                self._groups[(row.criterion, row.element)] = [
                    order,
                    row.steps,
                    row.severity,
                    row.value,
                    row.limit,
                    first,
                ]
                continue
            known[1] += row.steps
            if row.severity > known[2]:
                known[2:5] = [row.severity, row.value, row.limit]
            known[5] = min(known[5], first)

    def table(self, policy: str) -> pd.DataFrame:
        """The tally as ``violation_table`` gives it for ``policy``."""
        if not self._groups:
            return pd.DataFrame(columns=FLEET_VIOLATION_COLUMNS)
        step_hours = profile_step_minutes(pd.DataFrame(index=self.index)) / 60
        rows = [
            {
                "policy": policy,
                "element_type": ELEMENT_TYPE[criterion],
                "element": element,
                "criterion": criterion,
                "steps": int(steps),
                "hours": int(steps) * step_hours,
                "worst_value": value,
                "limit": limit,
                "first_time": first_time,
            }
            for (criterion, element), (_, steps, _, value, limit, first_time) in sorted(
                self._groups.items(), key=lambda item: item[1][0]
            )
        ]
        table = pd.DataFrame(rows, columns=FLEET_VIOLATION_COLUMNS)
        return table.sort_values("steps", ascending=False, kind="stable").reset_index(drop=True)


def simulate(
    grid: Grid,
    sites: Selection | pd.DataFrame,
    demand: pd.DataFrame | None = None,
    settings: FleetSettings | None = None,
    *,
    progress: Progress | None = None,
    alone: GridYear | None = None,
) -> FleetResult:
    """A year of the fleet: ``demand`` dispatched among ``sites`` under each policy.

    Every step is checked with an AC power flow (normal limits).

    Parameters
    ----------
    grid : Grid
        The grid with its profiles (the year simulated; see ``simulation_year`` for growth and
        step); not modified.
    sites : Selection or DataFrame
        A selection (its selected sites), or a table with ``substation`` and ``size_mw`` (MW).
    demand : DataFrame, optional
        Tokens/s per step (DEMAND_COLUMNS) on the grid's profile index; default: the workload
        model sized to the sites (``modelled_demand``).
    settings : FleetSettings, optional
        Policies, power model and modes, queue, latency, limits (default: ``FleetSettings()``).
    progress : callable, optional
        Called with a line of text as each part starts.
    alone : GridYear, optional
        The grid's year without the fleet (:func:`grid_year`), if already solved.

    Returns
    -------
    FleetResult
        Per policy: summary, per-site energy and power (MW), violations, the grid alone's.
    """
    say = progress or silent
    settings = settings or FleetSettings()
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to simulate a year on")
    table = sites.sites if isinstance(sites, Selection) else sites
    sites = fleet_sites(table, grid, source="sites")
    if demand is None:
        demand = modelled_demand(grid, sites, settings)
    if not demand.index.equals(grid.profiles.index):
        raise UsageError("the demand's time steps differ from the grid's profiles; resample it to them")
    step_minutes = profile_step_minutes(grid.profiles)
    wake_steps = settings.modes.wake_steps(step_minutes)
    model = prepare(copy.deepcopy(grid.net), sites["bus"].to_numpy(), grid.source, **vars(settings.engine))
    cap_settings = CapacitySettings(pf=settings.pf, limits=settings.limits)
    if alone is None or alone.grid != grid.source or alone.limits_of != settings.limits:
        say(f"grid alone: {len(grid.profiles):,} steps")
        alone = grid_year(grid, settings, model)
    states, limits = alone.states, alone.limits
    fleet = _Fleet.build(sites, demand, settings.power, settings.modes, wake_steps)
    groups, allowed = demand_groups(grid, sites, settings.latency_km)
    new = fleet.total[:, None] * groups[None, :]
    max_age = int(np.floor(settings.max_delay_minutes / step_minutes + 1e-9))
    flows = states.n
    dispatches, results = [], []
    blind_year = None  # the grid-aware policy starts from the blind dispatch
    index = grid.profiles.index
    for policy in settings.policies:
        say(f"{policy} dispatch and the year's power flow")
        if policy == "blind":
            dispatch, result, count = _blind(
                model, states, limits, fleet, new, allowed, max_age, cap_settings.q_per_mw, index
            )
            blind_year = result
        else:
            dispatch, result, count = _grid_aware(
                model,
                states,
                limits,
                fleet,
                new,
                allowed,
                max_age,
                step_minutes,
                cap_settings,
                say,
                index,
                blind_year,
            )
        flows += count
        dispatches.append(dispatch)
        results.append(result)
    return _fleet_result(model, grid, sites, fleet, alone.violations, dispatches, results, flows)


def demand_groups(grid: Grid, sites: pd.DataFrame, latency_km: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Where demand comes from: shares of fleet demand and the sites each group may use.

    Returns the shares, shape (groups,), and the sites allowed, (groups × sites) booleans. Load
    buses with the same reachable sites form one group.
    """
    if latency_km is None:
        return np.ones(1), np.ones((1, len(sites)), dtype=bool)
    points = grid_demand(grid)
    site_points = gpd.GeoSeries(gpd.points_from_xy(sites["lon"], sites["lat"]), crs=points.crs)
    crs = local_crs(points)
    xy = points.to_crs(crs).geometry
    site_xy = site_points.to_crs(crs)
    distance_km = (
        np.hypot(
            xy.x.to_numpy()[:, None] - site_xy.x.to_numpy()[None, :],
            xy.y.to_numpy()[:, None] - site_xy.y.to_numpy()[None, :],
        )
        / 1000.0
    )
    reach = distance_km <= latency_km
    patterns, group_of = np.unique(reach, axis=0, return_inverse=True)
    weights = np.bincount(group_of.ravel(), weights=points["weight"].to_numpy(), minlength=len(patterns))
    return weights / weights.sum(), patterns


@dataclass(frozen=True)
class _Fleet:
    """Per-site power curves, the power modes and the demand on the simulation steps."""

    n_gpus: np.ndarray  # (sites,)
    size_mw: np.ndarray
    total: np.ndarray  # (steps,) fleet demand, tokens/s
    share: np.ndarray  # (steps,) prefill share of the tokens
    capacity: np.ndarray  # (steps, sites) tokens/s with every GPU busy
    power: PowerModel
    modes: PowerModes = field(default_factory=PowerModes)
    wake_steps: int = 0

    @classmethod
    def build(
        cls, sites: pd.DataFrame, demand: pd.DataFrame, power: PowerModel, modes: PowerModes, wake_steps: int
    ) -> _Fleet:
        values = demand[DEMAND_COLUMNS].to_numpy(float)
        total = values.sum(axis=1)
        share = np.divide(values[:, 0], total, out=np.full(len(total), np.nan), where=total > 0)
        share = pd.Series(share).ffill().bfill().fillna(0.5).to_numpy()  # any mix serves zero tokens
        sizes = sites["size_mw"].to_numpy(float)
        n_gpus = np.array([gpus_for_site(size, power) for size in sizes])
        capacity = site_capacity_tokens_per_s(n_gpus[None, :], share[:, None], power)
        return cls(n_gpus, sizes, total, share, capacity, power, modes, wake_steps)

    @property
    def reserve(self) -> np.ndarray:
        """GPUs each site keeps powered and idle while others are off."""
        return self.modes.warm_reserve * self.n_gpus

    def power_mw(self, served: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Facility power (MW) of each site serving ``served`` tokens/s at steps ``rows``, all servers on."""
        share = self.share[rows][:, None]
        return site_power_mw(served * share, served * (1 - share), self.n_gpus[None, :], self.power)

    def tight_power_mw(self, served: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Power at steps where the grid binds: idle servers off if the modes allow it."""
        if not self.modes.shutdown:
            return self.power_mw(served, rows)
        share = self.share[rows][:, None]
        return packed_power_mw(served, self.n_gpus[None, :], share, self.power, self.reserve[None, :])

    def tokens_for_power(self, power_mw: np.ndarray, site: int, rows: np.ndarray) -> np.ndarray:
        """Most tokens/s site ``site`` serves within ``power_mw`` at the (grid-bound) steps ``rows``."""
        n, share = self.n_gpus[site], self.share[rows]
        if self.modes.shutdown:
            return packed_served_for_power(power_mw, n, share, self.power, self.reserve[site])
        tokens = served_for_power(power_mw, n, share, self.power)
        # no GPU is capped below its lowest power limit: a smaller budget leaves them idle
        lowest = self.power_mw(np.zeros((1, len(self.n_gpus))), slice(0, 1))[0, site] + (
            n * (self.modes.min_cap_w - self.power.curve.idle_w) * self.power.pue / 1e6
        )
        return np.where(power_mw < lowest, 0.0, tokens)

    def powered_gpus(self, served: np.ndarray, in_order: np.ndarray) -> np.ndarray:
        """GPUs powered at each step (steps × sites).

        All of them except where the grid binds and servers may be off; there the busy ones, the
        reserve, and those that must already be up to serve within ``wake_steps``.
        """
        on = np.broadcast_to(self.n_gpus.astype(float), served.shape).copy()
        if not self.modes.shutdown or not in_order.any():
            return on
        busy = np.where(in_order[:, None], served / self.capacity * self.n_gpus[None, :], on)
        ahead = busy.copy()
        for shift in range(1, self.wake_steps + 1):
            ahead[:-shift] = np.maximum(ahead[:-shift], busy[shift:])
        on[in_order] = np.minimum(ahead[in_order] + self.reserve[None, :], self.n_gpus[None, :])
        return on

    def dispatch_power(self, served: np.ndarray, in_order: np.ndarray) -> np.ndarray:
        """Facility power (MW) of the dispatch, servers kept up for work within the wake-up delay.

        Where the grid binds it is :meth:`tight_power_mw`. Sites on their own supply draw it too:
        :func:`grid_draw` gives what the grid sees.
        """
        power = self.power_mw(served)
        if self.modes.shutdown and in_order.any():
            rows = np.flatnonzero(in_order)
            on = self.powered_gpus(served, in_order)[rows]
            share = self.share[rows][:, None]
            power[rows] = packed_power_mw(
                served[rows], self.n_gpus[None, :], share, self.power, 0.0, powered_gpus=on
            )
        return power


def grid_draw(power_mw: np.ndarray, own_supply: np.ndarray) -> np.ndarray:
    """Site power (MW) the grid supplies: none where a site runs from its own supply."""
    return np.where(own_supply, 0.0, power_mw)


def _blind(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    fleet: _Fleet,
    new: np.ndarray,
    allowed: np.ndarray,
    max_age: int,
    q_per_mw: float,
    index: pd.DatetimeIndex,
) -> tuple[Dispatch, YearFlow, int]:
    queue = _serve(new, fleet.capacity, allowed, max_age, fleet.size_mw, in_order=None)
    power = fleet.power_mw(queue.served)
    result = _year_flow(model, states, limits, power, q_per_mw, index)
    none = np.zeros_like(power)
    dispatch = Dispatch(
        "blind",
        queue.served,
        power,
        queue.late,
        queue.dropped,
        0,
        0,
        queue.waiting,
        0,
        none,
        none,
        none.astype(bool),
        none,
    )
    return dispatch, result, result.flows


def _grid_aware(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    fleet: _Fleet,
    new: np.ndarray,
    allowed: np.ndarray,
    max_age: int,
    step_minutes: float,
    cap_settings: CapacitySettings,
    say: Progress,
    index: pd.DatetimeIndex,
    blind_year: YearFlow | None = None,
) -> tuple[Dispatch, YearFlow, int]:
    """The grid-aware dispatch, its year's power flows and how many were run.

    Share like blind wherever that dispatch fits the grid; at the steps where it would break a
    limit, fill sites in order up to their verified headroom, with the power modes. Work held
    back there moves to later steps, so the steps whose dispatch changed are checked again, and
    any that now fail are filled in order too, until none does; then the year is solved with the
    dispatch. A step in order that fails again (its dispatch fell below what it was searched at
    somewhere, and a site's load was relieving a line) is searched again within its dispatch, at
    most ``HEADROOM_SEARCHES`` times in all. ``blind_year`` is the blind dispatch's year, if
    already solved: it is where this policy starts, the same dispatch while no step is filled
    in order. A step searched again gives back the own-supply hours it had taken.
    """
    n, k = new.shape[0], len(fleet.size_mw)
    capacity = fleet.capacity.copy()
    in_order = np.zeros(n, dtype=bool)
    order = np.lexsort((np.arange(k), -fleet.size_mw))
    idle_floor = np.zeros(n, dtype=bool)
    searches = np.zeros(n, dtype=np.int64)
    own_supply = np.zeros((n, k), dtype=bool)
    own_supply_steps = int(np.floor(fleet.modes.backup_hours * 60 / step_minutes + 1e-9))
    bounds = _Bounds.of(fleet.modes, fleet.capacity, step_minutes)
    queue = _serve(new, capacity, allowed, max_age, fleet.size_mw, in_order, order, bounds)
    facility = power = fleet.dispatch_power(queue.served, in_order)  # power: what the grid supplies
    result: YearFlow | None = blind_year
    if result is None:
        result = _year_flow(model, states, limits, power, cap_settings.q_per_mw, index)
    flows = result.flows if blind_year is None else 0
    shared = result  # the blind share's year: the final year takes its blocks where nothing changed
    margin = result.margin.copy()
    while True:
        # beyond the bounds the fleet serves what the grid does not take: searching again is moot
        again = ~in_order | ~queue.beyond
        tight = np.flatnonzero((margin < 0) & ~idle_floor & again & (searches < HEADROOM_SEARCHES))
        if not len(tight):
            if result is not None:
                break
            result = _year_flow(model, states, limits, power, cap_settings.q_per_mw, index, reuse=shared)
            flows += result.flows
            margin = result.margin.copy()
            continue
        say(f"  headroom of each site, one after another, at {len(tight):,} steps where the grid binds")
        # a step already in order that no longer fits dispatched less than it was searched at
        # somewhere (work moved, or a group ran out): search it again within that dispatch
        most = np.where(in_order[tight, None], queue.served[tight], fleet.capacity[tight])
        own_supply[tight] = False
        capacity[tight], floor, own_supply[tight], count = _sequential_capacity(
            model,
            states,
            limits,
            fleet,
            tight,
            order,
            cap_settings,
            most,
            own_supply_left=own_supply_steps - own_supply.sum(axis=0),
        )
        searches[tight] += 1
        flows += count
        idle_floor[tight] = floor
        in_order[tight] = True
        queue = _serve(new, capacity, allowed, max_age, fleet.size_mw, in_order, order, bounds)
        facility = fleet.dispatch_power(queue.served, in_order)
        dispatched = grid_draw(facility, own_supply)
        changed = np.flatnonzero((dispatched != power).any(axis=1))
        power, result = dispatched, None
        margin[changed] = state_margins(model, states, limits, changed, power[changed], cap_settings.q_per_mw)
        flows += len(changed)
    per_gpu = fleet.capacity[:, 0] / fleet.n_gpus[0]  # tokens/s of one busy GPU at each step
    own_supply_mw = np.where(own_supply, facility, 0.0)
    dispatch = Dispatch(
        "grid-aware",
        queue.served,
        power,
        queue.late,
        queue.dropped,
        int(in_order.sum()),
        int(idle_floor.sum()),
        queue.waiting,
        int(queue.beyond.sum()),
        queue.held / per_gpu,
        fleet.n_gpus[None, :] - fleet.powered_gpus(queue.served, in_order),
        own_supply,
        own_supply_mw,
    )
    return dispatch, result, flows


def _sequential_capacity(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    fleet: _Fleet,
    rows: np.ndarray,
    order: np.ndarray,
    cap_settings: CapacitySettings,
    most: np.ndarray | None = None,
    *,
    own_supply_left: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Tokens/s each site may serve at steps ``rows``, site by site in ``order``, up to ``most``.

    Each gets the most power its substation takes with earlier sites at theirs and later ones at
    their lowest power, so the last one searched is checked with all at what they get.
    ``most`` (rows × sites, tokens/s) defaults to every GPU busy. Where the grid binds, most of
    the first sites in order still fit at ``most``: the longest such run is found by bisection
    (a few flows a step instead of one a site), and the search goes on from the site after it.

    Where even every site at its lowest power breaks a limit, sites with ``own_supply_left``
    (steps, per site) run from their own supply as :func:`_own_supply` picks them. Returns the
    tokens/s, the steps still at that floor, the sites on their own supply (rows × sites) and
    the flows run.
    """
    sub_states = states.take(rows)
    sub_limits = limits.take(rows)
    n, k = len(rows), len(fleet.size_mw)
    most = fleet.capacity[rows] if most is None else most
    idle = fleet.tight_power_mw(np.zeros((n, k)), rows)
    full = fleet.tight_power_mw(most, rows)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    flows = 0

    def fits_at(at: np.ndarray, power: np.ndarray) -> np.ndarray:
        """Whether steps ``at`` keep every limit with the sites at ``power`` (MW)."""
        nonlocal flows
        flows += len(at)
        return state_margins(model, sub_states, sub_limits, at, power, cap_settings.q_per_mw) >= 0

    def fits(at: np.ndarray, run: np.ndarray) -> np.ndarray:
        """Whether the first ``run`` sites in order fit at full power, the rest at their lowest."""
        return fits_at(at, np.where(rank[None, :] < run[:, None], full[at], idle[at]))

    def fits_without(at: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Whether the sites fit at their lowest power with those ``off`` drawing nothing."""
        return fits_at(at, np.where(off, 0.0, idle[at]))

    floor = ~fits(np.arange(n), np.zeros(n, dtype=np.int64))
    own = np.zeros((n, k), dtype=bool)
    if own_supply_left is not None and floor.any() and own_supply_left.max() > 0:
        at = np.flatnonzero(floor)
        own[at] = _own_supply(fits_without, at, order, own_supply_left)
        floor[at] = ~own[at].any(axis=1)
        idle[own] = full[own] = 0.0
    # the longest run of sites that fits at full: ``lo`` sites fit, ``hi`` do not (k + 1: not known)
    up = np.flatnonzero(~floor)
    lo, hi = np.zeros(len(up), dtype=np.int64), np.full(len(up), k + 1)
    while len(open_ := np.flatnonzero(hi - lo > 1)):
        middle = np.where(hi[open_] > k, k, (lo[open_] + hi[open_]) // 2)
        ok = fits(up[open_], middle)
        lo[open_[ok]] = middle[ok]
        hi[open_[~ok]] = middle[~ok]
    run = np.zeros(n, dtype=np.int64)
    run[up] = lo
    in_run = rank[None, :] < run[:, None]
    tokens = np.where(in_run | own, most, 0.0)
    fixed = grid_draw(fleet.tight_power_mw(tokens, rows), own)
    for site in order:
        usable = np.flatnonzero(~floor & ~in_run[:, site] & ~own[:, site])
        if not len(usable):
            continue
        room = full[usable, site] - idle[usable, site]
        if room.max() <= 0:  # nothing above its lowest power to search
            continue
        cap = dataclasses.replace(cap_settings, cap_mw=float(room.max()), resolution_mw=HEADROOM_STEP_MW)
        search = coarse_to_fine(  # grid-bound steps come in runs: neighbours guide the search
            model,
            dataclasses.replace(sub_states, fixed_site_mw=fixed).take(usable),
            sub_limits.take(usable),
            cap,
            sites=np.array([site]),
        )
        flows += search.flows
        head = np.minimum(np.nan_to_num(search.hc_mw[:, 0], nan=0.0), room)
        tokens[usable, site] = np.minimum(
            fleet.tokens_for_power(idle[usable, site] + head, site, rows[usable]), most[usable, site]
        )
        # the power the site really draws at that many tokens: the state the next site is checked in
        served = np.zeros((len(usable), len(fleet.size_mw)))
        served[:, site] = tokens[usable, site]
        fixed[usable, site] = fleet.tight_power_mw(served, rows[usable])[:, site]
    return tokens, floor, own, flows


def _own_supply(
    fits_without: Callable[[np.ndarray, np.ndarray], np.ndarray],
    at: np.ndarray,
    order: np.ndarray,
    left: np.ndarray,
) -> np.ndarray:
    """Sites on their own supply at steps ``at`` (steps × sites) where all at their lowest break a limit.

    Sites go off the grid the last in ``order`` first until the rest fit; then each of them, the
    first in order first, comes back if the rest still fit, so no site is off that need not be.
    Steps take the sites' ``left`` steps of own supply in time order; one that would need a site
    beyond them gets none (all False).
    """
    n, k = len(at), len(order)
    off = np.zeros((n, k), dtype=bool)
    ok = np.zeros(n, dtype=bool)
    for site in order[::-1]:
        todo = np.flatnonzero(~ok)
        if not len(todo):
            break
        off[todo, site] = True
        ok[todo] = fits_without(at[todo], off[todo])
    for site in order:
        back = np.flatnonzero(ok & off[:, site])
        if not len(back):
            continue
        trial = off[back]
        trial[:, site] = False
        off[back[fits_without(at[back], trial)], site] = False
    off[~ok] = False
    left = left.copy()
    for step in np.argsort(at, kind="stable"):
        if off[step].any() and np.all(left[off[step]] > 0):
            left -= off[step]
        else:
            off[step] = False
    return off


@dataclass(frozen=True)
class _Bounds:
    """How much work the fleet may hold back at a grid-bound step, and for how many steps."""

    gpu_capacity: np.ndarray  # (steps, sites) tokens/s with every GPU busy
    depth: float  # share of what the fleet could serve that it may hold back (0: none)
    max_steps: int  # consecutive steps it may hold work back
    enforce: bool  # serve what is held beyond the bounds (no capping); else only flag the step

    @classmethod
    def of(cls, modes: PowerModes, gpu_capacity: np.ndarray, step_minutes: float) -> _Bounds:
        steps = int(np.floor(modes.max_hours * 60 / step_minutes + 1e-9))
        return cls(gpu_capacity, modes.max_depth if modes.cap else 0.0, steps, not modes.cap)


class _Queue(NamedTuple):
    served: np.ndarray  # (steps, sites) tokens/s
    late: np.ndarray  # (steps,) tokens/s served this step that had waited
    dropped: np.ndarray  # (steps,) tokens/s dropped this step
    waiting: float  # tokens/s still queued after the last step
    beyond: np.ndarray  # (steps,) True where the work held back went beyond the bounds
    held: np.ndarray  # (steps,) tokens/s the fleet had GPUs for but held back for the grid


def _serve(
    new: np.ndarray,
    capacity: np.ndarray,
    allowed: np.ndarray,
    max_age: int,
    sizes: np.ndarray,
    in_order: np.ndarray | None,
    order: np.ndarray | None = None,
    bounds: _Bounds | None = None,
) -> _Queue:
    """Step through the year: new demand per group plus the queue, shared among the sites.

    ``in_order`` (steps,) marks steps filled site by site in ``order`` (None: never); other
    steps share in proportion to site size, each site up to ``capacity`` (tokens/s). With
    ``bounds``, a step filled in order holds back at most ``bounds.depth`` of what the fleet
    could serve, for at most ``bounds.max_steps`` steps in a row; the rest is served on the
    sites' spare GPUs (in ``order``) whatever the grid. Every token of demand ends up served,
    dropped or still waiting after the last step.
    """
    n, n_groups = new.shape
    n_sites = capacity.shape[1]
    served = np.zeros((n, n_sites))
    late = np.zeros(n)
    dropped = np.zeros(n)
    beyond = np.zeros(n, dtype=bool)
    held = np.zeros(n)
    queue = np.zeros((n_groups, max_age + 1))  # column a: demand that has waited a steps
    reachable = allowed.any(axis=1)
    weight = allowed * sizes[None, :]
    weight = weight / np.where(weight.sum(axis=1, keepdims=True) > 0, weight.sum(axis=1, keepdims=True), 1)
    group_order = np.argsort(allowed.sum(axis=1), kind="stable")  # fewest choices first
    run = 0  # consecutive steps with work held back
    for t in range(n):
        queue[:, 0] = np.where(reachable, new[t], 0.0)
        dropped[t] = new[t][~reachable].sum()
        pending = queue.sum(axis=1)
        if in_order is not None and in_order[t]:
            if order is None:
                raise ValueError("steps filled in order need the order to fill the sites in")
            taken = _fill_in_order(pending, capacity[t], allowed, order, group_order)
            if bounds is not None:
                taken, beyond[t], run = _within_bounds(
                    taken, pending, bounds, t, run, allowed, order, group_order
                )
                held[t] = max(min(pending.sum(), bounds.gpu_capacity[t].sum()) - taken.sum(), 0.0)
        else:
            taken = _fill_in_proportion(pending, capacity[t], weight)
            run = 0
        served[t] = taken.sum(axis=0)
        got = taken.sum(axis=1)
        # the oldest waiting demand is served first
        for age in range(max_age, -1, -1):
            used = np.minimum(queue[:, age], got)
            queue[:, age] -= used
            got -= used
            if age > 0:
                late[t] += used.sum()
        dropped[t] += queue[:, max_age].sum()
        queue[:, 1:] = queue[:, :-1]
        queue[:, 0] = 0.0
    return _Queue(served, late, dropped, float(queue.sum()), beyond, held)


def _within_bounds(
    taken: np.ndarray,
    pending: np.ndarray,
    bounds: _Bounds,
    t: int,
    run: int,
    allowed: np.ndarray,
    order: np.ndarray,
    group_order: np.ndarray,
) -> tuple[np.ndarray, bool, int]:
    """Whether ``taken`` holds back more than the bounds allow.

    If the bounds are enforced, the excess is served on spare GPUs (in ``order``) whatever the grid.
    """
    gpus = bounds.gpu_capacity[t]
    could = min(pending.sum(), gpus.sum())
    held = could - taken.sum()
    if held <= 1e-9 * max(could, 1.0):
        return taken, False, 0
    allowed_held = bounds.depth * could if run < bounds.max_steps else 0.0
    if held <= allowed_held:
        return taken, False, run + 1
    if not bounds.enforce:
        return taken, True, run + 1
    spare = np.maximum(gpus - taken.sum(axis=0), 0.0)
    extra = _fill_in_order(
        pending - taken.sum(axis=1), spare, allowed, order, group_order, held - allowed_held
    )
    return taken + extra, True, run + 1  # the run goes on until the grid no longer needs work held


def _fill_in_proportion(pending: np.ndarray, capacity: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Each group's demand split by site size; a site over its capacity is scaled back."""
    taken = pending[:, None] * weight
    load = taken.sum(axis=0)
    scale = np.divide(capacity, load, out=np.ones_like(load), where=load > capacity)
    return taken * np.minimum(scale, 1.0)[None, :]


def _fill_in_order(
    pending: np.ndarray,
    capacity: np.ndarray,
    allowed: np.ndarray,
    order: np.ndarray,
    group_order: np.ndarray,
    limit: float = np.inf,
) -> np.ndarray:
    """Sites filled one after another, ``limit`` tokens/s in all at most.

    Each takes what the groups that reach it still need.
    """
    taken = np.zeros(allowed.shape)
    left = pending.copy()
    for site in order:
        room = capacity[site]
        for group in group_order:
            if room <= 0 or limit <= 0:
                break
            if allowed[group, site] and left[group] > 0:
                amount = min(left[group], room, limit)
                taken[group, site] = amount
                left[group] -= amount
                room -= amount
                limit -= amount
    return taken


@dataclass(frozen=True)
class _Block:
    """One block of a year's steps, solved and reduced (``_year_flow``)."""

    rows: np.ndarray  # its steps
    margin: np.ndarray  # their worst normalised margins
    groups: pd.DataFrame  # ``violation_groups``, states as steps of the year
    violating: np.ndarray  # its steps with any violation
    extremes: tuple[np.ndarray, ...]  # lowest and highest voltage, highest line and trafo loading


@dataclass(frozen=True)
class YearFlow:
    """A year of power flows with the sites at given powers, reduced to what outputs use.

    Each block is reduced as it is solved: a whole year of bus voltages and branch loadings
    (0.4 GB a policy on the default grid at hourly steps, four times that at 15 minutes) is
    never held. Every reduction is exact (minima, maxima, the rows beyond a limit).
    """

    margin: np.ndarray  # (steps,) worst normalised margin to the state limits (``worst_margin``)
    violations: ViolationTally  # what goes beyond the state limits, per element and criterion
    vm_min_pu: np.ndarray  # (buses,) lowest voltage over the year (NaN: never supplied)
    vm_max_pu: np.ndarray
    line_max_percent: np.ndarray  # (lines,) highest loading over the year (NaN: never solved)
    trafo_max_percent: np.ndarray
    power_mw: np.ndarray  # (steps, sites) the sites' power
    blocks: tuple[_Block, ...]  # each block's reductions
    flows: int  # power flows run for it


def _year_flow(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    power_mw: np.ndarray,
    q_per_mw: float,
    index: pd.DatetimeIndex,
    reuse: YearFlow | None = None,
) -> YearFlow:
    """Every step with the sites at ``power_mw``.

    ``reuse``: a year of the same states and limits; each of its blocks that had the sites at
    the same powers is taken as it is instead of being solved again.
    """
    margin = np.empty(states.n)
    tally = ViolationTally(index)
    blocks: list[_Block] = []
    flows = 0
    fleet_states = dataclasses.replace(states, fixed_site_mw=power_mw)
    for number, rows in enumerate(block_rows(model, fleet_states)):
        block = _reusable(reuse, number, rows, power_mw)
        if block is None:
            block = _solved_block(model, fleet_states, limits, rows, power_mw[rows], q_per_mw)
            flows += len(rows)
        margin[rows] = block.margin
        tally.add(block.groups, block.violating)
        blocks.append(block)
    extremes = [np.full(len(model.net[table]), np.nan) for table in ("bus", "bus", "line", "trafo")]
    # fmin/fmax skip NaN as nanmin/nanmax do, so blocks combine to the whole year's value
    for block in blocks:
        low, high, line, trafo = block.extremes
        extremes = [
            np.fmin(extremes[0], low),
            np.fmax(extremes[1], high),
            np.fmax(extremes[2], line),
            np.fmax(extremes[3], trafo),
        ]
    low, high, line, trafo = extremes
    return YearFlow(margin, tally, low, high, line, trafo, power_mw, tuple(blocks), flows)


def _reusable(reuse: YearFlow | None, number: int, rows: np.ndarray, power_mw: np.ndarray) -> _Block | None:
    """Block ``number`` of ``reuse`` if it is steps ``rows`` with the sites at ``power_mw`` there."""
    if reuse is None or number >= len(reuse.blocks):
        return None
    block = reuse.blocks[number]
    if np.array_equal(block.rows, rows) and np.array_equal(reuse.power_mw[rows], power_mw[rows]):
        return block
    return None


def _solved_block(
    model: FlowModel,
    states: States,
    limits: StateLimits,
    rows: np.ndarray,
    power_mw: np.ndarray,
    q_per_mw: float,
) -> _Block:
    """Steps ``rows`` of ``states`` (the sites at ``power_mw`` there) solved and reduced."""
    result = solve(model, states.scenarios(rows, q_per_mw=q_per_mw))
    added = power_mw.sum(axis=1)  # the sites' MW: thermal limits under "contribution"
    margin = worst_margin(result, limits, rows, added)[0]
    line, trafo = limits.thermal(rows, added)
    groups, violating = violation_groups(
        model, result, limits.vmin[rows], limits.vmax[rows], line, trafo, tolerance=BASE_TOLERANCE
    )
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an element no slack reaches is NaN throughout
        extremes = (
            np.nanmin(result.vm_pu, axis=0),
            np.nanmax(result.vm_pu, axis=0),
            np.nanmax(result.line_loading_percent, axis=0),
            np.nanmax(result.trafo_loading_percent, axis=0),
        )
    groups = groups.assign(first_state=groups["first_state"] + rows[0])
    return _Block(rows, margin, groups, violating + rows[0], extremes)


FLEET_VIOLATION_COLUMNS = [
    "policy",
    "element_type",
    "element",
    "criterion",
    "steps",
    "hours",
    "worst_value",
    "limit",
    "first_time",
]
ELEMENT_TYPE = {
    "undervoltage": "bus",
    "overvoltage": "bus",
    "line thermal": "line",
    "transformer thermal": "trafo",
    "non-convergence": "grid",
}


def violation_table(found: pd.DataFrame, index: pd.DatetimeIndex, policy: str) -> pd.DataFrame:
    """Violations (``violations_of`` rows) per element and criterion.

    Each row has the steps, hours, worst value, its limit and the first time it happens.
    """
    if not len(found):
        return pd.DataFrame(columns=FLEET_VIOLATION_COLUMNS)
    step_hours = profile_step_minutes(pd.DataFrame(index=index)) / 60
    found = found.assign(time=index[found["state"].to_numpy(dtype=np.int64)])
    found["severity"] = np.where(found["criterion"] == "undervoltage", -found["value"], found["value"])
    rows = []
    for (criterion, element), group in found.groupby(["criterion", "element"], sort=False):
        worst = group.loc[group["severity"].idxmax()] if group["severity"].notna().any() else group.iloc[0]
        rows.append(
            {
                "policy": policy,
                "element_type": ELEMENT_TYPE[criterion],
                "element": element,
                "criterion": criterion,
                "steps": len(group),
                "hours": len(group) * step_hours,
                "worst_value": worst["value"],
                "limit": worst["limit"],
                "first_time": group["time"].min(),
            }
        )
    table = pd.DataFrame(rows, columns=FLEET_VIOLATION_COLUMNS)
    return table.sort_values("steps", ascending=False, kind="stable").reset_index(drop=True)


def _fleet_result(
    model: FlowModel,
    grid: Grid,
    sites: pd.DataFrame,
    fleet: _Fleet,
    grid_alone: ViolationTally,
    dispatches: list[Dispatch],
    results: list[YearFlow],
    flows: int,
) -> FleetResult:
    if grid.profiles is None:  # simulate refuses a grid without profiles before it gets here
        raise UsageError(f"{grid.name}: has no time-series profiles to simulate a year on")
    index = grid.profiles.index
    step_hours = profile_step_minutes(grid.profiles) / 60
    summaries, per_site, violations, long, peaks = [], [], [], [], {}
    for dispatch, result in zip(dispatches, results, strict=True):
        table = result.violations.table(dispatch.policy)
        violations.append(table)
        peaks[dispatch.policy] = result.line_max_percent
        summaries.append(_policy_summary(dispatch, result, table, fleet, step_hours))
        per_site.append(_site_summary(dispatch, sites, fleet, step_hours))
        long.append(
            pd.DataFrame(
                {
                    "time": np.repeat(index.to_numpy(), len(sites)),
                    "policy": dispatch.policy,
                    "substation": np.tile(sites["substation"].to_numpy(), len(index)),
                    "bus": np.tile(sites["bus"].to_numpy(), len(index)),
                    "p_mw": dispatch.power_mw.ravel(),
                    "own_supply_mw": dispatch.own_supply_mw.ravel(),
                    "served_tokens_per_s": dispatch.served.ravel(),
                }
            )
        )
    demand = pd.DataFrame(
        {DEMAND_COLUMNS[0]: fleet.total * fleet.share, DEMAND_COLUMNS[1]: fleet.total * (1 - fleet.share)},
        index=index,
    )
    return FleetResult(
        summary=pd.DataFrame(summaries),
        sites=pd.concat(per_site, ignore_index=True),
        violations=pd.concat(
            [v for v in violations if len(v)] or [pd.DataFrame(columns=FLEET_VIOLATION_COLUMNS)],
            ignore_index=True,
        ),
        site_power=pd.concat(long, ignore_index=True),
        grid_violations=grid_alone.table("grid alone"),
        demand=demand,
        dispatches=tuple(dispatches),
        flows=flows,
        line_peak_percent=pd.DataFrame(peaks, index=model.net.line.index),
    )


def _policy_summary(
    dispatch: Dispatch, result: YearFlow, table: pd.DataFrame, fleet: _Fleet, step_hours: float
) -> dict:
    seconds = step_hours * 3600
    demand = fleet.total.sum() * seconds
    served = dispatch.served.sum() * seconds
    fleet_mw = dispatch.power_mw.sum(axis=1)
    voltage = table["element_type"] == "bus"
    return {
        "policy": dispatch.policy,
        "demand_tokens": demand,
        "served_tokens": served,
        "deferred_tokens": dispatch.late.sum() * seconds,  # served late (part of served_tokens)
        "dropped_tokens": dispatch.dropped.sum() * seconds,
        "waiting_tokens": dispatch.waiting * seconds,  # still queued when the year ends
        "served_share": min(served / demand, 1.0) if demand > 0 else 1.0,
        "energy_mwh": fleet_mw.sum() * step_hours,
        "peak_mw": fleet_mw.max(),
        "load_factor": fleet_mw.mean() / fleet_mw.max() if fleet_mw.max() > 0 else 0.0,
        "violations": len(table),
        "violation_steps": int(result.violations.steps.sum()),
        "violation_hours": int(result.violations.steps.sum()) * step_hours,
        "thermal_violations": int((~voltage & (table["element_type"] != "grid")).sum()),
        "voltage_violations": int(voltage.sum()),
        "worst_loading_percent": float(
            np.nanmax(np.concatenate([result.line_max_percent, result.trafo_max_percent]))
        ),
        "min_vm_pu": float(np.nanmin(result.vm_min_pu)),
        "max_vm_pu": float(np.nanmax(result.vm_max_pu)),
        "grid_limited_steps": dispatch.grid_limited_steps,
        "idle_floor_steps": dispatch.idle_floor_steps,
        "beyond_bound_steps": dispatch.beyond_bound_steps,
        "capped_gpu_hours": float(dispatch.held_gpus.sum() * step_hours),
        "shutdown_gpu_hours": float(dispatch.off_gpus.sum() * step_hours),
        "own_supply_site_hours": float(dispatch.own_supply.sum() * step_hours),
        "own_supply_mwh": float(dispatch.own_supply_mw.sum() * step_hours),
    }


def _site_summary(dispatch: Dispatch, sites: pd.DataFrame, fleet: _Fleet, step_hours: float) -> pd.DataFrame:
    power = dispatch.power_mw
    peak = power.max(axis=0)
    return pd.DataFrame(
        {
            "policy": dispatch.policy,
            "substation": sites["substation"].to_numpy(),
            "name": sites["name"].to_numpy(),
            "size_mw": fleet.size_mw,
            "gpus": fleet.n_gpus,
            "energy_mwh": power.sum(axis=0) * step_hours,
            "peak_mw": peak,
            "load_factor": np.divide(power.mean(axis=0), peak, out=np.zeros(len(peak)), where=peak > 0),
            "utilisation": power.mean(axis=0) / fleet.size_mw,
            "served_tokens": dispatch.served.sum(axis=0) * step_hours * 3600,
            "own_supply_hours": dispatch.own_supply.sum(axis=0) * step_hours,
            "own_supply_mwh": dispatch.own_supply_mw.sum(axis=0) * step_hours,
        }
    )


def modelled_demand(grid: Grid, sites: pd.DataFrame, settings: FleetSettings) -> pd.DataFrame:
    """The workload model's fleet demand (tokens/s) on the grid's steps.

    Its peak is ``peak_utilisation`` of what the fleet serves with every GPU busy (at the traces'
    token mix).
    """
    from siting.workload import fleet_demand, token_mix

    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to model the fleet's demand on")
    share = token_mix().prefill_share
    peak = settings.peak_utilisation * fleet_capacity_tokens_per_s(sites, settings.power, share)
    return fleet_demand(grid.profiles.index, peak, seed=settings.seed)


def write_fleet(result: FleetResult, folder: Path) -> list[str]:
    """The simulation's tables in ``folder``; returns the file names."""
    result.summary.to_csv(folder / "fleet_summary.csv", index=False)
    result.sites.to_csv(folder / "sites_summary.csv", index=False)
    result.violations.to_csv(folder / "violations.csv", index=False)
    result.grid_violations.to_csv(folder / "grid_violations.csv", index=False)
    result.site_power.to_parquet(folder / "site_power.parquet", index=False)
    result.demand.rename_axis("time").reset_index().to_parquet(folder / "demand.parquet", index=False)
    return [
        "fleet_summary.csv",
        "sites_summary.csv",
        "violations.csv",
        "grid_violations.csv",
        "site_power.parquet",
        "demand.parquet",
    ]
