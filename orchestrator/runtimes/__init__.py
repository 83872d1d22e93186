"""Runtimes run one model entry point in one environment: docker, apptainer or local."""

from __future__ import annotations

from .base import Mount, RunResult, Runtime, run_shard

NAMES = ("auto", "docker", "apptainer", "local")


def get_runtime(name: str = "auto") -> Runtime:
    """The named runtime; `auto` is docker when a daemon answers, else apptainer if installed, else local."""
    from ..errors import GencspError
    from .apptainer import ApptainerRuntime, find_binary
    from .docker import DockerRuntime
    from .local import LocalRuntime

    if name == "auto":
        from ..images import daemon_available

        if daemon_available():
            return DockerRuntime()
        return ApptainerRuntime() if find_binary() else LocalRuntime()
    runtimes = {"docker": DockerRuntime, "apptainer": ApptainerRuntime, "local": LocalRuntime}
    if name not in runtimes:
        raise GencspError(f"unknown runtime {name!r}; choose from {', '.join(NAMES)}")
    return runtimes[name]()


__all__ = ["NAMES", "Mount", "RunResult", "Runtime", "get_runtime", "run_shard"]
