"""CHGNet relaxation throughput on this CPU: structures per minute at several batch sizes.

    python benchmarks/relax_speed.py [--structures 32] [--batch-sizes 1 16] [--steps 500] [--threads 1]

Relaxes the first N perov_5 test structures (cell + positions, FIRE on a FrechetCellFilter,
fmax 0.05 eV/A) exactly as `gencsp relax` does. A batch relaxes together, so its wall time
is that of its slowest member. The load average (other jobs on the machine) is printed
before and after each measurement: on a shared node it changes the figures.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

MIRROR = Path(os.environ.get("GENCSP_DATA_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=32)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import pandas as pd

    from dft.mlip import Item, MLIPRelaxer

    table = pd.read_csv(MIRROR / "perov_5" / "test.csv").head(args.structures)
    items = [Item(str(r.material_id), 0, r.cif) for r in table.itertuples()]
    potential = MLIPRelaxer(device=args.device).load(threads=args.threads)
    print(f"{len(items)} perov_5 test structures (5 atoms), CHGNet 0.3.0, {args.device}, {args.threads} torch "
          f"thread(s), fmax {args.fmax} eV/A, at most {args.steps} steps; {os.cpu_count()} cores")
    header = f"{'batch':>6}{'wall s':>9}{'struct/min':>12}{'steps':>8}{'converged':>11}{'ms/struct-step':>16}{'load before/after':>20}"
    print(header)
    for batch in args.batch_sizes:
        relaxer = MLIPRelaxer(device=args.device, fmax=args.fmax, max_steps=args.steps, batch_size=batch)
        before = os.getloadavg()[0]
        start = time.perf_counter()
        records = relaxer.relax(items, potential)
        wall = time.perf_counter() - start
        after = os.getloadavg()[0]
        steps = sum(r.steps + 1 for r in records)  # evaluations: one more than the steps taken
        converged = sum(r.converged for r in records)
        print(f"{batch:>6}{wall:>9.1f}{60 * len(items) / wall:>12.2f}{steps / len(items):>8.1f}"
              f"{converged:>6}/{len(items):<4}{1000 * wall / steps:>16.1f}{before:>11.2f} / {after:.2f}")


if __name__ == "__main__":
    main()
