"""How many MW flexibility buys: the fleet connectable firm, at N-0 and flexibly, and its year.

For one grid and one set of candidate substations, each *level* sizes every candidate to
its own capacity under a criterion (from the capacity table, capped at the largest site and
dropped below the smallest):

- ``firm``: N-1 hosting capacity at peak (``hc_n1_mw``), what a firm interconnection gets;
- ``peak``: N-0 hosting capacity at peak (``hc_n0_mw``);
- ``flex-<percent>``: flexible capacity at that curtailment limit (Norris et al. on the
  substation's year of headroom, ``flex_<percent>pct_mw``), connected under a curtailment
  obligation.

Each fleet then runs the year under the grid-aware policy with the site power modes
(:class:`siting.fleet.PowerModes`), which is the obligation: at every step each site's power
fits its substation's headroom with every other site at its dispatched power, and a step
where the modes cannot meet it is reported as a violation. Where the settings' policies
include ``blind``, each fleet also runs blind, without the obligation: its violation steps
and worst loading say what the same MW do to the grid when nobody watches it. Demand follows
the workload model scaled to each fleet (its peak at ``peak_utilisation`` of the fleet's
capacity), so the curve answers: this many more MW connect, at this cost in served work.
Sizes are per substation, as the capacity table gives them; the joint check is the year's
dispatch itself. :func:`joint_fleets` instead picks each level's sites together, by the
selection stage under the level's criterion.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from siting.engine.flow import prepare, solve
from siting.engine.search import States, worst_margin
from siting.errors import SitingError, UsageError
from siting.fleet import FleetSettings, GridYear, fleet_sites, grid_year, modelled_demand, simulate
from siting.flexible import flex_column
from siting.geography import Layers
from siting.power import site_capacity_tokens_per_s
from siting.progress import Progress, indented, silent
from siting.selection import Selection, SelectionSettings, select_sites
from siting.sources.grid import Grid
from siting.sources.profiles import profile_step_minutes
from siting.workload import DEMAND_COLUMNS, token_mix

LEVELS = ("firm", "peak", "flex-0.25", "flex-0.5", "flex-1", "flex-5")
LEVEL_COLUMN = {"firm": "hc_n1_mw", "peak": "hc_n0_mw"}

CURVE_COLUMNS = [
    "level",
    "sites",
    "connected_mw",
    "energy_mwh",
    "demand_tokens",
    "served_tokens",
    "served_share",
    "deferred_share",
    "dropped_share",
    "capped_gpu_hours",
    "shutdown_gpu_hours",
    "own_supply_site_hours",
    "worst_loading_percent",
    "violation_steps",
    "beyond_bound_steps",
    "idle_floor_steps",
    "grid_limited_steps",
]
BLIND_COLUMNS = ["blind_violation_steps", "blind_worst_loading_percent"]  # with the blind policy


def level_column(level: str) -> str:
    """The capacity-table column that sizes the sites at ``level`` (firm, peak, flex-<percent>)."""
    if not isinstance(level, str):
        raise UsageError(f"level {level!r}: use firm, peak or flex-<percent> (e.g. flex-0.5)")
    if level in LEVEL_COLUMN:
        return LEVEL_COLUMN[level]
    if level.startswith("flex-"):
        try:
            percent = float(level.removeprefix("flex-"))
        except ValueError:
            percent = float("nan")
        if not 0 < percent < 100:
            raise UsageError(f"level {level!r}: a flex percentage must be in (0, 100), e.g. flex-0.5")
        return flex_column(percent / 100)
    raise UsageError(f"level {level!r}: use firm, peak or flex-<percent> (e.g. flex-0.5)")


def level_fleets(
    capacity: pd.DataFrame,
    levels: tuple[str, ...] = LEVELS,
    min_mw: float = 5.0,
    max_mw: float = 20.0,
    substations: list[int] | None = None,
) -> dict[str, pd.DataFrame]:
    """Sites (``substation``, ``size_mw`` in MW) at each level.

    Every candidate is sized at its own capacity under the level's criterion, capped at
    ``max_mw``; candidates below ``min_mw`` are left out.

    ``capacity`` is the capacity stage's table (with the year for the flex levels);
    ``substations`` limits the candidates (default: every row).
    """
    if not 0 < min_mw <= max_mw:
        raise UsageError(f"site size range {min_mw:g}–{max_mw:g} MW: need 0 < min ≤ max")
    table = capacity if substations is None else capacity[capacity["substation"].isin(substations)]
    fleets = {}
    for level in levels:
        column = level_column(level)
        if column not in table or table[column].isna().all():
            need = "with a year of headroom" if level.startswith("flex-") else "with N-1"
            raise UsageError(f"level {level}: the capacity table has no {column}; compute capacity {need}")
        size = table[column].clip(upper=max_mw)
        keep = size >= min_mw
        fleets[level] = pd.DataFrame(
            {"substation": table.loc[keep, "substation"].to_numpy(int), "size_mw": size[keep].to_numpy(float)}
        )
    return fleets


def joint_fleets(
    grid: Grid,
    capacity: pd.DataFrame,
    levels: tuple[str, ...],
    selection: SelectionSettings,
    *,
    layers: Layers | None = None,
    at: str | None = None,
    picked: Selection | None = None,
    progress: Progress | None = None,
) -> dict[str, pd.DataFrame]:
    """Sites (``substation``, ``size_mw`` in MW) at each level, picked together under its criterion.

    Each level runs the selection stage (:func:`siting.selection.select_sites`) with ``selection``
    and the level as its criterion, so its fleet is within limits together (flexible levels:
    under their curtailment obligation, the others at their firm or N-0 size), where
    :func:`level_fleets` sizes each candidate alone. ``picked`` is a selection already made with
    ``selection``: its level takes it. A level where no candidate is left has no site. The
    levels' selections skip the naive top-K check: only their sites are kept.
    """
    say = progress or silent
    fleets = {}
    for level in levels:
        level_column(level)
        if picked is not None and level == selection.criterion:
            chosen = picked
        else:
            say(f"{level}: picking the sites together")
            settings = dataclasses.replace(selection, criterion=level)
            try:
                chosen = select_sites(
                    grid, capacity, settings, layers=layers, at=at, progress=indented(say), check_naive=False
                )
            except SitingError as err:
                say(f"{level}: no site ({err})")
                fleets[level] = pd.DataFrame(
                    {"substation": pd.Series(dtype=int), "size_mw": pd.Series(dtype=float)}
                )
                continue
        fleets[level] = chosen.sites[["substation", "size_mw"]].reset_index(drop=True)
    return fleets


def flex_curve(
    grid: Grid,
    fleets: dict[str, pd.DataFrame],
    settings: FleetSettings | None = None,
    demand: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
    alone: GridYear | None = None,
) -> pd.DataFrame:
    """One row per level: the MW connected and its simulated year.

    Columns are :data:`CURVE_COLUMNS`, then :data:`BLIND_COLUMNS` when the settings' policies
    include ``blind``. ``fleets`` maps a level to its sites (``substation``, ``size_mw``), e.g. from
    :func:`level_fleets` or from ``select_sites`` under each criterion. A level with no site
    connects 0 MW and serves nothing. ``demand`` (tokens/s, ``DEMAND_COLUMNS`` on the grid's
    steps, e.g. a demand file) is served by every level; by default each level gets the
    workload model scaled to its fleet. Shares are of the level's demand; energy in MWh, tokens
    over the year, GPU-hours of work held back by power budgets (capping) and of servers off.
    ``alone`` is the grid's year without a fleet (:func:`siting.fleet.grid_year`), if already
    solved.
    """
    say = progress or silent
    settings = settings or FleetSettings()
    blind = "blind" in settings.policies
    settings = dataclasses.replace(settings, policies=("blind", "grid-aware") if blind else ("grid-aware",))
    if demand is not None:
        _check_needs_a_site(demand, settings)
    alone = alone or grid_year(grid, settings)  # shared by every level
    done: dict[tuple, dict] = {}  # levels that size the same fleet share its year
    rows = []
    for level, table in fleets.items():
        level_column(level)
        if not len(table):
            rows.append({"level": level, "sites": 0, "connected_mw": 0.0})
            continue
        sites = fleet_sites(table, grid, source=f"level {level}")
        key = tuple(zip(sites["substation"], sites["size_mw"], strict=True))
        if key not in done:
            say(f"{level}: {len(sites)} sites, {sites['size_mw'].sum():.1f} MW")
            work = modelled_demand(grid, sites, settings) if demand is None else demand
            policies = simulate(grid, sites, work, settings, progress=progress, alone=alone).summary
            policies = policies.set_index("policy")
            summary = policies.loc["grid-aware"]
            total = summary["demand_tokens"]
            done[key] = {
                "sites": len(sites),
                "connected_mw": float(sites["size_mw"].sum()),
                **{column: summary[column] for column in CURVE_COLUMNS if column in summary.index},
                "deferred_share": summary["deferred_tokens"] / total,
                "dropped_share": summary["dropped_tokens"] / total,
            }
            if blind:
                unwatched = policies.loc["blind"]
                done[key]["blind_violation_steps"] = unwatched["violation_steps"]
                done[key]["blind_worst_loading_percent"] = unwatched["worst_loading_percent"]
        rows.append({**done[key], "level": level})
    zero = ["energy_mwh", "demand_tokens", "served_tokens"] + (["blind_violation_steps"] if blind else [])
    return pd.DataFrame(rows, columns=CURVE_COLUMNS + (BLIND_COLUMNS if blind else [])).fillna(
        dict.fromkeys(zero, 0.0)
    )


def _check_needs_a_site(demand: pd.DataFrame, settings: FleetSettings) -> None:
    """A demand whose peak one GPU serves needs no site: refuse it rather than chart nothing."""
    total = demand[DEMAND_COLUMNS].to_numpy(float).sum(axis=1)
    one_gpu = float(site_capacity_tokens_per_s(1, token_mix().prefill_share, settings.power))
    if not total.size or not total.max() > one_gpu:
        raise UsageError(
            f"demand: its peak, {total.max(initial=0.0):,.0f} tokens/s, is within one GPU's "
            f"{one_gpu:,.0f} tokens/s and needs no site; give a fleet-sized demand (or scale it)"
        )


def unused_over_year(
    grid: Grid,
    settings: FleetSettings | None = None,
    every: int = 1,
    top: float = 4.0,
    resolution: float = 0.01,
    fleet_mwh: float | None = None,
) -> dict[str, float]:
    """The "~10 % unused" claim over a year: how much more load the grid carries within limits.

    At every ``every``-th step of the profiles, the largest uniform growth λ_t (to
    ``resolution``, at most ``top``) of all existing loads that keeps the grid within its
    limits (one batched bisection over the steps). Returns ``unused_mwh_share`` =
    Σ(λ_t − 1)·L_t / Σ λ_t·L_t, the share of MW-hours the grid could carry but does not;
    ``unused_mwh`` those MW-hours over the simulated span; and, given ``fleet_mwh`` (e.g. a
    flex level's ``energy_mwh``), ``reachable_share``: the part of the unused MW-hours that a
    fleet of sites at the substations actually drew within limits.
    """
    settings = settings or FleetSettings()
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to check a year on")
    if every < 1 or top <= 1 or resolution <= 0:
        raise UsageError(f"every {every}, top {top}, resolution {resolution}: need ≥ 1, > 1 and > 0")
    model = prepare(copy.deepcopy(grid.net), [], grid.source, **vars(settings.engine))
    rows = np.arange(0, len(grid.profiles), every)
    alone = grid_year(dataclasses.replace(grid, profiles=grid.profiles.iloc[rows]), settings, model)
    states, limits = alone.states, alone.limits
    base = {}
    for column in ("p_mw", "q_mvar"):
        model_value = model.net.load[column].to_numpy(float)
        value = states.values.get(("load", column), np.tile(model_value, (states.n, 1)))
        base[column] = np.where(np.isnan(value), model_value, value)
    low, high = np.ones(states.n), np.full(states.n, float(top))
    while (high - low).max() > resolution:
        mid = (low + high) / 2
        values = {**states.values, **{("load", c): v * mid[:, None] for c, v in base.items()}}
        result = solve(model, States(values, None, states.n).scenarios(np.arange(states.n)))
        ok = worst_margin(result, limits, np.arange(states.n))[0] >= 0
        low, high = np.where(ok, mid, low), np.where(ok, high, mid)
    low = np.where(limits.usable, low, 1.0)
    load = base["p_mw"].sum(axis=1)
    step_hours = profile_step_minutes(grid.profiles) / 60 * every
    unused = float(((low - 1) * load).sum() * step_hours)
    out = {
        "unused_mwh_share": unused / float((low * load).sum() * step_hours),
        "unused_mwh": unused,
        "min_growth": float(low.min()),
        "median_growth": float(np.median(low)),
        "at_top_share": float(
            (low >= top - resolution).mean()
        ),  # steps where λ reached ``top``: a lower bound there
    }
    if fleet_mwh is not None:
        out["reachable_share"] = min(fleet_mwh / unused, 1.0) if unused > 0 else 0.0
    return out
