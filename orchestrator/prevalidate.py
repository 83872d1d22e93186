"""Parse a shard's CIFs while the model is still writing them.

While a container samples, the orchestrator only waits; a background thread
parses each finished CIF then (the helper writes them by rename, so a visible
name holds a whole file). Validation afterwards reads every file again and
reuses a parse only for the very same bytes (keyed by their sha256), so a
file rewritten later, or caught half-written by a model that does not use the
helper, is simply parsed again. Parses run in the worker processes of
parse_pool.py, with the validation's own time limit. Only regular files are
opened (a FIFO named *.cif would block the reader forever), without blocking.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

from .parse_pool import read_structure_bounded
from .structures import StructureError

POLL_SECONDS = 0.2
# Larger files are left to validation (rarely worth parsing twice).
MAX_BACKGROUND_BYTES = 256 * 1024


def read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of `path` if it is a regular file (not a symlink, FIFO, device) of at most `max_bytes`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(max_bytes + 1)[:max_bytes]
    except OSError:
        return None
    finally:
        os.close(fd)


def content_key(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class Prevalidator:
    """`with Prevalidator(out_dir, limits) as pre: run...`; then `validate_shard(..., parsed=pre.parsed)`."""

    def __init__(self, out_dir: Path, limits):
        self.folder = Path(out_dir) / "structures"
        self.limits = limits
        self.parsed: dict[str, object] = {}  # sha256 -> Structure or StructureError
        self._seen: set[tuple[str, int, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gencsp-prevalidate", daemon=True)

    def __enter__(self) -> Prevalidator:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * POLL_SECONDS)  # a parse still running is left behind (daemon)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.scan()

    def scan(self) -> None:
        """Parse the finished CIFs not seen yet."""
        try:
            entries = [e for e in self.folder.iterdir() if e.suffix == ".cif" and not e.name.startswith(".")]
        except OSError:  # not created yet
            return
        for entry in entries:
            if self._stop.is_set():
                return
            try:
                info = entry.lstat()
            except OSError:
                continue
            key = (entry.name, info.st_size, info.st_mtime_ns)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BACKGROUND_BYTES or key in self._seen:
                continue
            self._seen.add(key)
            raw = read_regular(entry, MAX_BACKGROUND_BYTES)
            if raw is None:
                continue
            digest = content_key(raw)
            if digest not in self.parsed and b"\x00" not in raw:  # binary content: validation rejects it first
                self.parsed[digest] = self._parse(raw)

    def _parse(self, raw: bytes):
        """Structure or StructureError, as validation would find it."""
        try:
            return read_structure_bounded(raw.decode("utf-8", errors="replace"), self.limits.parse_seconds,
                                          self.limits.max_atoms)
        except StructureError as exc:
            return exc
