"""relion-cryopares: supervised deep-learning pose assignment (cryoPARES) as RELION External jobs."""

import os

# OpenMP threads that spin while waiting make --j 2 up to 5x slower than --j 1 when other processes
# share the cores (measured in local refinement: 9 vs 44 particles/s; training epochs 4 s -> 30 s
# beside a relion_refine run). It must be set before torch loads its OpenMP runtime, so it is set
# here, when any of our modules (every job, the demo, the benchmarks) is first imported; a value the
# user exported is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
