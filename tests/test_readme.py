import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _from_python_block() -> str:
    text = README.read_text()
    section = text[text.index("### From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_walk_through_runs_and_leaves_the_grid_as_it_was(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(_from_python_block(), str(README), "exec"), names)
    assert (tmp_path / "reports" / "from-python" / "index.html").is_file()
    assert len(names["selection"].sites) == 3
    assert set(names["fleet"].summary["policy"]) == {"blind", "grid-aware"}
    assert names["grid"].net.res_bus.empty  # no stage ran a power flow on the caller's net
