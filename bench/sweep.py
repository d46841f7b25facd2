"""Sweep benchmark: `python bench/sweep.py [--quick] [--csv FILE]`.

Every SimBench HV and MV base grid × three load levels (load_scale 1.0, 1.5, 2.0), each case a
whole study (firm capacity screened to one branch hop, five sites, a year of hourly dispatch),
run by `siting.sweep.run_sweep` on a LocalCluster of one worker and of two (one thread each);
prints the wall times (cluster start included), the speed-up, and checks that both runs give
the same table. `--quick` runs two grids (one HV, one MV).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from siting.sweep import Sweep, run_sweep, sweep_from_dict

GRIDS = (
    "simbench:1-HV-mixed--0-sw",
    "simbench:1-HV-urban--0-sw",
    "simbench:1-MV-rural--0-sw",
    "simbench:1-MV-semiurb--0-sw",
    "simbench:1-MV-urban--0-sw",
    "simbench:1-MV-comm--0-sw",
)
QUICK_GRIDS = ("simbench:1-HV-mixed--0-sw", "simbench:1-MV-urban--0-sw")
STUDY = {
    "capacity": {"at": "case:hL", "n1": True, "n1_hops": 1, "year": False},
    "selection": {"criterion": "firm", "sites": 5, "min_mw": 5, "max_mw": 20},
    "simulation": {"policies": ["blind", "grid-aware"], "step_minutes": 60},
}
SCALES = [1.0, 1.5, 2.0]


def bench_sweep(quick: bool = False) -> Sweep:
    """The benchmark's cases: grids × load scales."""
    return sweep_from_dict(
        {
            "sweep": {"name": "bench", "grids": list(QUICK_GRIDS if quick else GRIDS)},
            "base": STUDY,
            "vary": {"simulation.load_scale": SCALES},
        },
        source="bench/sweep.py",
    )


def time_sweep(sweep: Sweep, workers: int) -> tuple[float, pd.DataFrame]:
    """Wall time (s) of the whole sweep on a fresh LocalCluster of ``workers`` processes."""
    with tempfile.TemporaryDirectory(prefix="siting-bench-sweep-") as scratch:
        started = time.perf_counter()
        table = run_sweep(sweep, Path(scratch) / "out", workers=workers, progress=_say)
        return time.perf_counter() - started, table


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two grids instead of six")
    parser.add_argument("--csv", metavar="FILE", help="also write the timing table to this CSV file")
    args = parser.parse_args(argv)
    sweep = bench_sweep(args.quick)
    rows, tables = [], {}
    for workers in (1, 2):
        print(f"{len(sweep.cases)} cases on {workers} worker(s) …", file=sys.stderr)
        seconds, tables[workers] = time_sweep(sweep, workers)
        rows.append(
            {
                "workers": workers,
                "cases": len(sweep.cases),
                "ok": int((tables[workers]["status"] == "ok").sum()),
                "seconds": round(seconds, 1),
            }
        )
    timing = pd.DataFrame(rows)
    timing["speedup"] = (timing["seconds"].iloc[0] / timing["seconds"]).round(2)
    same = tables[1].drop(columns="run_seconds").equals(tables[2].drop(columns="run_seconds"))
    print(tables[2].drop(columns="run_seconds").to_string(index=False, na_rep="–"))
    print()
    print(timing.to_string(index=False))
    print(f"Same table on 1 and 2 workers: {'yes' if same else 'NO'}")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        timing.to_csv(args.csv, index=False)
        print(f"Written to {args.csv}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
