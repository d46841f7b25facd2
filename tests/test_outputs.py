import json
import math

import numpy as np
import pytest

from siting.outputs import atomic_folder, json_ready, write_json


def test_atomic_folder_replaces_the_target_only_when_complete(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target) as folder:
        (folder / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_folder(target) as folder:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_json_is_strict_and_plain(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"x": math.nan, "y": np.float64(2.5), "z": [np.int64(3)]})
    assert json.loads(path.read_text()) == {"x": None, "y": 2.5, "z": [3]}
    assert json_ready(float("inf")) is None
