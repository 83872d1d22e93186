"""Dataset registry: the CDVAE/DiffCSP benchmark splits, a built-in `mini`, and user datasets.

A split is a CSV with (at least) `material_id` and `cif` columns, as in the
CDVAE repository. Files live in the cache (`gencsp data fetch`), are verified
against a pinned sha256 where one is known, and otherwise against the hash
recorded in a lock file the first time they were downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import paths
from .atomic import atomic_open, write_json
from .errors import GencspError
from .hashing import sha256_file

CDVAE_RAW = "https://raw.githubusercontent.com/txie-93/cdvae/main/data/{name}/{split}.csv"
DIFFCSP_RAW = "https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data/{name}/{split}.csv"
STANDARD_SPLITS = ("train", "val", "test")
KINDS = ("perovskite", "carbon", "mp20")


class DatasetError(GencspError):
    """A dataset is unknown, unreachable, corrupt or malformed."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    kind: str  # selects metric cut-offs: perovskite | carbon | mp20
    splits: tuple[str, ...] = STANDARD_SPLITS
    url: str | None = None  # template with {name} and {split}
    property_columns: tuple[str, ...] = ()
    default_property: str | None = None
    max_atoms: int | None = None
    citation: str = ""
    licence: str = ""
    sha256: dict[str, str] = field(default_factory=dict)  # pinned hashes, split -> hex
    origin: str = "download"  # download | builtin | user

    def url_for(self, split: str) -> str | None:
        return self.url.format(name=self.name, split=split) if self.url else None


BUILTIN: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="mp_20",
            description="45,231 Materials Project structures with at most 20 atoms (CDVAE split 60/20/20).",
            kind="mp20",
            url=CDVAE_RAW,
            property_columns=("formation_energy_per_atom", "band_gap", "e_above_hull"),
            default_property="formation_energy_per_atom",
            max_atoms=20,
            citation="Xie et al., ICLR 2022 (CDVAE); Jain et al., APL Mater. 1, 011002 (2013)",
            licence="CC-BY-4.0 (Materials Project data), MIT (CDVAE repository)",
        ),
        DatasetSpec(
            name="perov_5",
            description="18,928 perovskites ABX3, 5 atoms per cell, 56 elements (CDVAE split).",
            kind="perovskite",
            url=CDVAE_RAW,
            property_columns=("heat_all", "heat_ref", "dir_gap", "ind_gap"),
            default_property="heat_ref",
            max_atoms=5,
            citation="Castelli et al., Energy Environ. Sci. 5, 9034 (2012); Xie et al., ICLR 2022",
            licence="MIT (CDVAE repository)",
            sha256={
                "test": "a85878c685037f0a578257f6d4fcdde00e968dbab73c5f1e90ecef65218513f6",
                "val": "326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2",
            },
        ),
        DatasetSpec(
            name="carbon_24",
            description="10,153 carbon allotropes with 6-24 atoms from AIRSS (CDVAE split; ~40% unique).",
            kind="carbon",
            url=CDVAE_RAW,
            property_columns=("energy_per_atom",),
            default_property="energy_per_atom",
            max_atoms=24,
            citation="Pickard, AIRSS carbon data (2020); Xie et al., ICLR 2022",
            licence="MIT (CDVAE repository)",
            sha256={
                "test": "386b17c08816f434818d51e46687bf72ff3f92348f3ba24823e4758f1fe8a969",
                "val": "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e",
            },
        ),
        DatasetSpec(
            name="mpts_52",
            description="40,476 Materials Project structures with at most 52 atoms, time-based split (DiffCSP).",
            kind="mp20",
            url=DIFFCSP_RAW,
            property_columns=("energy_above_hull", "formation_energy_per_atom"),
            default_property="formation_energy_per_atom",
            max_atoms=52,
            citation="Jiao et al., NeurIPS 2023 (DiffCSP)",
            licence="CC-BY-4.0 (Materials Project data), MIT (DiffCSP repository)",
        ),
        DatasetSpec(
            name="mini",
            description="A few structures that ship inside pymatgen (plus substitutions); no network needed.",
            kind="mp20",
            max_atoms=30,
            citation="pymatgen test structures",
            licence="MIT (pymatgen)",
            origin="builtin",
        ),
    )
}


# --- registry ------------------------------------------------------------------


def user_spec_path(name: str) -> Path:
    return paths.datasets_dir() / name / "dataset.json"


def registry() -> dict[str, DatasetSpec]:
    """Built-in datasets, then the user's (`gencsp data add`)."""
    specs = dict(BUILTIN)
    root = paths.datasets_dir()
    if root.is_dir():
        for meta in sorted(root.glob("*/dataset.json")):
            data = json.loads(meta.read_text())
            data["splits"] = tuple(data["splits"])
            data["property_columns"] = tuple(data.get("property_columns", ()))
            specs.setdefault(data["name"], DatasetSpec(**data))
    return specs


def get(name: str) -> DatasetSpec:
    specs = registry()
    if name not in specs:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(specs)} (add one with `gencsp data add`)")
    return specs[name]


def split_path(name: str, split: str) -> Path:
    return paths.datasets_dir() / name / f"{split}.csv"


# --- lock file (trust on first download) -------------------------------------


def lock_path() -> Path:
    return paths.home() / "datasets.lock.json"


def read_lock() -> dict:
    path = lock_path()
    return json.loads(path.read_text()) if path.exists() else {}


def record_lock(name: str, split: str, sha: str, source: str) -> None:
    lock = read_lock()
    lock[f"{name}/{split}"] = {"sha256": sha, "source": source, "recorded": datetime.now(UTC).isoformat()}
    write_json(lock_path(), lock)


def expected_sha(spec: DatasetSpec, split: str) -> tuple[str | None, str]:
    """The hash a split must have, and where that expectation comes from."""
    if split in spec.sha256:
        return spec.sha256[split], "pinned"
    entry = read_lock().get(f"{spec.name}/{split}")
    return (entry["sha256"], f"lock file {lock_path()}") if entry else (None, "none")


# --- fetching ----------------------------------------------------------------


def _check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise DatasetError(f"dataset {spec.name!r} has no split {split!r}; splits: {', '.join(spec.splits)}")


def _verify(path: Path, spec: DatasetSpec, split: str, source: str) -> str:
    """Check `path` against the expected hash (recording it on first sight); return it."""
    sha = sha256_file(path)
    want, why = expected_sha(spec, split)
    if want is None:
        record_lock(spec.name, split, sha, source)
    elif sha != want:
        raise DatasetError(
            f"{source}: sha256 {sha} does not match the {why} value {want} for {spec.name}/{split}"
        )
    return sha


def _reject_lfs_pointer(path: Path, source: str) -> None:
    with open(path, "rb") as handle:
        if handle.read(40).startswith(b"version https://git-lfs"):
            raise DatasetError(f"{source}: got a Git LFS pointer, not the data file")


def download(url: str, dest: Path, progress: bool = True, timeout: float = 60) -> None:
    """Stream `url` into `dest` atomically, with a progress bar."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - https URLs from the registry
    except OSError as exc:
        raise DatasetError(f"cannot download {url}: {exc}") from exc
    total = int(response.headers.get("Content-Length") or 0) or None
    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    with response, atomic_open(dest, "wb") as out, Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"{dest.parent.name}/{dest.name}", total=total)
        while block := response.read(1 << 16):
            out.write(block)
            bar.advance(task, len(block))


def fetch(name: str, split: str, progress: bool = True) -> Path:
    """Return the verified local path of a split, fetching it if needed.

    Order: the cache, then $GENCSP_DATA_MIRROR/<name>/<split>.csv, then the network.
    """
    spec = get(name)
    _check_split(spec, split)
    dest = split_path(name, split)
    if dest.exists():
        if spec.origin != "builtin":  # mini follows the installed pymatgen: nothing to pin
            _verify(dest, spec, split, str(dest))
        return dest
    if spec.origin == "builtin":
        from .mini import build_mini

        build_mini(dest.parent)
        return dest
    if spec.origin == "user":
        raise DatasetError(f"{dest}: user dataset file is missing; add it again with `gencsp data add`")
    mirror = os.environ.get("GENCSP_DATA_MIRROR")
    if mirror and (Path(mirror) / name / f"{split}.csv").exists():
        source = Path(mirror) / name / f"{split}.csv"
        with atomic_open(dest, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
    else:
        url = spec.url_for(split)
        if url is None:
            raise DatasetError(f"dataset {name!r} has no download URL")
        source = url
        download(url, dest, progress=progress)
    try:
        _reject_lfs_pointer(dest, str(source))
        _verify(dest, spec, split, str(source))
    except DatasetError:
        dest.unlink(missing_ok=True)
        raise
    return dest


def load(name: str, split: str, progress: bool = False):
    """A split as a DataFrame with unique `material_id` and a `cif` column."""
    import pandas as pd

    path = fetch(name, split, progress=progress)
    frame = pd.read_csv(path, index_col=0 if _has_index_column(path) else None)
    for column in ("material_id", "cif"):
        if column not in frame.columns:
            raise DatasetError(f"{path}: no {column!r} column (columns: {', '.join(map(str, frame.columns))})")
    frame["material_id"] = frame["material_id"].astype(str)
    duplicated = frame["material_id"][frame["material_id"].duplicated()]
    if len(duplicated):
        raise DatasetError(f"{path}: material_id not unique, e.g. {duplicated.iloc[0]!r}")
    return frame.reset_index(drop=True)


def _has_index_column(path: Path) -> bool:
    """CDVAE's CSVs start with an unnamed pandas index column."""
    with open(path, encoding="utf-8") as handle:
        return handle.readline().startswith(",")


# --- user datasets -------------------------------------------------------------


def add(name: str, source: Path, split: str = "test", kind: str = "mp20", skip_invalid: bool = False) -> Path:
    """Register a folder of CIFs or a CSV with a `cif` column as split `split` of dataset `name`."""
    import pandas as pd

    from .structures import StructureError, parse_cif

    if name in BUILTIN:
        raise DatasetError(f"{name!r} is a built-in dataset; choose another name")
    if kind not in KINDS:
        raise DatasetError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    source = Path(source)
    if source.is_dir():
        files = sorted(source.glob("*.cif"))
        if not files:
            raise DatasetError(f"{source}: no *.cif files")
        frame = pd.DataFrame({"material_id": [f.stem for f in files], "cif": [f.read_text() for f in files]})
        origins = [str(f) for f in files]
    elif source.is_file():
        frame = pd.read_csv(source, index_col=0 if _has_index_column(source) else None)
        if "cif" not in frame.columns:
            raise DatasetError(f"{source}: a CSV dataset needs a 'cif' column")
        if "material_id" not in frame.columns:
            frame.insert(0, "material_id", [f"{name}-{i}" for i in range(len(frame))])
        origins = [f"{source} row {i}" for i in range(len(frame))]
    else:
        raise DatasetError(f"{source}: no such file or folder")
    bad = []
    for origin, text in zip(origins, frame["cif"], strict=True):
        try:
            parse_cif(str(text))
        except StructureError as exc:
            bad.append(f"{origin}: {exc}")
    if bad and not skip_invalid:
        listed = "\n  ".join(bad[:10])
        raise DatasetError(f"{len(bad)} unreadable structure(s) (use --skip-invalid to drop them):\n  {listed}")
    if bad:
        keep = [not any(b.startswith(o + ":") for b in bad) for o in origins]
        frame = frame[keep]
    frame["material_id"] = frame["material_id"].astype(str)
    if frame["material_id"].duplicated().any():
        raise DatasetError(f"{source}: material_id values are not unique")
    dest = split_path(name, split)
    with atomic_open(dest, "w") as out:
        frame.to_csv(out)
    old = registry().get(name)
    splits = tuple(sorted(set(old.splits if old and old.origin == "user" else ()) | {split}))
    spec = DatasetSpec(name=name, description=f"user dataset from {source}", kind=kind, splits=splits,
                       property_columns=tuple(c for c in frame.columns if c not in ("material_id", "cif")),
                       origin="user")
    meta = asdict(spec)
    write_json(user_spec_path(name), meta)
    record_lock(name, split, sha256_file(dest), str(source))
    return dest
