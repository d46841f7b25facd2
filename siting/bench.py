"""Benchmark of the flow engine against pandapower's time series, measured in the same run.

Not a test: it prints steps/s and speed-up ratios and writes them to a CSV. pandapower runs
a subset of the steps (its loop is slow) and its time is extrapolated to all steps, which
the ``pandapower_extrapolated`` column says.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd

from siting.engine.flow import prepare, profile_scenarios, solve
from siting.sources.grid import Grid, load_grid


@dataclass(frozen=True)
class BenchCase:
    """One grid: how many steps the engine runs and how many pandapower runs (per mode)."""

    source: str
    steps: int | None  # None: the whole profile year
    engine_steps: int | None  # steps the engine actually runs (None: all); the rest is extrapolated
    pandapower_steps: int
    recycle_steps: int


FULL = (
    BenchCase("simbench:1-HV-mixed--0-sw", None, None, 200, 1000),
    BenchCase("simbench:1-HVMV-mixed-all-0-sw", None, None, 20, 100),
    BenchCase("texas2000", 1000, None, 50, 200),
)
QUICK = (
    BenchCase("simbench:1-HV-mixed--0-sw", None, None, 30, 150),
    BenchCase("simbench:1-HVMV-mixed-all-0-sw", None, 2880, 5, 20),
    BenchCase("texas2000", 1000, 200, 10, 30),
)


def run_engine_benchmark(quick: bool = False, repeats: int = 1) -> pd.DataFrame:
    """Time every case; ``repeats`` > 1 reports the median of that many runs of each timing."""
    rows = []
    for case in QUICK if quick else FULL:
        grid = load_grid(case.source)
        rows.append(_bench_case(grid, case, repeats))
    return pd.DataFrame(rows)


def _bench_case(grid: Grid, case: BenchCase, repeats: int) -> dict:
    profiles = grid.require_profiles("to benchmark on")
    steps = len(profiles) if case.steps is None else min(case.steps, len(profiles))
    engine_steps = steps if case.engine_steps is None else min(case.engine_steps, steps)

    def engine_run() -> float:
        start = time.perf_counter()
        model = prepare(copy.deepcopy(grid.net), [], case.source)
        result = solve(model, profile_scenarios(model.net, profiles.iloc[:engine_steps]))
        elapsed = time.perf_counter() - start
        if not result.converged.all():
            logging.getLogger(__name__).warning(
                "%s: %d steps did not converge", case.source, (~result.converged).sum()
            )
        return elapsed

    engine_s = float(np.median([engine_run() for _ in range(repeats)])) * steps / engine_steps
    for recycle in (False, True):  # warm-up: numba compiles pandapower's solver on first use
        _pandapower_run(grid, 2, recycle)
    plain = float(np.median([_pandapower_run(grid, case.pandapower_steps, False) for _ in range(repeats)]))
    recycled = float(np.median([_pandapower_run(grid, case.recycle_steps, True) for _ in range(repeats)]))
    pandapower_s = plain * steps / case.pandapower_steps
    recycle_s = recycled * steps / case.recycle_steps
    return {
        "grid": case.source,
        "buses": len(grid.net.bus),
        "steps": steps,
        "engine_s": round(engine_s, 3),
        "engine_extrapolated": engine_steps < steps,
        "pandapower_s": round(pandapower_s, 1),
        "pandapower_recycle_s": round(recycle_s, 1),
        "pandapower_extrapolated": True,
        "pandapower_steps_timed": case.pandapower_steps,
        "recycle_steps_timed": case.recycle_steps,
        "engine_steps_per_s": round(steps / engine_s, 1),
        "speedup_vs_pandapower": round(pandapower_s / engine_s, 1),
        "speedup_vs_recycle": round(recycle_s / engine_s, 1),
    }


def _pandapower_run(grid: Grid, steps: int, recycle: bool) -> float:
    """Seconds for pandapower's run_timeseries over the first ``steps`` profile steps."""
    from pandapower.control import ConstControl
    from pandapower.timeseries import DFData, OutputWriter, run_timeseries

    net = copy.deepcopy(grid.net)
    frame = grid.require_profiles("to benchmark on").iloc[:steps].reset_index(drop=True)
    for element, variable in frame.columns.droplevel("index").unique():
        data = frame[(element, variable)]
        data.columns = data.columns.astype(int)
        ConstControl(
            net,
            element=element,
            variable=variable,
            element_index=list(data.columns),
            data_source=DFData(data),
            profile_name=list(data.columns),
        )
    OutputWriter(net, output_path=None, log_variables=[("res_bus", "vm_pu"), ("res_line", "loading_percent")])
    options = {} if recycle else {"recycle": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("pandapower").setLevel(logging.ERROR)
        start = time.perf_counter()
        run_timeseries(net, time_steps=range(steps), verbose=False, **options)
        return time.perf_counter() - start


def run_outage_benchmark(
    quick: bool = False, repeats: int = 1, source: str = "texas2000", reference_sample: int = 30
) -> pd.DataFrame:
    """Time every single line and transformer outage at the grid's net-load peak, in one batch.

    The reference is pandapower's runpp per outage on a random sample, extrapolated to all of them.
    """
    from siting.capacity import net_outages
    from siting.engine.flow import BY_STATUS, Scenarios, outage_paths
    from siting.engine.reference import scenario_net
    from siting.sources.peak import operating_point

    grid = load_grid(source)
    values = operating_point(grid, "netpeak").values
    outages = net_outages(grid.net)
    if quick:
        outages = outages[:300]
    scenarios = Scenarios(
        n=len(outages),
        element_values={key: np.tile(value, (len(outages), 1)) for key, value in values.items()},
        outages=tuple(outages),
    )
    timings, converged, by_status = [], 0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        model = prepare(copy.deepcopy(grid.net), [], source)
        result = solve(model, scenarios)
        timings.append(time.perf_counter() - start)
        converged = int(result.converged.sum())
        by_status = int((outage_paths(model, tuple(outages)) == BY_STATUS).sum())
    rng = np.random.default_rng(0)
    sample = rng.choice(len(outages), min(reference_sample, len(outages)), replace=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for position in sample:
            net = scenario_net(grid.net, values, outages[position])
            with contextlib.suppress(pp.LoadflowNotConverged):  # a failed flow costs its time too
                pp.runpp(net)
    reference_s = (time.perf_counter() - start) / len(sample) * len(outages)
    engine_s = float(np.median(timings))
    return pd.DataFrame(
        [
            {
                "grid": source,
                "task": "N-1 at the net-load peak",
                "outages": len(outages),
                "converged": converged,
                "by_status": by_status,  # bridges (islanding outages): no compensator
                "engine_s": round(engine_s, 2),
                "engine_timings_s": " ".join(f"{t:.1f}" for t in timings),
                "pandapower_s": round(reference_s, 1),
                "pandapower_extrapolated": True,
                "pandapower_outages_timed": len(sample),
                "speedup": round(reference_s / engine_s, 1),
            }
        ]
    )


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` to ``path`` as CSV, making its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def run_capacity_benchmark(
    quick: bool = False, repeats: int = 1, source: str = "simbench:1-HV-mixed--0-sw"
) -> pd.DataFrame:
    """Batched capacity vs the brute-force reference (runpp + bisection) on a sample of pairs.

    Times the whole-grid N-0 + N-1 at the operating point and the full-year headroom of every
    substation; the reference runs a sample of the same (state, substation) pairs and is
    extrapolated to all of them. ``max_diff_mw`` compares the two on that sample.
    """
    from siting.capacity import CapacitySettings, net_outages, substation_capacity
    from siting.engine.reference import reference_hosting_capacity
    from siting.sources.peak import operating_point, profile_values

    grid = load_grid(source)
    n_steps = len(grid.require_profiles("to benchmark on"))
    settings_point = operating_point(grid)
    rng = np.random.default_rng(0)
    subs = grid.substations
    sample = 3 if quick else 8

    def timed(**options):
        times, study = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            study = substation_capacity(grid, CapacitySettings(**options))
            times.append(time.perf_counter() - start)
        return study, float(np.median(times))

    peak, peak_s = timed(n1=True, year=False)
    year, year_s = timed(n1=False, year=True)

    outages = net_outages(grid.net)
    skipped = set(peak.skipped_outages["outage"])
    names = {o: f"{o[0]} {grid.net[o[0]].at[o[1], 'name']}" for o in outages}
    studied = [o for o in outages if names[o] not in skipped]

    settings = CapacitySettings()
    rows = []
    for task, pairs, fast_s, cases in (
        (
            "N-0 + N-1 at " + peak.operating_point,
            len(subs) * (1 + len(studied)),
            peak_s,
            [
                (s, settings_point.values, None, peak.table.at[s, "hc_n0_mw"])
                for s in rng.choice(len(subs), sample, False)
            ]
            + [
                (s, settings_point.values, studied[o], None)
                for s, o in zip(rng.choice(len(subs), sample), rng.choice(len(studied), sample), strict=True)
            ],
        ),
        (
            "year headroom",
            len(subs) * n_steps,
            year_s,
            [
                (s, profile_values(grid, t), None, year.headroom.iat[t, s])
                for s, t in zip(rng.choice(len(subs), sample), rng.choice(n_steps, sample), strict=True)
            ],
        ),
    ):
        start = time.perf_counter()
        diffs = []
        for substation, values, outage, ours in cases:
            bus = int(subs.at[substation, "bus"])
            reference = reference_hosting_capacity(grid.net, bus, settings, values, outage)
            if ours is not None:
                diffs.append(abs(reference - ours))
        reference_s = (time.perf_counter() - start) / len(cases) * pairs
        rows.append(
            {
                "grid": source,
                "task": task,
                "pairs": pairs,
                "fast_s": round(fast_s, 2),
                "reference_s": round(reference_s, 1),
                "reference_extrapolated": True,
                "reference_pairs_timed": len(cases),
                "speedup": round(reference_s / fast_s, 1),
                "max_diff_mw": round(max(diffs), 3) if diffs else np.nan,
            }
        )
    return pd.DataFrame(rows)


FLEET_SITES = (0, 1, 2, 3, 4, 5, 7, 8, 13, 17)  # the ten 20 MW sites siting select picks on hv-mixed
FLEET_GROWTH = 4.6  # loads × 4.6: the HV grid's busiest line reaches its rating at the year's peak


def run_fleet_benchmark(quick: bool = False, repeats: int = 1) -> pd.DataFrame:
    """Time a year of both dispatch policies for ten 20 MW sites on the HV grid.

    The fleet serves the modelled workload; the reference is pandapower's run_timeseries (recycle)
    per power flow, extrapolated to the flows the simulation ran.
    """
    from siting.fleet import FleetSettings, fleet_sites, modelled_demand, simulate
    from siting.sources.profiles import scale_loads

    grid = scale_loads(load_grid("simbench:1-HV-mixed--0-sw"), FLEET_GROWTH)
    settings = FleetSettings()
    timings, flows = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        sites = fleet_sites(pd.DataFrame({"substation": FLEET_SITES, "size_mw": 20.0}), grid)
        result = simulate(grid, sites, modelled_demand(grid, sites, settings), settings)
        timings.append(time.perf_counter() - start)
        flows = result.flows
    sample = 30 if quick else 200
    reference = [_pandapower_run(grid, sample, recycle=True) for _ in range(repeats)]
    per_flow = float(np.median(reference)) / sample
    fleet_s = float(np.median(timings))
    return pd.DataFrame(
        [
            {
                "grid": grid.name,
                "sites": len(FLEET_SITES),
                "steps": len(grid.require_profiles("to benchmark on")),
                "policies": ",".join(settings.policies),
                "power_flows": flows,
                "fleet_s": round(fleet_s, 2),
                "pandapower_recycle_s": round(per_flow * flows, 1),
                "speedup_vs_recycle": round(per_flow * flows / fleet_s, 1),
            }
        ]
    )
