import json
import math
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest

from siting.errors import UsageError
from siting.outputs import atomic_folder, check_output_folder, json_ready, safe_name, write_json, write_output


def _siting_output(target, text="first"):
    return write_output(
        target,
        lambda folder: [(folder / "a.txt").write_text(text) and "a.txt"],
        inputs={},
        settings={},
        results={},
        started=datetime.now(UTC),
    )


def test_atomic_folder_replaces_the_target_only_when_complete(tmp_path):
    target = tmp_path / "out"
    _siting_output(target)
    with pytest.raises(RuntimeError), atomic_folder(target) as folder:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind
    _siting_output(target, "second")
    assert (target / "a.txt").read_text() == "second"
    assert json.loads((target / "manifest.json").read_text())["written_by"] == "siting"


def test_a_folder_siting_did_not_write_is_never_replaced(tmp_path):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\n")
    with pytest.raises(UsageError, match="siting did not write"):
        _siting_output(project)
    assert sorted(p.name for p in project.iterdir()) == [".git", "pyproject.toml"]
    (project / "manifest.json").write_text('{"versions": {"numpy": "2"}}')  # someone else's manifest
    with pytest.raises(UsageError, match="siting did not write"):
        check_output_folder(project)
    empty = tmp_path / "empty"
    empty.mkdir()
    _siting_output(empty)
    assert (empty / "a.txt").exists()


@pytest.mark.parametrize("where", ["/", ".", ".."])
def test_root_and_the_current_folder_are_refused(where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="--out"):
        check_output_folder(where)


def test_a_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        check_output_folder(tmp_path / "file")


@pytest.mark.parametrize("name", ["../siting", "../../etc/evil", "a/b", ".hidden", "", "a\\b", "x" * 121])
def test_names_are_file_names_not_paths(name):
    with pytest.raises(UsageError, match="not a path"):
        safe_name(name, "study.toml: name")


def test_names_that_are_file_names_pass():
    assert safe_name("texas-pilot_2026.v2", "name") == "texas-pilot_2026.v2"


HOLD_OPEN = """
import signal, sys, time
from pathlib import Path
import siting.cli as cli
from siting.outputs import atomic_folder
signal.signal(signal.SIGTERM, cli._terminate)
try:
    with atomic_folder(Path(sys.argv[1])) as folder:
        (folder / "a.txt").write_text("half")
        print("ready", flush=True)
        time.sleep(60)
except cli._Terminated:
    sys.exit(143)
"""


def _hold_open(target):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def _staging(tmp_path):
    return [p for p in tmp_path.iterdir() if p.name.startswith(".out.siting-staging-")]


def test_sigterm_removes_the_staging_folder_and_keeps_the_previous_result(tmp_path):
    target = tmp_path / "out"
    _siting_output(target)
    process = _hold_open(target)
    assert len(_staging(tmp_path)) == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert not _staging(tmp_path)
    assert (target / "a.txt").read_text() == "first"


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    target = tmp_path / "out"
    _siting_output(target)
    process = _hold_open(target)
    process.kill()
    process.wait(timeout=30)
    assert len(_staging(tmp_path)) == 1 and (target / "a.txt").read_text() == "first"
    alive = tmp_path / f".out.siting-staging-{os.getpid()}-keep"  # a run still going: left alone
    alive.mkdir()
    unrelated = tmp_path / ".out.backup"
    unrelated.mkdir()
    _siting_output(target, "second")
    assert _staging(tmp_path) == [alive]
    assert unrelated.exists() and (target / "a.txt").read_text() == "second"


def test_json_is_strict_and_plain(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"x": math.nan, "y": np.float64(2.5), "z": [np.int64(3)]})
    assert json.loads(path.read_text()) == {"x": None, "y": 2.5, "z": [3]}
    assert json_ready(float("inf")) is None
