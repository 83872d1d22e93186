"""Run a model's adapter as a subprocess of the host Python (baselines, development).

No isolation: use it for models whose dependencies are installed on the host.
Container paths in argv and in the request are translated to host paths
(GENCSP_PATH_MAP, read by the helper).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from schemas import ModelCard

from .. import paths
from .base import Mount, RunResult, run_process, scrubbed_env


def translate(path: str, mounts: list[Mount]) -> str:
    """A container path as a host path (longest matching mount wins)."""
    for mount in sorted(mounts, key=lambda m: len(m.container), reverse=True):
        if path == mount.container or path.startswith(mount.container.rstrip("/") + "/"):
            return str(mount.host) + path[len(mount.container.rstrip("/")):]
    return path


class LocalRuntime:
    name = "local"

    def __init__(self, python: str = sys.executable, containers: Path = paths.CONTAINERS_DIR):
        self.python = python
        self.containers = Path(containers)

    def available(self) -> bool:
        return True

    def identity(self, card: ModelCard) -> dict:
        return {"runtime": self.name, "python": self.python, "adapter": str(self.adapter(card))}

    def adapter(self, card: ModelCard) -> Path:
        return self.containers / card.name / "adapter.py"

    def command(self, card: ModelCard, argv: list[str], mounts: list[Mount]) -> list[str]:
        return [self.python, str(self.adapter(card)), *(translate(a, mounts) for a in argv)]

    def env(self, card: ModelCard, mounts: list[Mount], gpu: bool) -> dict[str, str]:
        env = scrubbed_env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.containers / "common"), str(self.containers / card.name)])
        env["PYTHONHASHSEED"] = "0"
        env["GENCSP_PATH_MAP"] = json.dumps({m.container: str(m.host) for m in mounts})
        if os.environ.get("GENCSP_UPSTREAM"):  # where an upstream model's code is on this host (images: /opt/...)
            env["GENCSP_UPSTREAM"] = os.environ["GENCSP_UPSTREAM"]
        if not gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def execute(self, card: ModelCard, argv: list[str], mounts: list[Mount], log_path: Path,
                timeout: float | None = None, gpu: bool = False) -> RunResult:
        if not self.adapter(card).is_file():
            return RunResult(None, 0.0, f"{self.adapter(card)}: no adapter for model {card.name}")
        return run_process(self.command(card, argv, mounts), log_path, timeout, env=self.env(card, mounts, gpu),
                           cwd=log_path.parent)
