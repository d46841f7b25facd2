"""Pick substations and sizes for 5–20 MW sites that are feasible together, and say why.

Capacity is computed one substation at a time; two sites behind one transformer share its
headroom. Selection is greedy with AC re-evaluation: each round computes, for every eligible
candidate, the largest size (on the ``step_mw`` grid, within [min, max]) that keeps every
state of the criterion within limits *with the sites already picked at their sizes*, and
picks the largest, the better-scored on a tie. The final set then goes through a full AC
batch over every state of the criterion — with contingency screening, also every outage
the screening left out; an outage that binds there is added to the states and the greedy
runs again, so the reported set always passes the unscreened check.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, cast

import geopandas as gpd
import numpy as np
import pandas as pd

from siting.capacity import CapacitySettings, contingency_limits, normal_limits, studied_outages
from siting.engine.flow import EngineOptions, FlowModel, Outage, prepare, solve
from siting.engine.search import (
    CRITERIA,
    VIOLATION_COLUMNS,
    StateLimits,
    States,
    criterion_element_name,
    every_pair,
    hosting_capacity,
    state_limits,
    state_margins,
    violations_of,
    worst_state,
)
from siting.engine.topology import outages_near
from siting.errors import SettingError, SitingError, UsageError, check_number
from siting.flexible import flex_column
from siting.geography import (
    GeoRules,
    Layers,
    apply_layers,
    cluster_regions,
    demand_points,
    regions_from_layer,
)
from siting.limits import StudyLimits
from siting.progress import Progress, silent, tally
from siting.sources.geo import WGS84, bus_lonlat
from siting.sources.grid import Grid
from siting.sources.peak import OperatingPoint, operating_point

CRITERION_COLUMN = {"firm": "hc_n1_mw", "peak": "hc_n0_mw"}
MAX_SCREENING_ROUNDS = 5


@dataclass(frozen=True)
class SelectionSettings:
    """What to pick: how many sites, their size range and step, under which criterion.

    Parameters
    ----------
    criterion : str
        ``firm`` (N-1 at the operating point), ``peak`` (N-0 there) or ``flex-<percent>`` (a
        site may be curtailed that share of its energy over the year, e.g. ``flex-0.5``).
    sites : int
        Most sites to pick.
    min_mw, max_mw : float
        Size range of a site (MW).
    step_mw : float
        Sizes are multiples of this (MW).
    regions : int or None
        Cluster the substations into this many regions and spread the sites over them.
    per_region : int or None
        Most sites per region (default: ``sites`` / ``regions``, rounded up).
    n1_hops : int or None
        While picking, check each candidate only against outages within this many branch hops;
        the final joint check covers every outage.
    flex_floor : float or None
        Flex: the lowest share of its size a site can draw when curtailed, in [0, 1) (its power
        modes' floor, :meth:`siting.fleet.PowerModes.lowest_share`); None: that of the default
        modes (idle servers off, a warm reserve kept: 7.4 %).
    pf : float
        Power factor of the sites, lagging, in (0, 1].
    geo : GeoRules
        How GIS layers rule candidates out.
    limits : StudyLimits
        Limits where the model has none.
    engine : EngineOptions
        Power-flow options.
    """

    criterion: str = "firm"  # firm (N-1 at peak), peak (N-0 at peak)
    sites: int = 10
    min_mw: float = 5.0
    max_mw: float = 20.0
    step_mw: float = 1.0
    regions: int | None = None  # cluster substations into this many regions
    per_region: int | None = None  # quota per region (default: K / regions, rounded up)
    n1_hops: int | None = None  # contingency screening while picking (the final check is full)
    flex_floor: float | None = None  # flex: lowest share of its size a site draws (None: default modes)
    pf: float = 0.95
    geo: GeoRules = field(default_factory=GeoRules)
    limits: StudyLimits = field(default_factory=StudyLimits)
    engine: EngineOptions = field(default_factory=EngineOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.criterion, str) or (
            self.criterion not in CRITERION_COLUMN and self.flex_limit is None
        ):
            raise SettingError(
                "criterion", self.criterion, "use firm, peak or flex-<percent> (e.g. flex-0.5)"
            )
        check_number("sites", self.sites, at_least=1, whole=True)
        check_number("min_mw", self.min_mw, above=0)
        check_number("max_mw", self.max_mw, above=0)
        if self.min_mw > self.max_mw:
            raise SettingError("min_mw", self.min_mw, f"must be at most max_mw ({self.max_mw:g} MW)")
        check_number("step_mw", self.step_mw, above=0)
        if self.step_mw > self.max_mw:
            raise SettingError("step_mw", self.step_mw, f"must be at most max_mw ({self.max_mw:g} MW)")
        for name in ("regions", "per_region"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), at_least=1, whole=True)
        if self.n1_hops is not None:
            check_number("n1_hops", self.n1_hops, at_least=0, whole=True)
        check_number("pf", self.pf, above=0, at_most=1)
        if self.flex_floor is not None:
            check_number("flex_floor", self.flex_floor, at_least=0, below=1)

    @property
    def floor_share(self) -> float:
        """Lowest share of its size a flexibly connected site can draw (``flex_floor`` resolved)."""
        if self.flex_floor is not None:
            return self.flex_floor
        from siting.fleet import FleetSettings  # the fleet builds on the selection

        fleet = FleetSettings()
        return fleet.modes.lowest_share(fleet.power)

    @property
    def flex_limit(self) -> float | None:
        """Curtailment limit (fraction) of a flex-<percent> criterion; None for firm and peak."""
        if not self.criterion.startswith("flex-"):
            return None
        try:
            percent = float(self.criterion.removeprefix("flex-"))
        except ValueError:
            return None
        return percent / 100 if 0 < percent < 100 else None

    @property
    def capacity_column(self) -> str:
        """The column of a `siting capacity` table that holds each candidate's own capacity."""
        if self.flex_limit is None:
            return CRITERION_COLUMN[self.criterion]
        return flex_column(self.flex_limit)

    def record(self) -> dict[str, object]:
        """The settings as plain data, for manifests."""
        return {
            **{k: v for k, v in vars(self).items() if k not in ("geo", "limits", "engine")},
            "geo": vars(self.geo),
            "limits": self.limits.record(),
            "engine": self.engine.record(),
        }

    @property
    def quota(self) -> int | None:
        """Sites allowed per region: ``per_region``, else an even share; None without regions."""
        if self.regions is None:
            return None
        return self.per_region or math.ceil(self.sites / self.regions)


@dataclass(frozen=True)
class Selection:
    """The picked sites, every candidate's fate, the regions, and the joint AC check.

    Attributes
    ----------
    sites : GeoDataFrame
        The selected sites, largest first: substation, bus, ``size_mw`` (MW), region, score,
        own capacity (MW), ``pick`` (the order they were picked in) and the reason for the pick;
        under a flex criterion also ``curtailment_rate`` (share of its energy over the year).
    candidates : GeoDataFrame
        Every candidate with its ``status`` (selected, candidate, dropped) and reason.
    regions : GeoDataFrame or None
        The regions, when the selection used them.
    naive : DataFrame
        The naive set for comparison: the top ``sites`` candidates, each at its own capacity.
    joint : DataFrame
        One row per set (selected, naive top-K): worst voltages (pu), loading (%), violations.
    violations : DataFrame
        Every violation of either set: set, state, criterion, element, value, limit.
    operating_point : str
        The state the criterion is judged at.
    flows : int
        AC power flows run.
    notes : list of str
        What the reader should know (geography off, fewer sites than asked, ...).
    dispatch : DataFrame or None
        Flex: each selected site's power (MW) in every state of the year under the curtailment
        obligation, one column per substation (in ``sites`` order); None for firm and peak.
    """

    sites: gpd.GeoDataFrame
    candidates: gpd.GeoDataFrame
    regions: gpd.GeoDataFrame | None
    naive: pd.DataFrame
    joint: pd.DataFrame  # one row per set (selected, naive): worst values and violation count
    violations: pd.DataFrame  # set, state, criterion, element, value, limit
    operating_point: str
    flows: int
    notes: list[str]
    dispatch: pd.DataFrame | None = None  # flex: MW per state (rows) and selected substation (columns)

    def record(self) -> dict[str, object]:
        """The headline results as plain data, for manifests."""
        return {
            "operating_point": self.operating_point,
            "sites": len(self.sites),
            "total_mw": float(self.sites["size_mw"].sum()),
            "power_flows": self.flows,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Criterion:
    """The states a criterion checks and their limits (normal at peak, contingency after outages)."""

    groups: list[tuple[States, StateLimits, list[str]]]  # states, limits, a label per state
    near: np.ndarray | None = None  # screening: (outage states × candidates) outages near each one
    flex_limit: float | None = None  # flex: a site may be curtailed this share of its energy
    times: pd.DatetimeIndex | None = None  # flex: the time of each state
    floor: float = 0.0  # flex: lowest share of its size a curtailed site draws


def select_sites(
    grid: Grid,
    capacity: pd.DataFrame,
    settings: SelectionSettings | None = None,
    *,
    layers: Layers | None = None,
    at: str | None = None,
    progress: Progress | None = None,
    check_naive: bool = True,
) -> Selection:
    """Choose up to ``settings.sites`` sites that are feasible together, and say why.

    Parameters
    ----------
    grid : Grid
        The grid the capacity table was computed on; not modified.
    capacity : DataFrame
        A `siting capacity` table (``CapacityStudy.table``) with the criterion's column.
    settings : SelectionSettings, optional
        How many sites, their sizes (MW) and the criterion (default: ``SelectionSettings()``).
    layers : Layers, optional
        GIS layers that rule candidates out and score them (default: none).
    at : str, optional
        Operating point, as ``CapacitySettings.at``.
    progress : callable, optional
        Called with a line of text as each part starts.
    check_naive : bool, default True
        Also run the joint check of the naive top-K set, the comparison reports show; without
        it ``Selection.joint`` has the selected set's row alone.

    Returns
    -------
    Selection
        The sites, every candidate's status and reason, and the joint AC check.

    Raises
    ------
    UsageError
        The table lacks the criterion's column, or a flex criterion on a grid without profiles.
    SitingError
        No candidate is left after the capacity minimum and the layers.
    """
    say = progress or silent
    settings = settings or SelectionSettings()
    layers = layers or Layers()
    column = settings.capacity_column
    notes = _checked_inputs(grid, capacity, settings, layers)
    table = _candidates(grid, capacity, settings, layers, column)
    regions = _regions(table, layers, settings)

    eligible = table["status"] == "candidate"
    if not eligible.any():
        raise SitingError(_none_left(table))
    pool = table[eligible]
    point = operating_point(grid, at)
    model = prepare(copy.deepcopy(grid.net), pool["bus"].to_numpy(), grid.source, **vars(settings.engine))
    cap_settings = CapacitySettings(
        pf=settings.pf,
        cap_mw=settings.max_mw,
        resolution_mw=settings.step_mw,
        limits=settings.limits,
        engine=settings.engine,
    )
    full = _criterion_states(model, grid, point, settings, cap_settings)
    criterion = _screened(model, full, settings)
    say(f"{len(pool)} candidates; {sum(g[0].n for g in criterion.groups)} states to check each pick against")
    sizes, why, picks, joint, flows = _pick_jointly(
        model, pool, full, criterion, settings, cap_settings, notes, say
    )

    _mark_picks(table, pool, sizes, why)
    if (sizes > 0).sum() < settings.sites:
        notes.append(_fewer_note(table, settings, int((sizes > 0).sum())))

    naive_sizes, naive = _naive(table, pool, settings, column)
    naive_check = None
    if check_naive:
        say("joint AC check of the naive top-K set")
        naive_check = _joint_check(model, full, naive_sizes, cap_settings)
        flows += naive_check.flows
    summary, violations = _both_sets(sizes, joint, naive_sizes, naive_check)
    # largest first, ties in pick order: the order a flex criterion curtails them in (last first)
    sites = table.loc[pool.index[picks]].assign(pick=np.arange(1, len(picks) + 1))
    sites = sites.sort_values(["size_mw", "pick"], ascending=[False, True], kind="stable")
    dispatch, extra = None, []
    if joint.dispatch is not None and grid.profiles is not None:
        from siting.flexible import curtailment_rate

        columns = pool.index.get_indexer(sites.index)
        dispatch = pd.DataFrame(
            joint.dispatch[:, columns], index=grid.profiles.index, columns=sites["substation"].to_numpy()
        )
        years = grid.profiles.index.year.to_numpy()
        sites["curtailment_rate"] = [
            curtailment_rate(dispatch[column].to_numpy(), years, size)
            for column, size in zip(dispatch.columns, sites["size_mw"], strict=True)
        ]
        extra = ["curtailment_rate"]
    return Selection(
        sites=sites[[*_SITE_COLUMNS, *extra, "geometry"]],
        candidates=table,
        regions=regions,
        naive=naive,
        joint=summary,
        violations=violations,
        operating_point=point.label,
        flows=flows,
        notes=notes,
        dispatch=dispatch,
    )


_SITE_COLUMNS = [
    "substation",
    "name",
    "bus",
    "lon",
    "lat",
    "size_mw",
    "region",
    "score",
    "capacity_mw",
    "pick",
    "reason",
]


def _candidates(
    grid: Grid, capacity: pd.DataFrame, settings: SelectionSettings, layers: Layers, column: str
) -> gpd.GeoDataFrame:
    subs = grid.substations.set_index("id")
    missing = sorted(set(capacity["substation"]) - set(subs.index))
    if missing:
        raise UsageError(f"the capacity table names substations {missing[:5]} that {grid.name} does not have")
    table = gpd.GeoDataFrame(
        capacity[["substation", column]]
        .rename(columns={column: "capacity_mw"})
        .merge(subs[["name", "bus", "lon", "lat", "geometry"]], left_on="substation", right_index=True),
        geometry="geometry",
        crs=WGS84,
    ).reset_index(drop=True)
    geo = apply_layers(table, layers, settings.geo, demand_points(layers, grid_demand(grid)))
    table = table.join(geo)
    table["status"] = "candidate"
    table["size_mw"] = 0.0
    table["reason"] = ""
    small = table["capacity_mw"] < settings.min_mw
    table.loc[small, "status"] = "dropped"
    table.loc[small, "reason"] = [
        f"{settings.criterion} capacity {c:.1f} MW is below the {settings.min_mw:g} MW minimum"
        for c in table.loc[small, "capacity_mw"]
    ]
    excluded = (table["geo_reason"] != "") & ~small
    table.loc[excluded, "status"] = "dropped"
    table.loc[excluded, "reason"] = table.loc[excluded, "geo_reason"]
    return table.drop(columns="geo_reason")


def grid_demand(grid: Grid) -> gpd.GeoDataFrame:
    """Default demand centres: every bus serving load, weighted by that load (MW)."""
    net = grid.net
    loads = net.load[net.load["in_service"].astype(bool)]
    weight = loads.groupby("bus")["p_mw"].sum()
    weight = weight[weight > 0]
    coords = bus_lonlat(net).loc[weight.index].dropna()
    return gpd.GeoDataFrame(
        {"weight": weight.loc[coords.index].to_numpy()},
        geometry=gpd.points_from_xy(coords["lon"], coords["lat"]),
        crs=WGS84,
    )


def _criterion_states(
    model: FlowModel,
    grid: Grid,
    point: OperatingPoint,
    settings: SelectionSettings,
    cap_settings: CapacitySettings,
) -> _Criterion:
    """Every state of the criterion with its limits.

    The year for flex, else the operating point (normal limits) and, for firm, each single
    outage (contingency limits).
    """
    if settings.flex_limit is not None:
        from siting.engine.flow import profile_scenarios

        if grid.profiles is None:  # select_sites refuses a flex criterion without profiles
            raise RuntimeError(f"{grid.name}: a flex criterion needs profiles")

        year = profile_scenarios(model.net, grid.profiles)
        states = States(year.element_values, None, year.n)
        limits = state_limits(model, states, normal_limits(model, cap_settings))
        labels = [f"{t:%Y-%m-%d %H:%M}" for t in grid.profiles.index]
        return _Criterion(
            [(states, limits, labels)],
            flex_limit=settings.flex_limit,
            times=grid.profiles.index,
            floor=settings.floor_share,
        )
    peak = States({k: v[None, :] for k, v in point.values.items()}, None, 1)
    groups = [(peak, state_limits(model, peak, normal_limits(model, cap_settings)), ["peak"])]
    if settings.criterion == "firm":
        outages, names, _ = studied_outages(model.net, grid.contingencies)
        values = {k: np.repeat(v[None, :], len(outages), axis=0) for k, v in point.values.items()}
        states = States(values, tuple(outages), len(outages))
        limits = state_limits(model, states, contingency_limits(model, cap_settings))
        groups.append((states, limits, [f"{name} out" for name in names]))
    return _Criterion(groups)


def _screened(
    model: FlowModel, full: _Criterion, settings: SelectionSettings, binding: frozenset = frozenset()
) -> _Criterion:
    """With ``--n1-hops``: only the outages near some candidate, each for the candidates it is near.

    ``binding`` outages (found by an earlier joint check) are added and checked for all.
    """
    if settings.n1_hops is None or settings.criterion != "firm":
        return full
    peak, (states, limits, labels) = full.groups
    if states.outages is None:  # _criterion_states gives the firm criterion one state per outage
        raise RuntimeError("the firm criterion's second group has no outages")
    # from studied_outages: each state opens something (a branch or a planner's set of them)
    studied = cast(list[Outage | tuple[Outage, ...]], list(states.outages))
    near = outages_near(model.net, studied, model.site_buses, settings.n1_hops)
    near[[o in binding for o in states.outages]] = True
    rows = np.flatnonzero(near.any(axis=1))
    outage_group = (states.take(rows), limits.take(rows), [labels[i] for i in rows])
    return _Criterion([peak, outage_group], near=near[rows])


def _both_sets(
    sizes: np.ndarray, joint: JointCheck, naive_sizes: np.ndarray, naive_check: JointCheck | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The joint checks of the selected and the naive set: a summary row each, and their violations."""
    rows = [_joint_row("selected", sizes, joint)]
    parts = [joint.violations.assign(set="selected")]
    if naive_check is not None:
        rows.append(_joint_row("naive top-K", naive_sizes, naive_check))
        parts.insert(0, naive_check.violations.assign(set="naive top-K"))
    return pd.DataFrame(rows), pd.concat([p for p in parts if len(p)] or [parts[0]], ignore_index=True)


def _mark_picks(table: pd.DataFrame, pool: pd.DataFrame, sizes: np.ndarray, why: dict[int, str]) -> None:
    """Candidates picked (``sizes`` MW > 0) become "selected" at their size; each gets its reason."""
    picked = sizes > 0
    table.loc[pool.index[picked], "status"] = "selected"
    table.loc[pool.index[picked], "size_mw"] = sizes[picked]
    for position, reason in why.items():
        table.loc[pool.index[position], "reason"] = reason


def _checked_inputs(
    grid: Grid, capacity: pd.DataFrame, settings: SelectionSettings, layers: Layers
) -> list[str]:
    """Refuse what the selection cannot do with these inputs; the notes to start with."""
    column = settings.capacity_column
    if column not in capacity or capacity[column].isna().all():
        need = {"hc_n1_mw": "with N-1", "hc_n0_mw": ""}.get(
            column, "with --year (flexible capacity at 0.25, 0.5, 1 and 5 %)"
        )
        raise UsageError(f"the capacity table has no {column}: run siting capacity {need} for this criterion")
    if settings.flex_limit is not None and grid.profiles is None:
        raise UsageError(f"--criterion {settings.criterion}: {grid.name} has no profiles to curtail against")
    if layers.frames and grid.net.get("coordinates") == "planar":
        from siting.sources.opendss import refuse_gis_layers

        refuse_gis_layers(grid)
    if not grid.substations["lon"].isna().all():
        return []
    if layers.frames or settings.regions:
        raise UsageError(
            f"{grid.name} has no bus coordinates: GIS layers and regions need them "
            "(give bus coordinates or a substation list with lon/lat)"
        )
    return ["geography off: the grid has no bus coordinates, so no GIS layer or distance applies"]


def _regions(table: pd.DataFrame, layers: Layers, settings: SelectionSettings) -> gpd.GeoDataFrame | None:
    """Each candidate's ``region`` (set on ``table``) from a regions layer or clustering; the regions."""
    if "regions" in layers.frames:
        regions = layers.frames["regions"].to_crs(WGS84).reset_index(drop=True)
        regions["region"] = np.arange(len(regions))
        table["region"] = regions_from_layer(table, regions)
        return regions
    if settings.regions:
        table["region"], regions = cluster_regions(table, settings.regions)
        return regions
    table["region"] = 0
    return None


def _pick_jointly(
    model: FlowModel,
    pool: pd.DataFrame,
    full: _Criterion,
    criterion: _Criterion,
    settings: SelectionSettings,
    cap_settings: CapacitySettings,
    notes: list[str],
    say: Progress,
) -> tuple[np.ndarray, dict[int, str], list[int], JointCheck, int]:
    """Greedy picks checked together over every state of the criterion (``full``).

    With ``--n1-hops`` the picks see only the screened outages; an outage the joint check finds
    binding is then checked for every candidate and the set picked again (a note says so), at
    most ``MAX_SCREENING_ROUNDS`` times. Returns sizes (MW per candidate), the reasons, the picks
    in order, the joint check and the power flows run.
    """
    # a re-pick searches again only what the outages it adds change (see _Searched)
    searched: _Searched | None = {} if settings.n1_hops is not None else None
    sizes, why, picks, flows, dispatch = _greedy(
        model, pool, criterion, settings, cap_settings, say, searched
    )
    say("joint AC check of the picked set over every state of the criterion")
    joint = _joint_check(model, full, sizes, cap_settings, np.array(picks, dtype=np.int64), dispatch)
    flows += joint.flows
    binding: frozenset = frozenset()
    for _ in range(MAX_SCREENING_ROUNDS):
        if not len(joint.violations) or settings.n1_hops is None:
            break
        labels = full.groups[-1][2]
        outages = full.groups[-1][0].outages
        if outages is None:  # a criterion without outages is not screened: the check below fails
            break
        missed = {outages[labels.index(label)] for label in set(joint.violations["state"]) if label in labels}
        binding = binding | missed
        names = ", ".join(sorted(set(joint.violations["state"])))[:200]
        notes.append(
            f"{len(missed)} outage(s) the {settings.n1_hops}-hop screening left out bind the picked set "
            f"({names}): picked again with them checked for every site"
        )
        criterion = _screened(model, full, settings, binding)
        sizes, why, picks, count, dispatch = _greedy(
            model, pool, criterion, settings, cap_settings, say, searched
        )
        joint = _joint_check(model, full, sizes, cap_settings, np.array(picks, dtype=np.int64), dispatch)
        flows += count + joint.flows
    if len(joint.violations):
        raise RuntimeError("the selected set fails its own joint check")  # greedy guarantees it cannot
    return sizes, why, picks, joint, flows


LAZY_BATCH = 8  # candidates re-evaluated together when the leader's fit is stale
# under flex one candidate's fit is a search in every state of the year: batch enough on its own
LAZY_BATCH_FLEX = 1


def _greedy(
    model: FlowModel,
    pool: pd.DataFrame,
    criterion: _Criterion,
    settings: SelectionSettings,
    cap_settings: CapacitySettings,
    say: Progress,
    searched: _Searched | None = None,
) -> tuple[np.ndarray, dict[int, str], list[int], int, np.ndarray | None]:
    """Lazy greedy: the same picks as re-evaluating everyone, at a fraction of the cost.

    A candidate's fit only shrinks as sites are added, so each round re-checks the leaders (by
    their last known fit, which bounds the true one) until the leader's fit is current, and
    picks it. Under a flex criterion the sites picked so far are at their dispatched power in
    every state (each curtailed to its headroom with those before it at theirs): the last one
    connected is curtailed first (:func:`_connect`). Returns sizes (MW), reasons, the picks in
    order, the flows and, under flex, every site's dispatched power (MW, states × candidates).
    """
    n = len(pool)
    sizes = np.zeros(n)
    why: dict[int, str] = {}
    picks: list[int] = []
    flows = 0
    regions = pool["region"].to_numpy()
    score = pool["score"].to_numpy()
    capacity = pool["capacity_mw"].to_numpy()
    bound = _on_grid(capacity, settings)
    binding = ["its own capacity"] * n
    quota = settings.quota
    flex = criterion.flex_limit is not None
    picked = _Flexible(sizes, picks, np.zeros((criterion.groups[0][0].n, n))) if flex else None
    for rank in range(1, settings.sites + 1):
        current = np.zeros(n, dtype=bool)
        headroom: dict[int, np.ndarray] = {}  # flex: each current candidate's headroom per state (MW)
        chosen = None
        while True:
            open_ = (sizes == 0) & (bound >= settings.min_mw - 1e-9)
            if quota is not None:
                full = [r for r in np.unique(regions) if ((sizes > 0) & (regions == r)).sum() >= quota]
                open_ &= ~np.isin(regions, full)
            candidates = np.flatnonzero(open_)
            if len(candidates) == 0:
                break
            # largest size first; on a tie the candidate with more capacity of its own (it leaves
            # more room for later picks), then the better score
            order = candidates[np.lexsort((-score[candidates], -capacity[candidates], -bound[candidates]))]
            if current[order[0]]:
                chosen = int(order[0])
                break
            batch = np.array([c for c in order if not current[c]][: LAZY_BATCH_FLEX if flex else LAZY_BATCH])
            if picked is None:
                fit = _fit(model, criterion, sizes, batch, cap_settings, searched)
            else:
                fit = _flex_fit(model, criterion, picked, batch, cap_settings)
            flows += fit.flows
            bound[batch] = np.minimum(bound[batch], _on_grid(fit.mw, settings))
            for column, (position, reason) in enumerate(zip(batch, fit.binding, strict=True)):
                binding[position] = reason
                if fit.headroom is not None:
                    headroom[position] = fit.headroom[:, column]
            current[batch] = True
        if chosen is None:
            break
        note = None
        if picked is not None:
            connection = _connect(
                model, criterion, picked, chosen, float(bound[chosen]), headroom[chosen], cap_settings
            )
            flows += connection.flows
            picked.add(chosen, float(bound[chosen]), connection)
            note = _curtailment_note(criterion, picked, chosen, connection)
        else:
            sizes[chosen] = bound[chosen]
            picks.append(chosen)
        say(f"pick {rank}: {pool.iloc[chosen]['name']}, {bound[chosen]:g} MW")
        tally(say, "picks", rank, settings.sites)
        why[chosen] = _pick_reason(
            pool.iloc[chosen], rank, bound[chosen], binding[chosen], settings, sizes, regions, note
        )
    if not flex:  # under flex a site's fit depends only on the sites before it: it cannot grow
        flows += _grow(model, criterion, sizes, why, settings, cap_settings, searched)
    for position in np.flatnonzero(sizes == 0).tolist():
        if bound[position] < settings.min_mw - 1e-9:
            why[position] = (
                f"not picked: fits only {bound[position]:g} MW next to the chosen sites ({binding[position]})"
            )
        else:
            why.setdefault(position, _not_picked(position, sizes, regions, settings))
    return sizes, why, picks, flows, None if picked is None else picked.dispatched


def _on_grid(mw: np.ndarray, settings: SelectionSettings) -> np.ndarray:
    """Sizes on the step grid, at most the maximum."""
    return np.floor(np.minimum(mw, settings.max_mw) / settings.step_mw + 1e-9) * settings.step_mw


def _grow(
    model: FlowModel,
    criterion: _Criterion,
    sizes: np.ndarray,
    why: dict[int, str],
    settings: SelectionSettings,
    cap_settings: CapacitySettings,
    searched: _Searched | None = None,
) -> int:
    """Give each site below the maximum whatever room the final set leaves it, one at a time."""
    flows = 0
    for position in np.flatnonzero((sizes > 0) & (sizes < settings.max_mw)).tolist():
        others = sizes.copy()
        others[position] = 0.0
        fit = _fit(model, criterion, others, np.array([position]), cap_settings, searched)
        flows += fit.flows
        size = float(_on_grid(fit.mw, settings)[0])
        if size > sizes[position]:
            why[position] += f"; grown from {sizes[position]:g} to {size:g} MW once every site was placed"
            sizes[position] = size
    return flows


class _Fit(NamedTuple):
    """What each eligible candidate fits with the current sites fixed."""

    mw: np.ndarray  # largest size (MW) per candidate
    binding: list[str]  # what limits it
    flows: int
    headroom: np.ndarray | None = None  # flex: MW each takes in every state (states × candidates)


class _Known(NamedTuple):
    """A candidate's fit next to one set of fixed sites over the states searched so far."""

    mw: float  # lowest capacity over those states (inf: none below the cap)
    binding: str
    states: frozenset  # the states searched, as ``_state_keys`` names them


# ((position, MW) of each fixed site, candidate position) → what its searches found; a pair's
# search does not depend on the pairs searched with it, so a state searched once is not again
_Searched = dict[tuple[tuple[tuple[int, float], ...], int], _Known]


def _state_keys(group: int, states: States) -> list[object]:
    """A name per state that is the same in every screening of the criterion: its outage."""
    if states.outages is None:
        return [(group, row) for row in range(states.n)]
    return list(states.outages)


def _fit(
    model: FlowModel,
    criterion: _Criterion,
    fixed_mw: np.ndarray,
    eligible: np.ndarray,
    cap_settings: CapacitySettings,
    searched: _Searched | None = None,
) -> _Fit:
    """Largest size per eligible candidate with the current sites at ``fixed_mw`` (MW), over every state.

    With ``searched``, pairs of state and candidate found there for the same fixed sites are not
    searched again, and what is found is added to it.
    """
    fixed_key = tuple(zip(np.flatnonzero(fixed_mw).tolist(), fixed_mw[fixed_mw != 0].tolist(), strict=True))
    known = [searched.get((fixed_key, int(c))) if searched is not None else None for c in eligible]
    best = np.array([k.mw if k else np.inf for k in known])
    binding = [k.binding if k else "no limit reached below the maximum size" for k in known]
    done: list[set] = [set(k.states) if k else set() for k in known]
    flows = 0
    for group, (states, limits, labels) in enumerate(criterion.groups):
        fixed = dataclasses.replace(states, fixed_site_mw=fixed_mw)
        if criterion.near is not None and states.outages is not None:
            # screened: only outages near the candidate (and those a joint check found binding)
            state_of, column_of = np.nonzero(criterion.near[:, eligible])
        else:
            state_of, column_of = every_pair(limits.usable, len(eligible))
        if searched is not None:
            keys = _state_keys(group, states)
            new = [keys[s] not in done[c] for s, c in zip(state_of, column_of, strict=True)]
            state_of, column_of = state_of[new], column_of[new]
            for s, c in zip(state_of, column_of, strict=True):
                done[c].add(keys[s])
        if not len(state_of):
            continue
        result = hosting_capacity(
            model, fixed, limits, cap_settings, sites=eligible, pairs=(state_of, column_of)
        )
        flows += result.flows
        lowest, state, code, element = worst_state(result)
        for column in np.flatnonzero(lowest < best):
            best[column] = lowest[column]
            name = criterion_element_name(model, code[column], element[column])
            label = labels[state[column]]
            binding[column] = f"{CRITERIA[code[column]]} at {name}" + (
                f" with {label}" if label != "peak" else " at peak"
            )
    if searched is not None:
        for position, mw, reason, states_done in zip(eligible.tolist(), best, binding, done, strict=True):
            searched[(fixed_key, position)] = _Known(float(mw), reason, frozenset(states_done))
    best[np.isinf(best)] = cap_settings.cap_mw
    return _Fit(best, binding, flows)


@dataclass
class _Flexible:
    """The sites picked so far under a flex criterion, in order, and their power in every state."""

    sizes: np.ndarray  # MW per candidate, 0 if not picked
    picks: list[int]  # positions in pick order: the last is curtailed first
    dispatched: np.ndarray  # MW, states × candidates

    def add(self, position: int, size: float, connection: _Connection) -> None:
        """Connect the site at ``position`` (``size`` MW) last, as ``connection`` dispatches it."""
        self.dispatched[connection.rows] = connection.at_rows
        self.dispatched[:, position] = connection.power
        self.sizes[position] = size
        self.picks.append(position)


class _Connection(NamedTuple):
    """A flexible site connected last: the dispatch of every site that it changes."""

    rows: np.ndarray  # states where the earlier sites make room for its lowest power
    at_rows: np.ndarray  # every site's power there (MW, rows × candidates)
    power: np.ndarray  # its own power in every state (MW)
    unmet: np.ndarray  # positions in ``rows`` where even the earlier sites at their lowest leave too little
    flows: int


DISPLACEMENT_STEP_MW = 0.01  # how finely an earlier site's power is searched when it makes room


def _connect(
    model: FlowModel,
    criterion: _Criterion,
    picked: _Flexible,
    position: int,
    size: float,
    headroom: np.ndarray,
    cap_settings: CapacitySettings,
) -> _Connection:
    """Site ``position`` connected at ``size`` MW after the picks, last in, first curtailed.

    In each state it takes its ``headroom`` (MW, with the earlier sites at their power), at
    most its size and at least its lowest power. Where even its lowest power is above the
    headroom, the earlier sites make room, the latest first: each goes down to its own lowest
    power and, once the state fits, back up to the most it can take (to 0.01 MW).
    """
    states, limits, _ = criterion.groups[0]
    lowest = criterion.floor * size
    power = np.maximum(np.minimum(headroom, size), lowest)
    rows = np.flatnonzero((headroom < lowest - 1e-9) & limits.usable)
    at_rows = picked.dispatched[rows].copy()
    at_rows[:, position] = lowest
    unmet = np.arange(len(rows))
    flows = 0
    for site in reversed(picked.picks):
        if not len(unmet):
            break
        site_lowest = criterion.floor * picked.sizes[site]
        room = at_rows[unmet, site] - site_lowest
        at_rows[unmet, site] = site_lowest
        fits = state_margins(model, states, limits, rows[unmet], at_rows[unmet], cap_settings.q_per_mw) >= 0
        flows += len(unmet)
        made = unmet[fits]
        if len(made) and room[fits].max() > 0:
            cap = dataclasses.replace(
                cap_settings, cap_mw=float(room[fits].max()), resolution_mw=DISPLACEMENT_STEP_MW
            )
            back = dataclasses.replace(states.take(rows[made]), fixed_site_mw=at_rows[made])
            search = hosting_capacity(model, back, limits.take(rows[made]), cap, sites=np.array([site]))
            flows += search.flows
            at_rows[made, site] += np.minimum(np.nan_to_num(search.hc_mw[:, 0], nan=0.0), room[fits])
        unmet = unmet[~fits]
    return _Connection(rows, at_rows, power, unmet, flows)


def _keeps_limits(criterion: _Criterion, picked: _Flexible, connection: _Connection) -> bool:
    """Whether every earlier site stays within the curtailment limit after making room."""
    from siting.flexible import curtailment_rate

    if criterion.flex_limit is None or criterion.times is None:  # only a flex criterion comes here
        raise RuntimeError("not a flex criterion")
    if not len(connection.rows):  # no state where the earlier sites made room
        return True
    years = criterion.times.year.to_numpy()
    for site in picked.picks:
        if (connection.at_rows[:, site] == picked.dispatched[connection.rows, site]).all():
            continue
        power = picked.dispatched[:, site].copy()
        power[connection.rows] = connection.at_rows[:, site]
        if curtailment_rate(power, years, float(picked.sizes[site])) > criterion.flex_limit * (1 + 1e-9):
            return False
    return True


def _flex_fit(
    model: FlowModel,
    criterion: _Criterion,
    picked: _Flexible,
    eligible: np.ndarray,
    cap_settings: CapacitySettings,
) -> _Fit:
    """Largest constant size per candidate under the curtailment obligation, over the year.

    The sites picked before are at their dispatched power in every state. A size fits if its
    curtailment stays within the limit (Norris et al. on the headroom it gets) and, in every
    state where its lowest power (``criterion.floor`` of its size) is above that headroom, the
    earlier sites can make room for it within their own limits (:func:`_connect`). If they
    cannot, the size is the largest whose lowest power fits the headroom everywhere.
    """
    from siting.flexible import flexible_capacity

    if criterion.flex_limit is None or criterion.times is None:  # only a flex criterion comes here
        raise RuntimeError("not a flex criterion")

    headroom, flows = _headroom_with_others(model, criterion, picked.dispatched, eligible, cap_settings)
    usable = np.flatnonzero(criterion.groups[0][1].usable)
    fit: list[float] = []
    binding: list[str] = []
    for column, position in enumerate(eligible.tolist()):
        values = headroom[:, column]
        series = pd.Series(values, index=criterion.times)
        load = float(flexible_capacity(series, (criterion.flex_limit,))["load_mw"].iloc[0])
        load = min(load, cap_settings.cap_mw)
        tightest_at = usable[np.argmin(values[usable])] if len(usable) else 0
        tightest, when = float(values[tightest_at]), criterion.times[tightest_at]
        short = int((values < min(load + cap_settings.resolution_mw, cap_settings.cap_mw)).sum())
        reason = (
            f"curtailment beyond {criterion.flex_limit:.2%} of its energy (headroom short in {short} "
            f"of {len(series)} steps, tightest {tightest:g} MW at {when:%Y-%m-%d %H:%M})"
        )
        if load * criterion.floor > tightest:
            connection = _connect(model, criterion, picked, position, load, values, cap_settings)
            flows += connection.flows
            if len(connection.unmet) or not _keeps_limits(criterion, picked, connection):
                load = tightest / criterion.floor
                reason = (
                    f"its lowest power ({criterion.floor:.1%} of its size) against the headroom, "
                    f"{tightest:g} MW at {when:%Y-%m-%d %H:%M}: the earlier sites cannot make more room "
                    "within their own curtailment limits"
                )
        fit.append(load)
        binding.append(reason)
    return _Fit(np.array(fit), binding, flows, headroom)


def _headroom_with_others(
    model: FlowModel,
    criterion: _Criterion,
    fixed_mw: np.ndarray,
    sites: np.ndarray,
    cap_settings: CapacitySettings,
) -> tuple[np.ndarray, int]:
    """Headroom (MW, states × ``sites``) of each site with the others at ``fixed_mw``."""
    states, limits, _ = criterion.groups[0]
    fixed = dataclasses.replace(states, fixed_site_mw=fixed_mw)
    result = hosting_capacity(model, fixed, limits, cap_settings, sites=sites)
    return np.nan_to_num(result.hc_mw, nan=0.0), result.flows


def _curtailment_note(
    criterion: _Criterion, picked: _Flexible, position: int, connection: _Connection
) -> str:
    """How much a flexibly connected site is curtailed, and where it made the earlier ones yield."""
    from siting.flexible import curtailment_rate

    if criterion.times is None:  # only a flex criterion comes here
        raise RuntimeError("not a flex criterion")
    size = float(picked.sizes[position])
    power = picked.dispatched[:, position]
    rate = curtailment_rate(power, criterion.times.year.to_numpy(), size)
    steps = int((power < size - 1e-9).sum())
    before = len(picked.picks) - 1
    note = f"curtailed {rate:.2%} of its energy, in {steps} of {len(power)} steps"
    if before:
        note += f" with the {before} site(s) picked before at their dispatched power"
    if len(connection.rows):
        room = len(connection.rows)
        where = f"{room} step{'s' if room > 1 else ''}"
        note += f"; at its lowest power in {where}, where the earlier sites make room"
    return note


def _pick_reason(
    row: pd.Series,
    rank: int,
    size: float,
    binding: str,
    settings: SelectionSettings,
    sizes: np.ndarray,
    regions: np.ndarray,
    curtailed: str | None = None,
) -> str:
    others = int((sizes > 0).sum()) - 1
    parts = [
        f"pick {rank}: {size:g} MW"
        + (" (the maximum size)" if size >= settings.max_mw else f", limited by {binding}"),
        f"{settings.criterion} capacity alone {row['capacity_mw']:.1f} MW"
        + (f", jointly feasible with the {others} site(s) picked before" if others else ""),
    ]
    if curtailed is not None:
        parts.append(curtailed)
    if settings.quota is not None:
        in_region = int(((sizes > 0) & (regions == row["region"])).sum())
        parts.append(f"region {row['region']} ({in_region}/{settings.quota})")
    if "fiber_km" in row and pd.notna(row.get("fiber_km")):
        parts.append(f"{row['fiber_km']:.1f} km from fiber")
    if pd.notna(row.get("demand_km")):  # absent on a grid without coordinates
        parts.append(f"demand-weighted distance {row['demand_km']:.0f} km; score {row['score']:.2f}")
    return "; ".join(parts)


def _not_picked(position: int, sizes: np.ndarray, regions: np.ndarray, settings: SelectionSettings) -> str:
    if (sizes > 0).sum() >= settings.sites:
        return f"not picked: the {settings.sites} sites were chosen before it"
    if settings.quota is not None and ((sizes > 0) & (regions == regions[position])).sum() >= settings.quota:
        return f"not picked: region {regions[position]} already has its {settings.quota} sites"
    return "not picked"


def _naive(
    table: pd.DataFrame, pool: pd.DataFrame, settings: SelectionSettings, column: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Top K candidates by individual capacity, each at that capacity clipped to the size range."""
    ranked = pool.sort_values("capacity_mw", ascending=False, kind="stable").head(settings.sites)
    size = _on_grid(ranked["capacity_mw"].to_numpy(float), settings)
    sizes = np.zeros(len(pool))
    sizes[pool.index.get_indexer(ranked.index)] = size
    naive = ranked[["substation", "name", "bus", "capacity_mw"]].assign(size_mw=size)
    return sizes, naive.reset_index(drop=True)


class JointCheck(NamedTuple):
    """A set of sites at their sizes through every state of a criterion."""

    worst: tuple[float, float, float]  # lowest voltage (pu), highest voltage (pu), highest loading (%)
    violations: pd.DataFrame  # state, criterion, element, value, limit
    flows: int
    dispatch: np.ndarray | None = None  # flex: MW of each site in every state (states × candidates)


def _joint_check(
    model: FlowModel,
    criterion: _Criterion,
    sizes: np.ndarray,
    cap_settings: CapacitySettings,
    order: np.ndarray | None = None,
    dispatch: np.ndarray | None = None,
) -> JointCheck:
    """All sites at their sizes through every state: worst values and every violation.

    Under a flex criterion the sites are curtailed in ``order`` (default: largest first), the
    last first, and checked at their dispatched power: ``dispatch`` (MW, states × candidates)
    where the greedy picks already connected them so, else connected here.
    """
    if criterion.flex_limit is not None:
        if order is None:
            order = np.lexsort((np.arange(len(sizes)), -sizes))
        return _flex_joint_check(model, criterion, sizes, cap_settings, order, dispatch)
    worst, frames, flows = (np.inf, -np.inf, -np.inf), [], 0
    for states, limits, labels in criterion.groups:
        fixed = dataclasses.replace(states, fixed_site_mw=sizes)
        group_worst, found, count = _checked_states(model, fixed, limits, labels, cap_settings)
        worst = (min(worst[0], group_worst[0]), max(worst[1], group_worst[1]), max(worst[2], group_worst[2]))
        frames.append(found)
        flows += count
    frames = [frame for frame in frames if len(frame)]
    violations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=VIOLATION_COLUMNS)
    return JointCheck(_finite(worst), violations, flows)


def _checked_states(
    model: FlowModel, states: States, limits: StateLimits, labels: list[str], cap_settings: CapacitySettings
) -> tuple[tuple[float, float, float], pd.DataFrame, int]:
    """Every usable state solved: lowest and highest voltage (pu), highest loading (%), violations, flows."""
    usable = np.flatnonzero(limits.usable)
    if not len(usable):  # e.g. a radial grid: every outage islands load and is skipped
        return (np.inf, -np.inf, -np.inf), pd.DataFrame(columns=VIOLATION_COLUMNS), 0
    scenarios = states.scenarios(usable, q_per_mw=cap_settings.q_per_mw)
    result = solve(model, scenarios)
    worst = (np.inf, -np.inf, -np.inf)
    solved = result.converged  # a state that did not converge is a violation below, not a value
    if solved.any():
        vm = result.vm_pu[solved]
        loading = np.concatenate([result.line_loading_percent, result.trafo_loading_percent], axis=1)
        worst = (float(np.nanmin(vm)), float(np.nanmax(vm)), float(np.nanmax(loading[solved])))
    line, trafo = limits.thermal(usable, scenarios.added_mw)
    found = violations_of(
        model, result, limits.vmin[usable], limits.vmax[usable], line, trafo, tolerance=1e-9
    )
    found["state"] = [labels[usable[row]] for row in found["state"]]
    return worst, found, len(usable)


def _finite(worst: tuple[float, float, float]) -> tuple[float, float, float]:
    """No state solved: no worst value to report (the violations say why)."""
    low, high, loading = (float(v) if np.isfinite(v) else np.nan for v in worst)
    return low, high, loading


def _flex_joint_check(
    model: FlowModel,
    criterion: _Criterion,
    sizes: np.ndarray,
    cap_settings: CapacitySettings,
    order: np.ndarray,
    dispatch: np.ndarray | None = None,
) -> JointCheck:
    """The curtailment obligation through the year, the sites connected in ``order``, last first.

    Each site is connected as the selection connects it (:func:`_connect`), unless ``dispatch``
    (MW, states × candidates) is that connection already made; every site's curtailment must
    stay within the limit and its lowest power must fit in every state (where it does not, the
    tightest such state is listed). Then every state is solved with all sites at their
    dispatched power.
    """
    from siting.flexible import curtailment_rate

    if criterion.flex_limit is None or criterion.times is None:  # only a flex criterion comes here
        raise RuntimeError("not a flex criterion")

    states, limits, labels = criterion.groups[0]
    rows: list[dict] = []
    flows = 0
    positions = [p for p in order.tolist() if sizes[p] > 0]
    if dispatch is None:
        dispatch, rows, flows = _connected_in_order(model, criterion, sizes, cap_settings, positions)
    years = criterion.times.year.to_numpy()
    for position in positions:
        rate = curtailment_rate(dispatch[:, position], years, float(sizes[position]))
        if rate > criterion.flex_limit * (1 + 1e-9):
            rows.append(
                {
                    "state": "year",
                    "criterion": "curtailment",
                    "element": f"site at bus {model.site_buses[position]}",
                    "value": rate,
                    "limit": criterion.flex_limit,
                }
            )
    fixed = dataclasses.replace(states, fixed_site_mw=dispatch)
    worst, found, count = _checked_states(model, fixed, limits, labels, cap_settings)
    frames = [frame for frame in (pd.DataFrame(rows, columns=VIOLATION_COLUMNS), found) if len(frame)]
    violations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=VIOLATION_COLUMNS)
    return JointCheck(_finite(worst), violations, flows + count, dispatch)


def _connected_in_order(
    model: FlowModel,
    criterion: _Criterion,
    sizes: np.ndarray,
    cap_settings: CapacitySettings,
    positions: list[int],
) -> tuple[np.ndarray, list[dict], int]:
    """Each site at ``positions``, in that order, connected as the greedy connects it.

    Returns the dispatch (MW, states × candidates), a violation row per site whose lowest power
    does not fit somewhere, and the flows.
    """
    states, _, labels = criterion.groups[0]
    picked = _Flexible(np.zeros(len(sizes)), [], np.zeros((states.n, len(sizes))))
    rows: list[dict] = []
    flows = 0
    for position in positions:
        size = float(sizes[position])
        headroom, count = _headroom_with_others(
            model, criterion, picked.dispatched, np.array([position]), cap_settings
        )
        connection = _connect(model, criterion, picked, position, size, headroom[:, 0], cap_settings)
        flows += count + connection.flows
        if len(connection.unmet):
            tightest = connection.rows[connection.unmet][
                np.argmin(headroom[connection.rows[connection.unmet], 0])
            ]
            rows.append(
                {
                    "state": labels[tightest],
                    "criterion": "curtailment obligation",
                    "element": f"site at bus {model.site_buses[position]}",
                    "value": float(headroom[tightest, 0]),
                    "limit": criterion.floor * size,
                }
            )
        picked.add(position, size, connection)
    return picked.dispatched, rows, flows


def _joint_row(name: str, sizes: np.ndarray, check: JointCheck) -> dict:
    (low, high, loading), violations = check.worst, check.violations
    return {
        "set": name,
        "sites": int((sizes > 0).sum()),
        "total_mw": float(sizes.sum()),
        "min_vm_pu": round(float(low), 4),
        "max_vm_pu": round(float(high), 4),
        "max_loading_percent": round(float(loading), 1),
        "violations": len(violations),
        "violated_elements": "; ".join(sorted(set(violations["element"]) - {""}))[:500],
        "passes": len(violations) == 0,
    }


def _none_left(table: pd.DataFrame) -> str:
    small = table["reason"].str.contains("below the")
    ruled_out = table.loc[~small, "reason"]
    example = f" (most: {ruled_out.mode().iloc[0]})" if len(ruled_out) else ""
    return (
        f"no candidate substation is left: {int(small.sum())} have too little capacity for the minimum "
        f"size and {len(ruled_out)} are ruled out by the GIS layers{example}; lower the minimum size "
        "or relax the layers"
    )


def _fewer_note(table: pd.DataFrame, settings: SelectionSettings, picked: int) -> str:
    dropped = (table["status"] == "dropped").sum()
    return (
        f"picked {picked} of the {settings.sites} sites asked for: {dropped} substations were dropped "
        "(capacity or geography) and the rest could not take a site of at least "
        f"{settings.min_mw:g} MW next to the ones chosen; see the candidates' reasons"
    )


def write_selection(selection: Selection, folder: Path) -> list[str]:
    """The selection's tables and layers in ``folder``; returns the file names.

    The GIS layers (``sites.gpkg``) need places: a grid without bus coordinates gets the tables only.
    """
    selection.sites.drop(columns="geometry").to_csv(folder / "sites.csv", index=False)
    layers = selection.candidates.geometry.notna().any()
    if layers:
        selection.sites.to_file(folder / "sites.gpkg", layer="sites", driver="GPKG")
        selection.candidates.to_file(folder / "sites.gpkg", layer="candidates", driver="GPKG")
        if selection.regions is not None:
            selection.regions.to_file(folder / "sites.gpkg", layer="regions", driver="GPKG")
    selection.joint.to_csv(folder / "joint_check.csv", index=False)
    selection.violations.to_csv(folder / "violations.csv", index=False)
    selection.naive.to_csv(folder / "naive.csv", index=False)
    if selection.dispatch is not None:
        selection.dispatch.rename_axis("time").to_csv(folder / "flex_dispatch.csv")
    return [
        "sites.csv",
        *(["sites.gpkg"] if layers else []),
        "joint_check.csv",
        "violations.csv",
        "naive.csv",
        *(["flex_dispatch.csv"] if selection.dispatch is not None else []),
    ]
