"""Where gencsp keeps things: the project checkout, the user cache, the runs."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_DIR = PROJECT_ROOT / "containers"


def home() -> Path:
    """User cache root: $GENCSP_HOME, else $XDG_CACHE_HOME/gencsp, else ~/.cache/gencsp."""
    if os.environ.get("GENCSP_HOME"):
        return Path(os.environ["GENCSP_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "gencsp"


def datasets_dir() -> Path:
    return home() / "datasets"


def runs_dir() -> Path:
    return Path(os.environ.get("GENCSP_RUNS", "runs"))
