"""The hardware a run used, recorded in run.json (`host`): CPU model, memory, GPUs, load.

Costs are only comparable with the machine named: a CPU second of one processor is
not one of another, and a loaded machine stretches wall times (not CPU seconds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def _first(path: str, prefix: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix)), None)


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs nvidia-smi lists (none without the binary)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def describe() -> dict:
    memory = _first("/proc/meminfo", "MemTotal")
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_model": _first("/proc/cpuinfo", "model name"),
            "memory_gb": round(int(memory.split()[0]) / 1024**2, 2) if memory else None,
            "gpus": gpu_names(), "load_average": load}
