"""How fast is `gencsp evaluate --profile cdvae`, against a straightforward reference implementation?

    GENCSP_DATA_MIRROR=../shared/datasets python benchmarks/metrics_speed.py [--generated 1300] [--workers N]
    python benchmarks/metrics_speed.py --memory 10000      # peak memory for 10,000 generated structures

Generated structures: the first N rows of perov_5 val; reference: the 3,785 rows of perov_5 test.

The baseline is NOT CDVAE's code (not fetchable here, and not to be copied): it is
a faithful, straightforward re-implementation of the algorithm CDVAE's
`compute_metrics.py` runs (docs/metrics.md §1), the way that script runs it: every
crystal built (parse, SMACT, Magpie, matminer's per-site `CrystalNNFingerprint.featurize`)
in a pool of one process per CPU, one crystal per task, as its `p_map(lambda x: Crystal(x), ...)`
does; no cache; SMACT by enumerating every oxidation-state combination; full `cdist`
matrices in the main process. `--baseline-processes 1` gives the one-core figure. It
also checks that gencsp's cdvae profile gives the same numbers.

Printed: wall seconds, CPU seconds (summed over processes: comparable under
load) and structures per second (generated + reference structures processed /
wall time) for the baseline, gencsp cold (empty cache), gencsp with the
reference cached (a new model's evaluation) and gencsp warm; the machine load
(os.getloadavg) before and after each; peak memory.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# --- the baseline: the reference algorithm, written out plainly --------------------------


def old_pauling(ox_states, enegs) -> bool:
    """smact 2.x eneg_states_test as the reference scripts called it (TypeError -> pass)."""
    try:
        for (o1, e1), (o2, e2) in itertools.combinations(zip(ox_states, enegs, strict=True), 2):
            if (o1 > 0 and o2 < 0 and e1 >= e2) or (o1 < 0 and o2 > 0 and e1 <= e2):
                return False
        return True
    except TypeError:
        return True


def baseline_smact(symbols, counts) -> bool:
    import numpy as np
    import smact

    counts = np.array(counts) // np.gcd.reduce(counts)
    elements = [smact.Element(s) for s in symbols]
    if len(set(symbols)) == 1 or all(s in smact.metals for s in symbols):
        return True
    states = [e.oxidation_states or [] for e in elements]
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*states):
        if sum(o * c for o, c in zip(ox, counts, strict=True)) == 0 and old_pauling(ox, enegs):
            return True
    return False


def baseline_crystal(cif: str, fingerprint, magpie) -> dict:
    import numpy as np
    from pymatgen.core import Composition, Element, Structure

    structure = Structure.from_str(cif, fmt="cif")
    numbers = Counter(site.specie.Z for site in structure)
    symbols = [Element.from_Z(z).symbol for z in sorted(numbers)]
    comp_valid = baseline_smact(symbols, [numbers[z] for z in sorted(numbers)])
    constructed = structure.volume >= 0.1
    dist = structure.distance_matrix + np.diag(np.full(len(structure), 10.5))
    struct_valid = constructed and not (dist.min() < 0.5 or structure.volume < 0.1)
    comp_fp = magpie.featurize(Composition(numbers))
    try:
        struct_fp = np.array([fingerprint.featurize(structure, i) for i in range(len(structure))]).mean(axis=0)
    except Exception:  # noqa: BLE001
        return {"comp_valid": comp_valid, "struct_valid": struct_valid, "valid": False, "struct_fp": None,
                "comp_fp": None, "density": structure.density, "nelems": len(set(structure.species))}
    return {"comp_valid": comp_valid, "struct_valid": struct_valid, "valid": comp_valid and struct_valid,
            "struct_fp": struct_fp, "comp_fp": comp_fp, "density": structure.density,
            "nelems": len(set(structure.species))}


_FEATURIZERS: tuple = ()


def _crystal(cif: str) -> dict:
    """One pool task: CDVAE's `Crystal(x)`, featurizers built once per process."""
    global _FEATURIZERS
    if not _FEATURIZERS:
        from matminer.featurizers.composition import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

        warnings.filterwarnings("ignore")
        _FEATURIZERS = (CrystalNNFingerprint.from_preset("ops"),
                        ElementProperty.from_preset("magpie", impute_nan=False))
    return baseline_crystal(cif, *_FEATURIZERS)


def build_crystals(texts: list[str], processes: int) -> list[dict]:
    if processes == 1:
        return [_crystal(c) for c in texts]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(_crystal, texts, chunksize=1)  # p_map hands out one item at a time


def baseline(generated: list[str], reference: list[str], processes: int, kind_cutoffs=(0.2, 4.0),
             seed=0) -> tuple[dict, list]:
    import numpy as np
    from scipy.spatial.distance import cdist, pdist
    from scipy.stats import wasserstein_distance

    from orchestrator.metrics.fingerprints import scaler

    means, stds = scaler()

    def scale(x):
        x = (np.array(x, dtype=float) - means) / stds
        return np.where(np.isnan(x), 0.0, x)

    gen = build_crystals(generated, processes)
    ref = build_crystals(reference, processes)
    valid = [c for c in gen if c["valid"]]
    subset = [valid[i] for i in np.random.RandomState(seed).choice(len(valid), 1000, replace=False)]
    metrics = {k: float(np.mean([c[k] for c in gen])) for k in ("comp_valid", "struct_valid", "valid")}
    metrics["comp_div"] = float(pdist(scale([c["comp_fp"] for c in subset])).mean())
    metrics["struct_div"] = float(pdist(np.array([c["struct_fp"] for c in subset])).mean())
    metrics["wdist_density"] = float(wasserstein_distance([c["density"] for c in subset], [c["density"] for c in ref]))
    metrics["wdist_num_elems"] = float(wasserstein_distance([c["nelems"] for c in subset], [c["nelems"] for c in ref]))
    kept = [c for c in gen if c["struct_fp"] is not None and c["comp_fp"] is not None]
    d_s = cdist(np.array([c["struct_fp"] for c in kept]), np.array([c["struct_fp"] for c in ref]))
    d_c = cdist(scale([c["comp_fp"] for c in kept]), scale([c["comp_fp"] for c in ref]))
    cut_s, cut_c = kind_cutoffs
    metrics["cov_recall"] = float(np.mean((d_s.min(0) <= cut_s) & (d_c.min(0) <= cut_c)))
    metrics["cov_precision"] = float(np.sum((d_s.min(1) <= cut_s) & (d_c.min(1) <= cut_c)) / len(gen))
    metrics.update(amsd_recall=float(d_s.min(0).mean()), amsd_precision=float(d_s.min(1).mean()),
                   amcd_recall=float(d_c.min(0).mean()), amcd_precision=float(d_c.min(1).mean()))
    return metrics, [c["struct_fp"] for c in gen + ref]


# --- gencsp ------------------------------------------------------------------------------


def run_gencsp(pred_csv: Path, ref_csv: Path, workers: int | None, profile="cdvae"):
    from orchestrator.metrics.context import Settings
    from orchestrator.metrics.evaluate import evaluate
    from orchestrator.metrics.inputs import from_files

    inputs = from_files(pred_csv, "generate", str(ref_csv), "perovskite")
    start = time.perf_counter()
    result = evaluate(inputs, profile, Settings(workers=workers, progress=False, chgnet=False))
    return time.perf_counter() - start, result


def peak_mb() -> tuple[float, float]:
    """(this process, largest finished child process) peak resident memory in MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def line(label: str, seconds: float, n: int, load_before: str, baseline_s: float | None = None,
         cpu: float | None = None) -> str:
    speed = f"  {baseline_s / seconds:5.1f}x baseline" if baseline_s else ""
    cpu_text = f"  CPU {cpu:7.1f} s" if cpu is not None else ""
    return (f"{label:<38} {seconds:8.1f} s wall{cpu_text}  {n / seconds:7.1f} structures/s{speed}   "
            f"load {load_before} -> {load()}")


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes (the baseline's pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_of(result) -> float:
    """CPU seconds summed over the processes that computed (gencsp's own accounting)."""
    return result.provenance["timing"]["compute_seconds_summed_over_processes"]


def write_split(frame, path: Path) -> Path:
    frame[["material_id", "cif"]].to_csv(path, index=False)
    return path


def speed(args) -> None:

    from orchestrator import datasets

    val, test = datasets.load("perov_5", "val"), datasets.load("perov_5", "test")
    tmp = Path(tempfile.mkdtemp(prefix="gencsp-bench-"))
    os.environ["GENCSP_HOME"] = str(tmp / "home")
    gen_csv = write_split(val.head(args.generated), tmp / "generated.csv")
    new_csv = write_split(val.iloc[args.generated:2 * args.generated], tmp / "generated2.csv")
    ref_csv = write_split(test, tmp / "reference.csv")
    n = args.generated + len(test)
    print(f"{args.generated} generated (perov_5 val) vs {len(test)} reference (perov_5 test), cdvae profile; "
          f"{os.cpu_count()} CPUs, workers={args.workers or 'all'}; load average {load()}")
    base_s = None
    if not args.skip_baseline:
        processes = args.baseline_processes or os.cpu_count()
        before, start, cpu = load(), time.perf_counter(), cpu_seconds()
        base_metrics, base_fps = baseline(list(val.head(args.generated)["cif"]), list(test["cif"]), processes)
        base_s, base_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        print(line(f"baseline ({processes} processes, no cache)", base_s, n, before, cpu=base_cpu))
    before = load()
    cold_s, cold = run_gencsp(gen_csv, ref_csv, args.workers)
    print(line("gencsp cold (empty cache)", cold_s, n, before, base_s, cpu_of(cold)))
    before = load()
    new_s, new = run_gencsp(new_csv, ref_csv, args.workers)
    print(line("gencsp, reference cached, new model", new_s, n, before, base_s, cpu_of(new)))
    before = load()
    warm_s, warm = run_gencsp(gen_csv, ref_csv, args.workers)
    print(line("gencsp warm (all cached)", warm_s, n, before, base_s, cpu_of(warm)))
    assert warm.metrics == cold.metrics, "cached numbers differ from computed ones"
    print(f"peak memory: this process {peak_mb()[0]:.0f} MB, largest worker {peak_mb()[1]:.0f} MB")
    if base_s:
        diffs = {k: abs(cold.metrics[k] - v) for k, v in base_metrics.items()}
        print("|gencsp - baseline| per metric:", ", ".join(f"{k} {d:.1e}" for k, d in diffs.items()))
        compare_fingerprints(list(val.head(args.generated)["cif"]) + list(test["cif"]), base_fps)


def compare_fingerprints(texts: list[str], baseline_fps: list) -> None:
    """gencsp's cached structure fingerprints against matminer's per-site featurize (the baseline's)."""
    import numpy as np

    from orchestrator.metrics.cache import Cache, default_path
    from orchestrator.metrics.fingerprints import RecordSettings
    from orchestrator.metrics.records import compute_records, version

    cache = Cache(default_path(), version(RecordSettings()))
    records = compute_records(texts, cache=cache, progress=False)
    pairs = [(r["struct_fp"], b) for r, b in zip(records, baseline_fps, strict=True)
             if r["struct_fp"] is not None and b is not None]
    worst = max(float(np.abs(a - b).max()) for a, b in pairs)
    same = sum(np.array_equal(a, b) for a, b in pairs)
    print(f"structure fingerprints: {len(pairs)} compared, {same} bit-identical, largest difference {worst:.1e}")


def memory(args) -> None:
    """Peak memory of an evaluation of `args.memory` generated structures (perturbed perov_5 val copies)."""
    import numpy as np
    import pandas as pd
    from pymatgen.core import Structure

    from orchestrator import datasets
    from orchestrator.structures import cif_text

    val, test = datasets.load("perov_5", "val"), datasets.load("perov_5", "test")
    tmp = Path(tempfile.mkdtemp(prefix="gencsp-bench-"))
    os.environ["GENCSP_HOME"] = str(tmp / "home")
    rng = np.random.default_rng(0)
    texts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(args.memory):
            s = Structure.from_str(val["cif"].iloc[i % len(val)], fmt="cif")
            for j, shift in enumerate(rng.normal(0, 0.01, (len(s), 3))):
                s.translate_sites([j], shift, frac_coords=False)
            texts.append(cif_text(s))
    pd.DataFrame({"cif": texts}).to_csv(tmp / "generated.csv", index=False)
    ref_csv = write_split(test, tmp / "reference.csv")
    before = load()
    seconds, result = run_gencsp(tmp / "generated.csv", ref_csv, args.workers)
    print(line(f"gencsp cold, {args.memory} generated", seconds, args.memory + len(test), before,
               cpu=cpu_of(result)))
    parent, worker = peak_mb()
    print(f"peak memory: this process {parent:.0f} MB, largest worker {worker:.0f} MB "
          f"(all processes at most {parent + (args.workers or os.cpu_count()) * worker:.0f} MB); "
          f"valid {result.metrics['valid']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", type=int, default=1300)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--baseline-processes", type=int,
                        help="processes of the baseline's crystal pool (default: one per CPU, as CDVAE's p_map)")
    parser.add_argument("--memory", type=int, help="instead: peak memory for this many generated structures")
    args = parser.parse_args()
    os.environ.setdefault("GENCSP_DATA_MIRROR", str(ROOT.parent / "shared" / "datasets"))
    warnings.filterwarnings("ignore")
    memory(args) if args.memory else speed(args)


if __name__ == "__main__":
    main()
