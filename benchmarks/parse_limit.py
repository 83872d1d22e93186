"""Cost of the parse time limit that holds in any thread (orchestrator/parse_pool.py).

    python benchmarks/parse_limit.py [--dataset perov_5] [--count 300]

Per CIF: read_structure in this process (what validation did before, with SIGALRM) against
the same parse in a pool worker (the text sent over a pipe, the Structure pickled back),
from a thread as a bench does. Also the pool's start (fork server importing pymatgen, then
a worker) and the memory of its processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(function, texts) -> list[float]:
    times = []
    for text in texts:
        start = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - start)
    return times


def in_thread(function, texts) -> list[float]:
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.extend(timed(function, texts)))
    worker.start()
    worker.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="perov_5")
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("GENCSP_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    from orchestrator import datasets
    from orchestrator.parse_pool import ParsePool
    from orchestrator.structures import read_structure

    texts = list(datasets.load(args.dataset, "test")["cif"][: args.count])
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {len(texts)} CIFs of {args.dataset}")
    read_structure(texts[0], None)  # imports
    pool = ParsePool()
    start = time.perf_counter()
    pool.read(texts[0], 10.0)
    print(f"pool start (fork server importing pymatgen, one worker): {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    extra = ParsePool()  # the fork server is running: a worker alone
    extra.read(texts[0], 10.0)
    print(f"one more worker: {1000 * (time.perf_counter() - start):.1f} ms")
    extra.close()
    before = in_thread(lambda t: read_structure(t, None), texts)
    after = in_thread(lambda t: pool.read(t, 10.0), texts)
    b, a = statistics.median(before), statistics.median(after)
    print(f"{'median ms per CIF':<28}{'in-thread':>12}{'pool':>12}{'overhead':>12}")
    print(f"{'':<28}{1000 * b:>12.2f}{1000 * a:>12.2f}{1000 * (a - b):>12.2f}")
    print(f"{'total s':<28}{sum(before):>12.2f}{sum(after):>12.2f}{sum(after) - sum(before):>12.2f}")
    workers = [w.process.pid for w in pool._idle]
    print("memory (RSS MiB, shared pages counted in each): worker " +
          ", ".join(f"{rss_mib(p):.0f}" for p in workers))
    pool.close()


if __name__ == "__main__":
    main()
