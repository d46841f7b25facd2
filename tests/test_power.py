"""Facility power from the measured H200 curve: checked against numbers worked out by hand."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from siting.errors import UsageError
from siting.power import (
    DATA_DIR,
    GpuCurve,
    PowerModel,
    gpus_for_site,
    load_gpu_curve,
    measured_points,
    power_curve_table,
    served_for_power,
    site_capacity_tokens_per_s,
    site_power_mw,
    site_rating_mw,
)

PHASES = pd.read_csv(DATA_DIR / "phases.csv").set_index("phase")


@pytest.fixture(scope="module")
def curve() -> GpuCurve:
    return load_gpu_curve()


@pytest.fixture(scope="module")
def model(curve: GpuCurve) -> PowerModel:
    return PowerModel(curve)


@pytest.fixture(scope="module")
def bare(curve: GpuCurve) -> PowerModel:
    """Board power only: facility MW × 1e6 is then the per-GPU board power for one GPU."""
    return PowerModel(curve, pue=1.0, host_w_per_gpu=0.0, aux_fraction=0.0)


def test_warm_idle_from_settled_ramp_samples(curve: GpuCurve) -> None:
    trace = pd.read_csv(DATA_DIR / "power.csv")
    idle = trace[trace["phase"].isin(["ramp_idle_before", "ramp_idle_after"])]
    settled = idle[idle["t_s"] >= idle.groupby("phase")["t_s"].transform("min") + 2.0]
    assert curve.idle_w == pytest.approx(settled["power_w"].median())
    assert curve.idle_w == pytest.approx(122.24, abs=0.01)
    assert curve.idle_w > PHASES.loc["idle", "power_mean_w"] + 40  # warm, not the 81 W cold idle


def test_curve_passes_through_measured_points(curve: GpuCurve, bare: PowerModel) -> None:
    decode = PHASES.loc[[f"decode_b{b}" for b in (1, 8, 32, 128, 256)]]
    watts = site_power_mw(0.0, decode["tokens_per_s"].to_numpy(), 1, bare) * 1e6
    np.testing.assert_allclose(watts, decode["power_median_w"].to_numpy(), rtol=1e-12)
    assert watts[-1] == pytest.approx(688.0)
    prefill = site_power_mw(PHASES.loc["prefill", "tokens_per_s"], 0.0, 1, bare) * 1e6
    assert prefill == pytest.approx(692.3)
    # Halfway between batch 8 and 32 in throughput: halfway in power.
    mid = (1131.3851847143799 + 4494.37034548612) / 2
    assert site_power_mw(0.0, mid, 1, bare) * 1e6 == pytest.approx((415.0 + 520.4) / 2)
    # Half the GPU time on prefill, the other half idle.
    half = site_power_mw(39403.0551628413 / 2, 0.0, 1, bare) * 1e6
    assert half == pytest.approx((692.3 + curve.idle_w) / 2)


def test_gpus_for_a_10_mw_site_by_hand(model: PowerModel) -> None:
    # 2% auxiliary; full load 692.3 W board (prefill) + 575 W host, × PUE 1.3.
    assert model.host_w_per_gpu == pytest.approx((10_200 - 8 * 700) / 8)
    per_gpu = (692.3 + 575.0) * 1.3
    assert gpus_for_site(10.0, model) == int(10e6 * 0.98 // per_gpu) == 5948
    assert gpus_for_site(20.0, model) == 11896
    assert site_rating_mw(5948, model) == pytest.approx(5948 * per_gpu / 0.98 / 1e6)


def test_zero_load_is_idle_floor_plus_aux(model: PowerModel, curve: GpuCurve) -> None:
    n = 5948
    rating = n * (692.3 + 575.0) * 1.3 / 0.98 / 1e6
    by_hand = n * (curve.idle_w + 575.0) * 1.3 / 1e6 + 0.02 * rating
    assert site_power_mw(0.0, 0.0, n, model) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(5.5913, abs=1e-3)


def test_capacity_by_hand(model: PowerModel) -> None:
    n = 5948
    prefill, decode = 39403.0551628413, 15837.093622803439
    assert site_capacity_tokens_per_s(n, 0.0, model) == pytest.approx(n * decode)
    assert site_capacity_tokens_per_s(n, 1.0, model) == pytest.approx(n * prefill)
    p = 0.9
    assert site_capacity_tokens_per_s(n, p, model) == pytest.approx(n / (p / prefill + (1 - p) / decode))
    # At capacity the site draws its full-load power, within its rating.
    cap = site_capacity_tokens_per_s(n, 1.0, model)
    assert site_power_mw(cap, 0.0, n, model) == pytest.approx(site_rating_mw(n, model))
    with pytest.raises(UsageError, match="capacity"):
        site_power_mw(1.01 * cap, 0.0, n, model)


def test_inverse_round_trips_and_is_fast(model: PowerModel) -> None:
    rng = np.random.default_rng(1)
    n = np.array([100, 3000, 5948, 11896, 1, 250, 4000, 7000, 9000, 500])
    share = rng.uniform(0, 1, size=(35_136, 10))
    share[:5] = [0.0] * 10, [1.0] * 10, [0.5] * 10, [0.9] * 10, [0.99] * 10
    served = rng.uniform(0, 1, size=share.shape) * site_capacity_tokens_per_s(n, share, model)
    start = time.perf_counter()
    mw = site_power_mw(share * served, (1 - share) * served, n, model)
    back = served_for_power(mw, n, share, model)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_allclose(back, served, rtol=1e-9, atol=1e-6)


def test_inverse_ends(model: PowerModel) -> None:
    n, p = 5948, 0.9
    floor = float(site_power_mw(0.0, 0.0, n, model))
    cap = float(site_capacity_tokens_per_s(n, p, model))
    got = served_for_power(np.array([0.0, floor - 1e-6, floor, 50.0]), n, p, model)
    np.testing.assert_allclose(got, [0.0, 0.0, 0.0, cap], atol=1e-6)


def test_power_rises_with_served_tokens(model: PowerModel) -> None:
    table = power_curve_table(model, 5948, 0.9, points=200)
    assert np.all(np.diff(table["facility_mw"]) > 0)
    assert table["served_tokens_per_s"].iloc[0] == 0.0
    assert table["served_tokens_per_s"].iloc[-1] == pytest.approx(
        site_capacity_tokens_per_s(5948, 0.9, model)
    )
    assert table["facility_mw"].iloc[0] == pytest.approx(site_power_mw(0.0, 0.0, 5948, model))
    assert len(table) >= 200


def test_measured_points_for_overlay() -> None:
    points = measured_points().set_index("phase")
    assert list(points.index) == [
        "idle",
        "decode_b1",
        "decode_b8",
        "decode_b32",
        "decode_b128",
        "decode_b256",
        "prefill",
        "idle_warm",
    ]
    assert points.loc["decode_b256", "power_median_w"] == 688.0
    assert points.loc["idle_warm", "power_median_w"] == pytest.approx(122.24, abs=0.01)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"pue": 0.9}, "pue=0.9: must be a finite number ≥ 1"),
        ({"aux_fraction": -0.01}, "aux_fraction=-0.01"),
        ({"host_w_per_gpu": -1.0}, "host_w_per_gpu=-1.0"),
    ],
)
def test_bad_settings(curve: GpuCurve, settings: dict, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        PowerModel(curve, **settings)


def test_bad_calls(model: PowerModel) -> None:
    with pytest.raises(UsageError, match="cannot power one GPU"):
        gpus_for_site(0.001, model)
    with pytest.raises(UsageError, match="positive"):
        gpus_for_site(-5.0, model)
    with pytest.raises(UsageError, match="at least one GPU"):
        site_power_mw(0.0, 0.0, 0, model)
    with pytest.raises(UsageError, match="between 0 and 1"):
        site_capacity_tokens_per_s(10, 1.2, model)
    with pytest.raises(UsageError, match="not negative"):
        site_power_mw(-1.0, 0.0, 10, model)
    with pytest.raises(UsageError, match="not found"):
        load_gpu_curve(DATA_DIR / "nope.csv")
