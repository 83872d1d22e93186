"""SIF images for Apptainer/SingularityCE: built from a model's Docker image, recorded, inspected.

`gencsp sif MODEL`: `docker save` the image into an archive, `apptainer build --force
MODEL.sif docker-archive:ARCHIVE` into a temporary name, rename it. Recorded in
`images.json` with the Docker image id it came from, its sha256 (also written beside it
as `MODEL.sif.sha256`, the `sha256sum -c` format the cluster steps use), size, build
seconds and the Apptainer version. A SIF that is up to date (same image id, file
unchanged) is not built again unless forced; one build at a time per SIF (a lock file).

Only the options that Apptainer and SingularityCE 3.x both accept are used here and in
the runtime (`runtimes/apptainer.py`); the README lists them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time
from pathlib import Path

from . import models, paths
from .atomic import atomic_open, write_text
from .errors import GencspError
from .hashing import sha256_file
from .runtimes.apptainer import find_binary


class SifError(GencspError):
    """A SIF cannot be built or read."""


def sif_command(binary: str, sif: Path, archive: Path) -> list[str]:
    return [binary, "build", "--force", str(sif), f"docker-archive:{archive}"]


def version(binary: str) -> str:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    return (result.stdout or result.stderr).strip()


@contextlib.contextmanager
def build_lock(sif: Path):
    """One build of a given SIF at a time (two test workers, two terminals)."""
    import fcntl

    with open(sif.with_name(f".{sif.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def up_to_date(entry: dict, sif: Path, image_id: str) -> bool:
    return (entry.get("sif") == str(sif) and entry.get("sif_image_id") == image_id and sif.is_file()
            and entry.get("sif_sha256") == sha256_file(sif))


def save_archive(image, archive: Path) -> None:
    """`docker save` through a temporary file."""
    with atomic_open(archive, "wb") as handle:
        for block in image.save(named=True):
            handle.write(block)


def export_sif(model: str, out_dir: Path | None = None, force: bool = False, keep_archive: bool = False,
               variant: str | None = None) -> dict:
    """The model's SIF, built from its Docker image (or the archive and the command, without Apptainer).

    For a model with variants, the image of `variant` (default: as `gencsp build` chooses); the SIF
    keeps the name MODEL.sif, which the runtime looks for, and its labels say the variant.
    """
    from .images import ImageError, client, default_variant, image_exists, record, records

    base = models.get(model)
    variant = variant if variant is not None else default_variant(base)
    card = models.variant_card(base, variant)
    out_dir = Path(out_dir or paths.home() / "images").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    c = client()
    if not image_exists(c, card.image_name):
        flag = f" --variant {variant}" if variant else ""
        raise ImageError(f"image {card.image_name} is not built here; run `gencsp build {model}{flag}`")
    image = c.images.get(card.image_name)
    sif, archive = out_dir / f"{model}.sif", out_dir / f"{model}.tar"
    binary = find_binary()
    command = sif_command(binary or "apptainer", sif, archive)
    if binary is None:
        save_archive(image, archive)
        return record(model, sif_built=False, archive=str(archive), archive_sha256=sha256_file(archive),
                      sif=str(sif), sif_image_id=image.id, sif_command=shlex.join(command))
    with build_lock(sif):
        if not force and up_to_date(records().get(model, {}), sif, image.id):
            return {**records()[model], "up_to_date": True}
        started = time.monotonic()
        save_archive(image, archive)
        tmp = sif.with_name(f".{sif.name}.tmp")
        log = out_dir / f"{model}.sif.log"
        with open(log, "w") as handle:
            result = subprocess.run(sif_command(binary, tmp, archive), stdout=handle, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            raise SifError(f"{shlex.join(command)} failed (exit {result.returncode}; log {log}):\n{tail}")
        os.replace(tmp, sif)
        seconds = time.monotonic() - started
        digest = sha256_file(sif)
        write_text(sif.with_name(sif.name + ".sha256"), f"{digest}  {sif.name}\n")
        if not keep_archive:
            archive.unlink()
        return record(model, sif_built=True, sif=str(sif), sif_sha256=digest, sif_bytes=sif.stat().st_size,
                      sif_seconds=round(seconds, 1), sif_image=card.image_name, sif_image_id=image.id,
                      sif_variant=variant, sif_builder=version(binary),
                      sif_command=shlex.join(command), archive=str(archive) if keep_archive else None,
                      archive_sha256=sha256_file(archive) if keep_archive else None, up_to_date=False)


# --- reading a SIF ---------------------------------------------------------------------------------


def labels(binary: str, sif: Path) -> dict[str, str]:
    """The image labels kept in the SIF (`inspect --json`: the Docker labels gencsp set at build)."""
    result = subprocess.run([binary, "inspect", "--json", "--labels", str(sif)], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise SifError(f"{sif}: {binary} inspect failed: {result.stderr.strip()[-300:]}")
    data = json.loads(result.stdout)
    return data.get("data", {}).get("attributes", {}).get("labels") or {}


def entry_point(binary: str, sif: Path) -> list[str]:
    """The Docker ENTRYPOINT the SIF's runscript starts (empty when it is not an OCI-derived runscript)."""
    result = subprocess.run([binary, "inspect", "--runscript", str(sif)], capture_output=True, text=True,
                            timeout=120)
    for line in result.stdout.splitlines():
        if line.startswith("OCI_ENTRYPOINT="):  # OCI_ENTRYPOINT='"/opt/venv/bin/python" "/opt/gencsp/adapter.py"'
            value = shlex.split(line.partition("=")[2])
            return shlex.split(value[0]) if value else []
    return []


def layout(binary: str, sif: Path) -> tuple[str, list[str]]:
    """(SIF format version, partition types), from `sif header` and `sif list`."""
    header = subprocess.run([binary, "sif", "header", str(sif)], capture_output=True, text=True, timeout=120)
    listing = subprocess.run([binary, "sif", "list", str(sif)], capture_output=True, text=True, timeout=120)
    if header.returncode or listing.returncode:
        raise SifError(f"{sif}: not a readable SIF: {(header.stderr or listing.stderr).strip()[-300:]}")
    version = next((line.split(":", 1)[1].strip() for line in header.stdout.splitlines()
                    if line.startswith("Version:")), "?")
    kinds = [line.rsplit("|", 1)[1].strip() for line in listing.stdout.splitlines()
             if line[:1].isdigit() and "|" in line]
    return version, kinds
