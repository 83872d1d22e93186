"""Run a model's SIF with Apptainer (or SingularityCE, where only `singularity` exists).

`apptainer run` (not `exec`) so that the image's entry point, defined once in its
Dockerfile and kept as the SIF runscript, is the one that starts. Containment:
`--containall` (own PID/IPC, empty HOME and /tmp, clean environment), `--cleanenv`,
no network, explicit binds only, `--nv` only when a GPU is asked for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from schemas import ModelCard

from .. import paths
from .base import WORK_IN_CONTAINER, Mount, RunResult, run_process

# Apptainer's own fatal errors exit 255 (sylog.Fatalf): the container never ran the model.
APPTAINER_FATAL = 255


def find_binary() -> str | None:
    return shutil.which("apptainer") or shutil.which("singularity")


def sif_dir() -> Path:
    """$GENCSP_SIF_DIR (e.g. $SINGULARITY_ALLOWED_DIR on Jean Zay), else $GENCSP_HOME/images."""
    return Path(os.environ.get("GENCSP_SIF_DIR") or paths.home() / "images")


class ApptainerRuntime:
    name = "apptainer"

    def __init__(self, binary: str | None = None, images: Path | None = None, network_isolation: bool = True):
        self.binary = binary or find_binary() or "apptainer"
        self.images = Path(images) if images else sif_dir()
        # `--net --network none` needs an Apptainer that allows it unprivileged; a site that
        # refuses it can turn it off (compute nodes there have no network anyway).
        self.network_isolation = network_isolation

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def sif(self, card: ModelCard) -> Path:
        return self.images / f"{card.name}.sif"

    def identity(self, card: ModelCard) -> dict:
        from ..hashing import sha256_file

        sif = self.sif(card)
        return {"runtime": self.name, "binary": self.binary, "sif": str(sif),
                "sif_sha256": sha256_file(sif) if sif.is_file() else None}

    def command(self, card: ModelCard, argv: list[str], mounts: list[Mount], gpu: bool) -> list[str]:
        command = [self.binary, "run", "--containall", "--cleanenv"]
        if self.network_isolation:
            command += ["--net", "--network", "none"]
        if gpu:
            command.append("--nv")
        command += ["--pwd", WORK_IN_CONTAINER, "--env", "PYTHONHASHSEED=0"]
        for mount in mounts:
            mode = "ro" if mount.read_only else "rw"
            command += ["--bind", f"{Path(mount.host).resolve()}:{mount.container}:{mode}"]
        return [*command, str(self.sif(card)), *argv]

    def execute(self, card: ModelCard, argv: list[str], mounts: list[Mount], log_path: Path,
                timeout: float | None = None, gpu: bool = False) -> RunResult:
        if not self.sif(card).is_file():
            return RunResult(None, 0.0, f"{self.sif(card)}: no SIF for {card.name}; run `gencsp sif {card.name}` "
                                        "and copy it there (or set GENCSP_SIF_DIR)")
        result = run_process(self.command(card, argv, mounts, gpu), log_path, timeout)
        if result.exit_code == APPTAINER_FATAL:
            result.runtime_failure = f"{self.binary} failed to start the container (exit 255); see {log_path}"
        return result
