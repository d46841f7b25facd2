"""Fleet demand from the Azure and ServeGen traces, and user demand files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from siting.errors import DataError, UsageError
from siting.workload import (
    AZURE_FILES,
    DEMAND_COLUMNS,
    SERVEGEN_FILE,
    TokenMix,
    demand_shape,
    fleet_demand,
    read_demand_csv,
    token_mix,
)

YEAR = pd.date_range("2016-01-01", periods=35_136, freq="15min")  # SimBench's 2016 steps


@pytest.fixture(scope="module")
def requests() -> pd.DataFrame:
    return pd.concat([pd.read_csv(p, parse_dates=["TIMESTAMP"]) for p in AZURE_FILES], ignore_index=True)


def test_token_mix_from_the_trace(requests: pd.DataFrame) -> None:
    mix = token_mix()
    assert len(requests) == 8819 + 19366
    assert mix.prefill_tokens_per_request == pytest.approx(requests["ContextTokens"].mean())
    assert mix.decode_tokens_per_request == pytest.approx(requests["GeneratedTokens"].mean())
    share = requests["ContextTokens"].sum() / (
        requests["ContextTokens"].sum() + requests["GeneratedTokens"].sum()
    )
    assert mix.prefill_share == pytest.approx(share)
    assert (mix.prefill_tokens_per_request, mix.decode_tokens_per_request) == pytest.approx(
        (1434.16, 153.79), abs=0.01
    )
    assert mix.prefill_share == pytest.approx(0.9032, abs=1e-4)


def test_burst_cv_at_one_minute(requests: pd.DataFrame) -> None:
    tokens = (requests["ContextTokens"] + requests["GeneratedTokens"]).set_axis(requests["TIMESTAMP"])
    per_minute = tokens.sort_index().resample("1min").sum().iloc[1:-1]  # whole minutes only
    assert len(per_minute) == 58
    mix = token_mix()
    assert mix.burst_cv_1min == pytest.approx(per_minute.std() / per_minute.mean())
    assert mix.burst_cv_1min == pytest.approx(0.4996, abs=1e-4)
    assert mix.step_cv(900) == pytest.approx(mix.burst_cv_1min / np.sqrt(15))


def test_shape_peak_one_and_deterministic() -> None:
    shape = demand_shape(YEAR, seed=0)
    assert shape.index.equals(YEAR)
    assert shape.max() == 1.0
    assert shape.min() > 0 and not shape.isna().any()
    pd.testing.assert_series_equal(shape, demand_shape(YEAR, seed=0))
    other = demand_shape(YEAR, seed=1)
    assert (shape - other).abs().mean() > 0.01


def test_weekdays_follow_servegen() -> None:
    rates = pd.read_csv(SERVEGEN_FILE)["total_rate_req_per_s"].to_numpy().reshape(14, 144).mean(axis=1)
    # Day 0 is taken as a Tuesday: Mondays are days 6 and 13, Sundays days 5 and 12.
    servegen_ratio = rates[[6, 13]].mean() / rates[[5, 12]].mean()
    assert servegen_ratio == pytest.approx(1.60, abs=0.01)
    for seed in (0, 1):
        shape = demand_shape(YEAR, seed=seed)
        daily = shape.groupby(YEAR.weekday).mean()
        assert daily[0] / daily[6] == pytest.approx(servegen_ratio, rel=0.1)


def test_hour_of_day_follows_servegen() -> None:
    rates = pd.read_csv(SERVEGEN_FILE)["total_rate_req_per_s"].to_numpy().reshape(14, 24, 6)
    servegen_hours = (rates / rates.mean(axis=(1, 2), keepdims=True)).mean(axis=(0, 2))
    shape = demand_shape(YEAR, seed=0)
    hours = shape.groupby(YEAR.hour).mean().to_numpy()
    assert np.corrcoef(hours, servegen_hours)[0, 1] > 0.9
    assert hours.argmin() in (6, 7, 8)  # the early-morning trough


def test_hourly_index_and_single_step() -> None:
    hourly = pd.date_range("2016-03-01", periods=24 * 7, freq="h")
    shape = demand_shape(hourly, seed=3)
    assert shape.index.equals(hourly) and shape.max() == 1.0
    one = demand_shape(hourly[:1])
    assert one.iloc[0] == 1.0


def test_fleet_demand_split_and_peak() -> None:
    demand = fleet_demand(YEAR, 2e8, seed=0)
    assert list(demand.columns) == DEMAND_COLUMNS
    total = demand.sum(axis=1)
    assert total.max() == pytest.approx(2e8)
    share = demand["prefill_tokens_per_s"] / total
    assert np.allclose(share, token_mix().prefill_share)
    with pytest.raises(UsageError, match="positive"):
        fleet_demand(YEAR, 0.0)


def test_token_mix_prefill_share_property() -> None:
    assert TokenMix(300.0, 100.0, 0.5).prefill_share == 0.75


# ----- user demand files ---------------------------------------------------------------

DAY = pd.date_range("2016-01-01", periods=96, freq="15min")


def _write(path: Path, times: pd.DatetimeIndex | list[str], **columns: object) -> Path:
    frame = pd.DataFrame({"time": [str(t) for t in times], **columns})
    frame.to_csv(path, index=False)
    return path


def test_same_step_both_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", DAY, prefill_tokens_per_s=np.arange(96.0), decode_tokens_per_s=1.0)
    demand = read_demand_csv(path, DAY)
    assert demand.index.equals(DAY) and list(demand.columns) == DEMAND_COLUMNS
    np.testing.assert_allclose(demand["prefill_tokens_per_s"], np.arange(96.0))


def test_hourly_file_to_15_min(tmp_path: Path) -> None:
    hours = pd.date_range("2016-01-01", periods=24, freq="h")
    path = _write(tmp_path / "h.csv", hours, tokens_per_s=np.arange(24.0) * 100)
    demand = read_demand_csv(path, DAY)
    assert demand.index.equals(DAY)
    total = demand.sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, np.repeat(np.arange(24.0) * 100, 4))  # held over each hour
    share = token_mix().prefill_share
    np.testing.assert_allclose(demand["prefill_tokens_per_s"], total * share)


def test_finer_file_is_averaged(tmp_path: Path) -> None:
    fine = pd.date_range("2016-01-01", periods=96 * 3, freq="5min")
    values = np.tile([1.0, 2.0, 6.0], 96)
    path = _write(tmp_path / "f.csv", fine, tokens_per_s=values)
    np.testing.assert_allclose(read_demand_csv(path, DAY).sum(axis=1), 3.0)


def test_tz_aware_index_converts_offsets(tmp_path: Path) -> None:
    index = pd.date_range("2016-06-01", periods=4, freq="h", tz="America/Chicago")
    utc = index.tz_convert("UTC")
    path = _write(tmp_path / "z.csv", [t.isoformat() for t in utc], tokens_per_s=[1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(read_demand_csv(path, index).sum(axis=1), [1, 2, 3, 4])


@pytest.mark.parametrize(
    ("times", "columns", "words"),
    [
        (DAY, {"tokens": 1.0}, "tokens_per_s column"),
        (DAY, {"prefill_tokens_per_s": 1.0}, "tokens_per_s column"),
        (
            [*map(str, DAY[:10]), "yesterday", *map(str, DAY[11:])],
            {"tokens_per_s": 1.0},
            "line 12.*yesterday",
        ),
        ([*DAY[:50], DAY[49], *DAY[51:]], {"tokens_per_s": 1.0}, "line 52.*twice"),
        (DAY, {"tokens_per_s": [1.0] * 20 + [-3.0] + [1.0] * 75}, "line 22.*negative"),
        (DAY, {"tokens_per_s": ["1"] * 7 + ["lots"] + ["1"] * 88}, "line 9.*'lots' is not a number"),
        ([*DAY[:30], *DAY[33:]], {"tokens_per_s": 1.0}, "gap after 2016-01-01 07:15:00.*3 time.*15 min step"),
        ([f"{t}+01:00" for t in DAY], {"tokens_per_s": 1.0}, "line 2.*without an offset"),
        (DAY[:90], {"tokens_per_s": 1.0}, "covers.*needs 2016-01-01 00:00:00 to 2016-01-02 00:00:00"),
    ],
)
def test_bad_demand_files(tmp_path: Path, times: list, columns: dict, words: str) -> None:
    path = _write(tmp_path / "bad.csv", times, **columns)
    with pytest.raises(DataError, match=words) as info:
        read_demand_csv(path, DAY)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_demand_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read_demand_csv(tmp_path / "none.csv", DAY)
    (tmp_path / "notime.csv").write_text("when,tokens_per_s\n2016-01-01,1\n")
    with pytest.raises(DataError, match="'time' column"):
        read_demand_csv(tmp_path / "notime.csv", DAY)
