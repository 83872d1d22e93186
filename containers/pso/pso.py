"""Particle-swarm optimisation of a crystal structure, after CALYPSO (Wang, Lv, Zhu, Ma, PRB 82, 094116, 2010).

A particle is a relaxed structure of the target composition: its position is the
cell (a, b, c, alpha, beta, gamma of the Niggli-reduced cell) and the fractional
coordinates of its atoms. Each generation:

- the worst `reseed` fraction of the swarm is replaced by new random symmetric
  structures (PyXtal, as random_search draws them), as CALYPSO does with 40 %;
- every other particle moves: v <- w v + c1 r1 (pbest - x) + c2 r2 (gbest - x),
  x <- x + v, with w going from `inertia_start` to `inertia_end` over the search,
  r1, r2 uniform per component, and v clamped;
- the moved structure is relaxed (the same CHGNet relaxation as random_search);
  its personal best and the swarm's best are updated; a particle that relaxed
  into the swarm's best structure is re-drawn, keeping the swarm diverse.

Differences between two structures are taken after matching their atoms: the
translation that best superimposes them (anchored on the rarest species), then
an optimal one-to-one assignment per species under periodic boundaries. Two
identical structures, shifted or with their atoms listed in another order, are
at distance zero. This module is pure numpy/pymatgen: the potential, the random
generator and the budget come in as functions.
"""

import numpy as np

MIN_ANGLE, MAX_ANGLE = 45.0, 135.0
MIN_LENGTH = 1.0  # Angstrom


def cell_and_coords(structure):
    """(a, b, c, alpha, beta, gamma) and fractional coordinates sorted by species."""
    order = sorted(range(len(structure)), key=lambda i: structure[i].specie.symbol)
    species = [structure[i].specie.symbol for i in order]
    return np.array(structure.lattice.parameters, dtype=float), structure.frac_coords[order] % 1.0, species


def wrap(delta):
    """Fractional differences into [-0.5, 0.5): the minimum image."""
    return delta - np.round(delta)


def assign(reference, moving, species, lattice):
    """`moving` reordered so that each atom faces its partner in `reference` (same species, min total
    periodic distance, Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    out = np.empty_like(moving)
    species = np.asarray(species)
    for element in sorted(set(species)):
        idx = np.flatnonzero(species == element)
        delta = wrap(reference[idx][:, None, :] - moving[idx][None, :, :])
        cost = np.linalg.norm(delta @ lattice, axis=-1)
        rows, cols = linear_sum_assignment(cost)
        out[idx[rows]] = moving[idx[cols]]
    return out


def aligned(reference, moving, species, lattice):
    """`moving` translated and reordered onto `reference`; returns (coords, residual in Angstrom)."""
    species = np.asarray(species)
    counts = {el: int((species == el).sum()) for el in set(species)}
    rarest = min(sorted(counts), key=lambda el: counts[el])
    anchors = np.flatnonzero(species == rarest)
    best = None
    for i in anchors[:1]:  # one reference atom is enough: every candidate partner is tried
        for j in anchors:
            shifted = (moving + (reference[i] - moving[j])) % 1.0
            matched = assign(reference, shifted, species, lattice)
            residual = float(np.linalg.norm(wrap(matched - reference) @ lattice, axis=1).sum())
            if best is None or residual < best[1]:
                best = (matched, residual)
    return best


def difference(position, other):
    """other - position: (cell parameters, fractional coordinates), atoms matched; None when the two
    structures do not hold the same atoms."""
    cell, coords, species = position
    other_cell, other_coords, other_species = other
    if list(species) != list(other_species):
        return None
    from pymatgen.core import Lattice

    matched, _ = aligned(coords, other_coords, species, Lattice.from_parameters(*cell).matrix)
    return other_cell - cell, wrap(matched - coords)


def clamp(velocity, cell, limits):
    """Velocity bounded per component: lengths by a fraction of the cell, angles in degrees, coordinates."""
    cell_v, coord_v = velocity
    bound = np.concatenate([limits["length"] * cell[:3], np.full(3, limits["angle"])])
    return np.clip(cell_v, -bound, bound), np.clip(coord_v, -limits["coords"], limits["coords"])


def new_velocity(velocity, position, pbest, gbest, w, c1, c2, rng, limits):
    """w v + c1 r1 (pbest - x) + c2 r2 (gbest - x), r uniform per component, clamped."""
    cell_v, coord_v = velocity
    cell_v, coord_v = w * cell_v, w * coord_v
    for weight, best in ((c1, pbest), (c2, gbest)):
        delta = difference(position, best) if best is not None else None
        if delta is None:
            continue
        cell_v = cell_v + weight * rng.random(cell_v.shape) * delta[0]
        coord_v = coord_v + weight * rng.random(coord_v.shape) * delta[1]
    return clamp((cell_v, coord_v), position[0], limits)


def moved(position, velocity):
    """x + v: coordinates wrapped into the cell, angles and lengths kept in a sane range."""
    cell, coords, species = position
    new_cell = cell + velocity[0]
    new_cell[:3] = np.maximum(new_cell[:3], MIN_LENGTH)
    new_cell[3:] = np.clip(new_cell[3:], MIN_ANGLE, MAX_ANGLE)
    return new_cell, (coords + velocity[1]) % 1.0, species


def to_structure(position):
    from pymatgen.core import Lattice, Structure

    cell, coords, species = position
    return Structure(Lattice.from_parameters(*cell), species, coords)


def too_close(structure, factor):
    """Some atoms closer than `factor` x the sum of their covalent radii (or the cell is degenerate)."""
    from pymatgen.core.periodic_table import Element

    if not np.isfinite(structure.volume) or structure.volume < 1e-3 or len(structure) < 2:
        return len(structure) >= 2
    distances = structure.distance_matrix + np.eye(len(structure)) * 1e9
    radii = np.array([Element(site.specie.symbol).atomic_radius_calculated or 1.0 for site in structure])
    return bool((distances < factor * (radii[:, None] + radii[None, :])).any())


def zero_velocity(position):
    return np.zeros(6), np.zeros_like(position[1])


class Particle:
    def __init__(self, structure, energy):
        self.position = cell_and_coords(structure.get_reduced_structure())
        self.structure = structure
        self.energy = energy
        self.velocity = zero_velocity(self.position)
        self.best = (energy, self.position)

    def update(self, structure, energy):
        """The particle's new relaxed position; its velocity and personal best (if not beaten) stay."""
        self.position = cell_and_coords(structure.get_reduced_structure())
        self.structure = structure
        self.energy = energy
        if energy < self.best[0]:
            self.best = (energy, self.position)


class Swarm:
    """One PSO search. `draw()` gives a random structure, `relax(s)` returns (energy per atom, relaxed)
    or None when the budget is spent, `fraction()` how much of the search is done (0..1),
    `found(energy, structure)` records every relaxed structure."""

    def __init__(self, options, rng, draw, relax, fraction, found, same):
        self.options, self.rng = options, rng
        self.draw, self.relax, self.fraction, self.found, self.same = draw, relax, fraction, found, same
        self.particles = []
        self.generation = 0

    def inertia(self):
        start, end = float(self.options["inertia_start"]), float(self.options["inertia_end"])
        return start - (start - end) * min(1.0, max(0.0, self.fraction()))

    def best(self):
        return min(self.particles, key=lambda p: p.best[0]) if self.particles else None

    def _relaxed(self, structure):
        outcome = self.relax(structure)
        if outcome is not None and np.isfinite(outcome[0]):
            self.found(*outcome)
        return outcome

    def fresh(self):
        """A new random particle, relaxed (None when the budget is spent)."""
        outcome = self._relaxed(self.draw())
        return None if outcome is None else Particle(outcome[1], outcome[0])

    def initialise(self):
        while len(self.particles) < int(self.options["swarm_size"]):
            particle = self.fresh()
            if particle is None:
                return False
            self.particles.append(particle)
        return True

    def limits(self):
        return {"length": float(self.options["vmax_length"]), "angle": float(self.options["vmax_angle"]),
                "coords": float(self.options["vmax_coords"])}

    def candidate(self, particle, gbest):
        """The particle moved by its new velocity; the step is halved while atoms overlap (then None)."""
        w, c1, c2 = self.inertia(), float(self.options["c1"]), float(self.options["c2"])
        velocity = new_velocity(particle.velocity, particle.position, particle.best[1], gbest, w, c1, c2,
                                self.rng, self.limits())
        for _ in range(4):
            structure = to_structure(moved(particle.position, velocity))
            if not too_close(structure, float(self.options["min_distance_factor"])):
                particle.velocity = velocity
                return structure
            velocity = (velocity[0] / 2, velocity[1] / 2)
        return None

    def step(self):
        """One generation; False when the budget ran out during it."""
        self.generation += 1
        self.particles.sort(key=lambda p: p.energy)
        keep = len(self.particles) - int(round(float(self.options["reseed"]) * len(self.particles)))
        leader = self.best()
        gbest = leader.best[1]
        for i, particle in enumerate(list(self.particles)):
            if i >= keep:
                replacement = self.fresh()
                if replacement is None:
                    return False
                self.particles[i] = replacement
                continue
            structure = self.candidate(particle, gbest)
            outcome = self._relaxed(structure if structure is not None else self.draw())
            if outcome is None:
                return False
            particle.update(outcome[1], outcome[0])
            if particle is not leader and self.same(outcome[1], to_structure(gbest)):
                replacement = self.fresh()  # converged onto the swarm's best: keep the swarm exploring
                if replacement is None:
                    return False
                self.particles[i] = replacement
        return True

    def run(self, generations=None):
        if not self.initialise():
            return
        while generations is None or self.generation < generations:
            if not self.step():
                return
