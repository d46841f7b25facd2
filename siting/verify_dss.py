"""Every hosting capacity checked by OpenDSS itself, on the real unbalanced circuit.

The balanced model finds a capacity; here OpenDSS re-solves the feeder's master file with
the added load as a balanced three-phase constant-power load at that bus and checks every
phase: the phase-to-neutral voltage of each phase node against the voltage band, and each
line's and transformer's largest conductor current against its normal rating (OpenDSS's
``normamps``). The OpenDSS-verified capacity is the largest value on the same resolution
grid that is within every limit while one step above breaks one; it is searched from the
balanced answer outwards, so when both agree it costs two solves. A limit the base case
already breaks binds only when the added load makes it worse (the same rule as the balanced
search, ``siting.engine.search.relaxed_limit``).

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


class DssVerifier:
    """One compiled feeder, its base case and limits, ready to test added loads at buses."""

    def __init__(self, master: Path, settings: CapacitySettings | None = None) -> None:
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
        self._site_bus: str | None = None

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

    def _place(self, bus: str) -> None:
        dss = self.dss
        dss.Circuit.SetActiveBus(bus)
        kv_ll = dss.Bus.kVBase() * np.sqrt(3)
        if kv_ll <= 0 or len([n for n in dss.Bus.Nodes() if n in (1, 2, 3)]) < 3:
            raise UsageError(f"{self.master}: bus '{bus}' is not a three-phase bus with a voltage base")
        if self._site_bus is None:
            dss.Text.Command(
                f"New {SITE} bus1={bus}.1.2.3 phases=3 conn=wye kV={kv_ll:.6g} kW=0 kvar=0 "
                "model=1 vminpu=0.5 vmaxpu=1.5"
            )
        else:
            dss.Text.Command(f"Edit {SITE} bus1={bus}.1.2.3 kV={kv_ll:.6g}")
        self._site_bus = bus

    def check(self, bus: str, mw: float) -> _Check:
        """Solve with ``mw`` (MW, and its Mvar at the study power factor) at ``bus`` and check the limits."""
        dss = self.dss
        if self._site_bus != bus:
            self._place(bus)
        kvar = mw * self.settings.q_per_mw * 1e3
        dss.Text.Command(f"Edit {SITE} kW={mw * 1e3:.6f} kvar={kvar:.6f}")
        dss.Text.Command("solve")
        if not dss.Solution.Converged():
            return _Check(False, "non-convergence", "", np.nan, np.nan, np.nan, np.nan)
        vm, loading = self._measure()
        node = self.phase_node
        low = np.where(node, self.vmin - vm, -np.inf)
        high = np.where(node, vm - self.vmax, -np.inf)
        hot = np.where(self.branch, (loading - self.loading) * 0.01, -np.inf)  # 1 point = 0.01 pu
        worst = [low.max(), high.max(), hot.max()]
        which = int(np.argmax(worst))
        min_vm = float(vm[node].min())
        max_loading = float(loading[self.branch].max()) if self.branch.any() else np.nan
        if worst[which] <= 0:
            return _Check(True, "", "", np.nan, np.nan, min_vm, max_loading)
        if which == 2:
            k = int(np.argmax(hot))
            return _Check(
                False, "thermal", self.elements[k], loading[k], self.loading[k], min_vm, max_loading
            )
        k = int(np.argmax(low if which == 0 else high))
        limit = self.vmin[k] if which == 0 else self.vmax[k]
        criterion = "undervoltage" if which == 0 else "overvoltage"
        return _Check(False, criterion, self.node_names[k], vm[k], limit, min_vm, max_loading)

    def capacity(self, bus: str, balanced_mw: float) -> dict:
        """The OpenDSS-verified capacity at ``bus`` searched outwards from ``balanced_mw``."""
        step = self.settings.resolution_mw
        top = self.settings.steps
        start = min(max(round(balanced_mw / step), 0), top)
        results: dict[int, _Check] = {}

        def ok(k: int) -> bool:
            if k not in results:
                results[k] = self.check(bus, k * step)
            return results[k].ok

        if ok(start):
            lo, hi, jump = start, None, 1
            while hi is None and lo < top:
                probe = min(lo + jump, top)
                if ok(probe):
                    lo, jump = probe, jump * 2
                else:
                    hi = probe
        else:
            hi, jump = start, 1
            while True:
                probe = max(hi - jump, 0)
                if probe == 0 or ok(probe):
                    lo = probe
                    break
                hi, jump = probe, jump * 2
        while hi is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid
        verified = lo * step
        at = results.get(lo) or self.check(bus, verified)
        above = results.get(hi) if hi is not None else None
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
    verifier = DssVerifier(master, settings)
    rows = [verifier.capacity(bus, float(mw)) for bus, mw in zip(bus_names, balanced_mw, strict=True)]
    return pd.DataFrame(rows, columns=VERIFY_COLUMNS)
