"""Facility power of an inference site from the measured H200 board-power curve.

The curve (``data/gpu-power``) was measured on one NVIDIA H200 running a Llama-3-8B-shaped
decoder: board power while idle, while decoding 1…256 sequences at a context of 1024
tokens, and while processing prompts (prefill). A site is ``N`` such GPUs.

Model
-----
A site serving ``Tp`` prefill tokens/s and ``Td`` decode tokens/s time-shares its GPUs:

- prefill takes the share ``f = Tp / (N × prefill_tokens_per_s)`` of GPU time, at
  ``prefill_w`` per GPU;
- the rest of the time serves decode spread evenly over the GPUs, at a per-GPU decode rate
  ``d = Td / ((1 − f) N)``, whose board power is the measured decode curve interpolated
  piecewise-linearly (``0 → idle_w``, then batch 1 … 256);
- per-GPU board power is ``f × prefill_w + (1 − f) × decode_w(d)``;
- capacity is reached at ``f = 1`` or at ``d`` = the batch-256 throughput.

IT power is ``N × (board + host_w_per_gpu)``; facility power is ``IT × PUE`` plus a fixed
auxiliary load ``aux_fraction × site rating`` that is always on. The site rating is derived
from ``N``: the facility power of ``N`` GPUs at full load divided by ``1 − aux_fraction``
(see :func:`site_rating_mw`), so a site sized with :func:`gpus_for_site` has a rating just
under the one asked for (by less than one GPU's worth).

The idle floor of a serving GPU is the *warm* idle power (memory allocated, model loaded),
taken from the settled samples of the ``ramp_idle_*`` phases of ``power.csv`` (about 122 W),
not the 81 W "cold" idle of a GPU that has never been loaded: a GPU in a serving site keeps
its weights and KV cache resident. Host power (CPU, memory, NVSwitch, NICs, fans) is held
constant, so the idle floor is conservative (high).

At a fixed prefill share ``p`` of tokens, ``Tp = pT`` and ``Td = (1 − p)T``, and
``(1 − f) × d = (1 − p)T/N``; on each segment of the decode curve board power is therefore
*linear* in ``T``. Power is exactly piecewise-linear in served tokens with knots where ``d``
crosses a measured throughput, which gives an exact, vectorised inverse
(:func:`served_for_power`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from siting.errors import UsageError, check_number

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "gpu-power"

# NVIDIA DGX H200 (8 × H200 SXM, HGX baseboard) lists ~10.2 kW maximum system power. With the
# GPUs at their 700 W limit (5.6 kW), the rest of the server (2 CPUs, 2 TB memory, NVSwitch,
# NICs, fans, power-supply losses) is ~4.6 kW, i.e. 575 W per GPU.
DGX_H200_SYSTEM_W = 10_200.0
H200_POWER_LIMIT_W = 700.0
HOST_W_PER_GPU = (DGX_H200_SYSTEM_W - 8 * H200_POWER_LIMIT_W) / 8

# NVML reports power averaged over about one second; samples this long after a phase starts
# are settled.
_SETTLE_S = 2.0


@dataclass(frozen=True)
class GpuCurve:
    """Measured board power of one GPU (W) against served tokens/s."""

    idle_w: float  # warm idle floor (W)
    decode_tokens_per_s: np.ndarray  # increasing, starts at 0 (idle)
    decode_w: np.ndarray  # board power at those throughputs (W)
    prefill_tokens_per_s: float  # per GPU at full load
    prefill_w: float  # board power during prefill (W)

    @property
    def max_decode_tokens_per_s(self) -> float:
        """Decode throughput at the largest measured batch (tokens/s per GPU)."""
        return float(self.decode_tokens_per_s[-1])

    @property
    def full_load_w(self) -> float:
        """Highest board power the model ever assigns (W): full prefill or full decode."""
        return float(max(self.prefill_w, self.decode_w[-1]))


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise UsageError(f"{path}: {what} not found; give the path of an existing file")
    try:
        return pd.read_csv(path)
    except (ValueError, OSError) as exc:  # pandas' parser errors are ValueErrors
        raise UsageError(f"{path}: cannot read {what} ({exc}); give a CSV file") from None


def warm_idle_w(power_csv: Path | None = None) -> float:
    """Warm idle board power (W): median of the settled samples of the ``ramp_idle_*`` phases.

    Those phases follow full load with the model still in memory; the first ``_SETTLE_S``
    seconds of each are dropped because NVML's one-second average still carries the load.
    """
    path = Path(power_csv) if power_csv is not None else DATA_DIR / "power.csv"
    trace = _read_csv(path, "GPU power trace")
    if not {"t_s", "power_w", "phase"} <= set(trace.columns):
        raise UsageError(f"{path}: needs columns t_s, power_w, phase")
    idle = trace[trace["phase"].astype(str).str.startswith("ramp_idle")]
    start = idle.groupby("phase")["t_s"].transform("min")
    settled = idle.loc[idle["t_s"] >= start + _SETTLE_S, "power_w"]
    if settled.empty:
        raise UsageError(f"{path}: no settled ramp_idle_* samples to take the warm idle power from")
    return float(settled.median())


def load_gpu_curve(path: Path | None = None) -> GpuCurve:
    """Read the measured curve from ``phases.csv`` (default ``data/gpu-power/phases.csv``).

    Power per phase is the median sample (W), which leaves out the NVML ramp at the start of
    each phase that pulls the mean down. The warm idle floor comes from ``power.csv`` in the
    same folder (see :func:`warm_idle_w`).
    """
    path = Path(path) if path is not None else DATA_DIR / "phases.csv"
    phases = _read_csv(path, "GPU phase table")
    needed = {"phase", "batch", "tokens_per_s", "power_median_w"}
    if not needed <= set(phases.columns):
        raise UsageError(f"{path}: needs columns {', '.join(sorted(needed))}")
    decode = phases[phases["phase"].astype(str).str.fullmatch(r"decode_b\d+")].sort_values("batch")
    prefill = phases[phases["phase"] == "prefill"]
    if decode.empty or len(prefill) != 1:
        raise UsageError(f"{path}: needs decode_b<N> rows and one prefill row")
    idle_w = warm_idle_w(path.parent / "power.csv")
    tokens = np.concatenate([[0.0], decode["tokens_per_s"].to_numpy(float)])
    watts = np.concatenate([[idle_w], decode["power_median_w"].to_numpy(float)])
    if np.any(np.diff(tokens) <= 0):
        raise UsageError(f"{path}: decode throughput must rise with batch size")
    return GpuCurve(
        idle_w=idle_w,
        decode_tokens_per_s=tokens,
        decode_w=watts,
        prefill_tokens_per_s=float(prefill["tokens_per_s"].iloc[0]),
        prefill_w=float(prefill["power_median_w"].iloc[0]),
    )


@dataclass(frozen=True)
class PowerModel:
    """How GPU board power becomes facility power.

    Parameters
    ----------
    curve : GpuCurve
        Board power (W) against tokens/s per GPU, measured.
    pue : float
        Power usage effectiveness: facility power / IT power (≥ 1).
    host_w_per_gpu : float
        Server power per GPU on top of its board power (W).
    aux_fraction : float
        Always-on auxiliary load as a share of the site rating, in [0, 1).
    """

    curve: GpuCurve
    pue: float = 1.3  # facility / IT
    host_w_per_gpu: float = HOST_W_PER_GPU  # server power per GPU on top of board power (W)
    aux_fraction: float = 0.02  # always-on auxiliary load as a share of the site rating

    def __post_init__(self) -> None:
        check_number("pue", self.pue, at_least=1)
        check_number("host_w_per_gpu", self.host_w_per_gpu, at_least=0)
        check_number("aux_fraction", self.aux_fraction, at_least=0, below=1)

    @property
    def full_load_facility_w_per_gpu(self) -> float:
        """Facility power per GPU at full load, without the auxiliary load (W)."""
        return (self.curve.full_load_w + self.host_w_per_gpu) * self.pue


def default_model() -> PowerModel:
    """The measured H200 curve with the default PUE, host and auxiliary settings."""
    return PowerModel(load_gpu_curve())


def gpus_for_site(site_mw: float, model: PowerModel) -> int:
    """Most GPUs whose full-load facility power plus the auxiliary load fits ``site_mw`` (MW)."""
    if not np.isfinite(site_mw) or site_mw <= 0:
        raise UsageError(f"site rating {site_mw} MW must be positive")
    budget_w = site_mw * 1e6 * (1 - model.aux_fraction)
    n = int(np.floor(budget_w / model.full_load_facility_w_per_gpu))
    if n < 1:
        raise UsageError(
            f"a {site_mw} MW site cannot power one GPU "
            f"({model.full_load_facility_w_per_gpu / 1e6 / (1 - model.aux_fraction):.6f} MW needed)"
        )
    return n


def _check_gpus(n_gpus: int | np.ndarray) -> np.ndarray:
    n = np.asarray(n_gpus, dtype=float)
    if np.any(~np.isfinite(n)) or np.any(n < 1):
        raise UsageError("a site needs at least one GPU; size it with gpus_for_site")
    return n


def _check_share(prefill_share: float | np.ndarray) -> np.ndarray:
    p = np.asarray(prefill_share, dtype=float)
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise UsageError("prefill share must be between 0 and 1")
    return p


def site_rating_mw(n_gpus: int | np.ndarray, model: PowerModel) -> np.ndarray:
    """Rating of a site of ``n_gpus`` (MW): full-load facility power / (1 − aux_fraction)."""
    n = _check_gpus(n_gpus)
    return n * model.full_load_facility_w_per_gpu / (1 - model.aux_fraction) / 1e6


def _aux_mw(n: np.ndarray, model: PowerModel) -> np.ndarray:
    return model.aux_fraction * site_rating_mw(n, model)


def site_power_mw(
    prefill_tokens_per_s: float | np.ndarray,
    decode_tokens_per_s: float | np.ndarray,
    n_gpus: int | np.ndarray,
    model: PowerModel,
) -> np.ndarray:
    """Facility power (MW) of a site serving these prefill and decode tokens/s.

    Arrays broadcast (e.g. steps × sites). Zero load gives the idle floor plus the auxiliary
    load. Raises :class:`UsageError` for negative load or load above the site's capacity.
    """
    n = _check_gpus(n_gpus)
    tp = np.asarray(prefill_tokens_per_s, dtype=float)
    td = np.asarray(decode_tokens_per_s, dtype=float)
    if np.any(~np.isfinite(tp)) or np.any(~np.isfinite(td)) or np.any(tp < 0) or np.any(td < 0):
        raise UsageError("served tokens/s must be finite and not negative")
    curve = model.curve
    f = tp / (n * curve.prefill_tokens_per_s)
    decode_time = (1 - f) * n  # GPU-equivalents left for decode
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(td > 0, td / decode_time, 0.0)
    # A relative tolerance lets values computed by served_for_power round-trip.
    tol = 1e-9
    over = (f > 1 + tol) | (d > curve.max_decode_tokens_per_s * (1 + tol)) | ((td > 0) & (decode_time <= 0))
    if np.any(over):
        first = np.unravel_index(int(np.argmax(over)), over.shape) if over.ndim else ()
        raise UsageError(f"served tokens/s above the site's capacity at position {first}; cap the dispatch")
    f = np.minimum(f, 1.0)
    board = f * curve.prefill_w + (1 - f) * np.interp(d, curve.decode_tokens_per_s, curve.decode_w)
    it_w = n * (board + model.host_w_per_gpu)
    return it_w * model.pue / 1e6 + _aux_mw(n, model)


def site_capacity_tokens_per_s(
    n_gpus: int | np.ndarray, prefill_share: float | np.ndarray, model: PowerModel
) -> np.ndarray:
    """Most total tokens/s a site serves when ``prefill_share`` (0..1) of the tokens are prefill."""
    n = _check_gpus(n_gpus)
    p = _check_share(prefill_share)
    curve = model.curve
    # Per GPU, 1 s holds p·t/P of prefill time and (1 − p)·t/D of decode time at full batch.
    per_gpu = 1.0 / (p / curve.prefill_tokens_per_s + (1 - p) / curve.max_decode_tokens_per_s)
    return n * per_gpu


def _knots(p: np.ndarray, curve: GpuCurve) -> tuple[np.ndarray, np.ndarray]:
    """Per-GPU served tokens/s and board power (W) at the knots of the curve for share ``p``.

    Shapes ``p.shape + (k,)``. The last knot is the capacity; where ``p = 1`` all decode knots
    collapse onto it.
    """
    big_d = curve.decode_tokens_per_s[1:]  # (k − 1,); the first knot is idle at t = 0
    pe = p[..., None]
    # d = (1 − p)t / (1 − p t / P) = D  →  t = D / ((1 − p) + p D / P)
    t = big_d / ((1 - pe) + pe * big_d / curve.prefill_tokens_per_s)
    t = np.concatenate([np.zeros_like(t[..., :1]), t], axis=-1)
    f = pe * t / curve.prefill_tokens_per_s
    board = f * curve.prefill_w + (1 - f) * curve.decode_w
    return t, board


def served_for_power(
    power_mw: float | np.ndarray,
    n_gpus: int | np.ndarray,
    prefill_share: float | np.ndarray,
    model: PowerModel,
) -> np.ndarray:
    """Most total tokens/s whose facility power is at most ``power_mw`` at that prefill share.

    0 below the idle floor, the capacity above full-load power; in between the exact inverse of
    :func:`site_power_mw`. Vectorised: arrays broadcast.
    """
    n = _check_gpus(n_gpus)
    p = _check_share(prefill_share)
    pw = np.asarray(power_mw, dtype=float)
    if np.any(~np.isfinite(pw)):
        raise UsageError("power must be finite")
    n, p, pw = np.broadcast_arrays(n, p, pw)
    board = (pw - _aux_mw(n, model)) * 1e6 / model.pue / n - model.host_w_per_gpu
    t_k, b_k = _knots(p, model.curve)  # (..., k)
    # Last knot at or below the target: board power is non-decreasing along the knots, so
    # this picks the most tokens with power ≤ target (flat stretches resolve to their end).
    k = np.sum(b_k <= board[..., None], axis=-1) - 1
    last = t_k.shape[-1] - 1
    kk = np.clip(k, 0, last - 1)
    t0 = np.take_along_axis(t_k, kk[..., None], -1)[..., 0]
    t1 = np.take_along_axis(t_k, kk[..., None] + 1, -1)[..., 0]
    b0 = np.take_along_axis(b_k, kk[..., None], -1)[..., 0]
    b1 = np.take_along_axis(b_k, kk[..., None] + 1, -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(b1 > b0, t0 + (board - b0) * (t1 - t0) / (b1 - b0), t1)
    t = np.where(k < 0, 0.0, np.where(k >= last, t_k[..., last], t))
    return t * n


def power_curve_table(model: PowerModel, n_gpus: int, prefill_share: float, points: int = 50) -> pd.DataFrame:
    """Facility power against served tokens/s for one site, for plotting the fitted curve.

    ``points`` evenly spaced throughputs from 0 to capacity, plus the knots of the curve (where
    the per-GPU decode rate equals a measured one), sorted. Columns: ``served_tokens_per_s``,
    ``prefill_tokens_per_s``, ``decode_tokens_per_s``, ``tokens_per_s_per_gpu``,
    ``board_w_per_gpu``, ``facility_mw``.
    """
    if points < 2:
        raise UsageError(f"points {points} must be at least 2")
    n = int(_check_gpus(n_gpus))
    p = float(_check_share(prefill_share))
    cap = float(site_capacity_tokens_per_s(n, p, model))
    t_k, _ = _knots(np.asarray(p), model.curve)
    served = np.unique(np.concatenate([np.linspace(0.0, cap, points), np.minimum(t_k * n, cap)]))
    mw = site_power_mw(p * served, (1 - p) * served, n, model)
    board = (mw - _aux_mw(np.asarray(float(n)), model)) * 1e6 / model.pue / n - model.host_w_per_gpu
    return pd.DataFrame(
        {
            "served_tokens_per_s": served,
            "prefill_tokens_per_s": p * served,
            "decode_tokens_per_s": (1 - p) * served,
            "tokens_per_s_per_gpu": served / n,
            "board_w_per_gpu": board,
            "facility_mw": mw,
        }
    )


def measured_points(path: Path | None = None) -> pd.DataFrame:
    """The measured phases, per GPU, for overlay on a curve.

    Columns: ``phase``, ``batch``, ``tokens_per_s``, ``power_median_w``, ``power_mean_w``. The
    cold idle row from ``phases.csv`` is kept and a ``idle_warm`` row (the floor the model
    uses) is added.
    """
    path = Path(path) if path is not None else DATA_DIR / "phases.csv"
    phases = _read_csv(path, "GPU phase table")
    keep = phases["phase"].astype(str).str.fullmatch(r"idle|decode_b\d+|prefill")
    out = phases.loc[keep, ["phase", "batch", "tokens_per_s", "power_median_w", "power_mean_w"]]
    warm = warm_idle_w(path.parent / "power.csv")
    row = pd.DataFrame(
        [
            {
                "phase": "idle_warm",
                "batch": np.nan,
                "tokens_per_s": 0.0,
                "power_median_w": warm,
                "power_mean_w": warm,
            }
        ]
    )
    return pd.concat([out, row], ignore_index=True)


def full_load_board_w(prefill_share: float | np.ndarray, curve: GpuCurve) -> np.ndarray:
    """Board power of one GPU serving its full capacity at a prefill share of tokens (W)."""
    _t, board = _knots(_check_share(prefill_share), curve)
    return board[..., -1]


def packed_power_mw(
    served_tokens_per_s: float | np.ndarray,
    n_gpus: int | np.ndarray,
    prefill_share: float | np.ndarray,
    model: PowerModel,
    reserve_gpus: float | np.ndarray,
    powered_gpus: float | np.ndarray | None = None,
) -> np.ndarray:
    """Facility power (MW) of a site that powers idle servers down.

    The work is packed onto the fewest GPUs, each at full load: board power is concave in
    tokens/s, so this is the least power for the work (n·f(T/n) grows with n). ``reserve_gpus``
    more stay powered and idle (the warm reserve); the rest are off and draw nothing, while the
    auxiliary load stays on. ``powered_gpus`` (at least the busy ones) counts GPUs kept on for
    another reason, e.g. booting for work they serve soon; they draw idle power. GPU counts are
    continuous: at a site of thousands of GPUs the rounding is below one GPU's power.
    """
    n = _check_gpus(n_gpus)
    p = _check_share(prefill_share)
    served = np.asarray(served_tokens_per_s, dtype=float)
    if np.any(~np.isfinite(served)) or np.any(served < 0):
        raise UsageError("served tokens/s must be finite and not negative")
    per_gpu = site_capacity_tokens_per_s(1, p, model)
    busy = served / per_gpu
    if np.any(busy > n * (1 + 1e-9)):
        raise UsageError("served tokens/s above the site's capacity; cap the dispatch")
    busy = np.minimum(busy, n)
    on = busy if powered_gpus is None else np.maximum(busy, powered_gpus)
    on = np.minimum(on + reserve_gpus, n)
    host = model.host_w_per_gpu
    it_w = busy * (full_load_board_w(p, model.curve) + host) + (on - busy) * (model.curve.idle_w + host)
    return it_w * model.pue / 1e6 + _aux_mw(n, model)


def packed_served_for_power(
    power_mw: float | np.ndarray,
    n_gpus: int | np.ndarray,
    prefill_share: float | np.ndarray,
    model: PowerModel,
    reserve_gpus: float | np.ndarray,
) -> np.ndarray:
    """Most tokens/s whose :func:`packed_power_mw` (no extra powered GPUs) is at most ``power_mw``.

    The exact inverse: power is linear in the busy GPUs, with one slope while the reserve is
    whole and another once every GPU is on. 0 below the floor (auxiliary load and reserve).
    """
    n = _check_gpus(n_gpus)
    p = _check_share(prefill_share)
    pw = np.asarray(power_mw, dtype=float)
    if np.any(~np.isfinite(pw)):
        raise UsageError("power must be finite")
    host = model.host_w_per_gpu
    busy_w = full_load_board_w(p, model.curve) + host  # per busy GPU
    idle_w = model.curve.idle_w + host  # per powered idle GPU
    reserve = np.minimum(reserve_gpus, n)
    it_w = (pw - _aux_mw(n, model)) * 1e6 / model.pue
    knee = (n - reserve) * busy_w + reserve * idle_w  # every GPU on from here
    with np.errstate(divide="ignore", invalid="ignore"):
        busy = np.where(
            it_w <= knee, (it_w - reserve * idle_w) / busy_w, (it_w - n * idle_w) / (busy_w - idle_w)
        )
    busy = np.clip(busy, 0.0, n)
    return busy * site_capacity_tokens_per_s(1, p, model)
