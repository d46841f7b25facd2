"""Operating limits: from the model where it has them, study defaults where it does not."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from siting.errors import GridError, SettingError, check_number

if TYPE_CHECKING:  # the CLI's flags read this module's defaults; pandapower loads only with a grid
    from pandapower.auxiliary import pandapowerNet

# How a limit the base case already violates binds added load:
# "no-worse": it binds once added load makes it worse by more than the tolerance
# (``worsening_pu`` for voltages, ``worsening_percent`` for loadings);
# "contribution": an overloaded line or transformer binds only where the added load contributes
# to it: where its loading rises by more than the tolerance *and* by at least what a
# distribution factor of ``contribution_df`` would add (MW on the element per MW added, taken
# on the element's MVA rating); voltages follow "no-worse";
# "ignore": it never binds (Vattenfall's gridcapacity does this); the violation is still listed.
PRE_EXISTING_POLICIES = ("no-worse", "contribution", "ignore")
# MISO's distribution-factor cutoff for ERIS interconnection studies (BPM-015): a constraint
# is attributed to a request whose distribution factor on it is 20 % or more (PAC-2022-3, 2022,
# proposed 10 %)
CONTRIBUTION_DF = 0.20


@dataclass(frozen=True)
class StudyLimits:
    """Defaults applied where the model has no limit of its own, and the pre-existing rule.

    Voltages in pu: ANSI C84.1 Range A (0.95–1.05) in normal operation and a contingency
    band (0.90–1.10) after an outage. Thermal limits in percent of the normal rating:
    ``normal_loading_percent`` in normal operation (unless the element has
    ``max_loading_percent``), and ``emergency_factor`` × the normal limit after an outage.
    A limit the base state already violates is handled by ``pre_existing`` (see
    ``PRE_EXISTING_POLICIES``); every such violation is reported apart with its base value.

    Parameters
    ----------
    vmin_pu, vmax_pu : float
        Normal voltage band (pu).
    contingency_vmin_pu, contingency_vmax_pu : float
        Voltage band after an outage (pu).
    normal_loading_percent : float
        Thermal limit in normal operation (% of the rating).
    emergency_factor : float
        Thermal limit after an outage as a multiple of the normal limit (≥ 1).
    pre_existing : str
        What a limit the base state already violates means: ``no-worse`` (added load may not
        make it worse) or ``ignore``.
    worsening_pu, worsening_percent : float
        How far a pre-existing violation may move before it counts as worse (pu, % points):
        numerical noise, not a margin.
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
    contribution_df: float = CONTRIBUTION_DF

    def __post_init__(self) -> None:
        if self.pre_existing not in PRE_EXISTING_POLICIES:
            raise SettingError(
                "pre_existing", self.pre_existing, f"use one of {', '.join(PRE_EXISTING_POLICIES)}"
            )
        check_number("worsening_pu", self.worsening_pu, at_least=0)
        check_number("worsening_percent", self.worsening_percent, at_least=0)
        check_number("contribution_df", self.contribution_df, above=0, at_most=1)
        for name in ("vmin_pu", "vmax_pu", "contingency_vmin_pu", "contingency_vmax_pu"):
            check_number(name, getattr(self, name), above=0, below=2)
        if not self.vmin_pu < self.vmax_pu:
            raise SettingError("vmin_pu", self.vmin_pu, f"must be below vmax_pu ({self.vmax_pu:g} pu)")
        if not self.contingency_vmin_pu < self.contingency_vmax_pu:
            raise SettingError(
                "contingency_vmin_pu",
                self.contingency_vmin_pu,
                f"must be below contingency_vmax_pu ({self.contingency_vmax_pu:g} pu)",
            )
        check_number("normal_loading_percent", self.normal_loading_percent, above=0)
        check_number("emergency_factor", self.emergency_factor, at_least=1)

    def record(self) -> dict[str, object]:
        """The limits as plain data, for manifests."""
        return dict(vars(self))


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
    # "contribution": loading (%) per MW of added load at the cutoff distribution factor
    line_percent_per_mw: np.ndarray | None = None  # per net.line row
    trafo_percent_per_mw: np.ndarray | None = None  # per net.trafo row


def element_limits(net: pandapowerNet, study: StudyLimits, contingency: bool) -> ElementLimits:
    """Each bus's and branch's limit: the model's value where present, else the study default.

    After an outage, the voltage band is the contingency band where it is wider than the
    model's own, and thermal limits are the emergency factor times the normal limit.
    """
    vmin_model = _column(net.bus, "min_vm_pu")
    vmax_model = _column(net.bus, "max_vm_pu")
    vmin = np.where(np.isnan(vmin_model), study.vmin_pu, vmin_model)
    vmax = np.where(np.isnan(vmax_model), study.vmax_pu, vmax_model)
    crossed = np.flatnonzero(vmin > vmax)
    if len(crossed):
        bus = net.bus.index[crossed[0]]
        raise GridError(
            f"bus {bus} ({net.bus['name'].iloc[crossed[0]]}): its voltage band {vmin[crossed[0]]:g}–"
            f"{vmax[crossed[0]]:g} pu has min > max ({len(crossed)} bus(es) so); fix min_vm_pu/max_vm_pu"
        )
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
    per_mw = {}
    if study.pre_existing == "contribution":
        per_mw = {
            "line_percent_per_mw": 100 * study.contribution_df / line_rating_mva(net),
            "trafo_percent_per_mw": 100 * study.contribution_df / trafo_rating_mva(net),
        }
    return ElementLimits(
        vmin,
        vmax,
        line,
        trafo,
        from_model,
        study.pre_existing,
        study.worsening_pu,
        study.worsening_percent,
        **per_mw,
    )


def line_rating_mva(net: pandapowerNet) -> np.ndarray:
    """Each line's rating (MVA): the current its 100 % loading stands for, at the from bus's kV.

    The current is ``max_i_ka`` × derating ``df`` × ``parallel``, as pandapower's loading uses.
    """
    line = net.line
    kv = net.bus["vn_kv"].reindex(line["from_bus"]).to_numpy(float)
    derating = np.nan_to_num(_column(line, "df"), nan=1.0)
    return np.sqrt(3) * kv * line["max_i_ka"].to_numpy(float) * derating * _parallel(line)


def trafo_rating_mva(net: pandapowerNet) -> np.ndarray:
    """Each transformer's rating (MVA), parallel units included."""
    return net.trafo["sn_mva"].to_numpy(float) * _parallel(net.trafo)


def _parallel(frame) -> np.ndarray:
    return np.nan_to_num(_column(frame, "parallel"), nan=1.0)


def deviation_band(
    limits: ElementLimits, pre_vm: np.ndarray, buses: np.ndarray, deviation_pu: float
) -> ElementLimits:
    """Contingency limits with the post-contingency voltage deviation criterion added.

    At ``buses`` (positions in ``net.bus``; the load-serving buses) the voltage after an
    outage must also stay within ``deviation_pu`` of its pre-outage value ``pre_vm`` (pu, per
    ``net.bus`` row), as WECC's TPL-001-WECC-CRT asks (8 % after a single contingency), next
    to the absolute band: whichever is tighter binds. Measured from the pre-outage voltage
    without the added load, which is at or above the one with it, so the band is never looser
    than the criterion's.
    """
    vmin, vmax = limits.vmin_pu.copy(), limits.vmax_pu.copy()
    vmin[buses] = np.fmax(vmin[buses], pre_vm[buses] * (1 - deviation_pu))
    vmax[buses] = np.fmin(vmax[buses], pre_vm[buses] * (1 + deviation_pu))
    return dataclasses.replace(limits, vmin_pu=vmin, vmax_pu=vmax)


def load_bus_positions(net: pandapowerNet) -> np.ndarray:
    """Positions in ``net.bus`` of buses that serve load (an in-service load with power)."""
    on = net.load["in_service"].astype(bool) & (net.load["p_mw"] != 0)
    return np.unique(net.bus.index.get_indexer(net.load.loc[on, "bus"]))


def _column(frame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame[column].to_numpy(dtype=float)


def _thermal(frame, default: float) -> np.ndarray:
    model = _column(frame, "max_loading_percent")
    return np.where(np.isnan(model), default, model)
