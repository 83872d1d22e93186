"""Run a function over chunks of items on every core, with a progress bar.

`workers=1` runs in this process (same code path, no pool). A worker that dies
(a segfault in a C library) does not stop the evaluation: the unfinished items
are re-run one at a time in a one-worker pool, and the item that kills its
worker again is handed to `on_crash`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def chunked(items: Sequence, workers: int, largest: int = 32) -> list[list]:
    """About eight chunks per worker (load balance), at most `largest` items each."""
    size = max(1, min(largest, len(items) // (workers * 8) or 1))
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _executor(workers: int, initializer, initargs):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork is fast and shares the imported libraries; spawn elsewhere (macOS, Windows)
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                               initializer=initializer, initargs=initargs)


def run_chunks(function: Callable, chunks: list[list], workers: int, on_result: Callable,
               on_crash: Callable, initializer: Callable | None = None, initargs: tuple = (),
               before_fork: Callable | None = None) -> None:
    """Call `on_result(function(chunk))` for every chunk, in completion order."""
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    if workers == 1:
        if initializer:
            initializer(*initargs)
        for chunk in chunks:
            on_result(function(chunk))
        return
    pending = list(chunks)
    while pending:
        isolating = workers == 1
        if before_fork:
            before_fork()
        pool = _executor(workers, initializer, initargs)
        futures = {pool.submit(function, chunk): i for i, chunk in enumerate(pending)}
        done: set[int] = set()
        try:
            for future in as_completed(futures):
                on_result(future.result())
                done.add(futures[future])
            pending = []
        except BrokenProcessPool:
            left = [chunk for i, chunk in enumerate(pending) if i not in done]
            if isolating:  # one item at a time: the first unfinished one killed its worker
                on_crash(left[0][0])
                left = left[1:]
            pending, workers = [[item] for chunk in left for item in chunk], 1
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def progress_bar(enabled: bool):
    """A rich progress bar redrawn by its callers (`update(..., refresh=True)`), without rich's
    refresh thread: the pool forks its workers while the bar is shown, and forking a process
    that runs other threads can leave a lock held in the child."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..console import err

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err, disable=not enabled, transient=True, auto_refresh=False)
