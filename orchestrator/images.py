"""Model images: docker build (with the host CA bundle), a Debian base made locally, SIF export.

Built images are recorded in `$GENCSP_HOME/images.json` (image id = content digest),
SIF files with their sha256, so that a run can name exactly what ran.
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
from .hashing import sha256_file

DEFAULT_BASE = "debian:bookworm-slim"  # what the Dockerfiles name by default
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
               tags: tuple[str, ...] | None = None) -> str:
    """debootstrap a minimal Debian into a folder and import it as an image; return its id.

    Tagged `gencsp/base:<suite>` and `debian:<suite>-slim`, the name the Dockerfiles use.
    """
    tags = tags or (local_base(suite), f"debian:{suite}-slim")
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
    record(f"_base:{suite}", image=tags[0], id=image.id, suite=suite, import_result=str(result)[:200])
    return image.id


def local_base(suite: str) -> str:
    return f"gencsp/base:{suite}"


def resolve_base(c, requested: str | None) -> str | None:
    """BASE_IMAGE to pass, or None to keep the Dockerfile's default.

    A `debian:<suite>-slim` that is missing here is replaced by `gencsp/base:<suite>` when that exists.
    """
    wanted = requested or DEFAULT_BASE
    if image_exists(c, wanted):
        return requested
    suite = debian_suite(wanted)
    if suite and image_exists(c, local_base(suite)):
        return local_base(suite)
    return requested  # docker pulls it; `gencsp build-base --suite S` where the registry is unreachable


def debian_suite(image: str) -> str | None:
    repository, _, tag = image.partition(":")
    if repository in ("debian", "docker.io/library/debian") and tag:
        return tag.removesuffix("-slim")
    return None


# --- build ----------------------------------------------------------------------------


SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UPSTREAM_RECORD = "/opt/gencsp/upstream.tsv"  # written by common/fetch_upstream.sh
BUILT_WHEELS = "/opt/gencsp/wheels"  # wheels a build compiled, kept in the host's wheelhouse


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


def labels_for(card: ModelCard, variant: str | None = None) -> dict[str, str]:
    from .hashing import sha256_json

    labels = {"gencsp.model": card.name, "gencsp.contract": CONTRACT_VERSION, "gencsp.family": str(card.family),
              "gencsp.card.sha256": sha256_json(card.model_dump(mode="json"))}
    if variant:
        labels.update({"gencsp.variant": variant, "gencsp.device": card.variants[variant].device})
    if card.upstream:
        labels["gencsp.upstream.repo"] = card.upstream.repo
        labels["gencsp.upstream.commit"] = card.upstream.commit or ""
    return labels


def default_variant(card: ModelCard) -> str | None:
    """cuda where an NVIDIA driver is present, else cpu (when the card has such variants)."""
    return card.variant_for("cuda" if shutil.which("nvidia-smi") else "cpu")


def registry_key(card: ModelCard, variant: str | None) -> str:
    return f"{card.name}:{variant}" if variant else card.name


def build(model: str, base: str | None = None, build_args: dict[str, str] | None = None, nocache: bool = False,
          on_line=None, variant: str | None = None, upstream_mirror: str | Path | None = None) -> dict:
    """docker build containers/<model>/Dockerfile (one variant); return the image record.

    Upstream archives come from a mirror when one is given (served on 127.0.0.1), else from GitHub;
    what the build fetched (commit, sha256) becomes image labels.
    """
    from . import buildserver, upstream

    card = models.get(model)
    if not (models.folder(model) / "Dockerfile").is_file():
        raise ImageError(f"{models.folder(model)}/Dockerfile: missing")
    variant = variant if variant is not None else default_variant(card)
    tagged = models.variant_card(card, variant)
    mirror = upstream.mirror_dir(upstream_mirror)
    sources = upstream.resolve(card, mirror)
    if mirror is None and sources and not (build_args or {}).get("GITHUB"):
        upstream.probe(card, sources)  # seconds, not after an hour of compiled layers
    key = registry_key(card, variant)
    c = client()
    log_path = paths.home() / "images" / f"{key.replace(':', '-')}.build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    wheels = buildserver.wheelhouse(key)
    archives = {s.relpath: s.path for s in sources if s.path is not None}
    with tempfile.TemporaryDirectory(prefix=f"gencsp-build-{model}-") as tmp, \
            buildserver.serve(key, archives, [wheels, *buildserver.host_wheel_dirs()]) as url:
        args = make_context(model, Path(tmp))
        spec = card.variants.get(variant) if variant else None
        chosen = resolve_base(c, base or (spec.base if spec else None))
        if chosen:
            args["BASE_IMAGE"] = chosen
        args.update(spec.build_args if spec else {})
        args.update({s.arg: s.commit for s in sources})
        args["WHEELS"] = f"{url}/wheels/"
        if mirror is not None:
            args["GITHUB"] = f"{url}/github"
        args.update(build_args or {})
        stream = c.api.build(path=tmp, dockerfile=f"{model}/Dockerfile", tag=tagged.image_name, buildargs=args,
                             labels=labels_for(card, variant), network_mode="host", rm=True, forcerm=True,
                             nocache=nocache, decode=True)
        image_id, lines = _consume(stream, log_path, on_line)
    if image_id is None:
        tail = "\n".join(lines[-15:])
        hint = ""
        if any(word in tail for word in ("pull access denied", "registry-1.docker.io", "manifest unknown")):
            hint = "\nthe base image cannot be pulled here: make one with `gencsp build-base` (root, debootstrap)"
        raise ImageError(f"building {tagged.image_name} failed (full log: {log_path}):\n{tail}{hint}")
    fetched = fetched_sources(c, tagged.image_name)
    provenance = upstream_provenance(card, sources, fetched, mirror)
    image_id = relabel(c, tagged.image_name, provenance)
    harvested = harvest_wheels(c, tagged.image_name, wheels)
    return record(key, image=tagged.image_name, id=image_id, variant=variant, base=chosen or DEFAULT_BASE,
                  build_args=sorted(a for a in args if a not in ("WHEELS", "GITHUB")),
                  labels={**labels_for(card, variant), **provenance}, wheels_compiled=harvested)


def read_from_image(c, image: str, path: str) -> dict[str, bytes]:
    """Regular files under `path` in an image (name -> bytes), without running it; {} when absent."""
    import io
    import tarfile

    import docker

    container = c.containers.create(image, entrypoint=["/bin/true"], command=[], network_mode="none")
    try:
        try:
            stream, _ = container.get_archive(path)
        except docker.errors.NotFound:
            return {}
        data = io.BytesIO(b"".join(stream))
        with tarfile.open(fileobj=data) as tar:
            return {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    finally:
        container.remove(force=True)


def fetched_sources(c, image: str) -> dict[str, tuple[str, str]]:
    """REPO -> (commit, sha256) of what the build's fetch steps downloaded."""
    text = read_from_image(c, image, UPSTREAM_RECORD).get(Path(UPSTREAM_RECORD).name, b"").decode()
    fetched = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            fetched[parts[0]] = (parts[1], parts[2])
    return fetched


def upstream_provenance(card: ModelCard, sources, fetched: dict, mirror: Path | None) -> dict[str, str]:
    """Labels naming every pinned source, its commit and the sha256 of the archive the build used."""
    labels = {}
    also = []
    for i, source in enumerate(sources):
        commit, sha = fetched.get(source.slug, (None, None))
        if commit is None:
            raise ImageError(f"the build of {card.name} did not fetch {source.slug} with common/fetch_upstream.sh "
                             f"(nothing in {UPSTREAM_RECORD})")
        if commit != source.commit:
            raise ImageError(f"the build of {card.name} fetched {source.slug}@{commit}, but the card pins "
                             f"{source.commit}: the Dockerfile must take the commit from build argument {source.arg}")
        if source.sha256 and sha != source.sha256:
            raise ImageError(f"{source.path}: the build received sha256 {sha}, the mirror file has {source.sha256}")
        if i == 0:
            labels.update({"gencsp.upstream.sha256": sha,
                           "gencsp.upstream.source": f"mirror {mirror}" if mirror else "github"})
        else:
            also.append(f"{source.slug}@{commit} sha256:{sha}")
    if also:
        labels["gencsp.upstream.also"] = "; ".join(also)
    return labels


def relabel(c, image: str, labels: dict[str, str]) -> str:
    """Add labels to a built image (a metadata-only step: no new layer); return the new image id."""
    import io

    if not labels:
        return c.images.get(image).id
    dockerfile = io.BytesIO(f"FROM {image}\n".encode())
    stream = c.api.build(fileobj=dockerfile, tag=image, labels=labels, rm=True, forcerm=True, decode=True)
    image_id, lines = _consume(stream, None, None)
    if image_id is None:
        raise ImageError(f"labelling {image} failed:\n" + "\n".join(lines[-5:]))
    return image_id


def harvest_wheels(c, image: str, wheelhouse: Path) -> list[str]:
    """Copy the wheels a build compiled (BUILT_WHEELS in the image) into the host's wheelhouse."""
    from .atomic import write_bytes

    found = {name: data for name, data in read_from_image(c, image, BUILT_WHEELS).items() if name.endswith(".whl")}
    added = []
    for name, data in sorted(found.items()):
        if not (wheelhouse / name).exists():
            wheelhouse.mkdir(parents=True, exist_ok=True)
            write_bytes(wheelhouse / name, data)
            added.append(name)
    return added


def _consume(stream, log_path: Path | None, on_line) -> tuple[str | None, list[str]]:
    """Write the build output to the log; return (image id or None on error, lines)."""
    lines: list[str] = []
    image_id = None
    with open(log_path or os.devnull, "a" if log_path is None else "w", encoding="utf-8") as log:
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


def image_id(model: str, variant: str | None = None) -> str:
    """The local image id (sha256 digest) of a model's image; never pulls."""
    card = models.variant_card(models.get(model), variant)
    c = client()
    if not image_exists(c, card.image_name):
        raise ImageError(f"image {card.image_name} is not built here; run `gencsp build {model}"
                         f"{' --variant ' + variant if variant else ''}`")
    return c.images.get(card.image_name).id


# --- SIF ----------------------------------------------------------------------------------


def apptainer_binary() -> str | None:
    return shutil.which("apptainer") or shutil.which("singularity")


def sif_command(binary: str, sif: Path, archive: Path) -> list[str]:
    return [binary, "build", "--force", str(sif), f"docker-archive:{archive}"]


def export_sif(model: str, out_dir: Path | None = None) -> dict:
    """docker save the image, then build a SIF from the archive (or say how to, elsewhere)."""
    card = models.get(model)
    out_dir = Path(out_dir or paths.home() / "images")
    out_dir.mkdir(parents=True, exist_ok=True)
    c = client()
    if not image_exists(c, card.image_name):
        raise ImageError(f"image {card.image_name} is not built here; run `gencsp build {model}`")
    image = c.images.get(card.image_name)
    archive = out_dir / f"{model}.tar"
    tmp = archive.with_suffix(".tar.tmp")
    with open(tmp, "wb") as handle:
        for block in image.save(named=True):
            handle.write(block)
    os.replace(tmp, archive)
    sif = out_dir / f"{model}.sif"
    binary = apptainer_binary()
    command = sif_command(binary or "apptainer", sif, archive)
    entry = {"archive": str(archive), "archive_sha256": sha256_file(archive), "image_id": image.id,
             "sif": str(sif), "sif_command": " ".join(command)}
    if binary is None:
        return record(model, sif_built=False, **entry)
    subprocess.run(command, check=True)
    return record(model, sif_built=True, sif_sha256=sha256_file(sif), **entry)
