"""A planner's own contingency set: CSV, MATPOWER change tables and PSS/E .con OPEN BRANCH records."""

from pathlib import Path

import pytest

from siting import UsageError, load_grid
from siting.sources.contingencies import read_contingencies

ROOT = Path(__file__).resolve().parents[1]
RTS = ROOT / "grids" / "psse" / "RTS-GMLC.RAW"
CONTAB = ROOT.parent / "shared" / "data" / "grids" / "activsg" / "matpower" / "contab_ACTIVSg2000.m"


@pytest.fixture(scope="module")
def net():
    return load_grid(RTS).net


def _line(net, name: str) -> tuple[str, int]:
    return ("line", int(net.line.index[net.line["name"] == name][0]))


def test_csv_names_elements_or_end_buses_and_groups_rows_by_contingency(tmp_path, net):
    path = tmp_path / "c.csv"
    path.write_text(
        "contingency,element,from_bus,to_bus,circuit\n"
        "tower 7,L-101-102-1,,,\n"
        "tower 7,,103,101,1\n"  # end buses in either order
        "xfmr 103,,103,124,\n"
    )
    found = read_contingencies(path, net)
    trafo = int(net.trafo.index[net.trafo["name"] == "T-103-124-1"][0])
    assert found == {
        "tower 7": (_line(net, "L-101-102-1"), _line(net, "L-101-103-1")),
        "xfmr 103": (("trafo", trafo),),
    }


def test_psse_con_reads_single_and_multi_branch_contingencies(tmp_path, net):
    path = tmp_path / "c.con"
    path.write_text(
        "CONTINGENCY 'SINGLE_101_102'\n OPEN BRANCH FROM BUS 101 TO BUS 102 CIRCUIT 1\nEND\n"
        "CONTINGENCY DOUBLE\n OPEN BRANCH FROM BUS 101 TO BUS 102 CIRCUIT 1 / tower\n"
        " OPEN BRANCH FROM BUS 101 TO BUS 103\nEND\nEND\n"
    )
    found = read_contingencies(path, net)
    assert found["DOUBLE"] == (_line(net, "L-101-102-1"), _line(net, "L-101-103-1"))
    assert found["'SINGLE_101_102'"] == (_line(net, "L-101-102-1"),)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.csv", "contingency,element\nX,L-999-998-1\n", "names 'L-999-998-1', no line or transformer"),
        ("c.csv", "contingency,from_bus,to_bus\nX,101,999\n", "no branch 1 between buses 101 and 999"),
        ("c.csv", "contingency,element\n,L-101-102-1\n", "a contingency without a name"),
        ("c.con", "CONTINGENCY EMPTY\nEND\n", "line 2: contingency 'EMPTY' opens nothing"),
        (
            "c.con",
            "CONTINGENCY X\n OPEN BRANCH FROM BUS 101 TO BUS 102 CIRCUIT 3\nEND\n",
            "line 2: no branch 3",
        ),
        ("c.con", "CONTINGENCY X\n TRIP MACHINE 1 FROM BUS 101\nEND\n", "line 2: only OPEN BRANCH"),
        ("c.con", "", "no contingencies in the file"),
    ],
    ids=["unknown-name", "unknown-buses", "unnamed", "empty", "circuit", "unsupported", "none"],
)
def test_bad_contingencies_are_refused_in_one_line(tmp_path, net, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_contingencies(path, net)


@pytest.mark.slow
@pytest.mark.skipif(not CONTAB.exists(), reason="contab_ACTIVSg2000.m is in the shared data folder")
def test_matpower_contab_maps_branch_rows_to_the_nets_elements():
    from siting.sources.grid import read_matpower

    case = ROOT / "grids" / "activsg" / "case_ACTIVSg2000.m"
    net = read_matpower(case)
    found = read_contingencies(CONTAB, net, bus_offset=-1, case=case)
    assert len(found) == 3190 and all(len(outages) == 1 for outages in found.values())
    # row 1 of mpc.branch is 1001–1064 circuit 1; MATPOWER bus i is index i − 1
    table, index = found["contab 1"][0]
    assert {net[table].at[index, "from_bus"], net[table].at[index, "to_bus"]} == {1000, 1063}
    with pytest.raises(UsageError, match="give that case too"):
        read_contingencies(CONTAB, net)
