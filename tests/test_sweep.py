"""Sweeps: expansion of sweep files, chunked capacity, and runs on a local and a real Dask cluster."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from siting.capacity import CapacitySettings, substation_capacity
from siting.errors import UsageError
from siting.sources.grid import load_grid
from siting.study import run_study, study_from_dict
from siting.sweep import Sweep, chunks, merge_capacity, outage_names, read_sweep, run_sweep

# Cases of a few seconds each: a radial 33-bus feeder without N-1 or a year of profiles.
SMALL = """
[base]
capacity.n1 = false
capacity.year = false
selection.criterion = "peak"
selection.sites = 2
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cross_product_names_cases_by_grid_and_values(tmp_path):
    path = write(
        tmp_path,
        """
[sweep]
grids = ["simbench:1-HV-mixed--0-sw", "pandapower:case33bw"]
[base]
capacity.n1 = false
[vary]
simulation.load_scale = [1.0, 1.5]
"selection.max_mw" = [10, 20]
"selection.criterion" = ["peak"]
""",
    )
    sweep = read_sweep(path)
    assert sweep.name == "sweep"
    assert (sweep.chunk_substations, sweep.retries) == (200, 2)
    assert [c.name for c in sweep.cases] == [
        f"{grid}__load_scale-{scale}__max_mw-{mw}__criterion-peak"
        for grid in ("1-HV-mixed--0-sw", "case33bw")
        for scale in ("1", "1.5")
        for mw in (10, 20)
    ]
    case = sweep.cases[3]
    assert case.study == {
        "name": case.name,
        "grid": "simbench:1-HV-mixed--0-sw",
        "capacity": {"n1": False},
        "simulation": {"load_scale": 1.5},
        "selection": {"max_mw": 20, "criterion": "peak"},
    }
    assert case.params == {
        "simulation.load_scale": 1.5,
        "selection.max_mw": 20,
        "selection.criterion": "peak",
    }


def test_explicit_cases_run_on_their_grid_or_every_grid(tmp_path):
    (tmp_path / "demand.csv").write_text("time,tokens_per_s\n")
    path = write(
        tmp_path,
        """
[sweep]
name = "few"
grids = ["pandapower:case33bw", "grids/my net.json"]
[[case]]
name = "busy"
simulation.load_scale = 2.0
workload.demand = "demand.csv"
[[case]]
grid = "simbench:1-MV-semiurb--0-sw"
"selection.sites" = 3
[[case]]
""",
    )
    sweep = read_sweep(path)
    assert sweep.name == "few"
    assert [c.name for c in sweep.cases] == [
        "case33bw__busy",
        "my-net__busy",
        "1-MV-semiurb--0-sw__sites-3",
        "case33bw",
        "my-net",
    ]
    assert sweep.cases[0].study["workload"]["demand"] == str(tmp_path / "demand.csv")
    assert sweep.cases[1].study["grid"] == str(
        Path("grids/my net.json").resolve()
    )  # workers may run elsewhere


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[sweep]\ngrids = ['pandapower:case33bw']\ncolour = 1", "'sweep.colour'"),
        ("[sweep]\ngrids = []\n[vary]\n'selection.sites' = [1]", "'sweep.grids'"),
        ("[sweep]\ngrids = ['pandapower:case33bw']\nretries = -1", "'sweep.retries'"),
        ("[sweep]\ngrids = ['pandapower:case33bw']\nchunk_substations = 'many'", "'sweep.chunk_substations'"),
        (
            "[sweep]\ngrids = ['pandapower:case33bw']\n[vary]\n'selection.sites' = []",
            "'vary.selection.sites'",
        ),
        ("[sweep]\ngrids = ['pandapower:case33bw']\n[vary]\n'selection.sites' = 3", "'vary.selection.sites'"),
        ("[sweep]\ngrids = ['pandapower:case33bw']\n[vary]\ngrid = ['x']", "'vary.grid'"),
        ("[sweep]\ngrids = ['pandapower:case33bw']\n[base]\ngrid = 'x'", "'base.grid'"),
        ("[sweep]\ngrids = ['pandapower:case33bw']\n[base]\nselection.colour = 1", "'selection.colour'"),
        (
            "[sweep]\ngrids = ['pandapower:case33bw']\n[vary]\n'selection.sites' = ['x']",
            "selection.sites = 'x'",
        ),
        ("[sweep]\ngrids = ['a.json']\n[vary]\nx = [1]\n[[case]]\nname = 'a'", "[vary]"),
        ("[[case]]\nname = 'a b'\ngrid = 'pandapower:case33bw'", "'case.name'"),
        ("[[case]]\n'selection.sites' = 3", "'grid'"),
        ("[sweep]\ngrids = ['pandapower:case33bw', 'pandapower:case33bw']", "case33bw"),
        ("[sweeps]\nname = 'x'", "'sweeps'"),
        ("[sweep\n", "not valid TOML"),
    ],
)
def test_bad_sweep_files_are_refused_naming_the_key(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as raised:
        read_sweep(path)
    message = str(raised.value)
    assert message.startswith(str(path)) and named in message
    assert "\n" not in message


def test_merged_capacity_chunks_equal_one_run_over_every_substation():
    grid = load_grid("pandapower:case33bw")
    settings = CapacitySettings(cap_mw=30, n1=True, n1_hops=2, year=False)
    whole = substation_capacity(grid, settings)
    ids = [int(i) for i in grid.substations["id"]]
    parts = [substation_capacity(grid, settings, substations=c) for c in chunks(ids, 5)]
    assert len(parts) == 7
    merged = merge_capacity(parts, outage_names(grid))
    pd.testing.assert_frame_equal(merged.table, whole.table)
    pd.testing.assert_frame_equal(merged.skipped_outages, whole.skipped_outages)
    pd.testing.assert_frame_equal(merged.base_violations, whole.base_violations)
    assert (merged.load_margin, merged.unused_share_at_peak) == (
        whole.load_margin,
        whole.unused_share_at_peak,
    )
    assert merged.operating_point == whole.operating_point


@pytest.mark.slow
def test_merged_year_headroom_equals_one_run(hv_mixed):
    settings = CapacitySettings(n1=False, year=True)
    whole = substation_capacity(hv_mixed, settings)
    ids = [int(i) for i in hv_mixed.substations["id"]]
    merged = merge_capacity([substation_capacity(hv_mixed, settings, substations=c) for c in chunks(ids, 5)])
    pd.testing.assert_frame_equal(merged.table, whole.table)
    pd.testing.assert_frame_equal(merged.headroom, whole.headroom)


def test_chunks_split_only_above_the_size():
    assert chunks([4, 5, 6], 0) == [[4, 5, 6]]
    assert chunks([4, 5, 6], 3) == [[4, 5, 6]]
    assert chunks([4, 5, 6, 7, 8], 2) == [[4, 5], [6, 7], [8]]


# ---------------------------------------------------------------- running on clusters


def small_sweep(tmp_path: Path, grids: list[str], chunk: int = 10) -> Sweep:
    grid_list = ", ".join(f'"{g}"' for g in grids)
    text = f'[sweep]\nname = "small"\ngrids = [{grid_list}]\nchunk_substations = {chunk}\n{SMALL}'
    text += '[vary]\n"selection.max_mw" = [8, 20]\n'
    return read_sweep(write(tmp_path, text))


def run_alone(sweep: Sweep, folder: Path) -> dict[str, dict]:
    """Each good case run by itself in this process: its headline and its sites.csv."""
    alone = {}
    for case in sweep.cases:
        if case.study["grid"].startswith("simbench:no-such"):
            continue
        out = folder / case.name
        headline = run_study(study_from_dict(case.study), out)
        alone[case.name] = {"headline": headline, "sites": (out / "selection" / "sites.csv").read_bytes()}
    return alone


def assert_same_results(out: Path, table: pd.DataFrame, alone: dict[str, dict]) -> None:
    rows = table.set_index("case")
    for name, expected in alone.items():
        row = rows.loc[name]
        assert row["status"] == "ok", row["error"]
        for key, value in expected["headline"].items():
            if key in ("study", "grid"):
                continue
            got = row[key]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert pd.isna(got), key
            else:
                assert got == value, key
        assert (out / "cases" / name / "selection" / "sites.csv").read_bytes() == expected["sites"]
    written = pd.read_csv(out / "sweep.csv")
    assert list(written["case"]) == list(table["case"])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """One sweep on the default LocalCluster: case33bw (chunked, 32 substations) twice, and a
    grid that does not exist twice."""
    tmp_path = tmp_path_factory.mktemp("local")
    sweep = small_sweep(tmp_path, ["pandapower:case33bw", "simbench:no-such-code"])
    messages: list[str] = []
    table = run_sweep(sweep, tmp_path / "out", progress=messages.append)
    return sweep, table, tmp_path / "out", messages


def test_local_cluster_gives_the_results_of_each_case_run_alone(local_run, tmp_path):
    sweep, table, out, messages = local_run
    assert messages[0].startswith("4 cases on a local cluster of")
    assert list(table["case"]) == [c.name for c in sweep.cases]
    assert_same_results(out, table, run_alone(sweep, tmp_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["results"] == {"cases": 4, "ok": 2, "failed": 2}
    assert sorted(p.name for p in (out / "cases").iterdir()) == sorted(
        table.loc[table.status == "ok", "case"]
    )
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out")]  # no staging left


def test_a_failing_case_is_recorded_and_the_rest_complete(local_run):
    _, table, _, messages = local_run
    failed = table[table["status"] == "failed"]
    assert list(failed["case"]) == ["no-such-code__max_mw-8", "no-such-code__max_mw-20"]
    assert failed["error"].str.startswith("simbench:no-such-code: not a SimBench code").all()
    assert (table.loc[table["status"] == "ok", "error"].fillna("") == "").all()
    assert sum("FAILED" in m for m in messages) == 2


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two single-thread workers (no nanny) as separate processes; all killed after."""
    dask = Path(sys.executable).with_name("dask")
    scheduler_file = tmp_path / "scheduler.json"
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> None:
        log = open(tmp_path / f"dask-{len(processes)}.log", "w")  # noqa: SIM115 (closed with the process)
        processes.append(
            subprocess.Popen([str(dask), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    try:
        start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        )
        address = json.loads(wait_for(lambda: scheduler_file.exists() and scheduler_file.read_text()))[
            "address"
        ]
        for _ in range(2):
            start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1")
        yield address
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def wait_for(check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError("the Dask cluster did not come up")


def kill_a_busy_worker(address: str, killed: list[int]) -> None:
    """Once a worker has been running a case for a second, kill it outright (SIGKILL)."""
    from distributed import Client

    with Client(address, timeout="60s") as monitor:
        monitor.wait_for_workers(2, timeout=120)
        started: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for worker, keys in monitor.processing().items():
                if any(str(k).startswith("case-") for k in keys):
                    if time.monotonic() - started.setdefault(worker, time.monotonic()) > 1.0:
                        pid = monitor.run(os.getpid, workers=[worker])[worker]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
                else:
                    started.pop(worker, None)
            time.sleep(0.1)


def test_real_scheduler_reruns_the_tasks_of_a_killed_worker(dask_cluster, tmp_path):
    sweep = small_sweep(tmp_path, ["pandapower:case33bw", "pandapower:mv_oberrhein"], chunk=0)
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_busy_worker, args=(dask_cluster, killed), daemon=True)
    killer.start()
    table = run_sweep(sweep, tmp_path / "out", scheduler=dask_cluster)
    killer.join(timeout=60)
    assert len(killed) == 1, "no worker was killed mid-task"
    assert (table["status"] == "ok").all(), table["error"].tolist()
    assert_same_results(tmp_path / "out", table, run_alone(sweep, tmp_path / "alone"))


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_usage_error(tmp_path):
    sweep = small_sweep(tmp_path, ["pandapower:case33bw"])
    with pytest.raises(UsageError, match=re.escape("--scheduler tcp://127.0.0.1:9: cannot connect")):
        run_sweep(sweep, tmp_path / "out", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "out").exists()
