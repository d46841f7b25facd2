"""Scaling and resampling profiles block by block gives what the whole frame gives, bit for bit."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from siting.sources import profiles as profile_ops


def _whole_frame(profiles: pd.DataFrame, factor: float, ratio: int) -> pd.DataFrame:
    """The plain pandas way, on every column at once: loads × factor, then ratio-step means."""
    scaled = profiles.copy()
    loads = scaled.columns.get_level_values("element") == "load"
    scaled.loc[:, loads] = scaled.loc[:, loads] * factor
    means = scaled.groupby(np.arange(len(scaled)) // ratio).mean()
    means.index = scaled.index[::ratio][: len(means)]
    return means


@pytest.mark.parametrize("factor", [1.0, 1.37])
def test_simulation_year_in_column_blocks_equals_the_whole_frame(hv_mixed, monkeypatch, factor):
    # 7 columns a block: many blocks, the last one short
    monkeypatch.setattr(profile_ops, "BLOCK_COLUMNS", 7)
    assert hv_mixed.profiles.shape[1] % 7
    year, applied = profile_ops.simulation_year(hv_mixed, load_scale=factor, step_minutes=60)
    assert applied == factor
    expected = _whole_frame(hv_mixed.profiles, factor, 4)
    pd.testing.assert_frame_equal(year.profiles, expected, check_exact=True)
    assert year.profiles.index.name == hv_mixed.profiles.index.name


def test_scaling_alone_in_blocks_equals_the_whole_frame_and_leaves_the_grid_as_it_was(hv_mixed, monkeypatch):
    monkeypatch.setattr(profile_ops, "BLOCK_COLUMNS", 5)
    before = hv_mixed.profiles.copy()
    grown = profile_ops.scale_loads(hv_mixed, 2.5)
    pd.testing.assert_frame_equal(grown.profiles, _whole_frame(before, 2.5, 1), check_exact=True)
    pd.testing.assert_frame_equal(hv_mixed.profiles, before, check_exact=True)
    sgen = hv_mixed.profiles.columns[hv_mixed.profiles.columns.get_level_values("element") == "sgen"][0]
    assert grown.profiles[sgen].equals(before[sgen])


def test_unit_scale_at_the_grid_step_shares_the_profiles(hv_mixed):
    year, _ = profile_ops.simulation_year(hv_mixed, load_scale=1.0, step_minutes=15)
    assert year.profiles is hv_mixed.profiles
    assert profile_ops.scale_loads(hv_mixed, 1.0).profiles is hv_mixed.profiles


def test_a_step_that_is_no_multiple_of_the_grid_step_is_refused(hv_mixed):
    from siting.errors import SettingError

    with pytest.raises(SettingError):
        profile_ops.simulation_year(hv_mixed, step_minutes=20)
    with pytest.raises(SettingError):
        profile_ops.resample_profiles(dataclasses.replace(hv_mixed), 10)
