"""Run one unchanged PGCGM script the way sh/gen.sh does, in several working folders, with three
things fixed around it.

    pgcgm_run.py SPEC.json
    SPEC: {"script": PATH, "torch": bool, "processes": N, "runs": [{"cwd": DIR, "seed": S, "args": [...]}]}

In each run's folder the script runs as `__main__` (the upstream scripts use paths relative to the
current folder), with its own folder first on sys.path, as `python SCRIPT ARGS` would, except that:
- the random generators are seeded (create_cif.py draws space groups, elements and noise unseeded);
- with "torch", CUDA is initialised before the script runs, so the CUDA_VISIBLE_DEVICES that
  create_cif.py writes from --gpu_id (gen.sh passes 1) is read by nobody: the GPU is the one the
  runtime gave the container;
- multiprocessing pools get at most N processes (pymatgen_valid.py asks for 46, merge_valid.py 40).
One process serves all runs, so torch or pymatgen is imported once. Each run's outcome goes to
DIR/gencsp-<script name>.json ({"ok", "error", "seconds"}); a failing run does not stop the others.
Runs under the upstream environment's Python (3.8 or 3.9).
"""

import json
import multiprocessing
import os
import random
import runpy
import sys
import time
import traceback


def cap_pools(limit):
    """multiprocessing.Pool(processes=k) gets min(k, limit) processes."""
    original = multiprocessing.Pool

    def pool(processes=None, *args, **kwargs):
        return original(min(processes or limit, limit), *args, **kwargs)

    multiprocessing.Pool = pool


def seed_all(seed, with_torch):
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    if with_torch:
        import torch

        torch.manual_seed(seed)
        torch.cuda.is_available()  # initialises CUDA now, before the script rewrites CUDA_VISIBLE_DEVICES


def run_one(script, run, with_torch):
    """The script in run["cwd"]; returns its status record."""
    os.chdir(run["cwd"])
    seed_all(int(run.get("seed", 0)), with_torch)
    sys.argv = [script] + [str(a) for a in run.get("args", [])]
    start = time.monotonic()
    status = {"ok": True}
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status = {"ok": False, "error": f"exited with status {exc.code}"}
    except Exception as exc:  # noqa: BLE001 - recorded for this folder; the other folders still run
        traceback.print_exc()
        status = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    status["seconds"] = round(time.monotonic() - start, 3)
    name = f"gencsp-{os.path.splitext(os.path.basename(script))[0]}.json"
    with open(os.path.join(run["cwd"], name), "w") as handle:
        json.dump(status, handle)
    return status


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: pgcgm_run.py SPEC.json\n")
        return 2
    with open(argv[0]) as handle:
        spec = json.load(handle)
    script = os.path.abspath(spec["script"])
    cap_pools(max(1, int(spec.get("processes", 1))))
    sys.path.insert(0, os.path.dirname(script))
    for run in spec["runs"]:
        run_one(script, run, bool(spec.get("torch")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
