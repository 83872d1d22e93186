"""What every runtime does: run a model's entry point with explicit mounts, and say how it went.

A runtime only knows how to start the model's entry point (`sample REQUEST OUT`
or `train REQUEST OUT`) with a list of mounts; what to mount for a shard is
decided once, here, for all runtimes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from schemas import ModelCard

from .. import paths
from ..runs import Shard

# Never handed to a model: credentials of the host (the Materials Project key, cloud tokens).
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
# In-container paths of the contract.
REQUEST_IN_CONTAINER = "/io/request.json"
OUT_IN_CONTAINER = "/io/out"
WORK_IN_CONTAINER = "/work"
DATA_IN_CONTAINER = "/data"
CHECKPOINT_IN_CONTAINER = "/ckpt"


@dataclass(frozen=True)
class Mount:
    host: Path
    container: str
    read_only: bool = True


@dataclass
class RunResult:
    exit_code: int | None
    seconds: float
    runtime_failure: str | None = None  # the runtime, not the model, failed (image missing, timeout, 255...)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.runtime_failure is None and self.exit_code == 0


class Runtime(Protocol):
    name: str

    def available(self) -> bool: ...

    def identity(self, card: ModelCard) -> dict:
        """What runs the model: image digest, SIF sha256, or the host interpreter."""
        ...

    def execute(self, card: ModelCard, argv: list[str], mounts: list[Mount], log_path: Path,
                timeout: float | None = None, gpu: bool = False) -> RunResult:
        """Run the model's entry point with `argv` (container paths) and these mounts only."""
        ...


def shard_mounts(shard: Shard, checkpoint: Path | None = None) -> list[Mount]:
    """Request read-only, output writable, scratch writable, dataset splits and checkpoint read-only."""
    request = shard.request()
    work = shard.path / "work"
    work.mkdir(exist_ok=True)
    mounts = [Mount(shard.request_path, REQUEST_IN_CONTAINER), Mount(shard.out_dir, OUT_IN_CONTAINER, False),
              Mount(work, WORK_IN_CONTAINER, False)]
    for container_path in request.data.values():
        relative = container_path.removeprefix(DATA_IN_CONTAINER + "/")
        mounts.append(Mount(paths.datasets_dir() / relative, container_path))
    if request.checkpoint:
        if checkpoint is None:
            raise ValueError(f"{shard.request_path}: names a checkpoint but no host path was given")
        mounts.append(Mount(Path(checkpoint), request.checkpoint))
    return mounts


def run_shard(runtime: Runtime, shard: Shard, card: ModelCard, timeout: float | None = None,
              gpu: bool = False, checkpoint: Path | None = None) -> RunResult:
    """`sample /io/request.json /io/out` for one shard, in any runtime."""
    argv = ["sample", REQUEST_IN_CONTAINER, OUT_IN_CONTAINER]
    return runtime.execute(card, argv, shard_mounts(shard, checkpoint), shard.log_path, timeout=timeout, gpu=gpu)


# A model's output kept in its log: the first part and the last TAIL (where the error is).
LOG_LIMIT_BYTES = 16 * 1024 * 1024
LOG_TAIL_BYTES = 256 * 1024


class CappedLog:
    """Appends to a log file at most LOG_LIMIT_BYTES of a stream: its head and its tail."""

    def __init__(self, handle):
        self.handle = handle
        self.tail_limit = min(LOG_TAIL_BYTES, LOG_LIMIT_BYTES // 4)
        self.head_left = LOG_LIMIT_BYTES - self.tail_limit
        self.tail = bytearray()
        self.dropped = 0

    def write(self, data: bytes) -> None:
        if self.head_left > 0:
            head, data = data[:self.head_left], data[self.head_left:]
            self.handle.write(head)
            self.head_left -= len(head)
        if data:
            self.tail += data
            if len(self.tail) > self.tail_limit:
                cut = len(self.tail) - self.tail_limit
                self.dropped += cut
                del self.tail[:cut]

    def close(self) -> None:
        if self.dropped:
            self.handle.write(f"\n[gencsp: {self.dropped} bytes of output left out (log limit "
                              f"{LOG_LIMIT_BYTES} bytes); the last {len(self.tail)} follow]\n".encode())
        self.handle.write(bytes(self.tail))
        self.handle.flush()


def copy_capped(stream, log_path: Path) -> None:
    """Copy a byte stream (a pipe, docker's log stream) into the log, capped."""
    with open(log_path, "ab") as handle:
        log = CappedLog(handle)
        try:
            for chunk in iter(lambda: stream.read(65536), b""):
                log.write(chunk)
        finally:
            log.close()


def run_process(command: list[str], log_path: Path, timeout: float | None = None,
                env: dict[str, str] | None = None, cwd: Path | None = None) -> RunResult:
    """Run a command in its own process group, output appended to the log (capped); killed whole on timeout."""
    import threading

    start = time.monotonic()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   start_new_session=True)
    except OSError as exc:
        return RunResult(None, 0.0, f"cannot start {command[0]}: {exc}")
    reader = threading.Thread(target=copy_capped, args=(process.stdout, log_path), name="gencsp-log", daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout)
    except BaseException as exc:  # time limit or interruption: never leave the model running
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            return RunResult(None, time.monotonic() - start, f"timed out after {timeout:g} s", timed_out=True)
        raise
    finally:
        reader.join(10)  # a descendant that left the process group may keep the pipe open: not waited for
    return RunResult(code, time.monotonic() - start)


def is_secret(name: str) -> bool:
    return any(marker in name.upper() for marker in SECRET_MARKERS)


def scrubbed_env(keep: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")) -> dict[str, str]:
    """A minimal environment for a model process: nothing secret leaks in."""
    return {k: v for k, v in os.environ.items() if k in keep and not is_secret(k)}


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16384))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
