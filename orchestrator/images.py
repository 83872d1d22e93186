"""Model images: docker build (with the host CA bundle), a Debian base made locally.

Built images are recorded in `$GENCSP_HOME/images.json` (image id = content digest),
SIF files (`sif.py`) with their sha256, so that a run can name exactly what ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from schemas import CONTRACT_VERSION, ModelCard

from . import models, paths
from .atomic import write_json
from .errors import GencspError

DEFAULT_BASE = "debian:bookworm-slim"  # what the Dockerfiles name by default
LOCAL_BASE = "gencsp/base:bookworm"  # the same, made locally by `gencsp build-base`
CA_IN_IMAGE = "/usr/local/share/gencsp/ca-bundle.crt"


class ImageError(GencspError):
    """An image cannot be built, found or exported."""


def registry_path() -> Path:
    return paths.home() / "images.json"


def records() -> dict:
    path = registry_path()
    return json.loads(path.read_text()) if path.exists() else {}


def record(model: str, **values) -> dict:
    data = records()
    entry = {**data.get(model, {}), **values, "updated": datetime.now(UTC).isoformat()}
    data[model] = entry
    write_json(registry_path(), data)
    return entry


def client(timeout: int = 600):
    """A docker-py client, or ImageError naming the problem."""
    import docker

    try:
        c = docker.from_env(timeout=timeout)
        c.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises several types when no daemon answers
        raise ImageError(f"no Docker daemon answers ({exc.__class__.__name__}); start dockerd or use another runtime") from exc
    return c


def daemon_available() -> bool:
    try:
        client(timeout=5)
    except ImageError:
        return False
    return True


def image_exists(c, name: str) -> bool:
    import docker

    try:
        c.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


# --- base image -------------------------------------------------------------------


def build_base(suite: str = "bookworm", mirror: str = "http://deb.debian.org/debian",
               tags: tuple[str, ...] = (LOCAL_BASE, DEFAULT_BASE)) -> str:
    """debootstrap a minimal Debian into a folder and import it as an image; return its id."""
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root")
    c = client()
    with tempfile.TemporaryDirectory(prefix="gencsp-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", suite, str(root), mirror], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        repository, tag = tags[0].split(":")
        result = c.api.import_image(src=str(archive), repository=repository, tag=tag)
    image = c.images.get(tags[0])
    for name in tags[1:]:
        repository, tag = name.split(":")
        image.tag(repository, tag)
    record("_base", image=tags[0], id=image.id, suite=suite, import_result=str(result)[:200])
    return image.id


def resolve_base(c, requested: str | None) -> str | None:
    """BASE_IMAGE to pass, or None to keep the Dockerfile's default."""
    if requested:
        return requested
    if image_exists(c, DEFAULT_BASE):
        return None
    if image_exists(c, LOCAL_BASE):
        return LOCAL_BASE
    return None  # docker will pull the default; `gencsp build-base` if the registry is unreachable


# --- build ----------------------------------------------------------------------------


SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def host_ca_bundle() -> Path | None:
    """The CA bundle the host trusts (a TLS-inspecting proxy's CA included), if any."""
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None


def make_context(model: str, destination: Path) -> dict[str, str]:
    """Build context: common/, <model>/ and ca-bundle.crt (empty without a host bundle); return build args."""
    source = paths.CONTAINERS_DIR
    shutil.copytree(source / "common", destination / "common", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(source / model, destination / model, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = host_ca_bundle()
    (destination / "ca-bundle.crt").write_bytes(bundle.read_bytes() if bundle else b"")
    return {"PIP_CERT": CA_IN_IMAGE} if bundle else {}


def labels_for(card: ModelCard) -> dict[str, str]:
    from .hashing import sha256_json

    labels = {"gencsp.model": card.name, "gencsp.contract": CONTRACT_VERSION, "gencsp.family": str(card.family),
              "gencsp.card.sha256": sha256_json(card.model_dump(mode="json"))}
    if card.upstream:
        labels["gencsp.upstream.repo"] = card.upstream.repo
        labels["gencsp.upstream.commit"] = card.upstream.commit or ""
    return labels


def build(model: str, base: str | None = None, build_args: dict[str, str] | None = None, nocache: bool = False,
          on_line=None) -> dict:
    """docker build containers/<model>/Dockerfile; return the image record."""
    card = models.get(model)
    if not (models.folder(model) / "Dockerfile").is_file():
        raise ImageError(f"{models.folder(model)}/Dockerfile: missing")
    c = client()
    log_path = paths.home() / "images" / f"{model}.build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"gencsp-build-{model}-") as tmp:
        args = make_context(model, Path(tmp))
        chosen = resolve_base(c, base)
        if chosen:
            args["BASE_IMAGE"] = chosen
        args.update(build_args or {})
        stream = c.api.build(path=tmp, dockerfile=f"{model}/Dockerfile", tag=card.image_name, buildargs=args,
                             labels=labels_for(card), network_mode="host", rm=True, forcerm=True,
                             nocache=nocache, decode=True)
        image_id, lines = _consume(stream, log_path, on_line)
    if image_id is None:
        tail = "\n".join(lines[-15:])
        hint = ""
        if any(word in tail for word in ("pull access denied", "registry-1.docker.io", "manifest unknown")):
            hint = "\nthe base image cannot be pulled here: make one with `gencsp build-base` (root, debootstrap)"
        raise ImageError(f"building {card.image_name} failed (full log: {log_path}):\n{tail}{hint}")
    return record(model, image=card.image_name, id=image_id, base=chosen or DEFAULT_BASE,
                  build_args=sorted(args), labels=labels_for(card))


def _consume(stream, log_path: Path, on_line) -> tuple[str | None, list[str]]:
    """Write the build output to the log; return (image id or None on error, lines)."""
    lines: list[str] = []
    image_id = None
    with open(log_path, "w", encoding="utf-8") as log:
        for chunk in stream:
            text = chunk.get("stream") or chunk.get("status") or ""
            if "error" in chunk:
                text = "ERROR: " + chunk["error"]
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            for line in text.splitlines():
                lines.append(line)
                log.write(line + "\n")
                if on_line:
                    on_line(line)
            if "error" in chunk:
                return None, lines
    return image_id, lines


def image_id(model: str) -> str:
    """The local image id (sha256 digest) of a model's image; never pulls."""
    card = models.get(model)
    c = client()
    if not image_exists(c, card.image_name):
        raise ImageError(f"image {card.image_name} is not built here; run `gencsp build {model}`")
    return c.images.get(card.image_name).id
