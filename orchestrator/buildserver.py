"""What a build may fetch from this host, served on 127.0.0.1 while `docker build` runs (host network).

    <url>/github/OWNER/REPO/archive/COMMIT.tar.gz   upstream archives from a mirror (build arg GITHUB)
    <url>/wheels/                                   a find-links page (build arg WHEELS): wheels compiled
                                                    by earlier builds of the image, and the host's own
                                                    local wheels (pip's find-links folders)

Build arguments enter Docker's layer cache keys, so the port is stable per image: a second
build of the same image reuses every layer above the first step that changed.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import hashlib
import os
import shlex
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import paths

PORTS = range(41000, 49000)


def wheelhouse(image_key: str) -> Path:
    """Wheels an image's build compiled, kept so that only its first build compiles them."""
    return paths.home() / "wheelhouse" / image_key.replace("/", "_").replace(":", "-")


def pip_config_files() -> list[Path]:
    files = [Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"), Path.home() / ".config" / "pip" / "pip.conf",
             Path.home() / ".pip" / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return [f for f in files if f.is_file()]


def host_wheel_dirs() -> list[Path]:
    """Local folders pip on this host finds wheels in (find-links), e.g. a CPU torch wheel on disk."""
    values = shlex.split(os.environ.get("PIP_FIND_LINKS", ""))
    for path in pip_config_files():
        parser = configparser.ConfigParser()
        with contextlib.suppress(configparser.Error, OSError):
            parser.read(path)
            for section in ("global", "install"):
                values += parser.get(section, "find-links", fallback="").split()
    folders = []
    for value in values:
        folder = Path(value.removeprefix("file://"))
        if folder.is_dir() and folder not in folders:
            folders.append(folder)
    return folders


def stable_port(key: str) -> int:
    digest = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    return PORTS.start + digest % len(PORTS)


def _bind(handler, key: str) -> ThreadingHTTPServer:
    for port in (stable_port(key), 0):  # 0: any free port (a cache miss, never a failure)
        try:
            return ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            continue
    raise OSError("cannot bind a local port for the build")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the build log says what was fetched
        pass


def layout(root: Path, archives: dict[str, Path], wheel_dirs: list[Path]) -> None:
    """Symlinks: github/<relpath> -> archive, wheels/<file> -> each wheel (first folder wins)."""
    for relpath, source in archives.items():
        target = root / "github" / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
    (root / "wheels").mkdir(exist_ok=True)
    for folder in wheel_dirs:
        for wheel in sorted(folder.glob("*.whl")):
            link = root / "wheels" / wheel.name
            if not link.exists():
                link.symlink_to(wheel.resolve())


@contextlib.contextmanager
def serve(key: str, archives: dict[str, Path], wheel_dirs: list[Path]) -> Iterator[str]:
    """Serve archives and wheels on 127.0.0.1 for the duration of a build; yield the base URL."""
    with tempfile.TemporaryDirectory(prefix="gencsp-serve-") as tmp:
        layout(Path(tmp), archives, wheel_dirs)
        server = _bind(functools.partial(_Quiet, directory=tmp), key)
        thread = threading.Thread(target=server.serve_forever, name="gencsp-buildserver", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()

