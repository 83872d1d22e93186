"""Parse a shard's CIFs while the model is still writing them.

While a container samples, the orchestrator only waits; a background thread
parses each finished CIF then (the helper writes them by rename, so a visible
name holds a whole file). Validation afterwards reads every file again and
reuses a parse only for the very same bytes (keyed by their sha256), so a
file rewritten later, or caught half-written by a model that does not use the
helper, is simply parsed again, with the time limit that only the main thread
can apply. Parsing is deterministic: the rows are those of a plain validation.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from .structures import StructureError, read_structure

POLL_SECONDS = 0.2
# Larger files are left to the main thread, where the parse time limit applies.
MAX_BACKGROUND_BYTES = 256 * 1024


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
            entries = [e for e in self.folder.iterdir()
                       if e.suffix == ".cif" and not e.name.startswith(".") and not e.is_symlink()]
        except OSError:  # not created yet
            return
        for entry in entries:
            if self._stop.is_set():
                return
            try:
                stat = entry.stat()
                if stat.st_size > MAX_BACKGROUND_BYTES or (entry.name, stat.st_size, stat.st_mtime_ns) in self._seen:
                    continue
                self._seen.add((entry.name, stat.st_size, stat.st_mtime_ns))
                raw = entry.read_bytes()
            except OSError:
                continue
            key = content_key(raw)
            if key not in self.parsed and b"\x00" not in raw:  # binary content: validation rejects it first
                outcome = self._parse(raw)
                if outcome is not None:
                    self.parsed[key] = outcome

    def _parse(self, raw: bytes):
        """Structure or StructureError; None when only the main thread can decide (slow, odd)."""
        start = time.monotonic()
        try:
            outcome = read_structure(raw.decode("utf-8", errors="replace"), None, self.limits.max_atoms)
        except StructureError as exc:
            outcome = exc
        except Exception:  # noqa: BLE001 - never happens through read_structure; be safe
            return None
        # A parse slower than the limit would have timed out in the main thread: let it.
        return outcome if time.monotonic() - start < self.limits.parse_seconds else None
