"""Run a model's SIF with Apptainer (or SingularityCE, where only `singularity` exists).

`apptainer run` (not `exec`) so that the image's entry point, defined once in its
Dockerfile and kept as the SIF runscript, is the one that starts. Containment:
`--containall` (own PID/IPC, empty HOME and /tmp, clean environment), `--cleanenv`,
no network (`--net --network none`: a network namespace with loopback only, which
unprivileged users may ask for too), explicit binds only (read-only but for the output
and scratch folders), `--nv` only when a GPU is asked for. Every option here is one
that SingularityCE 3.x accepts as well (README, "Apptainer and SingularityCE").
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
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

    def version(self) -> str | None:
        try:
            result = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() or None

    def identity(self, card: ModelCard) -> dict:
        from ..hashing import sha256_file

        sif = self.sif(card)
        return {"runtime": self.name, "binary": self.binary, "version": self.version(), "sif": str(sif),
                "sif_sha256": sha256_file(sif) if sif.is_file() else None, "flags": self.flags(gpu=False)}

    def flags(self, gpu: bool) -> list[str]:
        """The isolation options of every container this runtime starts."""
        flags = ["--containall", "--cleanenv"]
        if self.network_isolation:
            flags += ["--net", "--network", "none"]
        return flags + (["--nv"] if gpu else [])

    def command(self, card: ModelCard, argv: list[str], mounts: list[Mount], gpu: bool, verb: str = "run") -> list[str]:
        """`run` starts the image's entry point with `argv`; `exec` runs `argv` itself (probes, checks)."""
        command = [self.binary, verb, *self.flags(gpu)]
        if any(mount.container == WORK_IN_CONTAINER for mount in mounts):  # a shard's scratch folder
            command += ["--pwd", WORK_IN_CONTAINER]
        command += ["--env", "PYTHONHASHSEED=0"]
        for mount in mounts:
            mode = "ro" if mount.read_only else "rw"
            command += ["--bind", f"{Path(mount.host).resolve()}:{mount.container}:{mode}"]
        return [*command, str(self.sif(card)), *argv]

    def execute(self, card: ModelCard, argv: list[str], mounts: list[Mount], log_path: Path,
                timeout: float | None = None, gpu: bool = False) -> RunResult:
        if not self.sif(card).is_file():
            return RunResult(None, 0.0, f"{self.sif(card)}: no SIF for {card.name}; run `gencsp sif {card.name}` "
                                        "and copy it there (or set GENCSP_SIF_DIR)")
        command = self.command(card, argv, mounts, gpu)
        with open(log_path, "a") as log:  # the exact command, for whoever reads a failed task's log
            log.write(f"gencsp: {shlex.join(command)}\n")
        result = run_process(command, log_path, timeout)
        if result.exit_code == APPTAINER_FATAL:
            result.runtime_failure = f"{self.binary} failed to start the container (exit 255); see {log_path}"
        return result

    def interfaces(self, card: ModelCard) -> list[str]:
        """Network interfaces seen inside a container started with the model's isolation options."""
        command = self.command(card, ["cat", "/proc/net/dev"], [], gpu=False, verb="exec")
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)}: exit {result.returncode}: {result.stderr.strip()[-300:]}")
        return [line.split(":")[0].strip() for line in result.stdout.splitlines()[2:] if ":" in line]
