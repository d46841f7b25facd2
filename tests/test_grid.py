import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from siting import GridError, UsageError, load_grid
from siting.sources.grid import read_matpower


def test_simbench_grid_has_its_buses_and_a_year_of_15_minute_profiles(hv_mixed):
    assert len(hv_mixed.net.bus) == 306
    assert len(hv_mixed.net.load) == 58
    profiles = hv_mixed.profiles
    assert isinstance(profiles.index, pd.DatetimeIndex)
    assert len(profiles) == 35136  # 2016 is a leap year: 366 days × 96
    assert profiles.index[0] == pd.Timestamp("2016-01-01 00:00")
    assert profiles.index[1] - profiles.index[0] == pd.Timedelta(minutes=15)
    assert set(profiles.columns.get_level_values("element")) == {"load", "sgen"}
    assert profiles[("load", "p_mw")].shape[1] == 58


def test_simbench_profiles_are_absolute_values_of_each_element(hv_mixed):
    net = hv_mixed.net
    load = net.load.index[0]
    shape = net.profiles["load"][net.load.at[load, "profile"] + "_pload"].to_numpy()
    expected = shape * net.load.at[load, "p_mw"]
    assert np.allclose(hv_mixed.profiles[("load", "p_mw", load)].to_numpy(), expected)


def test_simbench_profiles_equal_pandas_concat_of_the_absolute_values(hv_mixed, monkeypatch):
    """The one-array build (siting.sources.grid.simbench_profiles), given simbench's absolute
    values or computing them a few elements at a time, against the plain pandas way of joining
    simbench's absolute values: the same frame, bit for bit."""
    import simbench

    from siting.sources import grid
    from siting.sources.grid import simbench_profiles

    net = hv_mixed.net
    absolute = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    time = pd.DatetimeIndex(pd.to_datetime(net.profiles["load"]["time"], format="%d.%m.%Y %H:%M"))
    # the columns shuffled, so the build's sort of each block's element indices is exercised
    rng = np.random.default_rng(1)
    frames = {key: f.iloc[:, rng.permutation(f.shape[1])] for key, f in absolute.items() if f.shape[1]}
    reference = pd.concat(
        {key: f.set_axis(time, axis=0) for key, f in sorted(frames.items())},
        axis=1,
        names=["element", "variable", "index"],
    ).sort_index(axis=1)
    reference.index.name = "time"
    built = simbench_profiles(net, absolute=frames)
    pd.testing.assert_frame_equal(built, reference, check_exact=True)
    pd.testing.assert_frame_equal(hv_mixed.profiles, reference, check_exact=True)
    monkeypatch.setattr(grid, "SIMBENCH_ELEMENTS_AT_ONCE", 7)  # 58 loads and 103 sgens in parts
    pd.testing.assert_frame_equal(simbench_profiles(net), reference, check_exact=True)


def test_pandapower_builtin_has_no_profiles(oberrhein):
    assert len(oberrhein.net.bus) == 179
    assert oberrhein.profiles is None


def test_texas_grid_is_2000_buses_in_texas_with_hourly_area_loads(texas):
    assert len(texas.net.bus) == 2000
    lon, lat = texas.substations["lon"], texas.substations["lat"]
    assert lon.between(-106.7, -93.5).all() and lat.between(25.8, 36.5).all()
    profiles = texas.profiles
    assert len(profiles) == 8784 and profiles.index[0] == pd.Timestamp("2016-01-01")
    total = profiles[("load", "p_mw")].sum(axis=1)
    # the system total follows the TAMU hourly total (peak 66,276 MW) exactly
    assert total.max() == pytest.approx(66276.0, rel=1e-4)
    assert profiles.index[total.argmax()].month in (7, 8)


def test_matpower_transformers_stay_transformers_with_unchanged_physics(tmp_path):
    case = "grids/activsg/case_ACTIVSg200.m"
    net = read_matpower(case)
    from pandapower.converter.matpower import from_mpc

    raw = from_mpc(case, f_hz=60)
    assert len(raw.trafo) == 0 and len(raw.impedance) == 66  # what pandapower gives
    assert len(net.trafo) == 66 and len(net.impedance) == 0
    pp.runpp(net)
    pp.runpp(raw)
    assert np.abs(net.res_bus.vm_pu - raw.res_bus.vm_pu).max() < 1e-9
    assert net.res_trafo.loading_percent.notna().all()


def test_unknown_simbench_code_is_a_usage_error():
    with pytest.raises(UsageError, match="not a SimBench code"):
        load_grid("simbench:1-HV-nowhere--0-sw")


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        load_grid(tmp_path / "absent.json")


def test_corrupt_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"_module": "pandapower.auxiliary", "_object": {"bus": ')
    with pytest.raises(GridError, match=r"broken\.json: not a readable pandapower JSON"):
        load_grid(path)


def test_matpower_file_with_ragged_bus_matrix_names_the_file(tmp_path):
    path = tmp_path / "ragged.m"
    path.write_text(
        "function mpc = ragged\nmpc.version = '2';\nmpc.baseMVA = 100;\n"
        "mpc.bus = [\n 1 3 0 0;\n 2 1 10\n];\nmpc.gen = [1 0 0];\nmpc.branch = [1 2 0.01];\n"
    )
    with pytest.raises(GridError, match=r"ragged\.m: not a readable MATPOWER case"):
        load_grid(path)


def test_grid_without_geodata_has_substations_without_places(tmp_path):
    net = pp.networks.case9()
    net.bus["geo"] = None
    path = tmp_path / "nogeo.json"
    pp.to_json(net, str(path))
    grid = load_grid(path)
    assert len(grid.substations) == 3  # case9's three load buses
    assert grid.substations["lon"].isna().all() and grid.substations.geometry.isna().all()


def test_grid_with_some_coordinates_missing_at_a_substation_is_refused(tmp_path):
    net = pp.networks.case9()
    net.bus["geo"] = None
    net.bus.loc[0, "geo"] = '{"coordinates": [10.0, 50.0], "type": "Point"}'
    path = tmp_path / "somegeo.json"
    pp.to_json(net, str(path))
    with pytest.raises(GridError, match="have no coordinates"):
        load_grid(path)


def test_grid_without_slack_is_refused(tmp_path, oberrhein):
    net = pp.from_json_string(pp.to_json(oberrhein.net))
    net.ext_grid["in_service"] = False
    path = tmp_path / "noslack.json"
    pp.to_json(net, str(path))
    with pytest.raises(GridError, match="no in-service external grid"):
        load_grid(path)


def test_a_matpower_files_bus_areas_are_kept_as_the_catalog_entry_has_them(texas):
    from siting.sources.catalog import GRIDS_DIR

    net = read_matpower(GRIDS_DIR / "activsg" / "case_ACTIVSg2000.m")
    # the catalog entry takes each bus's area from TAMU's bus table; the case's BUS_AREA agrees
    assert net.bus["area"].tolist() == texas.net.bus["area"].tolist()
    assert sorted(net.bus["area"].unique()) == list(range(1, 9))
