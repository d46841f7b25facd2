"""Operating limits: from the model where it has them, study defaults where it does not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pandapower.auxiliary import pandapowerNet

from siting.errors import UsageError

# How a limit the base case already violates binds added load:
# "no-worse": it binds once added load makes it worse by more than the tolerance
# (``worsening_pu`` for voltages, ``worsening_percent`` for loadings);
# "ignore": it never binds (Vattenfall's gridcapacity does this); the violation is still listed.
PRE_EXISTING_POLICIES = ("no-worse", "ignore")


@dataclass(frozen=True)
class StudyLimits:
    """Defaults applied where the model has no limit of its own, and the pre-existing rule.

    Voltages in pu: ANSI C84.1 Range A (0.95–1.05) in normal operation and a contingency
    band (0.90–1.10) after an outage. Thermal limits in percent of the normal rating:
    ``normal_loading_percent`` in normal operation (unless the element has
    ``max_loading_percent``), and ``emergency_factor`` × the normal limit after an outage.
    A limit the base state already violates is handled by ``pre_existing`` (see
    ``PRE_EXISTING_POLICIES``); every such violation is reported apart with its base value.
    """

    vmin_pu: float = 0.95
    vmax_pu: float = 1.05
    contingency_vmin_pu: float = 0.90
    contingency_vmax_pu: float = 1.10
    normal_loading_percent: float = 100.0
    emergency_factor: float = 1.2
    pre_existing: str = "no-worse"
    worsening_pu: float = 0.001
    worsening_percent: float = 0.1

    def __post_init__(self) -> None:
        if self.pre_existing not in PRE_EXISTING_POLICIES:
            raise UsageError(
                f"--pre-existing {self.pre_existing}: use one of {', '.join(PRE_EXISTING_POLICIES)}"
            )
        if self.worsening_pu < 0 or self.worsening_percent < 0:
            raise UsageError(
                f"pre-existing violation tolerance {self.worsening_pu} pu / {self.worsening_percent} %: "
                "must not be negative"
            )
        if not 0 < self.vmin_pu < self.vmax_pu:
            raise UsageError(f"voltage band {self.vmin_pu}–{self.vmax_pu} pu: need 0 < min < max")
        if not 0 < self.contingency_vmin_pu < self.contingency_vmax_pu:
            raise UsageError(
                f"contingency voltage band {self.contingency_vmin_pu}–{self.contingency_vmax_pu} pu: "
                "need 0 < min < max"
            )
        if self.normal_loading_percent <= 0 or self.emergency_factor < 1:
            raise UsageError("thermal limits: the normal limit must be > 0 % and the emergency factor ≥ 1")


@dataclass(frozen=True)
class ElementLimits:
    """Per-element limits for one kind of operation (normal or contingency)."""

    vmin_pu: np.ndarray  # per net.bus row
    vmax_pu: np.ndarray
    line_percent: np.ndarray  # per net.line row
    trafo_percent: np.ndarray  # per net.trafo row
    from_model: dict[str, int]  # how many of each limit came from the model
    pre_existing: str = "no-worse"  # the rule for limits the base state violates
    worsening_pu: float = 0.001
    worsening_percent: float = 0.1


def element_limits(net: pandapowerNet, study: StudyLimits, contingency: bool) -> ElementLimits:
    """Each bus's and branch's limit: the model's value where present, else the study default.

    After an outage, the voltage band is the contingency band where it is wider than the
    model's own, and thermal limits are the emergency factor times the normal limit.
    """
    vmin_model = _column(net.bus, "min_vm_pu")
    vmax_model = _column(net.bus, "max_vm_pu")
    vmin = np.where(np.isnan(vmin_model), study.vmin_pu, vmin_model)
    vmax = np.where(np.isnan(vmax_model), study.vmax_pu, vmax_model)
    line = _thermal(net.line, study.normal_loading_percent)
    trafo = _thermal(net.trafo, study.normal_loading_percent)
    if contingency:
        vmin = np.minimum(vmin, study.contingency_vmin_pu)
        vmax = np.maximum(vmax, study.contingency_vmax_pu)
        line = line * study.emergency_factor
        trafo = trafo * study.emergency_factor
    from_model = {
        "bus min_vm_pu": int(np.isfinite(vmin_model).sum()),
        "bus max_vm_pu": int(np.isfinite(vmax_model).sum()),
        "line max_loading_percent": int(np.isfinite(_column(net.line, "max_loading_percent")).sum()),
        "trafo max_loading_percent": int(np.isfinite(_column(net.trafo, "max_loading_percent")).sum()),
    }
    return ElementLimits(
        vmin, vmax, line, trafo, from_model, study.pre_existing, study.worsening_pu, study.worsening_percent
    )


def _column(frame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame[column].to_numpy(dtype=float)


def _thermal(frame, default: float) -> np.ndarray:
    model = _column(frame, "max_loading_percent")
    return np.where(np.isnan(model), default, model)
