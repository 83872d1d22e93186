"""Realise symmetry-only samples: Wyckoff descriptions -> coordinates, in one shared, recorded stage.

Every Wyckoff model (WyckoffDiff now, WyFormer or WyCryst later) is realised the same way: PyXtal places
the given species on the given Wyckoff positions of the given space group (several seeded trials), then,
optionally, CHGNet relaxes each placement and the lowest energy per atom is kept. The settings are recorded
in run.json (`realisation`); `structures.parquet` gets the CIF of every accepted Wyckoff row, or the row
becomes rejected with a reason: `too_many_atoms` (more atoms than the model card's `limits.max_atoms`, checked
before PyXtal is called: a sample of an undertrained model can hold tens of thousands of orbits), `timeout`
(the sample's placements took longer than `seconds`), `realisation_failed` (no placement in `trials`).
Re-running is a no-op for rows already realised.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

from .atomic import write_parquet
from .collect import RUN_TABLE
from .errors import GencspError
from .runs import Run, now
from .structures import StructureError
from .validate import ACCEPTED, REJECTED

FAILED_REASON = "realisation_failed"
MAX_ATOMS = 200  # primitive-cell atoms realised when the model card sets no limits.max_atoms
# Lattice points per conventional cell, by the first letter of the Hermann-Mauguin symbol (R: hexagonal axes,
# PyXtal's setting).
CENTRING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}


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
    max_atoms: int | None = None  # primitive-cell atoms; None: the model card's limits.max_atoms, else MAX_ATOMS
    seconds: float = 60.0  # per sample, every trial (and relaxation) included


class RealisationTimeout(BaseException):
    """Raised by the alarm of `deadline`. Not an Exception, so that `except Exception` in PyXtal cannot
    swallow it; its bare `except:` can, so the alarm repeats until the block is left."""


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Raise RealisationTimeout in the block after `seconds` (main thread only; elsewhere no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise RealisationTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.2)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def trial_seed(seed: int, target_id: str, index: int, trial: int) -> int:
    """A seed per trial that does not depend on the order rows are processed in."""
    digest = hashlib.sha256(f"{seed}|{target_id}|{index}|{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def atom_count(description: dict) -> tuple[int, int]:
    """(atoms in the conventional cell, atoms in the primitive cell) of a Wyckoff description, from the
    multiplicities of its letters: no placement needed."""
    from pyxtal.symmetry import Group

    group = Group(int(description["space_group"]))
    multiplicity = {wp.letter: wp.multiplicity for wp in group.Wyckoff_positions}
    conventional = sum(multiplicity.get(site["letter"], 0) for site in description["sites"])
    return conventional, conventional // CENTRING.get(group.symbol[0], 1)


def check_size(description: dict, max_atoms: int) -> None:
    conventional, primitive = atom_count(description)
    if primitive > max_atoms:
        raise StructureError("too_many_atoms", f"{primitive} atoms in the primitive cell ({len(description['sites'])} "
                                               f"orbits, {conventional} atoms in the conventional cell), more than "
                                               f"the limit of {max_atoms} (model card limits.max_atoms)")


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
    """The realised structure of one Wyckoff description, with the trials used and the energy (if relaxed).

    ValueError when it cannot be realised; a StructureError's `reason` says why (size, time)."""
    check_size(description, settings.max_atoms or MAX_ATOMS)
    try:
        with deadline(settings.seconds):
            return _trials(description, settings, target_id, index)
    except RealisationTimeout:
        raise StructureError("timeout", f"realisation took more than {settings.seconds:g} s "
                                        f"({len(description['sites'])} orbits)") from None


def _trials(description: dict, settings: RealisationSettings, target_id: str, index: int) -> dict:
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
        return wyckoff & (frame["status"].eq(ACCEPTED) | frame["realised"].eq(False))
    done = frame["realised"].eq(True) if "realised" in frame else False
    return wyckoff & frame["status"].eq(ACCEPTED) & frame["cif"].isna() & ~done


def with_card_limits(settings: RealisationSettings, run: Run) -> RealisationSettings:
    """The settings with max_atoms taken from the run's model card when not given."""
    if settings.max_atoms is not None:
        return settings
    limit = ((run.info.get("model_card") or {}).get("limits") or {}).get("max_atoms")
    return replace(settings, max_atoms=int(limit or MAX_ATOMS))


def realise_run(run: Run, settings: RealisationSettings = RealisationSettings(), force: bool = False,
                progress: bool = False):
    """Fill `structures.parquet` with realised structures; return the table. Idempotent."""
    import pandas as pd

    from .structures import cif_text

    settings = with_card_limits(settings, run)
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
            reason = getattr(exc, "reason", FAILED_REASON)
            frame.loc[i, ["status", "reason", "message", "realised"]] = [REJECTED, reason, str(exc), False]
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
    failed = frame[frame["realised"].eq(False)]
    counts = {"realised": int(frame["realised"].eq(True).sum()), "failed": len(failed),
              "reasons": {str(k): int(v) for k, v in failed["reason"].value_counts().items()}}
    run.update_info(realisation={"settings": asdict(settings), "updated": now(), "counts": counts,
                                 "libraries": _versions()})
    return frame


def _progress(rows, enabled: bool):
    from rich.progress import track

    return track(rows, description="realising", disable=not enabled) if len(rows) else rows


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("pyxtal", "chgnet", "pymatgen")}
