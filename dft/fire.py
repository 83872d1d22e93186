"""FIRE over many structures at once, so that one potential call serves a whole batch.

Each structure sits in an ASE `FrechetCellFilter` (cell + positions) and keeps its own
FIRE state (Bitzek et al., PRL 97, 170201, 2006; the constants and the step-length cap
of ASE's `FIRE`). Per iteration, one call of `evaluate(atoms_list)` returns energies,
forces and stresses for every structure still moving; a structure that converged or
used its step budget leaves the batch, and one whose evaluation fails leaves it with
its error. With a batch of one, the trajectory is ASE's FIRE on the same filter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FireSettings:
    dt: float = 0.1
    maxstep: float = 0.2  # A: the whole step vector is capped at this length
    dtmax: float = 1.0
    n_min: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99


@dataclass
class _State:
    filt: object
    vel: np.ndarray | None = None
    dt: float = 0.1
    a: float = 0.1
    n_pos: int = 0


@dataclass
class Outcome:
    energies: list[float] = field(default_factory=list)  # total eV after each evaluation
    steps: int = 0
    converged: bool = False
    error: str | None = None


def fire_step(state: _State, gradient: np.ndarray, s: FireSettings) -> np.ndarray:
    """One FIRE update; `gradient` is the (generalised) force. Returns the displacement."""
    if state.vel is None:
        state.vel = np.zeros_like(gradient)
    else:
        vf = float(np.vdot(gradient, state.vel))
        if vf > 0.0:
            g2 = float(np.vdot(gradient, gradient))
            state.vel = (1.0 - state.a) * state.vel + state.a * gradient / math.sqrt(g2) * math.sqrt(
                float(np.vdot(state.vel, state.vel)))
            if state.n_pos > s.n_min:
                state.dt = min(state.dt * s.finc, s.dtmax)
                state.a *= s.fa
            state.n_pos += 1
        else:
            state.vel[:] = 0.0
            state.a = s.astart
            state.dt *= s.fdec
            state.n_pos = 0
    state.vel = state.vel + state.dt * gradient
    dr = state.dt * state.vel
    norm = math.sqrt(float(np.vdot(dr, dr)))
    return dr * (s.maxstep / norm) if norm > s.maxstep else dr


Evaluate = Callable[[list], list]  # atoms list -> [(energy eV, forces (n,3), stress voigt 6)] or exceptions


def _attach(atoms, energy: float, forces, stress) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=float(energy), free_energy=float(energy),
                                       forces=np.asarray(forces, dtype=float),
                                       stress=np.asarray(stress, dtype=float))


def relax_batch(atoms_list: Sequence, evaluate: Evaluate, fmax: float, max_steps: int,
                settings: FireSettings = FireSettings(), relax_cell: Sequence[bool] | None = None) -> list[Outcome]:
    """Relax every Atoms of `atoms_list` in place: cell and positions, or positions only where
    `relax_cell[i]` is False (the Atoms itself is then what FIRE moves)."""
    from ase.filters import FrechetCellFilter

    cells = relax_cell if relax_cell is not None else [True] * len(atoms_list)
    outcomes = [Outcome() for _ in atoms_list]
    states = {i: _State(FrechetCellFilter(a) if cell else a, dt=settings.dt, a=settings.astart)
              for i, (a, cell) in enumerate(zip(atoms_list, cells, strict=True))}
    while states:
        active = list(states)
        results = evaluate([atoms_list[i] for i in active])
        for i, result in zip(active, results, strict=True):
            outcome, state = outcomes[i], states[i]
            if isinstance(result, BaseException):
                from .records import short_error

                outcome.error = short_error(result)
                del states[i]
                continue
            energy, forces, stress = result
            if not (math.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
                outcome.error = "non-finite energy, forces or stress"
                del states[i]
                continue
            _attach(atoms_list[i], energy, forces, stress)
            outcome.energies.append(float(energy))
            gradient = state.filt.get_forces().ravel()
            if float((gradient.reshape(-1, 3) ** 2).sum(axis=1).max()) < fmax**2:
                outcome.converged = True
                del states[i]
            elif outcome.steps >= max_steps:
                del states[i]
            else:
                state.filt.set_positions(state.filt.get_positions() + fire_step(state, gradient, settings).reshape(-1, 3))
                outcome.steps += 1
    return outcomes
