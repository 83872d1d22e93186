"""How fast is `gencsp evaluate` from cold, side by side with CDVAE's and DiffCSP's own evaluation code?

    python benchmarks/metrics_speed.py                    # the three comparisons below, one run
    python benchmarks/metrics_speed.py --only csp --processes 2 --cdvae-src DIR --diffcsp-src DIR
    python benchmarks/metrics_speed.py --memory 10000     # peak memory, 10,000 generated structures
    python benchmarks/metrics_speed.py --project 200 --k 20 --dataset carbon_24   # MP-20-scale projection

The reference is the scripts' own code (benchmarks/upstream.py: `scripts/compute_metrics.py`
of txie-93/cdvae and jiaor17/DiffCSP, from the mirror tarball or a folder), run as their
`main()` runs it: `p_map(lambda x: Crystal(x), ...)` over the crystals with the same number of
processes as gencsp's workers (`--processes`, default every CPU), then the evaluator.

1. CSP, one sample per target: `--csp-targets` targets of perov_5 val (of 3,787), their
   predictions made by perturbing the truths (a seeded mix of matches, misses and invalid
   cells); CDVAE's `RecEval` vs `gencsp evaluate --profile cdvae` against the whole split.
2. CSP, k samples per target: `--k-targets` x `--k`; DiffCSP's `RecEvalBatch` (`--multi_eval`)
   vs `--profile diffcsp`.
3. Generation: the first `--generated` rows of perov_5 val as generated crystals, the 3,785
   rows of perov_5 test as reference; CDVAE's `GenEval` (every metric but wdist_prop, which
   needs its property model) vs `--profile cdvae`.

The reference is timed from the crystal arrays its .pt files hold (built from the CIFs
beforehand, not timed); gencsp from the CSV files, in a new GENCSP_HOME (empty cache) each
time, reading and parsing included. Printed for each: wall and CPU seconds (CPU summed over
processes: comparable under load), the load average before and after, the speed-up, and the
largest difference between the two sets of numbers.

`--project N --k K`: an MP-20-scale estimate (9,046 targets x 20 samples) from a measured
subset of N targets x K samples of `--dataset` (MP-20 is not mirrored here; carbon_24, 6 to 24
atoms of one element, is the harder stand-in for its 1 to 20 atoms). It measures gencsp cold
with the diffcsp profile (`--profile`): CPU seconds in the parent process (serial) and in the workers
(parallel), and the peak memory of both, at N/2 and N targets; then projects both linearly.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MP20_TARGETS, MP20_K = 9_046, 20


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_mb() -> tuple[float, float]:
    """(this process, largest finished child process) peak resident memory in MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


class Clock:
    """Wall and CPU seconds (this process and its children) of a block, and the load around it."""

    def __enter__(self):
        self.load_before, self.start, self.cpu = load(), time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu, self.load_after = time.perf_counter() - self.start, cpu_seconds() - self.cpu, load()

    def line(self, label: str) -> str:
        return (f"  {label:<44} {self.wall:7.1f} s wall  {self.cpu:7.1f} s CPU   "
                f"load {self.load_before} -> {self.load_after}")


# --- inputs --------------------------------------------------------------------------------


def perturbed_predictions(truths: list[str], k: int, seed: int) -> list[list[str]]:
    """k predictions per truth: lattice strained (sd 6%), atoms displaced (sd drawn in 0..1.2 A),
    so that some match, some do not and some have atoms closer than 0.5 A."""
    import numpy as np
    from pymatgen.core import Lattice, Structure

    from orchestrator.structures import cif_text

    rng = np.random.default_rng(seed)
    out = []
    for text in truths:
        truth = Structure.from_str(text, fmt="cif")
        samples = []
        for _ in range(k):
            abc = np.array(truth.lattice.abc) * (1 + rng.normal(0, 0.06, 3))
            angles = np.array(truth.lattice.angles) + rng.normal(0, 1.0, 3)
            lattice = Lattice.from_parameters(*abc, *angles)
            shift = rng.normal(0, rng.uniform(0, 1.2), (len(truth), 3)) / abc
            samples.append(cif_text(Structure(lattice, truth.species, truth.frac_coords + shift)))
        out.append(samples)
    return out


def csv(rows: dict, path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def fresh_home(tmp: Path, name: str) -> None:
    os.environ["GENCSP_HOME"] = str(tmp / f"home-{name}-{time.monotonic_ns()}")


def run_gencsp(predictions: Path, reference: Path, task: str, profile: str, workers: int):
    from orchestrator.metrics.context import Settings
    from orchestrator.metrics.evaluate import evaluate
    from orchestrator.metrics.inputs import from_files

    inputs = from_files(predictions, task, str(reference), "perovskite")
    return evaluate(inputs, profile, Settings(workers=workers, progress=False, chgnet=False))


def compare(label: str, reference: dict, clock_ref: Clock, ours: dict, clock_ours: Clock, results: list) -> None:
    diffs = {k: abs(float(ours[k]) - float(v)) for k, v in reference.items()}
    identical = all(float(ours[k]) == float(v) for k, v in reference.items())
    ratio = clock_ref.wall / clock_ours.wall
    print(f"  numbers: {'identical' if identical else 'DIFFERENT'} ({len(diffs)} metrics, largest difference "
          f"{max(diffs.values()):.1e}): " + ", ".join(f"{k} {float(v):.6g}" for k, v in reference.items()))
    print(f"  => gencsp cold is {ratio:.1f}x faster (wall), {clock_ref.cpu / clock_ours.cpu:.1f}x less CPU")
    results.append((label, clock_ref.wall, clock_ours.wall, ratio, identical))


# --- the three comparisons --------------------------------------------------------------------


def csp_set(split, n: int, k: int, seed: int, path: Path):
    """n seeded targets of a split, k perturbed predictions each, written as a predictions CSV."""
    import numpy as np

    rows = sorted(np.random.default_rng(seed).choice(len(split), n, replace=False).tolist())
    targets = split.iloc[rows]
    preds = perturbed_predictions(list(targets["cif"]), k, seed=seed + 1)
    ids = list(targets["material_id"])
    csv({"target_id": [t for t in ids for _ in range(k)], "sample_index": [j for _ in ids for j in range(k)],
         "cif": [c for samples in preds for c in samples]}, path)
    return targets, preds


def side_by_side(args, tmp, label: str, reference_run, predictions: Path, reference: Path, task: str,
                 profile: str, results: list):
    """The reference's code, then gencsp cold on the same inputs (a new GENCSP_HOME), compared."""
    import upstream

    with Clock() as ref_clock:
        expected = reference_run()
    print(ref_clock.line(f"reference code ({upstream.PROCESSES['n']} processes)"))
    fresh_home(tmp, profile)
    with Clock() as our_clock:
        result = run_gencsp(predictions, reference, task, profile, args.processes)
    print(our_clock.line(f"gencsp cold ({args.processes} workers)"))
    compare(label, expected, ref_clock, result.metrics, our_clock, results)
    return ref_clock, result


def csp_at_1(args, tmp, upstream, split, results) -> None:
    targets, preds = csp_set(split, args.csp_targets, 1, 1, tmp / "csp1.csv")
    print(f"\n1. CSP, {len(targets)} targets of perov_5 val ({len(split)}) x 1 sample: CDVAE RecEval vs "
          "--profile cdvae")
    pred_arrays = [upstream.arrays_of_cif(s[0]) for s in preds]
    gt_arrays = [upstream.arrays_of_cif(c) for c in targets["cif"]]
    module = upstream.load("cdvae", args.cdvae_src)
    side_by_side(args, tmp, "CSP @1 vs CDVAE RecEval", lambda: upstream.recon(module, pred_arrays, gt_arrays),
                 tmp / "csp1.csv", tmp / "split.csv", "csp", "cdvae", results)


def csp_at_k(args, tmp, upstream, split, results) -> None:
    targets, preds = csp_set(split, args.k_targets, args.k, 3, tmp / "cspk.csv")
    print(f"\n2. CSP, {len(targets)} targets x {args.k} samples: DiffCSP RecEvalBatch (--multi_eval) vs "
          "--profile diffcsp")
    batches = [[upstream.arrays_of_cif(samples[j]) for samples in preds] for j in range(args.k)]
    gt_arrays = [upstream.arrays_of_cif(c) for c in targets["cif"]]
    module = upstream.load("diffcsp", args.diffcsp_src)
    side_by_side(args, tmp, f"CSP @{args.k} vs DiffCSP RecEvalBatch",
                 lambda: upstream.recon_at_k(module, batches, gt_arrays), tmp / "cspk.csv", tmp / "split.csv",
                 "csp", "diffcsp", results)


def generation(args, tmp, upstream, val, test, results) -> None:
    generated = list(val.head(args.generated)["cif"])
    gen_csv = csv({"cif": generated}, tmp / "generated.csv")
    ref_csv = csv({"material_id": test["material_id"], "cif": test["cif"]}, tmp / "test.csv")
    print(f"\n3. Generation, {len(generated)} generated (perov_5 val) vs {len(test)} reference (perov_5 test): "
          "CDVAE GenEval vs --profile cdvae")
    gen_arrays, gt_arrays = [upstream.arrays_of_cif(c) for c in generated], [upstream.arrays_of_cif(c) for c in test["cif"]]
    module = upstream.load("cdvae", args.cdvae_src)
    ref_clock, cold = side_by_side(args, tmp, "Generation vs CDVAE GenEval",
                                   lambda: upstream.generate(module, gen_arrays, gt_arrays, "perovskite"), gen_csv,
                                   ref_csv, "generate", "cdvae", results)
    with Clock() as warm_clock:
        warm = run_gencsp(gen_csv, ref_csv, "generate", "cdvae", args.processes)
    print(warm_clock.line("gencsp warm (same cache)") + f"   {ref_clock.wall / warm_clock.wall:.0f}x")
    assert warm.metrics == cold.metrics, "cached numbers differ from computed ones"


def speed(args) -> None:
    import upstream

    from orchestrator import datasets

    args.processes = args.processes or os.cpu_count()
    upstream.PROCESSES["n"] = args.processes
    val, test = datasets.load("perov_5", "val"), datasets.load("perov_5", "test")
    tmp = Path(tempfile.mkdtemp(prefix="gencsp-bench-"))
    csv({"material_id": val["material_id"], "cif": val["cif"]}, tmp / "split.csv")
    print(f"{os.cpu_count()} CPUs; {args.processes} processes for the reference and workers for gencsp; "
          f"load average {load()}")
    results: list = []
    if args.only in (None, "csp"):
        csp_at_1(args, tmp, upstream, val, results)
        csp_at_k(args, tmp, upstream, val, results)
    if args.only in (None, "generate"):
        generation(args, tmp, upstream, val, test, results)
    print("\n| comparison | reference (s) | gencsp cold (s) | speed-up | numbers |\n|---|---|---|---|---|")
    for label, ref_s, ours_s, ratio, identical in results:
        print(f"| {label} | {ref_s:.1f} | {ours_s:.1f} | {ratio:.1f}x | {'identical' if identical else 'DIFFER'} |")
    print(f"load average at the end {load()}")


# --- memory and the MP-20 projection --------------------------------------------------------


def memory(args) -> None:
    """Peak memory of an evaluation of `args.memory` generated structures (perturbed perov_5 val copies)."""
    from orchestrator import datasets

    val, test = datasets.load("perov_5", "val"), datasets.load("perov_5", "test")
    tmp = Path(tempfile.mkdtemp(prefix="gencsp-bench-"))
    fresh_home(tmp, "memory")
    sources = [val["cif"].iloc[i % len(val)] for i in range(args.memory)]
    texts = [s[0] for s in perturbed_predictions(sources, 1, seed=0)]
    gen_csv = csv({"cif": texts}, tmp / "generated.csv")
    ref_csv = csv({"material_id": test["material_id"], "cif": test["cif"]}, tmp / "reference.csv")
    with Clock() as clock:
        result = run_gencsp(gen_csv, ref_csv, "generate", "cdvae", args.processes or os.cpu_count())
    print(clock.line(f"gencsp cold, {args.memory} generated"))
    parent, worker = peak_mb()
    print(f"peak memory: this process {parent:.0f} MB, largest worker {worker:.0f} MB "
          f"(all processes at most {parent + (args.processes or os.cpu_count()) * worker:.0f} MB); "
          f"valid {result.metrics['valid']:.3f}")


def _measure_subset(dataset: str, n: int, k: int, processes: int, tmp: Path, profile: str) -> dict:
    """In a child process (its own peak memory): gencsp cold, n targets x k samples."""
    import multiprocessing

    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_subset_child, args=(dataset, n, k, processes,
                                                                                    tmp, queue, profile))
    child.start()
    result = queue.get()
    child.join()
    return result


def _subset_child(dataset, n, k, processes, tmp, queue, profile) -> None:
    from orchestrator import datasets

    split = datasets.load(dataset, "val")
    csv({"material_id": split["material_id"], "cif": split["cif"]}, tmp / f"{dataset}.csv")
    pred_csv = tmp / f"{dataset}-{n}x{k}.csv"
    csp_set(split, n, k, 5, pred_csv)
    fresh_home(tmp, f"project-{n}")
    before = resource.getrusage(resource.RUSAGE_SELF)
    start, load_before = time.perf_counter(), load()
    result = run_gencsp(pred_csv, tmp / f"{dataset}.csv", "csp", profile, processes)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    serial = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    timing = result.provenance["timing"]
    queue.put({"n": n, "k": k, "predictions": n * k, "wall": wall, "serial_cpu": serial,
               "worker_cpu": timing["compute_seconds_summed_over_processes"], "load": f"{load_before} -> {load()}",
               "parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
               "match_rate": result.metrics.get("match_rate", result.metrics.get(f"match_rate@{k}"))})


def project(args) -> None:
    processes = args.processes or os.cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="gencsp-bench-"))
    print(f"gencsp cold, {args.profile} profile, {args.dataset} val subsets x {args.k} samples, {processes} "
          f"workers; load average {load()}")
    points = []
    for n in (args.project // 2, args.project):
        m = _measure_subset(args.dataset, n, args.k, processes, tmp, args.profile)
        points.append(m)
        print(f"  {n} targets x {m['k']} = {m['predictions']} predictions: {m['wall']:.1f} s wall, "
              f"parent CPU {m['serial_cpu']:.1f} s, workers CPU {m['worker_cpu']:.1f} s, "
              f"peak memory parent {m['parent_mb']:.0f} MB / worker {m['worker_mb']:.0f} MB, match rate "
              f"{m['match_rate']:.3f}, load {m['load']}")
    small, large = points
    total = MP20_TARGETS * MP20_K
    per = {key: (large[key] - small[key]) / (large["predictions"] - small["predictions"])
           for key in ("serial_cpu", "worker_cpu", "parent_mb")}
    base = {key: large[key] - per[key] * large["predictions"] for key in per}
    serial = base["serial_cpu"] + per["serial_cpu"] * total
    parallel = base["worker_cpu"] + per["worker_cpu"] * total
    parent_mb = base["parent_mb"] + per["parent_mb"] * total
    print(f"\nMP-20 scale ({MP20_TARGETS} targets x {MP20_K} = {total} predictions), linear in the predictions "
          f"from the two points: parent {per['serial_cpu'] * 1e3:.2f} ms CPU and workers "
          f"{per['worker_cpu'] * 1e3:.2f} ms CPU per prediction")
    for cores in (2, 32):
        wall = serial + parallel / cores
        print(f"  {cores:>2} cores: {wall / 3600:.2f} h ({wall:.0f} s = {serial:.0f} s serial + "
              f"{parallel:.0f} s / {cores} parallel)")
    print(f"  peak memory: parent {parent_mb / 1024:.2f} GB (+{per['parent_mb'] * 1e3:.2f} MB per 1000 "
          f"predictions), each worker about {large['worker_mb']:.0f} MB (measured; it holds one chunk)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, help="reference processes = gencsp workers (default: every CPU)")
    parser.add_argument("--only", choices=("csp", "generate"))
    parser.add_argument("--csp-targets", type=int, default=400)
    parser.add_argument("--k-targets", type=int, default=150)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--generated", type=int, default=1300)
    parser.add_argument("--cdvae-src", help="txie-93/cdvae source folder (default: the mirror tarball)")
    parser.add_argument("--diffcsp-src", help="jiaor17/DiffCSP source folder (default: the mirror tarball)")
    parser.add_argument("--memory", type=int, help="instead: peak memory for this many generated structures")
    parser.add_argument("--project", type=int, help="instead: MP-20 projection from this many targets x --k")
    parser.add_argument("--dataset", default="carbon_24", help="the subset's dataset for --project")
    parser.add_argument("--profile", default="diffcsp", help="the profile --project evaluates")
    args = parser.parse_args()
    shared = Path(os.environ.get("GENCSP_SHARED", ROOT.parent / "shared"))
    os.environ.setdefault("GENCSP_DATA_MIRROR", str(shared / "datasets"))
    warnings.filterwarnings("ignore")
    if args.memory:
        memory(args)
    elif args.project:
        project(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
