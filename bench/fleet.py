"""Fleet benchmark: `python bench/fleet.py [--quick] [--repeats N] [--csv FILE]`.

The same as `siting bench fleet`: a full year (35,136 steps) of blind and grid-aware dispatch
for ten 20 MW sites on simbench:1-HV-mixed--0-sw with loads × 4.6, every step checked by AC
power flow, against pandapower's run_timeseries per flow measured in the same run.
"""

import sys

from siting.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "fleet", *sys.argv[1:]]))
