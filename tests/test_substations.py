import json

import numpy as np
import pandapower as pp
import pytest

from siting import GridError
from siting.sources.substations import find_substations, voltage_level


def test_simbench_substations_come_from_the_model_table(hv_mixed):
    subs = hv_mixed.substations
    assert len(subs) == 18
    assert set(subs["rule"]) == {"model substation"}
    assert subs.crs.to_epsg() == 4326


def test_parallel_units_make_one_substation_with_firm_rating(hv_mixed):
    station = hv_mixed.substations.set_index("name").loc["EHV_HV_substation_1"]
    assert station["n_transformers"] == 2
    assert station["transformer_mva"] == pytest.approx(700.0)
    assert station["firm_transformer_mva"] == pytest.approx(350.0)
    assert station["vn_kv"] == 110.0  # connection on the HV side, not at 380 kV


def test_hv_mv_substation_connects_at_the_bus_that_serves_its_load(hv_mixed):
    station = hv_mixed.substations.set_index("name").loc["HV1_MV3.101_Substation"]
    net = hv_mixed.net
    served = net.load.loc[net.load.bus == station["bus"], "p_mw"].sum()
    assert served == pytest.approx(station["load_mw"]) and served > 0
    assert station["voltage_level"] == "HV"


def test_transformer_rule_when_model_has_no_substations(oberrhein):
    subs = oberrhein.substations
    assert list(subs["bus"]) == [39, 319]
    assert set(subs["rule"]) == {"transformer LV bus"}
    assert (subs["transformer_mva"] == 25.0).all() and (subs["firm_transformer_mva"] == 0.0).all()
    assert subs["lon"].between(7.5, 8.2).all() and subs["lat"].between(48.2, 48.7).all()


def test_load_bus_rule_as_last_resort():
    net = pp.networks.case33bw()
    subs = find_substations(net, "case33bw")
    assert len(subs) == 32 and set(subs["rule"]) == {"load bus"}
    assert subs["load_mw"].sum() == pytest.approx(net.load.p_mw.sum())


def test_texas_substations_group_buses_by_substation_name(texas):
    subs = texas.substations
    assert len(subs) == 1116
    assert subs["name"].is_unique
    station = subs.set_index("name").loc["ABILENE 3"]
    assert station["bus_name"] == "ABILENE 3 0"
    assert station["load_mw"] == pytest.approx(75.26)  # Pd of that bus in the MATPOWER case


def test_low_voltage_only_grid_has_no_substation():
    net = pp.create_empty_network()
    a = pp.create_bus(net, 0.4, geodata=(8.0, 50.0))
    b = pp.create_bus(net, 0.4, geodata=(8.001, 50.0))
    pp.create_ext_grid(net, a)
    pp.create_line(net, a, b, 0.1, "NAYY 4x50 SE")
    pp.create_load(net, b, 0.02)
    with pytest.raises(GridError, match="no substation where a 5–20 MW site could connect"):
        find_substations(net, "lv-only")


def test_geodata_is_read_from_geojson_points():
    net = pp.networks.case9()
    net.bus["geo"] = [json.dumps({"type": "Point", "coordinates": [float(i), 45.0]}) for i in range(9)]
    subs = find_substations(net, "case9")
    assert np.allclose(subs["lon"], subs["bus"].astype(float))


@pytest.mark.parametrize(("kv", "level"), [(0.4, "LV"), (20, "MV"), (110, "HV"), (380, "EHV")])
def test_voltage_level_names(kv, level):
    assert voltage_level(kv) == level
