"""Run a model image with docker-py: no network, explicit mounts, caller's uid, limits, logs kept.

A missing image is a runtime failure with the build command to run; it is never pulled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from schemas import ModelCard

from .base import WORK_IN_CONTAINER, Mount, RunResult

# Seconds to wait for the daemon to answer a control call (create, logs, remove).
API_TIMEOUT = 120
# Containers this process started and has not removed yet. The daemon owns them, so a signal that ends
# gencsp does not end them: cli.main removes them on SIGTERM or Ctrl-C (stop_live).
LIVE: set = set()


def stop_live() -> int:
    """Remove every container this process still runs; return how many."""
    stopped = 0
    for container in list(LIVE):
        try:
            container.remove(force=True)
            stopped += 1
        except Exception:  # noqa: BLE001 - already gone, or the daemon is down: nothing left to stop
            pass
        LIVE.discard(container)
    return stopped


def container_settings(card: ModelCard, argv: list[str], mounts: list[Mount], gpu: bool) -> dict:
    """Keyword arguments of `containers.create`: everything that confines the model."""
    import docker

    settings = {
        "image": card.image_name,
        "command": list(argv),
        "network_mode": "none",
        "mounts": [docker.types.Mount(target=m.container, source=str(Path(m.host).resolve()), type="bind",
                                      read_only=m.read_only) for m in mounts],
        "user": f"{os.getuid()}:{os.getgid()}",
        "working_dir": WORK_IN_CONTAINER,
        "environment": {"HOME": "/tmp", "PYTHONHASHSEED": "0"},
        "read_only": True,  # root file system; /tmp is a tmpfs, the output and work folders are mounts
        "tmpfs": {"/tmp": "rw,size=2g"},
        "mem_limit": f"{int(card.resources.memory_gb * 1024)}m",
        "nano_cpus": int(card.resources.cpus * 1e9),
        "pids_limit": 4096,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "labels": {"gencsp.role": "shard"},
    }
    if gpu:
        settings["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return settings


class DockerRuntime:
    name = "docker"

    def __init__(self, client=None):
        self._client = client

    @property
    def client(self):
        if self._client is None:
            from ..images import client

            self._client = client(timeout=API_TIMEOUT)
        return self._client

    def available(self) -> bool:
        from ..images import daemon_available

        return daemon_available()

    def identity(self, card: ModelCard) -> dict:
        from ..images import image_exists

        info = {"runtime": self.name, "image": card.image_name}
        if image_exists(self.client, card.image_name):
            image = self.client.images.get(card.image_name)
            info.update(image_id=image.id, labels=image.labels)
        return info

    def execute(self, card: ModelCard, argv: list[str], mounts: list[Mount], log_path: Path,
                timeout: float | None = None, gpu: bool = False) -> RunResult:
        import docker
        import requests

        from ..images import image_exists

        if not image_exists(self.client, card.image_name):
            return RunResult(None, 0.0, f"image {card.image_name} is not built here; run `gencsp build {card.name}`")
        start = time.monotonic()
        try:
            container = self.client.containers.create(**container_settings(card, argv, mounts, gpu))
        except docker.errors.APIError as exc:
            return RunResult(None, time.monotonic() - start, f"docker could not create the container: {exc}")
        failure, timed_out = None, False
        LIVE.add(container)
        try:
            container.start()
            try:
                status = container.wait(timeout=timeout)
                code = status.get("StatusCode")
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                container.kill()
                code, failure, timed_out = None, f"timed out after {timeout:g} s", True
            container.reload()
            if container.attrs["State"].get("OOMKilled"):
                failure = f"out of memory (limit {card.resources.memory_gb:g} GB)"
        except docker.errors.APIError as exc:
            code, failure = None, f"docker failed while running the container: {exc}"
        finally:
            try:
                self._save_logs(container, log_path)
                container.remove(force=True)
            except docker.errors.NotFound:  # removed by stop_live on a signal
                pass
            LIVE.discard(container)
        return RunResult(code, time.monotonic() - start, failure, timed_out=timed_out)

    def interfaces(self, card: ModelCard) -> list[str]:
        """Network interfaces seen inside a container started with the model's settings."""
        settings = container_settings(card, [], [], gpu=False)
        settings.update(entrypoint=["/bin/sh", "-c", "cat /proc/net/dev"], command=None)
        output = self.client.containers.run(remove=True, **settings).decode()
        return [line.split(":")[0].strip() for line in output.splitlines()[2:] if ":" in line]

    @staticmethod
    def _save_logs(container, log_path: Path) -> None:
        """The container's output, streamed into the log and capped (a model may print gigabytes)."""
        import io

        import docker

        from .base import copy_capped

        try:
            chunks = container.logs(stdout=True, stderr=True, stream=True)
            copy_capped(_ChunkReader(chunks), log_path)
        except docker.errors.APIError as exc:
            copy_capped(io.BytesIO(f"(logs unavailable: {exc})\n".encode()), log_path)


class _ChunkReader:
    """A file-like read() over docker's iterator of log chunks."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)

    def read(self, size: int = -1) -> bytes:
        return next(self.chunks, b"")
