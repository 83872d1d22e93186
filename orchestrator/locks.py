"""Locks that hold on a cluster's shared file system (NFS, Lustre, GPFS) as on a laptop.

flock/fcntl locks are not used: on NFS they depend on lockd, and Lustre keeps them
node-local unless mounted with `-o flock` (two nodes would both "hold" the lock). A lock
here is a file created with O_CREAT|O_EXCL, atomic on NFSv3+, Lustre and GPFS, holding
the holder's host, pid, process start and a token. The holder refreshes the file's
mtime every HEARTBEAT seconds.

A lock is stale when its holder is gone: on the same host, its process no longer exists
(pid gone, or reused by a process started later, or the machine rebooted); on another
host, its mtime has not moved for STALE_AFTER seconds of the waiter's own clock (no
comparison of two hosts' clocks). A stale lock is removed under a second O_EXCL file
(`<lock>.break`), after checking it still holds the same token, so two waiters never
remove each other's fresh lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .errors import GencspError

HEARTBEAT = 30.0
STALE_AFTER = 300.0
POLL = 0.5


class LockBusy(GencspError):
    """Another live process holds the lock."""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class _Heartbeat:
    """One thread per process refreshing the mtime of every lock it holds."""

    def __init__(self):
        self.paths: set[Path] = set()
        self.guard = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, path: Path) -> None:
        with self.guard:
            self.paths.add(path)
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._loop, name="gencsp-lock-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, path: Path) -> None:
        with self.guard:
            self.paths.discard(path)

    def _loop(self) -> None:
        while True:
            time.sleep(HEARTBEAT)
            with self.guard:
                paths = list(self.paths)
            for path in paths:
                with contextlib.suppress(OSError):
                    os.utime(path)


_HEARTBEAT = _Heartbeat()


class FileLock:
    """`with FileLock(path, "run X"):` waits for the lock; `try_acquire()` does not."""

    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        self.what = what
        self.token: str | None = None
        self._seen: tuple | None = None  # (token, mtime_ns) last seen, and when (our clock)
        self._seen_at = 0.0

    # --- holding -------------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; False if a live process holds it."""
        for _ in range(3):
            if self._create():
                return True
            holder = self.holder()
            if holder is not None:
                return False
        return False

    def acquire(self, timeout: float | None = None, on_wait=None) -> None:
        """Wait for the lock; `on_wait(holder)` is called once when it is held by another process."""
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while not self.try_acquire():
            if not told and on_wait is not None:
                on_wait(self.holder() or {})
                told = True
            if deadline is not None and time.monotonic() > deadline:
                raise LockBusy(f"{self.what} is held by {describe(self.holder())} ({self.path})")
            time.sleep(POLL)

    def release(self) -> None:
        if self.token is None:
            return
        _HEARTBEAT.discard(self.path)
        with contextlib.suppress(OSError):
            if (self._read() or {}).get("token") == self.token:  # never remove a lock someone else took
                os.unlink(self.path)
        self.token = None

    def __enter__(self) -> FileLock:
        if self.token is None:  # not taken already (acquire(on_wait=...) then `with lock:`)
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _create(self) -> bool:
        token = uuid.uuid4().hex
        content = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid()),
                   "boot": _boot_id(), "token": token, "since": time.time(), "what": self.what}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
            handle.flush()
            os.fsync(handle.fileno())
        self.token = token
        _HEARTBEAT.add(self.path)
        return True

    # --- looking at another holder -------------------------------------------------
    def _read(self) -> dict | None:
        """The lock's content; {} while its creator is still writing it; None when there is no lock."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def holder(self) -> dict | None:
        """Who holds the lock, or None when it is free (a stale lock is removed on the way)."""
        data = self._read()
        if data is None:
            return None
        if self._stale(data):
            self._break(data.get("token"))
            return None
        return data

    def _stale(self, data: dict) -> bool:
        if data.get("host") == socket.gethostname() and isinstance(data.get("pid"), int):
            if data.get("boot") and data["boot"] != _boot_id():
                return True
            if not _alive(data["pid"]):
                return True
            start = _process_start(data["pid"])
            return bool(start and data.get("start") and start != data["start"])
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return False
        seen = (data.get("token"), mtime)
        if seen != self._seen:
            self._seen, self._seen_at = seen, time.monotonic()
            # a heartbeat older than twice the limit by our clock: gone even with minutes of clock skew
            return time.time() - mtime / 1e9 > 2 * STALE_AFTER
        return time.monotonic() - self._seen_at > STALE_AFTER

    def _break(self, token) -> None:
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(OSError):  # a breaker that died while breaking
                if time.time() - breaker.stat().st_mtime > 60:
                    breaker.unlink()
            return
        try:
            if (self._read() or {}).get("token") == token:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                breaker.unlink()


def describe(holder: dict | None) -> str:
    if not holder:
        return "another process"
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
    return f"process {holder.get('pid')} on {holder.get('host')} (since {when})"


def run_lock(root: Path, run_id: str) -> FileLock:
    """Creation of a run and its run-level stages (collect, evaluate)."""
    return FileLock(Path(root) / f".{run_id}.lock", f"run {run_id}")


def shard_lock(shard_path: Path) -> FileLock:
    return FileLock(Path(shard_path) / ".lock", f"shard {Path(shard_path).name}")
