"""Limits the base case already violates: the stated policy decides whether they bind added load."""

from pathlib import Path

import pytest

from siting import UsageError, load_grid
from siting.capacity import CapacitySettings, substation_capacity
from siting.limits import StudyLimits

SAVNW = Path(__file__).resolve().parents[1] / "grids" / "savnw" / "savnw.json"


def _n0(policy: str, **tolerance):
    """N-0 capacity study on savnw at gridcapacity's published settings, and its table by bus name."""
    band = {"vmin_pu": 0.9, "vmax_pu": 1.1, "contingency_vmin_pu": 0.9, "contingency_vmax_pu": 1.1}
    limits = StudyLimits(**band, pre_existing=policy, **tolerance)
    study = substation_capacity(
        load_grid(SAVNW), CapacitySettings(pf=0.9, cap_mw=200.0, limits=limits, n1=False, year=False)
    )
    names = load_grid(SAVNW).net.bus["name"]
    table = study.table.assign(psse_name=names.loc[study.table["bus"]].astype(str).to_numpy())
    return study, table.set_index("psse_name")


@pytest.mark.slow
def test_ignore_matches_gridcapacitys_published_run():
    study, table = _n0("ignore")
    # gridcapacity (Vattenfall) on savnw at cap 200 MW, pf 0.9, 0.9–1.1 pu
    assert table.loc[["204", "202", "152", "3004"], "hc_n0_mw"].tolist() == [39.1, 66.8, 119.2, 121.0]
    assert table.loc["3000", "hc_n0_mw"] == 200.0
    # the overloaded transformer is still listed, apart, with its base value
    listed = study.base_violations
    assert listed["element"].tolist() == ["#6"] and listed["value"].iloc[0] == pytest.approx(107.74, abs=0.01)


@pytest.mark.slow
def test_no_worse_lets_the_overloaded_transformer_bind_everywhere():
    _, table = _n0("no-worse")
    assert (table["binding_element"] == "#6").all()
    assert table.loc["204", "hc_n0_mw"] == 2.5  # 0.1 point more loading on the 107.7 % transformer
    _, looser = _n0("no-worse", worsening_percent=1.0)
    assert looser.loc["204", "hc_n0_mw"] > 5 * table.loc["204", "hc_n0_mw"]


def test_unknown_policy_and_negative_tolerance_are_refused():
    with pytest.raises(UsageError, match="pre_existing='maybe': use one of no-worse, contribution, ignore"):
        StudyLimits(pre_existing="maybe")
    with pytest.raises(UsageError, match=r"worsening_percent=-1: must be a finite number ≥ 0"):
        StudyLimits(worsening_percent=-1)
    with pytest.raises(UsageError, match=r"contribution_df=1.5: must be"):
        StudyLimits(contribution_df=1.5)


@pytest.mark.slow
def test_selection_runs_without_coordinates_says_geography_is_off_and_writes_no_layers(tmp_path):
    from siting.selection import select_sites, write_selection

    grid = load_grid(SAVNW)
    capacity = substation_capacity(grid, CapacitySettings(pf=0.9, cap_mw=200.0, n1=True, year=False))
    selection = select_sites(grid, capacity.table)
    assert selection.notes[0].startswith("geography off: the grid has no bus coordinates")
    assert (selection.joint["passes"]).all() and selection.joint["sites"].iloc[0] >= 1
    written = write_selection(selection, tmp_path)
    assert "sites.gpkg" not in written and sorted(p.name for p in tmp_path.iterdir()) == sorted(written)


def test_contribution_binds_the_overload_only_where_the_added_load_feeds_it():
    """savnw's transformer 204→205 is at 107.7 % before any load: under "contribution" it binds
    load at the buses whose distribution factor on it reaches 20 % (202, 204), not elsewhere."""
    from siting.engine.reference import reference_hosting_capacity
    from siting.sources.peak import operating_point

    studied = {policy: _n0(policy)[1] for policy in ("no-worse", "contribution", "ignore")}
    tables = {policy: table["hc_n0_mw"] for policy, table in studied.items()}
    contribution = studied["contribution"]
    assert (tables["no-worse"] <= tables["contribution"]).all()
    assert (tables["contribution"] <= tables["ignore"]).all()
    for near in ("202", "204"):  # the transformer's own side: bound by it, as under no-worse
        assert tables["contribution"][near] == tables["no-worse"][near]
        assert contribution.loc[near, "binding_element"] == "#6"
    for far in ("152", "3000", "3004"):  # too little of their load flows through it
        assert tables["contribution"][far] == tables["ignore"][far] > 5 * tables["no-worse"][far]
    # and runpp bisection with the same rule gives the same numbers
    grid = load_grid(SAVNW)
    band = {"vmin_pu": 0.9, "vmax_pu": 1.1, "contingency_vmin_pu": 0.9, "contingency_vmax_pu": 1.1}
    settings = CapacitySettings(
        pf=0.9, cap_mw=200.0, limits=StudyLimits(**band, pre_existing="contribution"), n1=False, year=False
    )
    values = operating_point(grid, None).values
    for name in ("204", "152"):
        bus = int(contribution.loc[name, "bus"])
        assert reference_hosting_capacity(grid.net, bus, settings, values) == pytest.approx(
            tables["contribution"][name], abs=1e-9
        )


def test_a_lower_cutoff_lets_more_buses_share_the_overload():
    strict = _n0("contribution", contribution_df=0.01)[1]["hc_n0_mw"]
    default = _n0("contribution")[1]["hc_n0_mw"]
    assert (strict <= default).all() and (strict < default).any()


def test_selection_and_its_joint_check_apply_the_contribution_rule():
    from siting.selection import SelectionSettings, select_sites

    grid = load_grid(SAVNW)
    band = {"vmin_pu": 0.9, "vmax_pu": 1.1, "contingency_vmin_pu": 0.9, "contingency_vmax_pu": 1.1}
    totals = {}
    for policy in ("no-worse", "contribution"):
        limits = StudyLimits(**band, pre_existing=policy)
        capacity = substation_capacity(
            grid, CapacitySettings(pf=0.9, cap_mw=200.0, limits=limits, n1=False, year=False)
        )
        settings = SelectionSettings(criterion="peak", sites=5, min_mw=2.0, pf=0.9, limits=limits)
        selection = select_sites(grid, capacity.table, settings)
        joint = selection.joint.set_index("set")
        assert joint.at["selected", "passes"]  # the joint check judged by the same rule
        totals[policy] = float(selection.sites["size_mw"].sum())
    # far from the overloaded transformer, sites are not held to its 0.1-point tolerance
    assert totals["contribution"] > 2 * totals["no-worse"]
