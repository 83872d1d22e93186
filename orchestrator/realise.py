"""Realise symmetry-only samples: Wyckoff descriptions -> coordinates, in one shared, recorded stage.

Every Wyckoff model (WyckoffDiff now, WyFormer or WyCryst later) is realised the same way: PyXtal places
the given species on the given Wyckoff positions of the given space group (several seeded trials), then,
optionally, CHGNet relaxes each placement and the lowest energy per atom is kept. The settings are recorded
in run.json (`realisation`); `structures.parquet` gets the CIF of every accepted Wyckoff row, or the row
becomes rejected with reason `realisation_failed`. Re-running is a no-op for rows already realised.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

from .atomic import write_parquet
from .collect import RUN_TABLE
from .errors import GencspError
from .runs import Run, now
from .validate import ACCEPTED, REJECTED

FAILED_REASON = "realisation_failed"


class RealiseError(GencspError):
    """The run has no table to realise, or was realised with other settings."""


@dataclass(frozen=True)
class RealisationSettings:
    trials: int = 5  # PyXtal placements tried per sample
    seed: int = 0
    volume_factor: float = 1.1  # PyXtal's volume factor
    relax: bool = False  # CHGNet-relax each placement, keep the lowest energy per atom
    relax_steps: int = 300
    fmax: float = 0.1
    device: str = "cpu"
    primitive: bool = True  # report the primitive cell (PyXtal builds the conventional one)


def trial_seed(seed: int, target_id: str, index: int, trial: int) -> int:
    """A seed per trial that does not depend on the order rows are processed in."""
    digest = hashlib.sha256(f"{seed}|{target_id}|{index}|{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def pyxtal_inputs(description: dict) -> tuple[int, list[str], list[int], list[list[str]]]:
    """(group, species, atoms per species in the conventional cell, Wyckoff labels per species)."""
    from pyxtal.symmetry import Group

    group = int(description["space_group"])
    multiplicity = {wp.letter: wp.multiplicity for wp in Group(group).Wyckoff_positions}
    species: dict[str, list[str]] = {}
    for site in description["sites"]:
        letter = site["letter"]
        if letter not in multiplicity:
            raise ValueError(f"space group {group} has no Wyckoff position {letter!r}")
        species.setdefault(site["element"], []).append(f"{multiplicity[letter]}{letter}")
    names = list(species)
    counts = [sum(int(label[:-1]) for label in species[el]) for el in names]
    return group, names, counts, [species[el] for el in names]


def place(description: dict, settings: RealisationSettings, seed: int):
    """One PyXtal placement as a pymatgen Structure; ValueError when PyXtal cannot place the sites."""
    import numpy as np
    from pyxtal import pyxtal

    group, species, counts, sites = pyxtal_inputs(description)
    crystal = pyxtal()
    try:
        crystal.from_random(3, group, species, counts, factor=settings.volume_factor, sites=sites,
                            random_state=np.random.default_rng(seed))
    except Exception as exc:  # noqa: BLE001 - PyXtal raises many types for "cannot place"
        raise ValueError(f"PyXtal: {type(exc).__name__}: {exc}") from exc
    if not crystal.valid:
        raise ValueError("PyXtal found no valid placement")
    structure = crystal.to_pymatgen()
    return structure.get_primitive_structure() if settings.primitive else structure


@lru_cache(maxsize=2)
def relaxer(device: str):
    from chgnet.model import StructOptimizer

    return StructOptimizer(use_device=device)


def relax(structure, settings: RealisationSettings):
    result = relaxer(settings.device).relax(structure, fmax=settings.fmax, steps=settings.relax_steps,
                                            verbose=False)
    final = result["final_structure"]
    return float(result["trajectory"].energies[-1]) / len(final), final


def realise_one(description: dict, settings: RealisationSettings, target_id: str, index: int) -> dict:
    """The realised structure of one Wyckoff description, with the trials used and the energy (if relaxed)."""
    best, errors = None, []
    for trial in range(settings.trials):
        try:
            structure = place(description, settings, trial_seed(settings.seed, target_id, index, trial))
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if not settings.relax:
            return {"structure": structure, "trials": trial + 1, "energy": None}
        energy, relaxed = relax(structure, settings)
        if math.isfinite(energy) and (best is None or energy < best["energy"]):
            best = {"structure": relaxed, "trials": trial + 1, "energy": energy}
    if best is not None:
        best["trials"] = settings.trials
        return best
    raise ValueError(f"no placement in {settings.trials} trials: {errors[-1] if errors else 'non-finite energies'}")


def target_sizes(run: Run) -> dict[str, tuple[str | None, int | None]]:
    """target id -> (reduced formula, atoms) of the CSP targets the shards asked for."""
    from pymatgen.core import Composition

    sizes = {}
    for shard in run.shards():
        for target in shard.request().targets:
            formula = Composition(target.composition).reduced_formula if target.composition else None
            sizes[target.id] = (formula, target.num_atoms)
    return sizes


def pending(frame, force: bool):
    """Rows to realise: accepted Wyckoff rows without a CIF (with force: every Wyckoff row of the stage)."""
    wyckoff = frame["wyckoff"].notna()
    if force:
        return wyckoff & (frame["status"].eq(ACCEPTED) | frame["reason"].eq(FAILED_REASON))
    done = frame["realised"].eq(True) if "realised" in frame else False
    return wyckoff & frame["status"].eq(ACCEPTED) & frame["cif"].isna() & ~done


def realise_run(run: Run, settings: RealisationSettings = RealisationSettings(), force: bool = False,
                progress: bool = False):
    """Fill `structures.parquet` with realised structures; return the table. Idempotent."""
    import pandas as pd

    from .structures import cif_text

    path = run.path / RUN_TABLE
    if not path.exists():
        raise RealiseError(f"{path}: no run table yet; collect the run first")
    recorded = run.info.get("realisation")
    if recorded and recorded.get("settings") != asdict(settings) and not force:
        raise RealiseError(f"{run.path}: realised before with {recorded.get('settings')}; pass force to redo it")
    frame = pd.read_parquet(path)
    for column, default in (("realised", None), ("realisation_trials", None), ("realisation_energy", None),
                            ("realisation_seconds", None)):
        if column not in frame:
            frame[column] = default
    todo = frame.index[pending(frame, force)]
    sizes = target_sizes(run) if len(todo) else {}
    for i in _progress(todo, progress):
        row = frame.loc[i]
        start = time.monotonic()
        try:
            result = realise_one(json.loads(row["wyckoff"]), settings, row["target_id"], int(row["sample_index"]))
        except ValueError as exc:
            frame.loc[i, ["status", "reason", "message", "realised"]] = [REJECTED, FAILED_REASON, str(exc), False]
            frame.loc[i, "realisation_seconds"] = time.monotonic() - start
            continue
        structure = result["structure"]
        formula, atoms = sizes.get(row["target_id"], (None, None))
        frame.loc[i, ["status", "reason", "message", "cif", "formula", "num_atoms", "num_elements", "volume",
                      "realised", "realisation_trials", "realisation_energy", "realisation_seconds"]] = [
            ACCEPTED, None, None, cif_text(structure), structure.composition.reduced_formula, len(structure),
            len(structure.composition.elements), float(structure.volume), True, result["trials"],
            result["energy"], time.monotonic() - start]
        if formula is not None:
            frame.loc[i, ["composition_match", "num_atoms_match"]] = [
                formula == structure.composition.reduced_formula, atoms == len(structure)]
    write_parquet(path, frame)
    counts = {"realised": int(frame["realised"].eq(True).sum()),
              "failed": int(frame["reason"].eq(FAILED_REASON).sum())}
    run.update_info(realisation={"settings": asdict(settings), "updated": now(), "counts": counts,
                                 "libraries": _versions()})
    return frame


def _progress(rows, enabled: bool):
    from rich.progress import track

    return track(rows, description="realising", disable=not enabled) if len(rows) else rows


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("pyxtal", "chgnet", "pymatgen")}
