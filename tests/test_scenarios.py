"""Load-growth scenarios in one study: validated entries, one sub-folder each, compared side by side."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from siting import UsageError
from siting.cli import main
from siting.sources.grid import load_grid
from siting.sources.peak import study_cases
from siting.sources.profiles import grow_loads
from siting.study import DEFAULT_STUDY, run_scenarios, run_study, study_capacity, study_from_dict

# A 33-bus feeder without profiles: capacity at the model's values, two sites at N-0. Grown
# × 1.5 its buses sag, and the two best buses' own capacities no longer add up.
FEEDER = {
    "name": "feeder",
    "description": "IEEE 33-bus feeder",
    "grid": "pandapower:case33bw",
    "capacity": {"n1": False, "year": False, "cap_mw": 5},
    "selection": {"criterion": "peak", "sites": 2, "min_mw": 0.5, "max_mw": 3, "step_mw": 0.1},
}
TWO = [
    {"name": "today", "description": "the model's own loads"},
    {"name": "growth", "description": "loads × 1.5", "load_scale": 1.5},
]
# the headline a study without scenarios has had since before scenarios existed
PLAIN_KEYS = [
    "study",
    "grid",
    "operating_point",
    "substations",
    "firm_capacity_mw",
    "unused_share_at_peak",
    "sites",
    "total_mw",
    "joint_check_passes",
    "naive_violations",
    "load_scale",
    "selection_notes",
]


@pytest.fixture(scope="module")
def feeder():
    return load_grid("pandapower:case33bw")


@pytest.fixture(scope="module")
def two_scenarios(feeder, tmp_path_factory):
    out = tmp_path_factory.mktemp("scenarios") / "out"
    study = study_from_dict({**FEEDER, "scenario": TWO, "report": {"pdf": True}})
    return study, out, run_scenarios(study, out, grid=feeder)


@pytest.mark.parametrize(
    ("scenarios", "message"),
    [
        ([{"name": "a", "growth": 2}], r"unknown key 'scenario\[1\]\.growth' \(known: name, description"),
        ([{"name": "a"}, {"name": "b", "load_scale": 0}], r"scenario\[2\]\.load_scale = 0: must be .* > 0"),
        ([{"name": "a", "load_scale": -1.2}], r"scenario\[1\]\.load_scale = -1\.2: must be .* > 0"),
        ([{"name": "a", "load_scale": "x"}], r"scenario\[1\]\.load_scale = 'x': must be a number"),
        ([{"name": "a"}, {"name": "a", "load_scale": 2}], r"scenario\[2\]\.name = 'a': another scenario"),
        ([{"load_scale": 2}], r"scenario\[1\]: needs a name"),
        ([{"name": "../up"}], r"scenario\[1\]\.name = '\.\./up': a name is a file name"),
        ({"name": "a"}, r"scenario must be one or more \[\[scenario\]\] tables"),
        ([], r"scenario must be one or more \[\[scenario\]\] tables"),
    ],
)
def test_bad_scenarios_name_the_key(scenarios, message):
    with pytest.raises(UsageError, match=message) as err:
        study_from_dict({**FEEDER, "scenario": scenarios}, source="my.toml")
    assert str(err.value).startswith("my.toml: ")
    assert "\n" not in str(err.value)


def test_a_bad_scenario_exits_2_before_any_folder(tmp_path, capsys):
    study = tmp_path / "bad.toml"
    study.write_text('grid = "pandapower:case33bw"\n[[scenario]]\nname = "a"\nload_scale = 0\n')
    assert main(["study", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"siting: error: {study}: scenario[1].load_scale = 0: must be a finite number > 0"]
    assert not (tmp_path / "out").exists()


def test_grow_loads_moves_every_operating_point_and_leaves_the_grid(hv_mixed):
    grown = grow_loads(hv_mixed, 1.158)
    assert np.allclose(grown.net.load["p_mw"], 1.158 * hv_mixed.net.load["p_mw"])
    assert np.allclose(grown.net.load["q_mvar"], 1.158 * hv_mixed.net.load["q_mvar"])
    assert np.allclose(grown.profiles["load"].to_numpy(), 1.158 * hv_mixed.profiles["load"].to_numpy())
    assert grown.profiles["sgen"].equals(hv_mixed.profiles["sgen"])  # generation does not grow
    before, after = study_cases(hv_mixed)["hL"], study_cases(grown)["hL"]
    assert np.allclose(after[("load", "p_mw")], 1.158 * before[("load", "p_mw")])
    assert not np.allclose(grown.net.load["p_mw"], hv_mixed.net.load["p_mw"])  # a copy, not the grid


def test_grow_loads_in_place_gives_the_grown_copy_without_copying_the_profiles(hv_mixed):
    copied = grow_loads(hv_mixed, 1.158)
    spare = dataclasses.replace(hv_mixed, profiles=hv_mixed.profiles.copy())  # the fixture stays as it is
    profiles = spare.profiles
    grown = grow_loads(spare, 1.158, in_place=True)
    assert grown.profiles is profiles  # the same frame, its load columns grown
    assert np.array_equal(grown.profiles.to_numpy(), copied.profiles.to_numpy())
    assert grown.net.load["p_mw"].equals(copied.net.load["p_mw"])
    assert not np.allclose(spare.net.load["p_mw"], grown.net.load["p_mw"])  # the model's loads: a copy


def test_each_scenario_runs_every_stage_at_its_loads(two_scenarios, feeder):
    study, out, headlines = two_scenarios
    assert list(headlines) == ["today", "growth"]
    today, growth = headlines["today"], headlines["growth"]
    assert (today["load_growth"], growth["load_growth"]) == (1.0, 1.5)
    # capacity at the grown loads is what the capacity stage gives on the grown grid
    grown = pd.read_csv(out / "growth" / "capacity" / "capacity.csv")
    direct = study_capacity(study, grow_loads(feeder, 1.5)).table
    assert np.allclose(grown["hc_n0_mw"], direct["hc_n0_mw"])
    own = pd.read_csv(out / "today" / "capacity" / "capacity.csv")
    assert grown["hc_n0_mw"].sum() < own["hc_n0_mw"].sum()
    # with today's loads the two best buses take 3 MW each; grown, their capacities no longer add up
    assert (today["sites"], today["total_mw"], today["naive_violations"]) == (2, 6.0, 0)
    assert growth["joint_check_passes"] and growth["naive_violations"] > 0
    assert growth["total_mw"] < today["total_mw"]
    joint = pd.read_csv(out / "growth" / "selection" / "joint_check.csv").set_index("set")
    assert joint.at["naive top-K", "violations"] == growth["naive_violations"]
    assert not joint.at["naive top-K", "passes"] and joint.at["selected", "passes"]


def test_the_scenarios_are_written_side_by_side(two_scenarios):
    _, out, headlines = two_scenarios
    for name in ("today", "growth"):
        for file in (
            "index.html",
            "manifest.json",
            "report.pdf",
            "capacity/capacity.csv",
            "selection/sites.csv",
        ):
            assert (out / name / file).is_file(), f"{name}/{file}"
        record = json.loads((out / name / "manifest.json").read_text())
        assert record["settings"]["scenario"]["name"] == name
        assert record["results"]["load_growth"] == headlines[name]["load_growth"]
    table = pd.read_csv(out / "scenarios.csv").set_index("scenario")
    assert list(table.index) == ["today", "growth"]
    assert table.at["growth", "naive_violations"] == headlines["growth"]["naive_violations"]
    assert table.at["growth", "total_mw"] == pytest.approx(headlines["growth"]["total_mw"])
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "href='today/index.html'" in page and "href='growth/index.html'" in page
    naive = headlines["growth"]["naive_violations"]
    assert f"the naive top-K set breaks {naive} limits" in page
    assert "<td>× 1.5</td>" in page and "loads × 1.5" in page  # the growth row and the description
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    record = json.loads((out / "manifest.json").read_text())
    assert record["written_by"] == "siting"
    assert [s["load_scale"] for s in record["settings"]["scenarios"]] == [1.0, 1.5]
    assert record["results"]["scenarios"]["growth"]["naive_violations"] == naive
    assert {"index.html", "scenarios.csv", "report.pdf", "manifest.json"} <= set(record["report_files"])


def test_a_study_without_scenarios_is_unchanged(two_scenarios, feeder, tmp_path):
    _, out, headlines = two_scenarios
    plain = study_from_dict(FEEDER)
    assert plain.scenarios == () and plain.scenario is None
    headline = run_study(plain, tmp_path / "plain", grid=feeder)
    assert list(headline) == PLAIN_KEYS
    # the same numbers as the scenario at the model's own loads, and the same files
    today = {k: v for k, v in headlines["today"].items() if k not in ("study", "scenario", "load_growth")}
    assert {k: v for k, v in headline.items() if k != "study"} == today
    files = sorted(p.relative_to(tmp_path / "plain").as_posix() for p in (tmp_path / "plain").rglob("*"))
    assert files == sorted(
        p.relative_to(out / "today").as_posix() for p in (out / "today").rglob("*") if p.name != "report.pdf"
    )
    record = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert "scenarios" not in record["settings"] and "scenario" not in record["settings"]


def test_scenarios_refuse_capacity_computed_beforehand(feeder, tmp_path):
    study = study_from_dict({**FEEDER, "scenario": TWO})
    capacity = study_capacity(study, feeder)
    with pytest.raises(UsageError, match=r"\[\[scenario\]\] computes capacity at each scenario's loads"):
        run_study(study, tmp_path / "out", capacity=capacity, grid=feeder)
    assert not (tmp_path / "out").exists()


def test_the_growth_study_compares_today_with_sourced_growth():
    from siting.study import read_study

    study = read_study(DEFAULT_STUDY)  # make demo runs both load levels
    assert [s.name for s in study.scenarios] == ["today", "growth-2029"]
    today, growth = study.scenarios
    assert today.load_scale == 1.0 and growth.load_scale == pytest.approx(1.158)
    assert "Grid Strategies" in growth.description
    assert study.flex_levels == ("firm",)  # every substation at its own firm capacity, blind and grid-aware


def test_a_sweep_case_refuses_scenarios():
    from siting.sweep import sweep_from_dict

    data = {
        "sweep": {"grids": ["pandapower:case33bw"]},
        "base": {"capacity": {"n1": False}, "scenario": TWO},
        "vary": {"simulation.load_scale": [1.0]},
    }
    with pytest.raises(UsageError, match=r"\[\[scenario\]\] belongs in a study file"):
        sweep_from_dict(data, source="s.toml")
    del data["base"]["scenario"]
    assert len(sweep_from_dict(data, source="s.toml").cases) == 1


def test_a_scenario_in_a_sentence():
    from siting.report import scenario_story

    headline = {
        "firm_capacity_mw": 579.6,
        "sites": 10,
        "total_mw": 200.0,
        "joint_check_passes": False,
        "naive_violations": 1,
        "blind_violations": 3,
        "blind_violation_hours": 12.0,
        "blind_served_share": 1.0,
        "grid-aware_violations": 0,
        "grid-aware_violation_hours": 0.0,
        "grid-aware_served_share": 0.9996,
        "flex_firm_mw": 386.6,
        "flex_firm_blind_violation_steps": 42,
        "flex_flex-0.5_mw": 410.25,
    }
    assert scenario_story(headline) == (
        "firm capacity of all substations 579.6 MW; 10 sites, 200 MW: the joint AC check of the "
        "selected set FAILS; the naive top-K set breaks 1 limit; blind dispatch: 3 element limit(s) "
        "broken in 12 h, 100.00 % of the demand served; grid-aware dispatch: 0 element limit(s) broken "
        "in 0 h, 99.96 % of the demand served; connectable at each level: firm 387 MW (blind: limits "
        "broken in 42 steps), flex-0.5 410 MW."
    )
