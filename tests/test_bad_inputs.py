"""Bad and hostile inputs against every command: the documented exit code, one line on stderr,
no traceback, nothing written outside --out, and a previous output left byte for byte.

Exit codes (README, "Errors"): 2 for a usage error — a flag, key, value, name or path that does
not exist or is not allowed; 1 for a run that failed — an input that exists but cannot be used,
or a model that does not solve.
"""

import functools
import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandapower as pp
import pandapower.networks as networks
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siting.cli import main
from siting.errors import DataError, SitingError, UsageError
from siting.geography import read_layers
from siting.study import KEYS, study_from_dict
from siting.workload import read_demand_csv


@functools.cache
def _case33bw_json() -> str:
    return pp.to_json(networks.case33bw())


def _net_json(path: Path, change=None) -> Path:
    document = json.loads(_case33bw_json())
    if change is not None:
        change(document)
    path.write_text(json.dumps(document))
    return path


def _table(document: dict, name: str) -> dict:
    return json.loads(document["_object"][name]["_object"])


def _set_table(document: dict, name: str, table: dict) -> None:
    document["_object"][name]["_object"] = json.dumps(table)


def _edit(name: str, edit):
    def change(document):
        table = _table(document, name)
        edit(table)
        _set_table(document, name, table)

    return change


def _duplicate_bus(table):
    table["index"][1] = table["index"][0]


def _text_geodata(table):
    column = table["columns"].index("geo")
    table["data"][0][column] = '{"coordinates": ["east", "north"], "type": "Point"}'


def _text_load(table):
    table["data"][0][table["columns"].index("p_mw")] = "lots"


def _crossed_band(table):
    for row in table["data"]:
        row[table["columns"].index("min_vm_pu")] = 1.1
        row[table["columns"].index("max_vm_pu")] = 0.9


def _negative_length(table):
    table["data"][0][table["columns"].index("length_km")] = -1.0


def _foreign_module(document):
    document["_object"]["bus"]["_module"] = "os"


MODELS = {
    "duplicate-bus": (_edit("bus", _duplicate_bus), "bus index 0 occurs more than once"),
    "text-geodata": (_edit("bus", _text_geodata), "geodata is unusable"),
    "text-load": (_edit("load", _text_load), "load 0: p_mw is 'lots', not a finite number"),
    "crossed-band": (_edit("bus", _crossed_band), "has min > max"),
    "negative-length": (_edit("line", _negative_length), "length_km is -1.0, not a positive number"),
    "foreign-module": (_foreign_module, "names the Python module 'os'"),
}

STUDY = 'grid = "pandapower:case33bw"\n'
CASES = [
    # (id, argv with {tmp} and {out}, files to make, exit code, words in the message)
    (
        "cap-inf",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--cap", "inf"],
        2,
        "--cap inf: must be a finite",
    ),
    ("cap-nan", ["capacity", "pandapower:case33bw", "--out", "{out}", "--cap", "nan"], 2, "--cap nan"),
    (
        "cap-zero",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--cap", "0"],
        2,
        "--cap 0.0: must be",
    ),
    ("pf", ["capacity", "pandapower:case33bw", "--out", "{out}", "--pf", "1.5"], 2, "--pf 1.5"),
    ("hops", ["capacity", "pandapower:case33bw", "--out", "{out}", "--n1-hops", "-1"], 2, "--n1-hops -1"),
    (
        "band",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--vmin", "1.2", "--vmax", "1.1"],
        2,
        "--vmin 1.2",
    ),
    (
        "emergency",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--emergency", "50"],
        2,
        "--emergency 50",
    ),
    (
        "at-no-profiles",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--at", "2016-01-01"],
        2,
        "--at 2016",
    ),
    ("unknown-grid", ["capacity", "nowhere", "--out", "{out}"], 2, "unknown grid 'nowhere'"),
    ("missing-file", ["inspect", "{tmp}/none.json"], 2, "file not found"),
    ("out-root", ["capacity", "pandapower:case33bw", "--out", "/"], 2, "root of the file system"),
    ("out-cwd", ["capacity", "pandapower:case33bw", "--out", "."], 2, "current folder"),
    ("out-project", ["capacity", "pandapower:case33bw", "--out", "{tmp}/project"], 2, "siting did not write"),
    (
        "out-file",
        ["capacity", "pandapower:case33bw", "--out", "{tmp}/project/pyproject.toml"],
        2,
        "not a folder",
    ),
    (
        "substation-ids",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--substations", "a,b"],
        2,
        "as numbers",
    ),
    (
        "unknown-substation",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--substations", "999"],
        2,
        "999",
    ),
    ("regions-zero", ["select", "pandapower:case33bw", "--out", "{out}", "--regions", "0"], 2, "--regions 0"),
    ("sites-zero", ["select", "pandapower:case33bw", "--out", "{out}", "--sites", "0"], 2, "--sites 0"),
    (
        "criterion",
        ["select", "pandapower:case33bw", "--out", "{out}", "--criterion", "best"],
        2,
        "--criterion best",
    ),
    (
        "flex-200",
        ["select", "pandapower:case33bw", "--out", "{out}", "--criterion", "flex-200"],
        2,
        "flex-200",
    ),
    (
        "no-capacity",
        ["select", "pandapower:case33bw", "--out", "{out}", "--capacity", "{tmp}"],
        2,
        "no capacity.csv",
    ),
    (
        "layer-kind",
        ["select", "pandapower:case33bw", "--out", "{out}", "--layers", "roads={tmp}/x"],
        2,
        "KIND=FILE",
    ),
    (
        "layer-missing",
        ["select", "pandapower:case33bw", "--out", "{out}", "--layers", "fiber={tmp}/x.gpkg"],
        2,
        "not found",
    ),
    (
        "sites-missing",
        ["simulate", "pandapower:case33bw", "--sites", "{tmp}/none.csv", "--out", "{out}"],
        2,
        "--sites",
    ),
    (
        "policy",
        ["simulate", "pandapower:case33bw", "--sites", "x", "--out", "{out}", "--policy", "smart"],
        2,
        "--policy smart",
    ),
    (
        "utilisation",
        ["simulate", "pandapower:case33bw", "--sites", "x", "--out", "{out}", "--utilisation", "2"],
        2,
        "--utilisation 2",
    ),
    (
        "screen-scr",
        ["screen", "pandapower:case33bw", "--sites", "x", "--out", "{out}", "--min-scr", "0"],
        2,
        "--min-scr 0",
    ),
    (
        "screen-hops",
        ["screen", "pandapower:case33bw", "--sites", "x", "--out", "{out}", "--fault-hops", "-1"],
        2,
        "--fault-hops -1",
    ),
    (
        "screen-sites",
        ["screen", "pandapower:case33bw", "--sites", "{tmp}/none.csv", "--out", "{out}"],
        2,
        "--sites",
    ),
    ("workers", ["sweep", "{tmp}/none.toml", "--workers", "0"], 2, "--workers 0"),
    ("sweep-missing", ["sweep", "{tmp}/none.toml"], 2, "no such sweep file"),
    ("study-missing", ["study", "{tmp}/none.toml"], 2, "no such study file"),
    ("study-name-path", ["study", "{tmp}/name.toml"], 2, "name '../siting'"),
    ("study-cap-nan", ["study", "{tmp}/cap.toml"], 2, "capacity.cap_mw = nan"),
    ("study-cap-zero", ["study", "{tmp}/zero.toml"], 2, "capacity.cap_mw = 0"),
    ("study-sites", ["study", "{tmp}/sites.toml"], 2, "selection.sites = 2.5: must be a whole number"),
    ("study-demand", ["study", "{tmp}/demand.toml"], 2, "workload.demand"),
    ("study-key", ["study", "{tmp}/key.toml"], 2, "unknown key 'colour'"),
    ("study-toml", ["study", "{tmp}/broken.toml"], 2, "not valid TOML"),
    ("study-at", ["study", "{tmp}/at.toml"], 2, "capacity.at = netpeak"),
    ("study-out-project", ["study", "{tmp}/out.toml"], 2, "siting did not write"),
    ("flag", ["inspect", "--bogus"], 2, "unrecognized arguments"),
    ("repeats", ["bench", "engine", "--repeats", "0"], 2, "--repeats"),
    ("json-broken", ["inspect", "{tmp}/broken.json"], 1, "not a readable pandapower JSON"),
    ("matpower-broken", ["inspect", "{tmp}/broken.m"], 1, "not a readable MATPOWER case"),
    (
        "capacity-not-csv",
        ["select", "pandapower:case33bw", "--out", "{out}", "--capacity", "{tmp}/garbage"],
        1,
        "capacity.csv",
    ),
    (
        "capacity-other-grid",
        ["select", "pandapower:case33bw", "--out", "{out}", "--capacity", "{tmp}/other"],
        1,
        "another grid",
    ),
    (
        "layer-no-crs",
        ["select", "pandapower:case33bw", "--out", "{out}", "--layers", "fiber={tmp}/nocrs.shp"],
        1,
        "coordinate reference",
    ),
    *(
        (f"model-{name}", ["capacity", f"{{tmp}}/{name}.json", "--out", "{out}"], 1, words)
        for name, (_, words) in MODELS.items()
    ),
    *(
        (
            f"contingencies-{name}",
            ["capacity", "pandapower:case33bw", "--out", "{out}", "--contingencies", f"{{tmp}}/{file}"],
            2,
            words,
        )
        for name, file, words in (
            ("missing", "nowhere.csv", "--contingencies"),
            ("unknown-branch", "unknown.csv", "row 2: no branch 1 between buses 0 and 30"),
            ("empty", "empty.con", "line 2: contingency 'EMPTY' opens nothing"),
            ("kind", "set.txt", "unknown contingency file type"),
        )
    ),
    ("study-contingencies", ["study", "{tmp}/contingencies.toml", "--out", "{out}"], 2, "contingencies"),
    (
        "dispatch-without-profiles",
        ["capacity", "pandapower:case33bw", "--out", "{out}", "--dispatch", "case"],
        2,
        "--dispatch case: applies to your load profiles",
    ),
    ("study-dispatch", ["study", "{tmp}/dispatch.toml", "--out", "{out}"], 2, "dispatch = 'merit'"),
]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder with the files the cases name, a previous siting output, and a user's project."""
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "broken.m").write_text("function mpc = broken\nmpc.bus = [1 2;\n")
    (tmp_path / "broken.toml").write_text("grid = \n")
    for name, (change, _) in MODELS.items():
        _net_json(tmp_path / f"{name}.json", change)
    (tmp_path / "unknown.csv").write_text("contingency,from_bus,to_bus\nX,0,30\n")
    (tmp_path / "empty.con").write_text("CONTINGENCY EMPTY\nEND\n")
    (tmp_path / "set.txt").write_text("X\n")
    studies = {
        "contingencies": STUDY + 'contingencies = "missing.con"\n',
        "dispatch": STUDY + 'dispatch = "merit"\n',
        "name": 'name = "../siting"\n' + STUDY,
        "cap": STUDY + "[capacity]\ncap_mw = nan\n",
        "zero": STUDY + "[capacity]\ncap_mw = 0\n",
        "sites": STUDY + "[selection]\nsites = 2.5\n",
        "demand": STUDY + '[workload]\ndemand = "missing.csv"\n',
        "key": STUDY + 'colour = "red"\n',
        "at": STUDY + '[capacity]\nat = "netpeak"\n',
        "out": STUDY + 'out = "project"\n',
    }
    for name, text in studies.items():
        (tmp_path / f"{name}.toml").write_text(text)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "capacity.csv").write_bytes(b'\x00\x01"unterminated\n\xff\xfe,,"')
    (tmp_path / "other").mkdir()
    pd.DataFrame({"substation": [0], "name": ["elsewhere"], "bus": [999], "hc_n1_mw": [5.0]}).to_csv(
        tmp_path / "other" / "capacity.csv", index=False
    )
    gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])]).to_file(tmp_path / "nocrs.shp")
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "manifest.json").write_text('{"written_by": "siting", "versions": {"siting": "0.1.0"}}')
    (previous / "capacity.csv").write_text("substation,hc_n0_mw\n0,12.5\n")
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
@pytest.mark.parametrize(
    ("argv", "code", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_gets_one_line_and_its_exit_code(workspace, capsys, argv, code, words):
    before = _snapshot(workspace)
    filled = [a.format(tmp=workspace, out=workspace / "previous") for a in argv]
    try:
        returned = main(filled)
    except SystemExit as stop:  # argparse's own refusals
        returned = stop.code
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert returned == code, captured.err
    assert len(errors) == 1 and words in errors[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(workspace) == before  # nothing new, nothing changed, the previous output intact


def test_every_case_is_run():
    assert len(CASES) >= 50


INDEX = pd.date_range("2024-01-01", periods=48, freq="h")
DEMAND_CSV = [
    ("", "cannot read the demand CSV"),
    ("time,tokens_per_s\n2024-01-01 00:00,1\n", "at least two rows"),
    (
        "time,tokens_per_s\n2024-01-01 00:00,1\n2024-01-01 01:00,x\n",
        "line 3: tokens_per_s 'x' is not a number",
    ),
    ("time,tokens_per_s\n2024-01-01 00:00,1\n2024-01-01 01:00,-5\n", "is negative"),
    ("time,tokens_per_s\n2024-01-01 00:00,1\n2024-01-01 00:00,2\n", "appears twice"),
    ("time,tokens_per_s\n2024-01-01 00:00,1\n2024-01-01 01:00,nan\n", "line 3"),
    ("time,speed\n2024-01-01 00:00,1\n2024-01-01 01:00,1\n", "needs columns"),
    ("time,tokens_per_s\nnoon,1\nlater,1\n", "time"),
    ("time,tokens_per_s\n2024-01-01 00:00,1e300\n2024-01-01 01:00,1e300\n", "not a realistic"),
]


@pytest.mark.parametrize(("text", "words"), DEMAND_CSV)
def test_bad_demand_files_are_refused_in_one_line(tmp_path, text, words):
    path = tmp_path / "demand.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=words) as raised:
        read_demand_csv(path, INDEX)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def _layer(tmp_path, geometry, crs="EPSG:4326", weight=None):
    path = tmp_path / "layer.gpkg"
    frame = gpd.GeoDataFrame({"weight": weight} if weight is not None else {}, geometry=geometry, crs=crs)
    frame.to_file(path, driver="GPKG")
    return path


def test_a_layer_of_the_wrong_kind_is_refused(tmp_path):
    path = _layer(tmp_path, [shapely.Point(0, 0)])
    with pytest.raises(DataError, match=r"holds Point; a exclusion layer needs"):
        read_layers({"exclusion": path})


def test_an_unreadable_layer_is_refused(tmp_path):
    path = tmp_path / "layer.gpkg"
    path.write_bytes(b"not a geopackage")
    with pytest.raises(DataError, match="not a readable GIS file"):
        read_layers({"fiber": path})


STUDY_VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.sampled_from([t for t in KEYS if t]),
    data=st.data(),
)
def test_any_study_value_is_accepted_or_refused_in_one_line_naming_the_key(table, data):
    key = data.draw(st.sampled_from(sorted(k for k in KEYS[table] if k != "layers")))
    value = data.draw(STUDY_VALUES)
    if key in ("demand",):
        return  # a path: existence is tested above
    study = {"grid": "pandapower:case33bw", table: {key: value}}
    try:
        study_from_dict(study, source="s.toml")
    except UsageError as err:
        message = str(err)
        assert message.startswith("s.toml: ") and "\n" not in message
        named = {"emergency_percent": "emergency_percent", "utilisation": "workload.utilisation"}
        assert named.get(key, key) in message, message
    except SitingError as err:
        raise AssertionError(f"{table}.{key} = {value!r}: {err!r}") from err


def test_numbers_that_are_not_finite_never_pass_as_settings():
    for value in (math.inf, -math.inf, math.nan, np.float64("nan")):
        with pytest.raises(UsageError):
            study_from_dict({"grid": "x", "capacity": {"cap_mw": float(value)}})
