"""An interconnection screening sheet per site: voltage step, fleet trip, fault strength, load loss.

Large electronic loads come with study items beyond thermal and voltage headroom. For each
site this stage reports

- the **voltage step** when the site energises or trips, at its bus and the worst bus nearby,
  with tap changers locked (the instant after; the flow the engine runs) and, where the model
  has pandapower controllers, after they act;
- what happens when the **whole fleet trips at once**: the voltage rise at every bus against
  the overvoltage limit and the MW lost against a system limit;
- the **short-circuit strength** at the site's bus (IEC 60909 three-phase Sk″, maximum and
  minimum case, by pandapower's ``calc_sc``) and the short-circuit ratio Sk″ / site MW;
- **fault-induced load loss** (the July 2024 Virginia mechanism): for a bolted three-phase fault
  at every bus within a number of branch hops of the sites, the retained voltage at every site
  during the fault, the sites depressed below a ride-through threshold and their MW together.

Models without short-circuit data get documented defaults (`ScreeningSettings`), and every
number that depends on one is marked "assumed".
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.shortcircuit as sc
import pandas as pd
from pandapower.auxiliary import pandapowerNet
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import splu

from siting.engine.flow import FlowModel, Scenarios, prepare, solve
from siting.engine.topology import bus_hops
from siting.errors import GridError, UsageError, check_number
from siting.limits import StudyLimits, element_limits
from siting.sources.grid import Grid

log = logging.getLogger(__name__)

# what pandapower's calc_sc raises for a bus or model it cannot compute (missing data is a
# UserWarning raised as an exception)
SC_FAILURES = (
    ValueError,
    KeyError,
    IndexError,
    np.linalg.LinAlgError,
    RuntimeError,
    ZeroDivisionError,
    UserWarning,
)


@dataclass(frozen=True)
class ScreeningSettings:
    """Thresholds of the screening and the short-circuit defaults for models that lack data.

    Defaults and where they come from:

    - ``step_limit_pu`` 0.03: the planning level for a rapid voltage change from infrequent
      switching (at most about once an hour) at HV/EHV in IEC TR 61000-3-7 (3 %), the figure
      utilities' large-load and flicker guides apply to a load switching on or off.
    - ``deviation_limit_pu`` 0.08: WECC criterion TPL-001-WECC-CRT, post-contingency voltage
      deviation at load-serving BES buses after a single (P1) contingency.
    - ``system_loss_limit_mw`` 2600: the largest load loss ERCOT's studies found the system can
      lose at once without breaching its post-contingency frequency limit (ERCOT large-load
      working group, 2024).
    - ``min_scr`` 3.0: below a short-circuit ratio of 3 a point of connection is "weak" for
      power-electronic equipment (NERC Reliability Guideline on integrating inverter-based
      resources into weak grids; IEEE Std 2800-2022 uses the same threshold).
    - ``ride_through_pu`` 0.70: the ITIC (CBEMA) curve's voltage-tolerance envelope for IT
      equipment, 70 % of nominal from 20 ms to 0.5 s — the span of a normally cleared
      transmission fault. In the 2024 Virginia event (NERC incident review, Jan. 2025) data
      centres transferred to backup on faults that deep.

    Short-circuit defaults (IEC 60909 data a planning model often lacks; each one used makes
    every short-circuit and retained-voltage figure "assumed"):

    - external grid without ``s_sc_max_mva``: ``ext_grid_sc_mva`` at its bus (a strong EHV
      infeed), min case ``sc_min_share`` of it, R/X ``ext_grid_rx``; an external grid that is a
      converted generator (it has ``max_p_mw``) is treated as a generator instead;
    - generator without ``xdss_pu``: ``gen_xdss_pu`` on its ``sn_mva`` (or its MW over
      ``gen_cos_phi``), R = 0.07 X″ (IEC 60909-0 for generators below 100 MVA);
    - static generator (inverter) without ``k``: ``sgen_k`` × rated current (IEC 60909-0:2016
      full-converter units, 1.1–1.5);
    - line without ``endtemp_degree`` (the minimum case raises line resistance to the conductor
      temperature at the end of the fault): ``line_endtemp_degree``, 80 °C, the usual
      continuous-rating temperature of overhead conductors.
    """

    step_limit_pu: float = 0.03
    step_hops: int = 2  # "nearby": buses within this many branch hops of the site
    pf: float = 0.95  # site power factor, lagging
    limits: StudyLimits = field(default_factory=StudyLimits)
    system_loss_limit_mw: float = 2600.0
    min_scr: float = 3.0
    fault_hops: int = 3
    ride_through_pu: float = 0.70
    deviation_limit_pu: float = 0.08
    ext_grid_sc_mva: float = 10_000.0
    sc_min_share: float = 0.5
    ext_grid_rx: float = 0.1
    gen_xdss_pu: float = 0.2
    gen_cos_phi: float = 0.85
    sgen_k: float = 1.2
    line_endtemp_degree: float = 80.0

    def __post_init__(self) -> None:
        for name in ("step_limit_pu", "ride_through_pu", "deviation_limit_pu"):
            check_number(name, getattr(self, name), above=0, below=2)
        for name in (
            "system_loss_limit_mw",
            "min_scr",
            "ext_grid_sc_mva",
            "gen_xdss_pu",
            "line_endtemp_degree",
        ):
            check_number(name, getattr(self, name), above=0)
        for name in ("step_hops", "fault_hops"):
            check_number(name, getattr(self, name), at_least=0, whole=True)
        for name in ("pf", "sc_min_share", "gen_cos_phi"):
            check_number(name, getattr(self, name), above=0, at_most=1)
        for name in ("ext_grid_rx", "sgen_k"):
            check_number(name, getattr(self, name), at_least=0)

    def record(self) -> dict[str, object]:
        """The settings as plain data, for manifests."""
        return asdict(self)


@dataclass(frozen=True)
class Screening:
    """The screening tables.

    ``sites``: one row per site, each figure with its limit and pass/fail.
    ``faults``: one row per fault bus, the retained voltage (pu) at every site during a bolted
    three-phase fault there, and the sites below the ride-through threshold with their MW.
    ``buses``: per bus, the fleet-trip voltage rise (pu) and the overvoltage limit.
    ``summary``: headline numbers (worst fault, its MW and sites, fleet trip).
    ``assumed``: which short-circuit defaults were used and for how many elements.
    """

    sites: pd.DataFrame
    faults: pd.DataFrame
    buses: pd.DataFrame
    summary: dict[str, object]
    assumed: dict[str, int]


def screening_sites(sites: pd.DataFrame, grid: Grid, source: str = "sites") -> pd.DataFrame:
    """Check a sites table (``substation``, ``bus``, ``size_mw``; ``name`` optional) against ``grid``.

    A site whose bus is not in the grid, or whose substation is not the one at that bus, is
    refused: the table was made for another grid.
    """
    missing = [c for c in ("bus", "size_mw") if c not in sites]
    if missing:
        raise UsageError(f"{source}: missing column(s) {', '.join(missing)}")
    if not len(sites):
        raise UsageError(f"{source}: lists no sites")
    table = sites.reset_index(drop=True).copy()
    bus = pd.to_numeric(table["bus"], errors="coerce")
    size = pd.to_numeric(table["size_mw"], errors="coerce")
    if bus.isna().any() or (bus != bus.round()).any():
        raise UsageError(f"{source}: bus must be a bus index on every row")
    if size.isna().any() or (size <= 0).any():
        raise UsageError(f"{source}: size_mw must be a positive number on every row")
    net = grid.net
    unknown = sorted(set(bus.astype(int)) - set(net.bus.index))
    if unknown:
        raise UsageError(
            f"{source}: bus(es) {unknown} are not buses of {grid.name}; was it made for another grid?"
        )
    off = [b for b in bus.astype(int) if not bool(net.bus.at[b, "in_service"])]
    if off:
        raise UsageError(f"{source}: bus(es) {off} are out of service in {grid.name}")
    if bus.duplicated().any():
        raise UsageError(
            f"{source}: bus {int(bus[bus.duplicated()].iloc[0])} carries two sites; list it once"
        )
    if "substation" in table:
        known = grid.substations.set_index("id")
        ids = pd.to_numeric(table["substation"], errors="coerce")
        names = table["name"] if "name" in table else pd.Series([None] * len(table))
        for sub, b, name in zip(ids, bus.astype(int), names, strict=True):
            if pd.isna(sub) or int(sub) not in known.index or int(known.at[int(sub), "bus"]) != b:
                raise UsageError(
                    f"{source}: substation {sub} is not at bus {b} in {grid.name}; "
                    "the selection was made for another grid"
                )
            if isinstance(name, str) and name != str(known.at[int(sub), "name"]):
                raise UsageError(
                    f"{source}: substation {int(sub)} is '{known.at[int(sub), 'name']}' in {grid.name}, "
                    f"not '{name}'; the selection was made for another grid"
                )
    else:
        table["substation"] = -1
    if "name" not in table:
        table["name"] = net.bus.loc[bus.astype(int), "name"].astype(str).to_numpy()
    table["bus"] = bus.astype(int).to_numpy()
    table["size_mw"] = size.to_numpy(float)
    return table


def screen_sites(
    grid: Grid,
    sites: pd.DataFrame,
    *,
    settings: ScreeningSettings | None = None,
    peak_mw: np.ndarray | None = None,
) -> Screening:
    """Screen ``sites`` (a checked table, see `screening_sites`) on ``grid``'s model case.

    ``peak_mw`` (per site, MW): each site's peak power in the simulated year, for the fleet
    trip; without it every site trips at its full ``size_mw``.
    """
    settings = settings or ScreeningSettings()
    sites = screening_sites(sites, grid)
    net = grid.net
    buses = sites["bus"].to_numpy()
    size = sites["size_mw"].to_numpy(float)
    peak = size if peak_mw is None else np.asarray(peak_mw, dtype=float)
    if peak.shape != size.shape or (peak < 0).any() or np.isnan(peak).any():
        raise UsageError("peak_mw: give one non-negative MW value per site")
    q_per_mw = float(np.tan(np.arccos(settings.pf)))
    model = prepare(copy.deepcopy(net), buses, grid.source)
    islanded = sorted(set(buses) & set(model.islanded_buses))
    if islanded:
        raise UsageError(f"sites: bus(es) {islanded} are not connected to any source in {grid.name}")
    table = sites[["substation", "name", "bus", "size_mw"]].copy()
    table["peak_mw"] = peak
    steps = _voltage_steps(model, size, q_per_mw, settings)
    table = pd.concat([table, steps], axis=1)
    after = after_controllers(net, buses, size, q_per_mw)
    table = pd.concat([table, after], axis=1)
    bus_table, fleet = _fleet_trip(model, peak, q_per_mw, settings)
    sc_net, assumed = short_circuit_net(net, settings)
    strength = short_circuit_strength(sc_net, buses)
    table = pd.concat([table, strength.reset_index(drop=True)], axis=1)
    table["scr_min"] = table["sk_min_mva"] / size
    table["scr_max"] = table["sk_max_mva"] / size
    table["scr_limit"] = settings.min_scr
    table["scr_pass"] = _passes(table["scr_min"] >= settings.min_scr, table["scr_min"])
    table["sc_assumed"] = bool(assumed)
    faults = _fault_exposure(sc_net, sites, settings)
    table = pd.concat([table, _site_exposure(faults, sites, settings)], axis=1)
    summary = {**fleet, **_worst_fault(faults, settings)}
    summary["sc_assumed"] = ", ".join(f"{k} ({v})" for k, v in assumed.items()) or "none"
    return Screening(sites=table, faults=faults, buses=bus_table, summary=summary, assumed=assumed)


def _passes(ok: pd.Series, value: pd.Series) -> pd.Series:
    """'pass' / 'fail', or 'n/a' where the figure could not be computed."""
    return pd.Series(np.where(value.isna(), "n/a", np.where(ok, "pass", "fail")), index=ok.index)


# --- voltage steps ----------------------------------------------------------------------


def _voltage_steps(
    model: FlowModel, size: np.ndarray, q_per_mw: float, settings: ScreeningSettings
) -> pd.DataFrame:
    """Energise / trip each site with the others connected, taps locked: one batch of n + 1 flows.

    Scenario 0 has every site at its size; scenario i + 1 has site i off. With taps and
    regulators locked the trip step is exactly the energising step reversed.
    """
    n = len(size)
    p = np.tile(size, (n + 1, 1))
    p[np.arange(1, n + 1), np.arange(n)] = 0.0
    result = solve(model, Scenarios(n=n + 1, site_p_mw=p, site_q_mvar=p * q_per_mw))
    _require_converged(result.converged, "the voltage-step flows")
    net = model.net
    position = net.bus.index.get_indexer(model.site_buses)
    hops = bus_hops(net, model.site_buses, settings.step_hops)
    rows = []
    for i in range(n):
        delta = result.vm_pu[0] - result.vm_pu[i + 1]  # energising: on minus off (a drop is negative)
        nearby = np.flatnonzero(np.isfinite(hops[i]) & np.isfinite(delta))
        worst = nearby[np.argmax(np.abs(delta[nearby]))]
        rows.append(
            {
                "v_before_pu": result.vm_pu[i + 1, position[i]],
                "v_after_pu": result.vm_pu[0, position[i]],
                "step_energise_pu": delta[position[i]],
                "step_trip_pu": -delta[position[i]],
                "step_worst_bus": int(net.bus.index[worst]),
                "step_worst_bus_name": str(net.bus.at[net.bus.index[worst], "name"]),
                "step_worst_pu": delta[worst],
            }
        )
    frame = pd.DataFrame(rows)
    frame["step_limit_pu"] = settings.step_limit_pu
    worst = frame[["step_energise_pu", "step_worst_pu"]].abs().max(axis=1)
    frame["step_pass"] = _passes(worst <= settings.step_limit_pu, worst)
    return frame


def after_controllers(
    net: pandapowerNet, buses: np.ndarray, size: np.ndarray, q_per_mw: float
) -> pd.DataFrame:
    """Voltage steps at each site's bus once the model's pandapower controllers have acted.

    Energising: settled with the site on minus settled with it off. Tripping: from the settled
    state with the site on, the site off with taps where the controllers left them (the
    instant after), and then settled again. A model without controllers gets "n/a" (its
    taps are fixed, so the locked figures are also the final ones). A few ``runpp`` calls per
    site, not a hot path: only models with controllers run them.
    """
    n = len(buses)
    if "controller" not in net or not len(net.controller):
        return pd.DataFrame(
            {
                "step_energise_settled_pu": np.full(n, np.nan),
                "step_trip_instant_pu": np.full(n, np.nan),
                "step_trip_settled_pu": np.full(n, np.nan),
                "controllers": ["none in the model: taps fixed"] * n,
            }
        )
    rows = []
    for i in range(n):
        on, off = _with_sites(net, buses, size, q_per_mw), _with_sites(net, buses, size, q_per_mw, without=i)
        for case in (on, off):
            _runpp(case, run_control=True)
        tripped = copy.deepcopy(on)
        tripped.load.at[tripped.load.index[-(n - i)], "in_service"] = False
        _runpp(tripped, run_control=False)
        v_on, v_off = on.res_bus.at[buses[i], "vm_pu"], off.res_bus.at[buses[i], "vm_pu"]
        rows.append(
            {
                "step_energise_settled_pu": v_on - v_off,
                "step_trip_instant_pu": tripped.res_bus.at[buses[i], "vm_pu"] - v_on,
                "step_trip_settled_pu": v_off - v_on,
                "controllers": f"{len(net.controller)} controller(s) acted",
            }
        )
    return pd.DataFrame(rows)


def _with_sites(
    net: pandapowerNet, buses: np.ndarray, size: np.ndarray, q_per_mw: float, without: int | None = None
) -> pandapowerNet:
    """A copy of ``net`` with one load per site appended (the last rows), ``without`` off."""
    out = copy.deepcopy(net)
    for i, (bus, mw) in enumerate(zip(buses, size, strict=True)):
        pp.create_load(out, int(bus), p_mw=float(mw), q_mvar=float(mw) * q_per_mw, in_service=i != without)
    return out


def _runpp(net: pandapowerNet, run_control: bool) -> None:
    try:
        pp.runpp(net, run_control=run_control, init="dc" if not run_control else "auto")
    except (pp.LoadflowNotConverged, pp.ControllerNotConverged) as err:
        raise GridError(f"the power flow with controllers does not converge ({err})") from err


def _require_converged(converged: np.ndarray, what: str) -> None:
    if not converged.all():
        raise GridError(f"{what} do not converge with every site connected; check the sites' sizes")


# --- fleet trip -------------------------------------------------------------------------


def _fleet_trip(
    model: FlowModel, peak: np.ndarray, q_per_mw: float, settings: ScreeningSettings
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Every site at its peak, then all gone at once (taps locked): the voltage rise at every bus."""
    p = np.vstack([peak, np.zeros_like(peak)])
    result = solve(model, Scenarios(n=2, site_p_mw=p, site_q_mvar=p * q_per_mw))
    _require_converged(result.converged, "the fleet-trip flows")
    net = model.net
    vmax = element_limits(net, settings.limits, contingency=False).vmax_pu
    rise = result.vm_pu[1] - result.vm_pu[0]
    buses = pd.DataFrame(
        {
            "bus": net.bus.index,
            "name": net.bus["name"].astype(str).to_numpy(),
            "vn_kv": net.bus["vn_kv"].to_numpy(float),
            "v_fleet_on_pu": result.vm_pu[0],
            "v_after_trip_pu": result.vm_pu[1],
            "rise_pu": rise,
            "vmax_pu": vmax,
        }
    )
    buses["over"] = buses["v_after_trip_pu"] > vmax + 1e-9
    # a bus already above its limit with the fleet on is not the trip's doing: count it apart
    buses["over_before"] = buses["v_fleet_on_pu"] > vmax + 1e-9
    worst = int(np.nanargmax(rise))
    lost = float(peak.sum())
    new_over = buses["over"] & ~buses["over_before"]
    fleet: dict[str, object] = {
        "fleet_trip_mw": lost,
        "fleet_trip_limit_mw": settings.system_loss_limit_mw,
        "fleet_trip_mw_pass": "pass" if lost <= settings.system_loss_limit_mw else "fail",
        "fleet_trip_max_rise_pu": float(rise[worst]),
        "fleet_trip_max_rise_bus": int(net.bus.index[worst]),
        "fleet_trip_vmax_after_pu": float(np.nanmax(result.vm_pu[1])),
        "fleet_trip_buses_over": int(new_over.sum()),
        "fleet_trip_buses_over_before": int(buses["over_before"].sum()),
        "fleet_trip_voltage_pass": "pass" if not new_over.any() else "fail",
    }
    return buses, fleet


# --- short circuit ----------------------------------------------------------------------


def short_circuit_net(
    net: pandapowerNet, settings: ScreeningSettings
) -> tuple[pandapowerNet, dict[str, int]]:
    """A copy of ``net`` with IEC 60909 data filled in where missing, and what was assumed.

    Returns the net and a count per kind of default used (empty when the model had it all).
    """
    out = copy.deepcopy(net)
    assumed: dict[str, int] = {}
    ext = out.ext_grid
    if len(ext):
        ext_sc = _column(ext, "s_sc_max_mva")
        as_gen = np.isnan(ext_sc) & (_column(ext, "max_p_mw") > 0)
        gen_mva = _column(ext, "max_p_mw") / settings.gen_cos_phi
        missing = np.isnan(ext_sc)
        filled = np.where(as_gen, gen_mva / settings.gen_xdss_pu, settings.ext_grid_sc_mva)
        ext["s_sc_max_mva"] = np.where(missing, filled, ext_sc)
        ext_min = _column(ext, "s_sc_min_mva")
        share = ext["s_sc_max_mva"].to_numpy(float) * settings.sc_min_share
        ext["s_sc_min_mva"] = np.where(np.isnan(ext_min), share, ext_min)
        for column in ("rx_max", "rx_min"):
            values = _column(ext, column)
            ext[column] = np.where(np.isnan(values), settings.ext_grid_rx, values)
        _count(assumed, "ext_grid short-circuit power from its generator", int((missing & as_gen).sum()))
        _count(assumed, "ext_grid short-circuit power default", int((missing & ~as_gen).sum()))
        _count(assumed, "ext_grid minimum short-circuit power", int(np.isnan(ext_min).sum() - missing.sum()))
    gen = out.gen
    if len(gen):
        xdss = _column(gen, "xdss_pu")
        missing = np.isnan(xdss)
        sn = _column(gen, "sn_mva")
        from_p = np.abs(gen["p_mw"].to_numpy(float)) / settings.gen_cos_phi
        sn = np.where(np.isnan(sn) | (sn <= 0), from_p, sn)
        sn = np.where(sn > 0, sn, 1.0)  # an idle generator without a rating: 1 MVA, nearly no contribution
        gen["sn_mva"] = sn
        vn = _column(gen, "vn_kv")
        gen["vn_kv"] = np.where(np.isnan(vn), out.bus.loc[gen["bus"], "vn_kv"].to_numpy(float), vn)
        gen["xdss_pu"] = np.where(missing, settings.gen_xdss_pu, xdss)
        rdss = _column(gen, "rdss_ohm")
        z_base = gen["vn_kv"].to_numpy(float) ** 2 / sn
        gen["rdss_ohm"] = np.where(np.isnan(rdss), 0.07 * gen["xdss_pu"].to_numpy(float) * z_base, rdss)
        cos_phi = _column(gen, "cos_phi")
        gen["cos_phi"] = np.where(np.isnan(cos_phi), settings.gen_cos_phi, cos_phi)
        _count(assumed, "gen subtransient reactance", int(missing.sum()))
    sgen = out.sgen
    if len(sgen):
        k = _column(sgen, "k")
        sgen["k"] = np.where(np.isnan(k), settings.sgen_k, k)
        sn = _column(sgen, "sn_mva")
        sgen["sn_mva"] = np.where(np.isnan(sn) | (sn <= 0), np.abs(sgen["p_mw"].to_numpy(float)), sn)
        if "current_source" not in sgen:
            sgen["current_source"] = True
        sgen["current_source"] = [value is not False for value in sgen["current_source"]]
        _count(assumed, "sgen short-circuit current factor k", int(np.isnan(k).sum()))
    line = out.line
    if len(line):
        end = _column(line, "endtemp_degree")
        line["endtemp_degree"] = np.where(np.isnan(end), settings.line_endtemp_degree, end)
        _count(assumed, "line end-of-fault temperature (minimum case)", int(np.isnan(end).sum()))
    return out, assumed


def _column(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(float)


def _count(assumed: dict[str, int], what: str, n: int) -> None:
    if n > 0:
        assumed[what] = n


def short_circuit_strength(sc_net: pandapowerNet, buses: np.ndarray) -> pd.DataFrame:
    """IEC 60909 three-phase Sk″ (MVA) and I″k (kA), max and min case, at ``buses``.

    A bus whose calculation fails is named in ``sc_error`` and gets NaN; the others go on.
    """
    out = pd.DataFrame(index=pd.Index(buses, name="bus"))
    out["sc_error"] = ""
    for case in ("max", "min"):
        values = _calc_sc(sc_net, buses, case)
        if values is None:  # one bus spoils the batch: find it
            values = pd.DataFrame(index=out.index, columns=["skss_mw", "ikss_ka"], dtype=float)
            for bus in buses:
                one = _calc_sc(sc_net, np.array([bus]), case)
                if one is None:
                    out.at[bus, "sc_error"] = f"short-circuit calculation fails at bus {bus}"
                else:
                    values.loc[bus] = one.loc[bus]
        bad = ~np.isfinite(values["skss_mw"].to_numpy(float)) | (values["skss_mw"].to_numpy(float) <= 0)
        for bus in out.index[bad]:
            out.at[bus, "sc_error"] = out.at[bus, "sc_error"] or f"no short-circuit result at bus {bus}"
        out[f"sk_{case}_mva"] = np.where(bad, np.nan, values["skss_mw"].to_numpy(float))
        out[f"ikss_{case}_ka"] = np.where(bad, np.nan, values["ikss_ka"].to_numpy(float))
    return out.reset_index()[["sk_max_mva", "sk_min_mva", "ikss_max_ka", "ikss_min_ka", "sc_error"]]


def _calc_sc(sc_net: pandapowerNet, buses: np.ndarray, case: str) -> pd.DataFrame | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.calc_sc(sc_net, bus=list(buses), case=case, fault="3ph", inverse_y=False)
    except SC_FAILURES as err:
        log.debug("calc_sc failed for %s: %s", list(buses), err)
        return None
    return sc_net.res_bus_sc.loc[buses, ["skss_mw", "ikss_ka"]]


def retained_voltages(sc_net: pandapowerNet, fault_buses: np.ndarray, site_buses: np.ndarray) -> np.ndarray:
    """Voltage (pu) at each of ``site_buses`` during a bolted three-phase fault at each of ``fault_buses``.

    IEC 60909 minimum case (voltage sources only, loads neglected, the equivalent source
    c·Un at the fault, flat pre-fault voltage c): V_s = c·|1 − Z_sF / Z_FF|, with the columns
    of the impedance matrix Z = Y⁻¹ solved from one sparse factorisation of pandapower's own
    short-circuit admittance matrix — the same V that ``calc_sc`` reports for a fault at F.
    Shape (faults, sites).
    """
    from pandapower.pypower.idx_bus_sc import C_MIN
    from pandapower.shortcircuit.impedance import _calc_ybus
    from pandapower.shortcircuit.ppc_conversion import _create_k_updated_ppci, _get_is_ppci_bus, _init_ppc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # sets the options (case min, 3-phase) that the ppc conversion below reads
        sc.calc_sc(sc_net, bus=[int(fault_buses[0])], case="min", fault="3ph", inverse_y=False)
        _, ppci = _init_ppc(sc_net)
        ppci_fault = _get_is_ppci_bus(sc_net, fault_buses)
        _, ppci, _ = _create_k_updated_ppci(sc_net, ppci, ppci_bus=ppci_fault)
        _calc_ybus(ppci)
    lookup = sc_net._pd2ppc_lookups["bus"]
    faults, sites = lookup[np.asarray(fault_buses)], lookup[np.asarray(site_buses)]
    n = ppci["bus"].shape[0]
    if (faults < 0).any() or (faults >= n).any() or (sites < 0).any() or (sites >= n).any():
        raise GridError("a fault or site bus is not energised in the short-circuit model")
    lu = splu(csc_matrix(ppci["internal"]["Ybus"]))
    rhs = np.zeros((n, len(faults)), dtype=complex)
    rhs[faults, np.arange(len(faults))] = 1.0
    z = lu.solve(rhs)  # column j: Z[:, F_j]
    z_ff = z[faults, np.arange(len(faults))]
    c = ppci["bus"][faults, C_MIN].real
    ratio = z[sites].T / z_ff[:, None]  # (faults, sites)
    return np.abs(1.0 - ratio) * c[:, None]


def _fault_exposure(sc_net: pandapowerNet, sites: pd.DataFrame, settings: ScreeningSettings) -> pd.DataFrame:
    net = sc_net
    site_buses = sites["bus"].to_numpy()
    hops = bus_hops(net, site_buses, settings.fault_hops)
    nearest = hops.min(axis=0)
    in_service = net.bus["in_service"].astype(bool).to_numpy()
    candidates = np.flatnonzero(np.isfinite(nearest) & in_service)
    fault_buses = net.bus.index[candidates].to_numpy()
    voltages = retained_voltages(net, fault_buses, site_buses)
    # the short-circuit model merges buses joined by closed bus-bus switches: one fault each
    _, first = np.unique(net._pd2ppc_lookups["bus"][fault_buses], return_index=True)
    keep = np.sort(first)
    fault_buses, candidates, voltages = fault_buses[keep], candidates[keep], voltages[keep]
    lookup = net._pd2ppc_lookups["bus"]
    labels = [_site_label(row) for _, row in sites.iterrows()]
    frame = pd.DataFrame(
        {
            "fault_bus": fault_buses,
            "fault_bus_name": net.bus.loc[fault_buses, "name"].astype(str).to_numpy(),
            "vn_kv": net.bus.loc[fault_buses, "vn_kv"].to_numpy(float),
            "hops_to_nearest_site": nearest[candidates].astype(int),
        }
    )
    site_at = {lookup[b]: label for b, label in zip(site_buses, labels, strict=True)}
    frame["site_at_fault_bus"] = [site_at.get(lookup[b], "") for b in fault_buses]
    below = voltages < settings.ride_through_pu
    size = sites["size_mw"].to_numpy(float)
    frame["sites_below"] = below.sum(axis=1)
    frame["mw_below"] = below @ size
    frame["sites_below_list"] = [
        "; ".join(label for label, b in zip(labels, row, strict=True) if b) for row in below
    ]
    return pd.concat([frame, pd.DataFrame(voltages, columns=[f"v_{label}" for label in labels])], axis=1)


def _site_label(row: pd.Series) -> str:
    return f"{int(row['substation'])}" if int(row["substation"]) >= 0 else f"bus{int(row['bus'])}"


def _site_exposure(faults: pd.DataFrame, sites: pd.DataFrame, settings: ScreeningSettings) -> pd.DataFrame:
    """Per site: the deepest retained voltage over the faults, and what the faults cost it.

    That is how many faults take it below the threshold, and the most MW that drops together with
    it in one fault.
    """
    rows = []
    for _, site in sites.iterrows():
        v = faults[f"v_{_site_label(site)}"].to_numpy(float)
        remote = faults["site_at_fault_bus"].to_numpy() != _site_label(site)  # its own bus: always 0
        below = v < settings.ride_through_pu
        worst = int(np.argmin(np.where(remote, v, np.inf))) if remote.any() else None
        rows.append(
            {
                "faults_screened": len(v),
                "faults_below_ride_through": int(below.sum()),
                "worst_remote_fault_bus": None if worst is None else int(faults["fault_bus"].iat[worst]),
                "worst_remote_retained_pu": np.nan if worst is None else float(v[worst]),
                "max_mw_dropping_with_it": float(faults["mw_below"].to_numpy()[below].max(initial=0.0)),
            }
        )
    frame = pd.DataFrame(rows)
    frame["ride_through_pu"] = settings.ride_through_pu
    return frame


def _worst_fault(faults: pd.DataFrame, settings: ScreeningSettings) -> dict[str, object]:
    worst = int(faults["mw_below"].to_numpy().argmax())
    row = faults.iloc[worst]
    return {
        "faults_screened": len(faults),
        "fault_hops": settings.fault_hops,
        "ride_through_pu": settings.ride_through_pu,
        "worst_fault_bus": int(row["fault_bus"]),
        "worst_fault_bus_name": str(row["fault_bus_name"]),
        "worst_fault_mw": float(row["mw_below"]),
        "worst_fault_sites": str(row["sites_below_list"]),
        "worst_fault_mw_pass": "pass" if row["mw_below"] <= settings.system_loss_limit_mw else "fail",
    }


# a site's sheet: (label, column, unit, limit column, verdict column)
SHEET_ROWS = (
    ("voltage step at energising, site bus", "step_energise_pu", "pu", "step_limit_pu", "step_pass"),
    ("voltage step at trip, site bus", "step_trip_pu", "pu", "step_limit_pu", "step_pass"),
    ("worst voltage step nearby", "step_worst_pu", "pu", "step_limit_pu", "step_pass"),
    ("worst bus nearby", "step_worst_bus_name", "", None, None),
    ("step at energising after controllers", "step_energise_settled_pu", "pu", None, None),
    ("step at trip after controllers", "step_trip_settled_pu", "pu", None, None),
    ("controllers", "controllers", "", None, None),
    ("Sk'' maximum (IEC 60909)", "sk_max_mva", "MVA", None, None),
    ("Sk'' minimum (IEC 60909)", "sk_min_mva", "MVA", None, None),
    ("short-circuit ratio Sk''min / MW", "scr_min", "", "scr_limit", "scr_pass"),
    ("short-circuit figures assumed", "sc_assumed", "", None, None),
    ("short-circuit error", "sc_error", "", None, None),
    ("faults screened", "faults_screened", "", None, None),
    ("faults below ride-through", "faults_below_ride_through", "", "ride_through_pu", None),
    ("deepest dip from a remote fault", "worst_remote_retained_pu", "pu", "ride_through_pu", None),
    ("fault bus of that dip", "worst_remote_fault_bus", "", None, None),
    ("most MW dropping together with this site", "max_mw_dropping_with_it", "MW", None, None),
)


def site_sheet(site: pd.Series) -> pd.DataFrame:
    """One row of ``Screening.sites`` as a sheet: figure, value (with unit), limit, verdict."""
    rows = []
    for label, column, unit, limit, verdict in SHEET_ROWS:
        value = site[column]
        missing = value is None or (isinstance(value, float) and np.isnan(value)) or value == ""
        text = "n/a" if missing else (f"{value:.4g}" if isinstance(value, float) else str(value))
        rows.append(
            {
                "figure": label,
                "value": text + (f" {unit}" if unit and not missing else ""),
                "limit": f"{site[limit]:g}" if limit else "",
                "verdict": str(site[verdict]) if verdict else "",
            }
        )
    return pd.DataFrame(rows)


def site_faults(screening: Screening, site: pd.Series) -> pd.DataFrame:
    """The faults that take ``site`` below the ride-through threshold, most MW first."""
    label = f"v_{_site_label(site)}"
    faults = screening.faults
    deep = faults[faults[label] < screening.summary["ride_through_pu"]]
    deep = deep.sort_values("mw_below", ascending=False, kind="stable")
    columns = ["fault_bus", "fault_bus_name", "vn_kv", label, "sites_below", "mw_below", "sites_below_list"]
    return deep[columns].rename(columns={label: "retained_pu"}).reset_index(drop=True)


def write_screening(screening: Screening, folder: Path) -> list[str]:
    """Write the screening's tables into ``folder``; return the names written.

    They are ``interconnection.csv``, ``fault_exposure.csv``, ``fleet_trip_buses.csv`` and
    ``screening_summary.csv``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    screening.sites.to_csv(folder / "interconnection.csv", index=False)
    screening.faults.to_csv(folder / "fault_exposure.csv", index=False)
    screening.buses.to_csv(folder / "fleet_trip_buses.csv", index=False)
    summary = pd.DataFrame({"item": list(screening.summary), "value": list(screening.summary.values())})
    summary.to_csv(folder / "screening_summary.csv", index=False)
    return ["interconnection.csv", "fault_exposure.csv", "fleet_trip_buses.csv", "screening_summary.csv"]
