"""The moves of the particle-swarm baseline (containers/pso/pso.py), without a potential."""

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "containers" / "pso"))
import pso  # noqa: E402


def perovskite(a=3.9):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


def distorted(seed=0):
    structure = perovskite()
    structure.perturb(0.3, min_distance=0.1)
    structure.apply_strain(np.random.default_rng(seed).uniform(-0.05, 0.05, 3))
    return structure


class Ones:
    """A generator whose random numbers are all one: r1 = r2 = 1 in the velocity update."""

    def random(self, shape):
        return np.ones(shape)


WIDE = {"length": 10.0, "angle": 180.0, "coords": 1.0}


def test_a_shifted_and_reordered_copy_is_at_distance_zero():
    structure = distorted()
    copy = structure.copy()
    copy.translate_sites(range(len(copy)), [0.31, -0.12, 0.47])
    copy = copy.copy(site_properties=None)
    copy = type(copy).from_sites(list(reversed(copy.sites)))
    cell, coords = pso.difference(pso.cell_and_coords(structure), pso.cell_and_coords(copy))
    assert np.allclose(cell, 0) and np.allclose(coords, 0, atol=1e-9)


def test_structures_of_other_compositions_have_no_difference():
    from pymatgen.core import Lattice, Structure

    other = Structure(Lattice.cubic(3.9), ["Ba", "Ti", "O", "O", "O"], perovskite().frac_coords)
    assert pso.difference(pso.cell_and_coords(perovskite()), pso.cell_and_coords(other)) is None


def test_minimum_image_wraps_differences():
    assert np.allclose(pso.wrap(np.array([0.9, -0.9, 0.4, 0.6])), [-0.1, 0.1, 0.4, -0.4])


def test_a_full_social_step_lands_on_the_swarm_best():
    """w = 0, c1 = 0, c2 = 1, r2 = 1: x + v = gbest (up to the translation and the order of atoms)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    position, best = pso.cell_and_coords(distorted(1)), pso.cell_and_coords(distorted(2))
    velocity = pso.new_velocity(pso.zero_velocity(position), position, None, best, 0.0, 0.0, 1.0, Ones(), WIDE)
    landed = pso.moved(position, velocity)
    assert np.allclose(landed[0], best[0])
    assert StructureMatcher(stol=0.01, ltol=0.001, angle_tol=0.1).fit(pso.to_structure(landed), pso.to_structure(best))


def test_inertia_keeps_the_velocity_and_the_cognitive_term_pulls_towards_the_personal_best():
    position, pbest = pso.cell_and_coords(distorted(3)), pso.cell_and_coords(distorted(4))
    old = (np.full(6, 0.01), np.full((5, 3), 0.01))
    kept = pso.new_velocity(old, position, None, None, 0.5, 2.0, 2.0, Ones(), WIDE)
    assert np.allclose(kept[0], 0.005) and np.allclose(kept[1], 0.005)
    pulled = pso.new_velocity(pso.zero_velocity(position), position, pbest, None, 0.0, 0.5, 0.0, Ones(), WIDE)
    delta = pso.difference(position, pbest)
    assert np.allclose(pulled[0], 0.5 * delta[0]) and np.allclose(pulled[1], 0.5 * delta[1])


def test_velocities_are_clamped_and_moves_stay_in_a_sane_cell():
    position = pso.cell_and_coords(perovskite())
    limits = {"length": 0.1, "angle": 10.0, "coords": 0.2}
    cell_v, coord_v = pso.clamp((np.array([5.0, -5.0, 0.1, 90.0, -90.0, 1.0]), np.full((5, 3), 3.0)),
                                position[0], limits)
    assert np.allclose(cell_v, [0.39, -0.39, 0.1, 10.0, -10.0, 1.0]) and np.allclose(coord_v, 0.2)
    cell, coords, species = pso.moved(position, (np.array([-10.0, 0, 0, 80.0, -80.0, 0]), np.full((5, 3), 0.7)))
    assert cell[0] == pso.MIN_LENGTH and cell[3] == pso.MAX_ANGLE and cell[4] == pso.MIN_ANGLE
    assert ((coords >= 0) & (coords < 1)).all() and species == position[2]


def test_overlapping_atoms_are_detected():
    assert not pso.too_close(perovskite(), 0.5)
    assert pso.too_close(perovskite(1.2), 0.5)


def fake_search(limit, options):
    """A swarm on a toy landscape: energy = volume per atom; relax returns the structure unchanged."""
    rng = np.random.default_rng(0)
    calls, found = [], []

    def draw():
        return perovskite(rng.uniform(3.5, 4.5))

    def relax(structure):
        if len(calls) >= limit:
            return None
        calls.append(structure)
        return structure.volume / len(structure), structure

    swarm = pso.Swarm(options, rng, draw, relax, lambda: len(calls) / limit,
                      lambda energy, structure: found.append(energy), lambda a, b: False)
    return swarm, calls, found


OPTIONS = {"swarm_size": 5, "reseed": 0.4, "inertia_start": 0.9, "inertia_end": 0.4, "c1": 2.0, "c2": 2.0,
           "vmax_length": 0.1, "vmax_angle": 10.0, "vmax_coords": 0.2, "min_distance_factor": 0.5}


def test_a_generation_reseeds_the_worst_and_moves_the_rest():
    swarm, calls, found = fake_search(1000, OPTIONS)
    swarm.run(generations=2)
    assert len(calls) == len(found) == 5 * 3 and swarm.generation == 2
    energies = [p.best[0] for p in swarm.particles]
    assert min(energies) == min(found)  # the swarm's best is the best ever relaxed
    assert swarm.inertia() < OPTIONS["inertia_start"]


def test_the_swarm_stops_when_the_budget_is_spent():
    swarm, calls, found = fake_search(7, OPTIONS)
    swarm.run()
    assert len(calls) == len(found) == 7


@pytest.mark.parametrize("fraction, expected", [(0.0, 0.9), (0.5, 0.65), (2.0, 0.4)])
def test_inertia_goes_down_with_the_search(fraction, expected):
    swarm = pso.Swarm(OPTIONS, None, None, None, lambda: fraction, None, None)
    assert swarm.inertia() == pytest.approx(expected)
