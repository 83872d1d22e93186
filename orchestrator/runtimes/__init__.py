"""Runtimes run one shard in one model environment: docker, apptainer or local."""

from __future__ import annotations

from .base import RunResult, Runtime

NAMES = ("auto", "docker", "apptainer", "local")


def get_runtime(name: str = "auto") -> Runtime:
    """The named runtime; `auto` is docker when a daemon answers, else apptainer, else local."""
    from .local import LocalRuntime

    if name == "local":
        return LocalRuntime()
    from ..errors import GencspError

    raise GencspError(f"unknown runtime {name!r}; choose from {', '.join(NAMES)}")


__all__ = ["NAMES", "RunResult", "Runtime", "get_runtime"]
