"""Engine benchmark: `python bench/engine.py [--quick] [--repeats N] [--csv FILE]`.

The same as `siting bench engine`: a year of 15-minute steps on two SimBench grids and 1,000
hourly steps on ACTIVSg2000, timed for the engine and for pandapower's run_timeseries (with
and without recycle) in the same run; prints steps/s and the speed-up ratios.
"""

import sys

from siting.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "engine", *sys.argv[1:]]))
