"""Executors place shards: here (a thread pool around a runtime) or on SLURM (job arrays).

`EXECUTORS` maps a name to the module that implements
`execute(run, card, runtime_name, policy, options) -> list[dict]`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

EXECUTORS = {"local": "orchestrator.executors.local", "slurm": "orchestrator.executors.slurm"}


@dataclass(frozen=True)
class ExecutorOptions:
    workers: int = 1  # local: shards at once
    profile: str | None = None  # slurm: cluster profile name
    detach: bool = False  # slurm: return once submitted
    progress: bool = True
    extra: dict = field(default_factory=dict)


def get_executor(name: str):
    from ..errors import GencspError

    if name not in EXECUTORS:
        raise GencspError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    try:
        return importlib.import_module(EXECUTORS[name])
    except ModuleNotFoundError as exc:
        raise GencspError(f"executor {name!r} is not available: {exc}") from exc
