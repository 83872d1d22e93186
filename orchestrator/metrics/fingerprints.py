"""One structure -> the facts every metric reads: composition, validity inputs, fingerprints.

`record_from_cif` never raises: a structure that cannot be read or fingerprinted
gets a reason (`reason` for the structure, `fp_reason` for the fingerprints) and
the metrics treat it as the reference scripts do (not constructed, or invalid
and left out of coverage).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources

from ..structures import StructureError, parse_cif, time_limit
from . import crystalnn
from .validity import MIN_DISTANCE, MIN_VOLUME, min_distance, smact_valid

SCALER_FILE = "cdvae_magpie_scaler.json"
# CrystalNN tessellates every atom image within 7 A of a site. A cell so dense that a sphere
# would hold more than this many images (150 times a normal solid; only a degenerate, near
# zero-volume cell gets there) is not fingerprinted: the neighbour search would run out of
# memory or time inside C code, where no time limit can stop it. Such a cell is never valid.
MAX_SPHERE_IMAGES = 20_000
# What a record holds beyond the facts every record has (composition, SMACT, geometry), each
# computed only when a requested metric reads it (registry `needs`): CrystalNN and Magpie
# fingerprints, the space group.
PARTS = ("struct_fp", "comp_fp", "spacegroup")


@dataclass(frozen=True)
class RecordSettings:
    symprec: float = 0.1  # spglib tolerance of the symmetry statistics
    shared_voronoi: bool = True  # one tessellation per structure (crystalnn.py); False: matminer's own path
    fast_order_params: bool = True  # order_params.py (same numbers, bit for bit); False: pymatgen's per type
    fast_voronoi: bool = True  # shared cells from arrays (voronoi.py, same bits); False: pymatgen's neighbours
    parse_seconds: float = 10.0
    fingerprint_seconds: float = 300.0  # a structure whose CrystalNN fingerprint takes longer is invalid


@functools.lru_cache(maxsize=1)
def magpie():
    """matminer's Magpie ElementProperty WITHOUT imputation, as CDVAE's numbers were made."""
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie", impute_nan=False)


@functools.lru_cache(maxsize=1)
def scaler():
    """CDVAE's fixed standardisation of the 132 Magpie features: (means, stds)."""
    import numpy as np

    data = json.loads(resources.files(__package__).joinpath(SCALER_FILE).read_text())
    return np.array(data["means"], dtype=float), np.array(data["stds"], dtype=float)


def scale_composition(features):
    """(x - mean) / std, then NaN -> 0 (CDVAE's CompScaler)."""
    import numpy as np

    means, stds = scaler()
    scaled = (np.asarray(features, dtype=float) - means) / stds
    return np.where(np.isnan(scaled), 0.0, scaled)


def structure_key(structure) -> str:
    """Canonical hash of the numbers a fingerprint depends on: species, lattice, coordinates, in order."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    digest.update("|".join(str(s) for s in structure.species).encode())
    digest.update(np.ascontiguousarray(structure.lattice.matrix, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(structure.frac_coords, dtype="<f8").tobytes())
    return digest.hexdigest()


def _composition_facts(structure) -> dict:
    from collections import Counter

    counts = Counter(site.specie for site in structure)
    ordered = sorted(counts.items(), key=lambda kv: (kv[0].Z, str(kv[0])))
    gcd = math.gcd(*(n for _, n in ordered))
    return {
        "formula": structure.composition.reduced_formula,
        "composition": " ".join(f"{sp}{n // gcd}" for sp, n in ordered),  # exact key for matching
        "symbols": [sp.symbol for sp, _ in ordered],
        "counts": [n for _, n in ordered],
        "num_atoms": len(structure),
        "num_elems": len(set(structure.species)),
    }


def _geometry(structure) -> dict:
    import numpy as np

    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    finite = bool(np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all())
    if not finite:
        return {"non_finite": True, "det_ok": True, "volume": math.nan, "min_dist": math.nan,
                "density": math.nan}
    volume = float(structure.volume)
    return {"non_finite": False, "det_ok": bool(np.linalg.det(matrix) > 0), "volume": volume,
            "min_dist": min_distance(structure), "density": float(structure.density)}


def _spacegroup(structure, symprec: float) -> int | None:
    import os

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    os.environ.setdefault("SPGLIB_WARNING", "OFF")  # spglib prints from C for every odd cell
    try:
        return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # noqa: BLE001 - spglib gives up on some cells
        return None


def _fingerprint_gate(record: dict) -> bool:
    """False (with fp_reason) for a cell that no fingerprint is computed for."""
    if record["fp_reason"] is not None:
        return False
    if record["non_finite"] or not record["det_ok"]:
        record["fp_reason"] = "non_finite" if record["non_finite"] else "bad_lattice"
        return False
    images = record["num_atoms"] / record["volume"] * 4 / 3 * math.pi * crystalnn.SEARCH_CUTOFF**3
    if images > MAX_SPHERE_IMAGES:
        record.update(fp_reason="too_dense", fp_message=f"about {images:.3g} atom images within "
                      f"{crystalnn.SEARCH_CUTOFF} A of a site (limit {MAX_SPHERE_IMAGES})")
        return False
    return True


def _fingerprints(structure, record: dict, settings: RecordSettings, parts) -> None:
    """The structure and/or composition fingerprint, or fp_reason: a failure of either leaves both
    None and makes the crystal invalid (the reference scripts' rule)."""
    if not _fingerprint_gate(record):
        return
    try:
        if "comp_fp" in parts:
            record["comp_fp"] = magpie().featurize(structure.composition)
        if "struct_fp" in parts:
            with time_limit(settings.fingerprint_seconds):
                record["struct_fp"] = crystalnn.structure_fingerprint(structure, settings.shared_voronoi,
                                                                      settings.fast_order_params,
                                                                      settings.fast_voronoi)
    except StructureError:  # time_limit's; nothing on the fingerprint's path catches it
        record.update(comp_fp=None, struct_fp=None, fp_reason="fingerprint_timeout",
                      fp_message=f"CrystalNN took more than {settings.fingerprint_seconds:g} s")
    except Exception as exc:  # noqa: BLE001 - any featurizer failure makes the crystal invalid (CDVAE)
        record.update(comp_fp=None, struct_fp=None, fp_reason="fingerprint_error",
                      fp_message=f"{type(exc).__name__}: {exc}"[:300])


def add_parts(record: dict, structure, settings: RecordSettings = RecordSettings(), parts=PARTS) -> dict:
    """Compute the `parts` a record lacks (in place; returns it). The facts are always there."""
    missing = [p for p in PARTS if p in parts and p not in record["parts"]]
    if "comp_fp" in missing or "struct_fp" in missing:
        _fingerprints(structure, record, settings, missing)
    if "spacegroup" in missing and not record["non_finite"] and record["min_dist"] >= MIN_DISTANCE \
            and record["volume"] >= MIN_VOLUME:
        record["spacegroup"] = _spacegroup(structure, settings.symprec)
    record["parts"] = [p for p in PARTS if p in missing or p in record["parts"]]
    return record


def record_from_structure(structure, settings: RecordSettings = RecordSettings(), parts=PARTS) -> dict:
    """The facts of a structure (composition, SMACT, geometry) and the requested `parts`."""
    record = {"skey": structure_key(structure), "reason": None, "message": None, "parts": [],
              "struct_fp": None, "comp_fp": None, "fp_reason": None, "fp_message": None, "spacegroup": None}
    record.update(_composition_facts(structure))
    smact = smact_valid(tuple(record["symbols"]), tuple(record["counts"]))
    record.update(smact_valid=smact.valid, smact_combinations=smact.combinations, smact_reason=smact.reason)
    record.update(_geometry(structure))
    return add_parts(record, structure, settings, parts)


def has_parts(record: dict, parts) -> bool:
    """Does the record answer for `parts`? (A text that gives no structure answers for everything.)"""
    return record["reason"] is not None or set(parts) <= set(record.get("parts", ()))


def unusable(reason: str, message: str) -> dict:
    """The record of a text that gives no structure (not constructed in every profile)."""
    return {"skey": None, "reason": reason, "message": message, "parts": list(PARTS), "struct_fp": None,
            "comp_fp": None, "fp_reason": reason, "fp_message": None, "spacegroup": None}


def parse_usable(text: str, settings: RecordSettings = RecordSettings()):
    """CIF text -> Structure that the metrics can describe; StructureError otherwise."""
    from pymatgen.core import DummySpecies

    structure = parse_cif(text, settings.parse_seconds)
    if len(structure) == 0:
        raise StructureError("no_atoms", "the cell holds no atoms")
    if not structure.is_ordered:
        raise StructureError("disordered", "partially occupied sites (ordered crystals expected)")
    if any(isinstance(sp, DummySpecies) for sp in structure.composition):
        raise StructureError("unknown_element", "a species is not a chemical element")
    return structure


def record_from_cif(text: str, settings: RecordSettings = RecordSettings(), parts=PARTS) -> dict:
    """Never raises: a CIF that gives no structure is a record with a reason."""
    try:
        structure = parse_usable(text, settings)
    except StructureError as exc:
        return unusable(exc.reason, str(exc))
    try:
        return record_from_structure(structure, settings, parts)
    except Exception as exc:  # noqa: BLE001 - one odd structure must not stop an evaluation
        return unusable("record_error", f"{type(exc).__name__}: {exc}"[:300])
