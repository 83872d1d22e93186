"""What the search baselines share, so that only the search differs between them.

random_search, evolutionary and pso draw random symmetric structures the same way
(PyXtal), relax them with the same potential (CHGNet through its StructOptimizer:
FIRE on a FrechetCellFilter, weights from its wheel), count every energy/force
call, and answer a target with the k lowest-energy distinct structures of its
search. Needs numpy, pymatgen and pyxtal (chgnet and torch for relaxations),
never the orchestrator.
"""

import functools
import math
import os


def one_thread():
    """One compute thread per process: on a shared machine spinning OpenMP threads burn CPU for nothing
    (CHGNet on a 5-atom cell: 0.07 CPU s per call on one thread, 1 s on two under load)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    import torch

    torch.set_num_threads(1)


# --- random symmetric structures (PyXtal) ---------------------------------------------------------


@functools.cache
def compatible_groups(counts, allowed=None):
    """Space groups that can hold `counts` atoms per element in a primitive cell."""
    from pyxtal.symmetry import Group

    groups = []
    for number in allowed or range(1, 231):
        group = Group(number)
        if group.check_compatible([n * group.cellsize() for n in counts])[0]:
            groups.append(number)
    return tuple(groups)


def draw_group(rng, groups, weights):
    if not weights:
        return int(groups[rng.integers(len(groups))])
    w = [float(weights.get(str(n), weights.get(n, 0.0))) for n in groups]
    total = sum(w)
    if total <= 0:
        raise ValueError("sg_weights give zero weight to every compatible space group")
    return int(rng.choice(groups, p=[x / total for x in w]))


def primitive(structure, num_atoms):
    """PyXtal writes the conventional cell; CSP targets count atoms in the primitive one."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if len(structure) == num_atoms:
        return structure
    reduced = SpacegroupAnalyzer(structure, symprec=1e-3).get_primitive_standard_structure()
    return reduced if len(reduced) == num_atoms else structure


def species_counts(target):
    species = sorted(target["composition"])
    return species, tuple(int(target["composition"][el]) for el in species)


def random_structure(target, rng, options):
    """A random structure of the target's composition in a random compatible space group."""
    from pyxtal import pyxtal

    species, counts = species_counts(target)
    allowed = tuple(options["space_groups"]) if options.get("space_groups") else None
    groups = compatible_groups(counts, allowed)
    if not groups:
        raise ValueError("no space group is compatible with {}".format(target["composition"]))
    last = None
    for _ in range(int(options["max_attempts"])):
        group = draw_group(rng, groups, options.get("sg_weights"))
        crystal = pyxtal()
        try:
            crystal.from_random(3, group, species, list(counts), factor=float(options["volume_factor"]),
                                conventional=False, random_state=rng)
        except Exception as exc:  # pyxtal gives up on crowded groups: draw again
            last = exc
            continue
        if crystal.valid:
            return primitive(crystal.to_pymatgen(), sum(counts))
    raise RuntimeError("no valid structure after {} attempts: {}".format(options["max_attempts"], last))


# --- relaxation with counted evaluations ----------------------------------------------------------


class Potential:
    """CHGNet (weights in its wheel) with every energy/force call counted on the current meter."""

    def __init__(self, device="cpu"):
        from chgnet.model import StructOptimizer

        self.optimizer = StructOptimizer(use_device=device)
        self.meter = None
        calculate = self.optimizer.calculator.calculate

        def counted(*args, **kwargs):
            if self.meter is not None:
                self.meter.count()
            return calculate(*args, **kwargs)

        self.optimizer.calculator.calculate = counted

    @property
    def calculator(self):
        """The ASE calculator, counted (for libraries that relax with their own ASE optimizer)."""
        return self.optimizer.calculator

    def relax(self, structure, options):
        """(energy per atom, relaxed structure); the steps stop at the meter's evaluation budget."""
        steps = relax_steps(self.meter, int(options["relax_steps"]))
        with self.meter.timing("relax"):
            result = self.optimizer.relax(structure, fmax=float(options["fmax"]), steps=steps, verbose=False)
        final = result["final_structure"]
        return result["trajectory"].energies[-1] / len(final), final


def relax_steps(meter, steps):
    """Optimizer steps allowed: a run of N steps makes N + 1 energy/force calls."""
    remaining = meter.remaining_evaluations() if meter is not None else None
    return steps if remaining is None else max(0, min(steps, remaining - 1))


def can_relax(meter):
    """True while the budget allows a relaxation (at least one step beyond the first call)."""
    return not meter.exhausted() and relax_steps(meter, 1) >= 1


@functools.lru_cache(maxsize=2)
def potential(device):
    return Potential(device)


# --- the k best distinct structures of a search ----------------------------------------------------


class Found:
    """Every structure a search relaxed, with its energy and the search's cost when it was found."""

    def __init__(self):
        self.items = []  # (energy per atom, structure, progress)

    def add(self, energy, structure, progress):
        if math.isfinite(energy):
            self.items.append((float(energy), structure, progress))

    def __len__(self):
        return len(self.items)

    def best(self):
        return min(self.items, key=lambda item: item[0]) if self.items else None

    def distinct(self, k, matcher=None):
        """The k lowest-energy distinct structures, each with the earliest progress at which it (or a
        duplicate of it) was found."""
        from pymatgen.analysis.structure_matcher import StructureMatcher

        matcher = matcher or StructureMatcher()
        kept = []  # [energy, structure, progress]
        for energy, structure, progress in sorted(self.items, key=lambda item: item[0]):
            twin = next((entry for entry in kept if matcher.fit(entry[1], structure)), None)
            if twin is None:
                if len(kept) < k:
                    kept.append([energy, structure, progress])
            elif progress["energy_evaluations"] < twin[2]["energy_evaluations"]:
                twin[2] = progress
        return [(structure, progress) for _, structure, progress in kept]


def cif_text(structure):
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(structure))


def answer(search, found, k):
    """Give the session's search the k best distinct structures found, as CIF texts, best first."""
    search.found = [(cif_text(structure), progress) for structure, progress in found.distinct(k)]
