"""A user's substation list and bus coordinates replace or augment what siting finds itself."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from siting import UsageError, load_grid
from siting.sources.substations import find_substations
from siting.sources.user_substations import read_bus_coords, read_substation_list, substations_from_list

ROOT = Path(__file__).resolve().parents[1] / "grids"
RTS = ROOT / "psse" / "RTS-GMLC.RAW"


@pytest.fixture(scope="module")
def rts():
    return load_grid(RTS)


def _csv(tmp_path: Path, rows: dict, name: str = "list.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_list_replaces_or_augments_the_automatic_substations(tmp_path, rts):
    path = _csv(tmp_path, {"name": ["Abel 138", "Adler"], "bus": [101, 103], "lon": [-113.8, -113.9],
                           "lat": [33.4, 33.3], "firm_mva": [80.0, np.nan]})  # fmt: skip
    listed = read_substation_list(path, rts.net)
    replaced = substations_from_list(rts.net, listed)
    assert replaced["name"].tolist() == ["Abel 138", "Adler"] and (replaced["rule"] == "user list").all()
    assert replaced["firm_transformer_mva"].iloc[0] == 80.0
    assert replaced.geometry.iloc[1].x == pytest.approx(-113.9)
    augmented = substations_from_list(rts.net, listed, rts.substations, mode="augment")
    automatic_kept = rts.substations[~rts.substations["bus"].isin([101, 103])]
    assert len(augmented) == 2 + len(automatic_kept) and augmented["id"].tolist() == list(
        range(len(augmented))
    )


def test_bus_coordinates_place_buses_and_name_substations(tmp_path, rts):
    net = copy.deepcopy(rts.net)
    bus = pd.read_csv(ROOT / "psse" / "RTS-GMLC_bus.csv")
    path = _csv(
        tmp_path, {"bus": bus["Bus ID"], "lon": bus["lng"], "lat": bus["lat"], "substation": bus["Bus Name"]}
    )
    read_bus_coords(path, net)
    found = find_substations(net, "rts")
    assert found["lon"].notna().all() and (found["rule"] == "model substation").all()
    assert found.set_index("name").loc["Abel", "lat"] == pytest.approx(33.3961032628)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            {"name": ["A", "B"], "bus": [101, 999], "lon": [0, 0], "lat": [0, 0]},
            r"1 row\(s\) name buses not in the model: row 3 \(999\)",
        ),
        (
            {"name": ["A"], "bus": [101], "lon": [200.0], "lat": [0.0]},
            r"row 2 has coordinates \(200.0, 0.0\) outside",
        ),
        ({"name": ["A"], "bus": [101], "lon": [0.0], "lat": [-91.0]}, "outside −180…180 / −90…90"),
        (
            {"name": ["A", "A"], "bus": [101, 102], "lon": [0, 0], "lat": [0, 0]},
            "substation 'A' is listed twice",
        ),
        ({"name": ["A"], "lon": [0], "lat": [0]}, "needs a 'bus'"),
    ],
    ids=["unknown-bus", "longitude", "latitude", "duplicate", "no-bus"],
)
def test_bad_substation_lists_are_refused_naming_the_row(tmp_path, rts, rows, message):
    with pytest.raises(UsageError, match=message):
        read_substation_list(_csv(tmp_path, rows), rts.net)


def test_bus_coordinates_naming_unknown_buses_are_refused(tmp_path, rts):
    path = _csv(tmp_path, {"bus_name": ["ABEL", "NOWHERE"], "lon": [0, 0], "lat": [0, 0]})
    with pytest.raises(UsageError, match=r"row 3 \(NOWHERE\)"):
        read_bus_coords(path, copy.deepcopy(rts.net))


@pytest.mark.slow
def test_texas_raw_with_tamus_bus_coordinates_has_the_catalog_grids_substations():
    raw = load_grid(ROOT / "psse" / "ACTIVSg2000.RAW").net
    read_bus_coords(ROOT / "activsg" / "ACTIVSg2000_bus_coords.csv", raw)
    ours = find_substations(raw, "raw").set_index("name")
    theirs = load_grid("texas2000").substations.set_index("name")
    assert len(ours) == len(theirs) == 1116 and set(ours.index) == set(theirs.index)
    theirs = theirs.loc[ours.index]
    assert (ours["bus"].to_numpy() == theirs["bus"].to_numpy() + 1).all()  # MATPOWER bus i is index i − 1
    assert (ours["vn_kv"] == theirs["vn_kv"]).all() and np.allclose(ours["lon"], theirs["lon"])
    assert np.abs(ours["load_mw"] - theirs["load_mw"]).max() < 0.01  # MATPOWER rounds loads to 0.01 MW
    # 14 RAW transformers between equal voltages are lines in the MATPOWER case: 4 stations count them
    assert (ours["n_transformers"] != theirs["n_transformers"]).sum() == 4


def test_every_bus_at_or_above_a_voltage_can_be_a_candidate(rts):
    from siting.sources.user_substations import bus_candidates

    candidates = bus_candidates(rts.net, min_kv=200)
    assert len(candidates) == int((rts.net.bus["vn_kv"] >= 200).sum()) == 43
    assert (candidates["vn_kv"] == 230).all() and (candidates["rule"] == "bus").all()
    with pytest.raises(UsageError, match="no in-service bus at or above 1000 kV"):
        bus_candidates(rts.net, min_kv=1000)


def test_bus_numbers_are_the_cases_own_numbers_for_a_matpower_grid(tmp_path):
    from siting.sources.user_profiles import read_profiles

    net = load_grid("illinois200").net  # MATPOWER: bus i is pandapower's index i − 1
    coords = pd.read_csv(ROOT / "activsg" / "ACTIVSg200_bus_coords.csv")
    loaded = coords[coords["Pd_MW"] > 0].iloc[0]
    number, name = int(loaded["bus_i"]), loaded["bus_name"]
    listed = read_substation_list(
        _csv(tmp_path, {"name": ["Mine"], "bus": [number], "lon": [-89.6], "lat": [40.6]}), net
    )
    chosen = substations_from_list(net, listed)
    assert net.bus.at[int(chosen["bus"].iloc[0]), "name"] == name
    frame = pd.DataFrame({"time": ["2026-07-01 00:00", "2026-07-01 01:00"], str(number): [3.0, 4.0]})
    profiles = read_profiles(_csv(tmp_path, frame, "loads.csv"), net, time_zone="UTC")
    loads = profiles[("load", "p_mw")].columns
    assert net.load.loc[loads, "bus"].map(net.bus["name"]).eq(name).all()
