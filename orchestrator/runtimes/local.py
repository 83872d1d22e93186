"""Run a model's adapter as a subprocess of the host Python (baselines, development)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas import ModelCard

from .. import paths
from ..runs import Shard
from .base import RunResult, scrubbed_env


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

    def command(self, shard: Shard, card: ModelCard) -> list[str]:
        return [self.python, str(self.adapter(card)), "sample", str(shard.request_path), str(shard.out_dir)]

    def env(self, card: ModelCard, gpu: bool) -> dict[str, str]:
        env = scrubbed_env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.containers / "common"), str(self.containers / card.name)])
        env["PYTHONHASHSEED"] = "0"
        # The request names container paths; on the host they live in the dataset cache.
        env["GENCSP_PATH_MAP"] = json.dumps({"/data": str(paths.datasets_dir())})
        if not gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def run(self, shard: Shard, card: ModelCard, timeout: float | None = None, gpu: bool = False) -> RunResult:
        if not self.adapter(card).is_file():
            return RunResult(None, 0.0, f"{self.adapter(card)}: no adapter for model {card.name}")
        start = time.monotonic()
        with open(shard.log_path, "ab") as log:
            process = subprocess.Popen(self.command(shard, card), stdout=log, stderr=subprocess.STDOUT,
                                       env=self.env(card, gpu), cwd=shard.path, start_new_session=True)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return RunResult(None, time.monotonic() - start, f"timed out after {timeout:g} s")
            except BaseException:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        return RunResult(code, time.monotonic() - start)
