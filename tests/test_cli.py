import json
import subprocess
import sys

import pytest

from siting.cli import main


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_grids_lists_the_catalog_with_the_default(capsys):
    code, out, _ = run(["grids"], capsys)
    assert code == 0
    assert "texas2000" in out and "hv-mixed *" in out


def test_inspect_json_reports_counts_substations_and_base_case(capsys):
    code, out, _ = run(["inspect", "pandapower:mv_oberrhein", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["elements"]["bus"] == 179
    assert len(result["substations"]) == 2
    case = result["base_case"]
    assert case["converged"]
    # pandapower's own result for mv_oberrhein as shipped
    assert case["min_vm_pu"]["value"] == pytest.approx(0.9758, abs=2e-4)


def test_inspect_prints_tables_not_dicts(capsys):
    code, out, _ = run(["inspect", "pandapower:mv_oberrhein"], capsys)
    assert code == 0
    assert "Substations: 2 (rule: transformer LV bus)" in out
    assert "{" not in out


@pytest.mark.parametrize(
    ("source", "exit_code", "message"),
    [
        ("simbench:1-HV-nowhere--0-sw", 2, "not a SimBench code"),
        ("nowhere/absent.json", 2, "file not found"),
        ("no-such-grid", 2, "unknown grid 'no-such-grid'"),
        ("pandapower:no_such_net", 2, "not a pandapower network"),
    ],
)
def test_bad_sources_give_one_line_and_exit_code(source, exit_code, message, capsys):
    code, _, err = run(["inspect", source, "--json"], capsys)
    assert code == exit_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("siting: error:")


def test_corrupt_model_file_fails_the_run_without_traceback(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    done = subprocess.run(
        [sys.executable, "-m", "siting.cli", "inspect", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "broken.json: not a readable pandapower JSON network" in done.stderr
