"""Study files and the study runner: validated settings, one folder written whole."""

import json

import numpy as np
import pandas as pd
import pyogrio
import pytest

from siting import UsageError
from siting.cli import main
from siting.power import default_model, packed_power_mw, site_power_mw, site_rating_mw
from siting.study import DEFAULT_STUDY, STUDIES_DIR, read_study, run_study, study_from_dict, write_study


def test_shipped_study_files_are_valid():
    default = read_study()
    assert default.source == str(DEFAULT_STUDY)
    assert default.selection.sites == 22 and default.selection.criterion == "firm"
    texas = read_study(STUDIES_DIR / "texas-pilot.toml")
    assert texas.grid == "texas2000"
    assert (texas.selection.sites, texas.selection.regions) == (25, 5)
    assert (texas.selection.min_mw, texas.selection.max_mw) == (5, 20)
    assert texas.fleet.modes.backup_hours == 50 and read_study().fleet.modes.backup_hours == 0
    joint = read_study(STUDIES_DIR / "hv-flex-joint.toml")
    assert (
        joint.flex_sizing == "joint" and read_study(STUDIES_DIR / "hv-flex-curve.toml").flex_sizing == "each"
    )
    assert len(joint.flex_levels) == 6 and joint.selection.sites == 18
    growth = read_study(STUDIES_DIR / "hv-growth.toml")
    assert growth.load_scale == 4.6 and growth.fleet.policies == ("blind", "grid-aware")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x"}, "needs a grid"),
        ({"grid": "hv-mixed", "colour": "red"}, "unknown key 'colour'"),
        ({"grid": "hv-mixed", "selection": {"site": 3}}, "unknown key 'selection.site'"),
        (
            {"grid": "hv-mixed", "selection": {"sites": "ten"}},
            "selection.sites = 'ten': must be a whole number",
        ),
        ({"grid": "hv-mixed", "capacity": {"n1": 1}}, "capacity.n1 = 1: must be true/false"),
        ({"grid": "hv-mixed", "limits": 0.95}, r"\[limits\] must be a table"),
        (
            {"grid": "hv-mixed", "limits": {"vmin_pu": 1.2, "vmax_pu": 1.1}},
            "limits.vmin_pu = 1.2: must be below",
        ),
        ({"grid": "hv-mixed", "selection": {"criterion": "best"}}, "use firm, peak or flex"),
        ({"grid": "hv-mixed", "simulation": {"policies": ["smart"]}}, "choose from blind, grid-aware"),
        ({"grid": "hv-mixed", "power": {"pue": 0.8}}, r"power.pue = 0.8: must be a finite number ≥ 1"),
        (
            {"grid": "hv-mixed", "simulation": {"backup_hours": -5}},
            r"simulation.backup_hours = -5: must be a finite number ≥ 0",
        ),
        (
            {"grid": "hv-mixed", "flex_curve": {"sizing": "together"}},
            "flex_curve.sizing 'together': use each or joint",
        ),
    ],
)
def test_bad_study_settings_name_the_key(data, message):
    with pytest.raises(UsageError, match=message) as err:
        study_from_dict(data, source="my.toml")
    assert str(err.value).startswith("my.toml")


def test_study_command_refuses_bad_files_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('grid = "hv-mixed"\n[selection]\nsites = \n')
    assert main(["study", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["study", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"siting: error: {tmp_path / 'none.toml'}: no such study file"]
    assert not (tmp_path / "out").exists()


def test_study_folder_holds_every_stage_and_the_report(hostile_study, tmp_path):
    out = tmp_path / "report"
    write_study(hostile_study, out)
    for name in (
        "index.html",
        "results.gpkg",
        "timeseries.parquet",
        "headroom.parquet",
        "manifest.json",
        "figures/capacity.png",
        "figures/dispatch.png",
        "capacity/capacity.csv",
        "selection/sites.csv",
        "simulation/fleet_summary.csv",
        "simulation/site_power.parquet",
    ):
        assert (out / name).is_file(), name
    assert [n for n, _ in pyogrio.list_layers(out / "results.gpkg")] == [
        "substations",
        "lines",
        "sites",
        "candidates",
        "regions",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["load_scale"] == 4.6
    assert manifest["results"]["sites"] == len(hostile_study.selection.sites)
    assert manifest["versions"]["power-grid-model"] != "not installed"
    summary = pd.read_csv(out / "simulation" / "fleet_summary.csv").set_index("policy")
    assert summary.at["blind", "violations"] > 0 and summary.at["grid-aware", "violations"] == 0
    assert hostile_study.headline["grid-aware_violations"] == 0


def test_a_failed_study_leaves_the_previous_report_intact(hostile_study, tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_study(hostile_study, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    page = (out / "index.html").read_bytes()

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("siting.report.write_report_files", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_study(hostile_study, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (out / "index.html").read_bytes() == page
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left behind


def test_no_substation_fits_is_a_clear_error(tmp_path, capsys):
    study = tmp_path / "tiny.toml"
    study.write_text(
        'grid = "simbench:1-HV-mixed--0-sw"\n[capacity]\nyear = false\ncap_mw = 4\n[selection]\nmin_mw = 5\n'
    )
    assert main(["study", str(study), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("siting: error: no candidate substation is left: 18 have too little capacity")
    assert not (tmp_path / "out").exists()


def test_a_study_with_screening_writes_its_tables_sheets_and_pdf(tmp_path):
    study = study_from_dict(
        {
            "name": "feeder-screening",
            "grid": "pandapower:case33bw",
            "capacity": {"n1": False, "year": False, "cap_mw": 5},
            "selection": {"criterion": "peak", "sites": 2, "min_mw": 0.5, "max_mw": 3, "step_mw": 0.1},
            "screening": {"fault_hops": 2, "min_scr": 3.0},
            "report": {"pdf": True},
        }
    )
    headline = run_study(study, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "screening" / "interconnection.csv")
    assert len(table) == headline["sites"] == 2
    assert {"step_energise_pu", "sk_min_mva", "scr_min", "scr_pass"} <= set(table.columns)
    assert (tmp_path / "out" / "report.pdf").read_bytes().startswith(b"%PDF-")
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "Interconnection screening" in page
    assert headline["screening_worst_fault_mw"] >= 0
    with pytest.raises(UsageError, match=r"screening\.peak_policy = 'smart'"):
        study_from_dict({"grid": "x", "screening": {"peak_policy": "smart"}})
    with pytest.raises(UsageError, match=r"screening\.min_scr = 0"):
        study_from_dict({"grid": "x", "screening": {"min_scr": 0}})


def test_flex_curve_levels_are_checked_when_the_study_is_read():
    study = study_from_dict({"grid": "x", "flex_curve": {"levels": ["firm", "peak", "flex-0.5"]}})
    assert study.flex_levels == ("firm", "peak", "flex-0.5")
    with pytest.raises(UsageError, match=r"flex_curve\.levels: level 'flex-200': a flex percentage"):
        study_from_dict({"grid": "x", "flex_curve": {"levels": ["flex-200"]}})
    with pytest.raises(UsageError, match=r"needs capacity\.year = true"):
        study_from_dict({"grid": "x", "capacity": {"year": False}, "flex_curve": {"levels": ["flex-1"]}})


def test_a_flexible_selection_curtails_down_to_what_the_studys_power_modes_reach():
    shutdown = study_from_dict({"grid": "x"}).selection.flex_floor
    no_shutdown = study_from_dict({"grid": "x", "simulation": {"shutdown": False}}).selection.flex_floor
    all_off = study_from_dict({"grid": "x", "simulation": {"warm_reserve": 0}}).selection.flex_floor
    # the auxiliary load (2 % of the rating) always stays; idle GPUs and hosts draw ~54 % more
    assert all_off == pytest.approx(0.02)
    assert 0.07 < shutdown < 0.08 and 0.55 < no_shutdown < 0.57
    power = default_model()  # the lowest power is the power model's with no work, over the rating
    assert shutdown == pytest.approx(
        float(packed_power_mw(0.0, 1, 0.5, power, 0.1) / site_rating_mw(1, power))
    )
    assert no_shutdown == pytest.approx(float(site_power_mw(0.0, 0.0, 1, power) / site_rating_mw(1, power)))


def test_a_study_where_no_site_fits_together_says_why():
    """case33bw with a capacity table claiming ten times what its buses take: the selection's
    own AC fits place nothing of 18 MW, and the error names the best candidate's limit."""
    from siting import load_grid
    from siting.capacity import CapacitySettings, substation_capacity
    from siting.selection import SelectionSettings, select_sites
    from siting.study import _nothing_picked

    grid = load_grid("pandapower:case33bw")
    table = substation_capacity(grid, CapacitySettings(n1=False, year=False, cap_mw=5)).table
    claimed = table[table["substation"] != 0].assign(hc_n0_mw=lambda t: t["hc_n0_mw"] * 10)
    settings = SelectionSettings(criterion="peak", sites=2, min_mw=18, max_mw=20, step_mw=0.5, regions=1)
    selection = select_sites(grid, claimed, settings)
    assert selection.sites.empty
    naive = selection.joint.set_index("set").loc["naive top-K"]  # 2 × 20 MW: no flow converges
    assert (
        naive["violations"] == 1 and np.isnan(naive["min_vm_pu"]) and np.isnan(naive["max_loading_percent"])
    )
    message = _nothing_picked(selection, settings.min_mw)
    assert message.startswith("no substation can host a site of 18 MW; picked 0 of the 2 sites")
    assert message.endswith(
        "bus 18 (50.0 MW alone): not picked: fits only 16.5 MW next to the chosen sites "
        "(undervoltage at #17 at peak)"
    )
