"""random_search: PyXtal random symmetric crystals of the target composition."""

import functools
import math

import gencsp_helper as g

MODEL = {"name": "random_search", "upstream": {"repo": "https://github.com/MaterSim/PyXtal", "commit": "1.1.5"}}


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


def random_structure(target, rng, options):
    from pyxtal import pyxtal

    species = sorted(target["composition"])
    counts = tuple(int(target["composition"][el]) for el in species)
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


@functools.lru_cache(maxsize=1)
def relaxer(device):
    from chgnet.model import StructOptimizer

    return StructOptimizer(use_device=device)


def relaxed_energy(structure, options, device):
    result = relaxer(device).relax(structure, fmax=float(options["fmax"]), steps=int(options["relax_steps"]),
                                   verbose=False)
    final = result["final_structure"]
    return result["trajectory"].energies[-1] / len(final), final


def best_of_trials(target, rng, options, device):
    best = None
    for _ in range(int(options["trials"])):
        candidate = random_structure(target, rng, options)
        if not options.get("relax"):
            return candidate
        energy, relaxed = relaxed_energy(candidate, options, device)
        if math.isfinite(energy) and (best is None or energy < best[0]):
            best = (energy, relaxed)
    if best is None:
        raise RuntimeError("every relaxed trial gave a non-finite energy")
    return best[1]


def sample(session):
    import numpy as np
    from pymatgen.io.cif import CifWriter

    if session.task != "csp":
        raise g.ContractError("random_search only does csp")
    for target, index in session.requested():
        with session.slot(target, index) as slot:
            rng = np.random.default_rng(session.seed_for(target, index))
            structure = best_of_trials(target, rng, session.options, session.device)
            slot.cif(str(CifWriter(structure)))


if __name__ == "__main__":
    # Options arrive complete: the orchestrator merges model.yaml's default_options into the request.
    g.main(sample, model=MODEL)
