"""Turn a dataset split into sampling targets.

A CSP target is a truth structure's composition and atom count. The truth's
space group and Wyckoff letters are computed here and kept aside; they are
given to a model only when its card requires them, and the run records that
oracle information was used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas import Conditioning, ModelCard, Oracle, Target, Task, WyckoffSite

DEFAULT_SYMPREC = 0.1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-]")


def target_id(material_id: str) -> str:
    """A file-name-safe target id derived from a dataset's material_id."""
    safe = _UNSAFE.sub("_", str(material_id)).strip(".") or "target"
    return safe[:200]


@dataclass(frozen=True)
class Truth:
    """What a CSP target is measured against; never shown to a model unless required."""

    target_id: str
    material_id: str
    formula: str
    space_group: int | None
    wyckoff: tuple[WyckoffSite, ...]


def truth_symmetry(structure, symprec: float = DEFAULT_SYMPREC) -> tuple[int | None, tuple[WyckoffSite, ...]]:
    """Space group and Wyckoff sites (conventional-cell multiplicities) at `symprec`."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        conventional = SpacegroupAnalyzer(structure, symprec=symprec).get_conventional_standard_structure()
        symmetrized = SpacegroupAnalyzer(conventional, symprec=symprec).get_symmetrized_structure()
    except Exception:  # noqa: BLE001 - spglib fails on some degenerate cells
        return None, ()
    sites = tuple(
        WyckoffSite(element=group[0].specie.symbol, letter=symbol[-1], multiplicity=int(symbol[:-1]))
        for group, symbol in zip(symmetrized.equivalent_sites, symmetrized.wyckoff_symbols, strict=True)
    )
    return symmetrized.spacegroup.int_number, sites


def csp_targets(frame, samples: int = 1, oracle: tuple[Oracle, ...] = (), symprec: float = DEFAULT_SYMPREC):
    """Targets and truths for every row of a split (`material_id`, `cif`)."""
    from .structures import parse_cif

    targets, truths = [], []
    seen: set[str] = set()
    for material_id, cif in zip(frame["material_id"], frame["cif"], strict=True):
        structure = parse_cif(cif, seconds=None)
        tid = target_id(material_id)
        if tid in seen:
            raise ValueError(f"two material_ids map to the target id {tid!r}")
        seen.add(tid)
        group, sites = truth_symmetry(structure, symprec) if oracle else (None, ())
        conditioning = None
        if oracle:
            if group is None:
                raise ValueError(f"{material_id}: no space group found at symprec={symprec}")
            conditioning = Conditioning(
                space_group=group if Oracle.space_group in oracle else None,
                wyckoff=list(sites) if Oracle.wyckoff in oracle else None,
            )
        composition = {el: int(n) for el, n in structure.composition.get_el_amt_dict().items()}
        formula = structure.composition.reduced_formula
        targets.append(Target(id=tid, formula=formula, composition=composition, samples=samples,
                              conditioning=conditioning))
        truths.append(Truth(tid, str(material_id), formula, group, sites))
    return targets, truths


def generate_targets(total: int, per_target: int) -> list[Target]:
    """Unconditional generation, cut into targets of `per_target` samples."""
    count = -(-total // per_target)
    return [Target(id=f"gen-{k:05d}", samples=min(per_target, total - k * per_target)) for k in range(count)]


def unsupported_reason(target: Target, card: ModelCard) -> str | None:
    """Why a model cannot serve a target (recorded, never silently dropped), or None."""
    limits = card.limits
    group = target.conditioning.space_group if target.conditioning else None
    if limits.space_groups is not None and group is not None and group not in limits.space_groups:
        return f"space group {group} is not among the model's {len(limits.space_groups)} groups"
    if target.composition:
        elements = len(target.composition)
        if limits.max_elements is not None and elements > limits.max_elements:
            return f"{elements} elements, the model handles at most {limits.max_elements}"
        if limits.min_elements is not None and elements < limits.min_elements:
            return f"{elements} elements, the model needs at least {limits.min_elements}"
        if limits.elements is not None:
            foreign = sorted(set(target.composition) - set(limits.elements))
            if foreign:
                return f"elements outside the model's vocabulary: {', '.join(foreign)}"
    if limits.max_atoms is not None and target.num_atoms is not None and target.num_atoms > limits.max_atoms:
        return f"{target.num_atoms} atoms, the model handles at most {limits.max_atoms}"
    return None


def oracle_for(card: ModelCard, task: Task) -> tuple[Oracle, ...]:
    """Oracle information this model gets for this task (CSP only: generate has no truth)."""
    return tuple(card.requires) if task == Task.csp else ()
