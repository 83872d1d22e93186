"""Running a task's shell command in its folder, here (no scheduler): what `run` does for every engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

TIMEOUT_EXIT = 124  # as coreutils' timeout


def run_in_folder(command: str, directory: Path, timeout: float | None = None) -> int:
    """Run `command` with /bin/sh; its output is appended to run.log in `directory`. Returns the exit code."""
    with open(Path(directory) / "run.log", "ab") as log:
        try:
            return subprocess.run(["/bin/sh", "-c", command], stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return TIMEOUT_EXIT
