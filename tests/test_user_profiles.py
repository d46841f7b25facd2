"""Profiles a user brings: keys, time zones and every bad input named in one line."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from siting import UsageError, load_grid
from siting.sources.user_profiles import check_covers, read_profiles

PSSE = Path(__file__).resolve().parents[1] / "grids" / "psse"
TAMU_LOADS = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "grids"
    / "psse"
    / "activsg2000"
    / "ACTIVSg2000_load_time_series_MW.csv"
)


@pytest.fixture(scope="module")
def rts():
    return load_grid(PSSE / "RTS-GMLC.RAW")


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "loads.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def _hours(n: int = 4, start: str = "2026-07-01 00:00") -> list[str]:
    return [str(t) for t in pd.date_range(start, periods=n, freq="h")]


def test_every_kind_of_key_sets_the_loads_it_names(tmp_path, rts):
    net = rts.net
    caesar = rts.substations.loc[rts.substations["name"] == "CAESAR"].iloc[0]
    frame = pd.DataFrame(
        {
            "time": _hours(),
            "Bus 101 #1 MW": [100.0, 110, 120, 130],  # PSS/E style key, MW …
            "Bus 101 #1 Mvar": [20.0, 21, 22, 23],  # … and its Mvar
            "B102-L1": [90.0, 91, 92, 93],  # a load's name: Mvar at the model's power factor
            "103": [150.0, 160, 170, 180],  # a bus number
            "CAESAR": [50.0, 60, 70, 80],  # a substation's name
        }
    )
    profiles = read_profiles(_write(tmp_path, frame), net, time_zone="UTC", substations=rts.substations)
    p, q = profiles[("load", "p_mw")], profiles[("load", "q_mvar")]
    load = {bus: int(net.load.index[net.load["bus"] == bus][0]) for bus in (101, 102, 103)}
    assert p[load[101]].tolist() == [100, 110, 120, 130] and q[load[101]].tolist() == [20, 21, 22, 23]
    ratio = net.load.at[load[102], "q_mvar"] / net.load.at[load[102], "p_mw"]
    assert q[load[102]].to_numpy() == pytest.approx(np.array([90, 91, 92, 93]) * ratio)
    assert p[load[103]].tolist() == [150, 160, 170, 180]
    caesar_loads = net.load.index[net.load["bus"] == caesar["bus"]]
    assert p[caesar_loads].sum(axis=1).tolist() == pytest.approx([50, 60, 70, 80])
    assert str(profiles.index.tz) == "UTC" and profiles.index.freq is None and len(profiles) == 4


def test_parquet_with_zoned_times_converts_to_the_given_zone(tmp_path, rts):
    frame = pd.DataFrame({"time": pd.date_range("2026-07-01", periods=3, freq="15min", tz="UTC"), "101": 1.0})
    profiles = read_profiles(_write(tmp_path, frame, "loads.parquet"), rts.net, time_zone="America/Chicago")
    assert profiles.index[0] == pd.Timestamp("2026-06-30 19:00", tz="America/Chicago")


def test_area_totals_and_zone_shapes_spread_over_the_loads_in_them(tmp_path, rts):
    net = rts.net
    area = net.bus["area"].reindex(net.load["bus"]).to_numpy()
    zone = net.bus["zone"].reindex(net.load["bus"]).to_numpy()
    in_area_2 = net.load.index[area == 2]
    in_zone_11 = net.load.index[(zone == 11) & (area != 2)]
    frame = pd.DataFrame({"time": _hours(), "area 2 MW": [900.0, 1000.0, 1100.0, 1200.0], "zone_11 pu": 0.5})
    profiles = read_profiles(_write(tmp_path, frame), net, time_zone="UTC")
    p, q = profiles[("load", "p_mw")], profiles[("load", "q_mvar")]
    # the area's total, each load by its share of the area's base MW, Mvar at its own power factor
    assert p[in_area_2].sum(axis=1).tolist() == pytest.approx([900.0, 1000.0, 1100.0, 1200.0])
    base = net.load.loc[in_area_2, "p_mw"]
    assert p[in_area_2].iloc[1].to_numpy() == pytest.approx((1000.0 * base / base.sum()).to_numpy())
    first = in_area_2[0]
    ratio = net.load.at[first, "q_mvar"] / net.load.at[first, "p_mw"]
    assert q[first].iloc[0] == pytest.approx(p[first].iloc[0] * ratio)
    # a shape: half of each load's model MW and Mvar
    for variable, got in (("p_mw", p), ("q_mvar", q)):
        model = net.load.loc[in_zone_11, variable].to_numpy()
        assert got[in_zone_11].iloc[0].to_numpy() == pytest.approx(0.5 * model)
    with pytest.raises(UsageError, match=r"name no load.*first ten: area 9"):
        read_profiles(_write(tmp_path, pd.DataFrame({"time": _hours(), "area 9": 1.0})), net, time_zone="UTC")


@pytest.mark.skipif(not TAMU_LOADS.exists(), reason="TAMU's per-load file is in the shared data folder")
def test_tamus_per_load_file_drives_every_load_of_the_raw_case():
    net = load_grid(PSSE / "ACTIVSg2000.RAW").net
    profiles = read_profiles(TAMU_LOADS, net, time_zone="America/Chicago")
    total = pd.read_csv(TAMU_LOADS, skiprows=1)["Total MW Load"].to_numpy()
    assert profiles[("load", "p_mw")].shape == (168, 1350)
    assert profiles[("load", "p_mw")].sum(axis=1).to_numpy() == pytest.approx(total, rel=1e-7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.assign(**{f"X{i}": 1.0 for i in range(12)}),
            r"12 column\(s\) name no load.*first ten: X0, X1",
        ),
        (lambda f: f.assign(time=[f.time[0], f.time[0], f.time[2], f.time[3]]), "appears more than once"),
        (lambda f: f.assign(time=[f.time[1], f.time[0], f.time[2], f.time[3]]), "times are not sorted"),
        (lambda f: f.assign(time=[*f.time[:3], "2026-07-01 05:00:00"]), "time step is not regular"),
        (lambda f: f.assign(**{"101": [1.0, np.nan, 1.0, 1.0]}), "column '101' has no value at"),
        (lambda f: f.assign(**{"101": [1.0, -2.0, 1.0, 1.0]}), "column '101' is negative"),
    ],
    ids=["unknown-keys", "duplicate", "unsorted", "gap", "nan", "negative"],
)
def test_bad_profile_files_are_refused_in_one_line(tmp_path, rts, change, message):
    frame = change(pd.DataFrame({"time": _hours(), "101": 1.0}))
    with pytest.raises(UsageError, match=message) as err:
        read_profiles(_write(tmp_path, frame), rts.net, time_zone="UTC")
    assert "\n" not in str(err.value)


def test_local_times_need_a_zone_and_an_unambiguous_clock(tmp_path, rts):
    path = _write(tmp_path, pd.DataFrame({"time": _hours(), "101": 1.0}))
    with pytest.raises(UsageError, match="times carry no zone"):
        read_profiles(path, rts.net)
    autumn = _write(tmp_path, pd.DataFrame({"time": _hours(4, "2026-11-01 00:00"), "101": 1.0}), "autumn.csv")
    with pytest.raises(UsageError, match="times in America/Chicago"):
        read_profiles(autumn, rts.net, time_zone="America/Chicago")  # 01:00 happens twice


def test_an_operating_time_outside_the_span_is_refused(tmp_path, rts):
    profiles = read_profiles(_write(tmp_path, pd.DataFrame({"time": _hours(), "101": 1.0})), rts.net, "UTC")
    check_covers(profiles, "2026-07-01 02:00")
    with pytest.raises(UsageError, match="outside the profiles' span"):
        check_covers(profiles, "2026-08-01 00:00")


def test_generation_follows_the_total_load_unless_the_case_dispatch_is_asked(tmp_path, rts):
    from siting.sources.own import with_own_data

    net = rts.net
    area = net.bus["area"].reindex(net.load["bus"]).to_numpy()
    in_area_2 = net.load.index[area == 2]
    area_2 = net.load.loc[in_area_2, "p_mw"].sum() * np.array([0.2, 0.8, 1.4, 2.0])
    path = _write(tmp_path, pd.DataFrame({"time": _hours(), "area 2 MW": area_2}))
    following = with_own_data(rts, profiles=path, time_zone="UTC")
    assert following.dispatch == "load-following"  # the case has voltage-controlled generators
    assert following.inputs()["dispatch"] == "load-following"
    # area 2 as given, every other load at its model MW: that is the system total to follow
    others = net.load.loc[~net.load.index.isin(in_area_2), "p_mw"].sum()
    ratio = (area_2 + others) / net.load["p_mw"].sum()
    gen = following.profiles[("gen", "p_mw")]
    assert gen.shape == (4, len(net.gen))
    assert gen.to_numpy() == pytest.approx(ratio[:, None] * net.gen["p_mw"].to_numpy()[None, :])
    assert ratio.min() < 0.9 and ratio.max() > 1.0  # the test spans load below and above the case's

    case = with_own_data(rts, profiles=path, time_zone="UTC", dispatch="case")
    assert case.dispatch == "case"
    assert "gen" not in case.profiles.columns.get_level_values("element")
    assert case.profiles[("load", "p_mw")].equals(following.profiles[("load", "p_mw")])


def test_a_feeder_keeps_its_dispatch_and_dispatch_needs_profiles(tmp_path):
    from siting.sources.own import with_own_data
    from siting.sources.user_profiles import default_dispatch

    feeder = load_grid("pandapower:case33bw")
    assert default_dispatch(feeder.net) == "case"  # no voltage-controlled generator to follow load
    with pytest.raises(UsageError, match="--dispatch case: applies to your load profiles; give --profiles"):
        with_own_data(feeder, dispatch="case")
    with pytest.raises(UsageError, match="--dispatch merit: use load-following or case"):
        with_own_data(feeder, dispatch="merit")


@pytest.mark.slow
def test_area_totals_given_as_a_file_reproduce_the_catalog_grids_capacity(tmp_path):
    """TAMU's area totals through --profiles, generation following load: the catalog entry's answers."""
    from siting.capacity import CapacitySettings, substation_capacity
    from siting.sources.own import with_own_data

    catalog = load_grid("texas2000")
    totals = pd.read_csv(
        Path(__file__).resolve().parents[1] / "grids" / "activsg" / "ACTIVSg2000_area_load_hourly_MW.csv"
    )
    week = totals.iloc[:168]
    frame = pd.DataFrame(
        {"time": pd.date_range("2016-01-01", periods=168, freq="h").strftime("%Y-%m-%d %H:%M")}
    )
    for column in week.columns[week.columns.str.startswith("area_")]:
        frame[f"area {column.removeprefix('area_')} MW"] = week[column].to_numpy()
    own = with_own_data(catalog, profiles=_write(tmp_path, frame), time_zone="UTC")
    assert own.dispatch == "load-following"
    stations = [5, 17, 171, 609]  # bound by each of the four criteria at that hour
    settings = CapacitySettings(n1=False, year=False)
    theirs = substation_capacity(
        catalog, dataclasses.replace(settings, at="2016-01-05 07:00"), substations=stations
    ).table
    ours = substation_capacity(
        own, dataclasses.replace(settings, at="2016-01-05 07:00+00:00"), substations=stations
    ).table
    columns = ["hc_n0_mw", "n0_binding_criterion", "n0_binding_element"]
    assert ours[columns].equals(theirs[columns])
    assert (theirs["hc_n0_mw"] < 99).all() and theirs["n0_binding_criterion"].nunique() == 4
