"""Duplicate search on a dataset split: cold, with warm primitive-cell facts, and from the recorded mapping.

    python benchmarks/dedup_speed.py [--dataset carbon_24] [--split val] [--workers 1 2] [--tolerance strict]

Each measurement uses a fresh $GENCSP_HOME (under a temporary folder) so that nothing is cached,
then repeats the command with the mapping recorded. Prints wall and CPU seconds (this process and
its workers) and the load average around each measurement: on a shared node it changes the figures.
Also prints the naive cost for comparison: every pair of the split's structures sent to
StructureMatcher.fit, estimated from a sample of pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
import warnings
from pathlib import Path

MIRROR = Path(os.environ.get("GENCSP_DATA_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def naive_seconds(texts: list[str], pairs: int = 200) -> float:
    """Seconds to fit every pair of the split with StructureMatcher (no buckets, no reuse), from a sample."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from orchestrator.structures import parse_cif

    rng = random.Random(0)
    sample = [tuple(rng.sample(range(len(texts)), 2)) for _ in range(pairs)]
    matcher = StructureMatcher()
    start = time.perf_counter()
    for i, j in sample:
        matcher.fit(parse_cif(texts[i]), parse_cif(texts[j]))
    per_pair = (time.perf_counter() - start) / pairs
    return per_pair * len(texts) * (len(texts) - 1) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="carbon_24")
    parser.add_argument("--split", default="val")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--tolerance", default="strict", choices=("strict", "loose"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("GENCSP_DATA_MIRROR", str(MIRROR))

    from orchestrator import datasets
    from orchestrator.dedup import dedup_split

    print(f"{args.dataset}/{args.split}, StructureMatcher {args.tolerance}, against every other split here; "
          f"{os.cpu_count()} cores")
    print(f"{'workers':>8}{'run':>10}{'wall s':>10}{'cpu s':>10}{'unique':>9}{'duplicates':>12}{'load before/after':>20}")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as home:
            os.environ["GENCSP_HOME"] = home
            for run in ("cold", "recorded"):
                before, cpu, start = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
                mapping, _, _ = dedup_split(args.dataset, args.split, tolerance=args.tolerance, workers=workers,
                                            progress=False)
                wall, used, after = time.perf_counter() - start, cpu_seconds() - cpu, os.getloadavg()[0]
                counts = mapping["counts"]
                print(f"{workers:>8}{run:>10}{wall:>10.1f}{used:>10.1f}{counts['unique']:>9}"
                      f"{counts['duplicates']:>12}{before:>11.2f} / {after:.2f}")
    texts = list(datasets.load(args.dataset, args.split)["cif"])
    print(f"naive (every pair of the split fitted, no buckets, no reuse): ~{naive_seconds(texts):.0f} s of CPU "
          "for the split alone")


if __name__ == "__main__":
    main()
