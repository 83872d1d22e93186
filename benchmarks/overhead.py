"""Orchestration overhead per shard: start to validated manifest, minus the model's own session time.

    python benchmarks/overhead.py [--runtimes local docker apptainer] [--model random_search] [--repeats 3]

The model's session time is the span between the manifest's runtime start and end
(written by the helper inside the container); everything else — container creation,
interpreter start, imports, mounts, validation, the shard's table and state — is overhead
(the shard runs through `executors.local.process_shard`, as in a bench).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator import models
from orchestrator.executors.local import ShardPolicy, process_shard
from orchestrator.plan import plan
from orchestrator.runs import RunConfig
from orchestrator.runtimes import get_runtime
from orchestrator.validate import load_manifest
from schemas import Task


def one_shard(runtime, card, samples: int, root: Path, seed: int) -> tuple[float, float]:
    """(seconds from start to validated manifest, seconds of the model's own session)."""
    config = RunConfig(model=card.name, dataset="perov_5", split="test", task=Task.csp, limit=samples,
                       shard_size=samples, seed=seed)
    run, _ = plan(config, card, root)
    shard = run.shards()[0]
    start = time.monotonic()
    state = process_shard(shard, runtime, card, ShardPolicy())  # the executor's own path, table included
    total = time.monotonic() - start
    assert state["status"] == "done" and state["exit_code"] == 0, state
    runtime_info = load_manifest(shard.out_dir).runtime
    return total, (runtime_info.end - runtime_info.start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["local", "docker"])
    parser.add_argument("--model", default="random_search")
    parser.add_argument("--samples", nargs="+", type=int, default=[1, 100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("GENCSP_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    card = models.get(args.model)
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; model {args.model}")
    print(f"{'runtime':<10}{'samples':>8}{'total s':>10}{'model s':>10}{'overhead s':>12}{'overhead %':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runtimes:
            runtime = get_runtime(name)
            for samples in args.samples:
                timings = [one_shard(runtime, card, samples, Path(tmp) / f"{name}-{samples}-{k}", k)
                           for k in range(args.repeats)]
                total = statistics.median(t for t, _ in timings)
                model = statistics.median(m for _, m in timings)
                overhead = statistics.median(t - m for t, m in timings)
                print(f"{name:<10}{samples:>8}{total:>10.2f}{model:>10.2f}{overhead:>12.2f}{100 * overhead / total:>11.1f}%")


if __name__ == "__main__":
    main()
