"""Capacity benchmark: `python bench/capacity.py [--quick] [--csv FILE]`.

The same as `siting bench capacity`: whole-grid N-0 + N-1 at the planning peak and the
full-year headroom of every substation on simbench:1-HV-mixed--0-sw, against the brute-force
reference (pandapower runpp + bisection) timed on a sample of the same pairs in the same run.
"""

import sys

from siting.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "capacity", *sys.argv[1:]]))
