"""CIF parsing under a time limit that holds in any thread: a few worker processes, killed on time-out.

SIGALRM only interrupts the main thread, and pymatgen catches the alarm's exception per
data block (the next block then parses with no limit). A bench validates in threads, so a
model's CIF is parsed in a worker process instead: the caller waits `seconds` for the
answer, then kills the worker (SIGKILL stops any C loop) and starts another.

Workers are reused, started on demand, at most `size` of them. They are forked from
multiprocessing's fork server, one single-threaded process that imported pymatgen once:
a worker starts in milliseconds and never inherits the locks of the orchestrator's threads
(forking a process that runs threads can leave a lock held in the child).
"""

from __future__ import annotations

import os
import threading

from .structures import DEFAULT_MAX_ATOMS, StructureError

PRELOAD = ["orchestrator.structures", "pymatgen.core", "pymatgen.io.cif"]
DEFAULT_SIZE = min(4, max(2, os.cpu_count() or 1))


def _serve(conn) -> None:
    """Worker loop: (CIF text, max atoms) in, ('ok', Structure) or ('error', reason, message) out."""
    import warnings

    from .structures import read_structure

    warnings.simplefilter("ignore")
    while True:
        try:
            text, max_atoms = conn.recv()
        except (EOFError, OSError):
            return
        try:
            outcome = ("ok", read_structure(text, None, max_atoms))
        except StructureError as exc:
            outcome = ("error", exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - read_structure maps pymatgen's; anything else is still a bad CIF
            outcome = ("error", "parse_error", f"unreadable CIF: {type(exc).__name__}: {exc}"[:300])
        try:
            conn.send(outcome)
        except (TypeError, ValueError, AttributeError, RecursionError) as exc:  # a structure that does not pickle
            conn.send(("error", "parse_error", f"unreadable CIF: {type(exc).__name__}: {exc}"[:300]))


class _Worker:
    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), name="gencsp-parse", daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class ParsePool:
    """`pool.read(text, seconds, max_atoms)`: read_structure in a worker, from any thread."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = max(1, size)
        self._idle: list[_Worker] = []
        self._count = 0
        self._ready = threading.Condition()
        self._context = None
        self._pid = os.getpid()

    def _get_context(self):
        import multiprocessing

        if self._context is None:
            self._context = multiprocessing.get_context("forkserver")
            self._context.set_forkserver_preload(PRELOAD)
        return self._context

    def _acquire(self) -> _Worker:
        with self._ready:
            while not self._idle and self._count >= self.size:
                self._ready.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return _Worker(self._get_context())
        except BaseException:
            self._release(None)
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self._ready:
            if worker is None:
                self._count -= 1
            else:
                self._idle.append(worker)
            self._ready.notify()

    def read(self, text: str, seconds: float | None, max_atoms: int = DEFAULT_MAX_ATOMS):
        """The checked Structure of a CIF text, or StructureError (reason `timeout` past `seconds`)."""
        if not text or not text.strip():
            raise StructureError("empty", "empty CIF")
        worker = self._acquire()
        try:
            worker.conn.send((text, max_atoms))
            if not worker.conn.poll(seconds):
                worker.kill()
                worker = None
                raise StructureError("timeout", f"parsing took more than {seconds:g} s")
            outcome = worker.conn.recv()
        except (EOFError, OSError) as exc:
            code = worker.process.exitcode if worker else None
            if worker:
                worker.kill()
                worker = None
            raise StructureError("parse_crashed", f"the parsing process died (exit code {code})") from exc
        finally:
            self._release(worker)
        if outcome[0] == "ok":
            return outcome[1]
        raise StructureError(outcome[1], outcome[2])

    def close(self) -> None:
        with self._ready:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.kill()


_POOL: ParsePool | None = None
_LOCK = threading.Lock()


def pool() -> ParsePool:
    """This process's pool (a forked child makes its own)."""
    global _POOL
    with _LOCK:
        if _POOL is None or _POOL._pid != os.getpid():
            _POOL = ParsePool()
        return _POOL


def read_structure_bounded(text: str, seconds: float | None, max_atoms: int = DEFAULT_MAX_ATOMS):
    """read_structure with a time limit that holds in any thread."""
    return pool().read(text, seconds, max_atoms)
