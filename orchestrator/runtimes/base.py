"""What every runtime does: run one shard of one model, and say how it went."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from schemas import ModelCard

from ..runs import Shard

# Never handed to a model: credentials of the host (the Materials Project key, cloud tokens).
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
# In-container paths of the contract.
IO_DIR = "/io"
REQUEST_IN_CONTAINER = "/io/request.json"
OUT_IN_CONTAINER = "/io/out"


@dataclass
class RunResult:
    exit_code: int | None
    seconds: float
    runtime_failure: str | None = None  # the runtime, not the model, failed (image missing, timeout, 255...)

    @property
    def ok(self) -> bool:
        return self.runtime_failure is None and self.exit_code == 0


class Runtime(Protocol):
    name: str

    def available(self) -> bool: ...

    def run(self, shard: Shard, card: ModelCard, timeout: float | None = None, gpu: bool = False) -> RunResult: ...

    def identity(self, card: ModelCard) -> dict:
        """What ran: image digest, SIF sha256, or the host interpreter."""
        ...


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
