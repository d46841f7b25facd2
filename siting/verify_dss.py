"""Every hosting capacity checked by OpenDSS itself, on the real unbalanced circuit.

The balanced model finds a capacity; here OpenDSS re-solves the feeder's master file with
the added load as a balanced three-phase constant-power load at that bus and checks every
phase: the phase-to-neutral voltage of each phase node against the voltage band, and each
line's and transformer's largest conductor current against its normal rating (OpenDSS's
``normamps``). The OpenDSS-verified capacity is the largest value on the same resolution
grid that is within every limit while one step above breaks one; the search starts at the
balanced answer, so when both agree it costs two solves, and otherwise steps to where the
worst excess, interpolated between the values tried, crosses its limit
(``DssVerifier.capacity``). A limit the base case already breaks binds only when the added
load makes it worse (the same rule as the balanced search, ``siting.engine.search.relaxed_limit``).

Regulator taps and capacitor states stay at their base-case solved values (OpenDSS control
actions are switched off after the base solve), as they are in the balanced model, so both
answer the same question.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from siting.capacity import CapacitySettings
from siting.engine.search import binding_limits
from siting.errors import UsageError
from siting.limits import ElementLimits
from siting.sources.opendss import compile_circuit, dss_engine

SITE = "load.siting_site"
VERIFY_COLUMNS = [
    "bus_name",
    "balanced_mw",
    "opendss_mw",
    "difference_mw",
    "agrees",
    "binding_criterion",
    "binding_element",
    "binding_value",
    "binding_limit",
    "min_phase_vm_pu",
    "max_phase_loading_percent",
    "solves",
]


@dataclass(frozen=True)
class _Check:
    ok: bool
    criterion: str
    element: str
    value: float
    limit: float
    min_vm: float
    max_loading: float
    # worst value beyond its limit, in pu of voltage or 0.01 per point of loading (≤ 0 within
    # every limit, inf if the solve failed): what the search interpolates
    excess: float


class DssVerifier:
    """One compiled feeder, its base case and limits, ready to test added loads at buses.

    ``buses`` (OpenDSS bus names) get their zero-power site loads when the verifier is built,
    so that moving from one bus to the next changes only two loads' power: OpenDSS then
    refactorises the admittance matrix it has instead of rebuilding the circuit's bus list and
    matrix structure (on EPRI ckt5 the first solve after a bus change cost about four times a
    later one). A bus not given there gets its site load when first checked.
    """

    def __init__(
        self, master: Path, settings: CapacitySettings | None = None, buses: list[str] | tuple[str, ...] = ()
    ) -> None:
        self.settings = settings or CapacitySettings()
        self.dss = dss = dss_engine()
        compile_circuit(master)
        self.master = master
        dss.Text.Command("set controlmode=off")
        nodes = dss.Circuit.AllNodeNames()
        self.node_names = np.array(nodes)
        self.phase_node = np.array([n.rsplit(".", 1)[1] in ("1", "2", "3") for n in nodes])
        self.elements = np.array(dss.PDElements.AllNames())
        kind = np.array([e.split(".")[0].lower() for e in self.elements])
        rated = np.array(self._normal_amps()) > 0
        self.branch = ((kind == "line") | (kind == "transformer")) & rated
        base_vm, base_loading = self._measure()
        self.phase_node &= base_vm > 0
        study = self.settings.limits
        # the balanced search's own rule for limits the base case breaks (its pre-existing policy)
        limits = ElementLimits(
            np.full(len(base_vm), study.vmin_pu),
            np.full(len(base_vm), study.vmax_pu),
            np.full(len(base_loading), study.normal_loading_percent),
            np.zeros(0),
            {},
            study.pre_existing,
            study.worsening_pu,
            study.worsening_percent,
        )
        self.vmin, self.vmax, self.loading, _ = binding_limits(limits, base_vm, base_loading, np.zeros(0))
        self.base_vm = base_vm
        self.base_loading = base_loading
        self._site: dict[str, str] = {}  # bus → its site load's name
        self._loaded: str | None = None  # the bus whose site load is not at zero
        self._zero: _Check | None = None  # the check without added load, the same at every bus
        for bus in dict.fromkeys(buses):
            self._place(bus)

    def _normal_amps(self) -> list[float]:
        dss = self.dss
        amps = []
        for name in self.elements:
            dss.Circuit.SetActiveElement(name)
            amps.append(dss.CktElement.NormalAmps() if dss.CktElement.Enabled() else 0.0)
        return amps

    def _measure(self) -> tuple[np.ndarray, np.ndarray]:
        dss = self.dss
        vm = np.asarray(dss.Circuit.AllBusMagPu())
        loading = np.asarray(dss.PDElements.AllPctNorm(False))
        return vm, loading

    def base_case(self) -> pd.DataFrame:
        """Phase values of the unbalanced base case beyond their limits: element, criterion, value, limit."""
        limits = self.settings.limits
        vm, loading = self.base_vm, self.base_loading
        rows = [
            (name, "undervoltage", v, limits.vmin_pu)
            for name, v in zip(self.node_names[self.phase_node], vm[self.phase_node], strict=True)
            if v < limits.vmin_pu
        ]
        rows += [
            (name, "overvoltage", v, limits.vmax_pu)
            for name, v in zip(self.node_names[self.phase_node], vm[self.phase_node], strict=True)
            if v > limits.vmax_pu
        ]
        rows += [
            (name, "thermal", x, limits.normal_loading_percent)
            for name, x in zip(self.elements[self.branch], loading[self.branch], strict=True)
            if x > limits.normal_loading_percent
        ]
        return pd.DataFrame(rows, columns=["element", "criterion", "value", "limit"])

    def _place(self, bus: str) -> str:
        """The site load at ``bus`` (a balanced three-phase wye load at zero power), created once."""
        if bus in self._site:
            return self._site[bus]
        dss = self.dss
        dss.Circuit.SetActiveBus(bus)
        kv_ll = dss.Bus.kVBase() * np.sqrt(3)
        if kv_ll <= 0 or len([n for n in dss.Bus.Nodes() if n in (1, 2, 3)]) < 3:
            raise UsageError(f"{self.master}: bus '{bus}' is not a three-phase bus with a voltage base")
        name = f"{SITE}_{len(self._site)}"
        # at zero power a constant-power load draws nothing and adds nothing to the admittance
        # matrix, so the sites waiting at other buses leave each check's circuit as it was
        dss.Text.Command(
            f"New {name} bus1={bus}.1.2.3 phases=3 conn=wye kV={kv_ll:.6g} kW=0 kvar=0 "
            "model=1 vminpu=0.5 vmaxpu=1.5"
        )
        self._site[bus] = name
        return name

    def check(self, bus: str, mw: float) -> _Check:
        """Solve with ``mw`` (MW, and its Mvar at the study power factor) at ``bus`` and check the limits."""
        if mw == 0 and self._zero is not None:
            return self._zero  # nothing added anywhere: the circuit is the same whatever the bus
        dss = self.dss
        name = self._place(bus)
        if self._loaded is not None and self._loaded != bus:
            dss.Text.Command(f"Edit {self._site[self._loaded]} kW=0 kvar=0")
        self._loaded = bus
        kvar = mw * self.settings.q_per_mw * 1e3
        dss.Text.Command(f"Edit {name} kW={mw * 1e3:.6f} kvar={kvar:.6f}")
        dss.Text.Command("solve")
        result = self._judge()
        if mw == 0:
            self._zero = result
        return result

    def _judge(self) -> _Check:
        """The solved circuit against the limits: its worst excess and what breaks."""
        if not self.dss.Solution.Converged():
            return _Check(False, "non-convergence", "", np.nan, np.nan, np.nan, np.nan, np.inf)
        vm, loading = self._measure()
        node = self.phase_node
        low = np.where(node, self.vmin - vm, -np.inf)
        high = np.where(node, vm - self.vmax, -np.inf)
        hot = np.where(self.branch, (loading - self.loading) * 0.01, -np.inf)  # 1 point = 0.01 pu
        worst = [low.max(), high.max(), hot.max()]
        which = int(np.argmax(worst))
        excess = float(worst[which])
        min_vm = float(vm[node].min())
        max_loading = float(loading[self.branch].max()) if self.branch.any() else np.nan
        if excess <= 0:
            return _Check(True, "", "", np.nan, np.nan, min_vm, max_loading, excess)
        if which == 2:
            k = int(np.argmax(hot))
            return _Check(
                False, "thermal", self.elements[k], loading[k], self.loading[k], min_vm, max_loading, excess
            )
        k = int(np.argmax(low if which == 0 else high))
        limit = self.vmin[k] if which == 0 else self.vmax[k]
        criterion = "undervoltage" if which == 0 else "overvoltage"
        return _Check(False, criterion, self.node_names[k], vm[k], limit, min_vm, max_loading, excess)

    def capacity(self, bus: str, balanced_mw: float) -> dict:
        """The OpenDSS-verified capacity at ``bus`` searched from ``balanced_mw``.

        The answer is the largest grid value ``k`` that is within limits with ``k + 1`` not
        (or the cap), as in the balanced search. The first probe is the balanced answer, the
        second one step above it when that holds, so agreement costs two solves. Once a
        bracket [feasible, infeasible] is known the next probe is where the worst excess,
        interpolated linearly between the bracket's ends, crosses zero (every third probe
        halves the bracket instead, so it always ends); with no infeasible value known yet
        the probes step out by doubling jumps. Zero added load is taken as feasible, with the
        excess of the circuit without added load (solved once for every bus).
        """
        step = self.settings.resolution_mw
        top = self.settings.steps
        start = min(max(round(balanced_mw / step), 0), top)
        results: dict[int, _Check] = {}

        def zero() -> _Check:
            # solved when first needed, so (like every probe) from a loaded circuit's solution:
            # OpenDSS's solution without added load differs from the compiled base case's by
            # up to 3e-4 pu on EPRI ckt5 depending on where it starts
            return self.check(bus, 0.0)

        def ok(k: int) -> bool:
            if k not in results:
                results[k] = self.check(bus, k * step)
            return results[k].ok

        lo, hi = 0, top + 1  # hi = top + 1: nothing infeasible known yet
        excess: dict[int, float] = {}
        if start == 0 and not zero().ok:
            hi = 0  # not even the circuit without added load is within limits
        probes, jump = 0, 1
        guess = max(start, 1)
        while hi - lo > 1:
            if probes > 0:
                if hi > top:
                    guess, jump = min(lo + jump, top), jump * 2
                elif probes % 3 == 2 or not np.isfinite(results[hi].excess):
                    guess = (lo + hi) // 2
                else:
                    e_lo = excess[lo] if lo > 0 else zero().excess
                    e_hi = results[hi].excess
                    root = lo + (hi - lo) * (-e_lo) / (e_hi - e_lo)
                    guess = int(np.clip(np.floor(root), lo + 1, hi - 1))
            probes += 1
            if ok(guess):
                lo = guess
                excess[lo] = results[lo].excess
            else:
                hi = guess
        verified = lo * step
        at = results[lo] if lo in results else zero()
        above = None if hi > top else results[hi] if hi in results else zero()
        return {
            "bus_name": bus,
            "balanced_mw": balanced_mw,
            "opendss_mw": verified,
            "difference_mw": verified - balanced_mw,
            "agrees": bool(np.isclose(verified, balanced_mw, atol=step / 2)),
            "binding_criterion": above.criterion if above is not None else "cap",
            "binding_element": above.element if above is not None else "",
            "binding_value": above.value if above is not None else np.nan,
            "binding_limit": above.limit if above is not None else np.nan,
            "min_phase_vm_pu": at.min_vm,
            "max_phase_loading_percent": at.max_loading,
            "solves": len(results),
        }


def verify_capacities(
    master: Path, bus_names: list[str], balanced_mw: np.ndarray, settings: CapacitySettings | None = None
) -> pd.DataFrame:
    """OpenDSS-verified hosting capacity at each bus (one row per bus, ``VERIFY_COLUMNS``).

    ``balanced_mw`` are the balanced model's answers (``hc_n0_mw``), the starting points.
    Where the two disagree, ``opendss_mw`` is the answer and ``difference_mw`` shows by how much.
    """
    if len(bus_names) != len(balanced_mw):
        raise UsageError(f"{len(bus_names)} buses but {len(balanced_mw)} capacities to verify")
    verifier = DssVerifier(master, settings, bus_names)
    rows = [verifier.capacity(bus, float(mw)) for bus, mw in zip(bus_names, balanced_mw, strict=True)]
    return pd.DataFrame(rows, columns=VERIFY_COLUMNS)
