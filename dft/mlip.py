"""Relax structures with a machine-learned potential (CHGNet by default).

Cell and positions relax together (FrechetCellFilter + FIRE, as Matbench Discovery
does), with a bounded number of steps, `batch_size` structures per potential call.
Every input gives one RelaxRecord: a structure that cannot be read or relaxed is a
failed record with its error. Only a systemic fault - nearly every structure failing -
stops the work, because a blanket per-structure catch must not hide a broken setup.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from orchestrator.errors import GencspError

from .records import FAILED, OK, RelaxRecord, relax_rmsd, short_error

# Beyond any element's energy in MP-compatible units (about -14 to 0 eV/atom): a potential that
# ends there has extrapolated (SevenNet took a one-atom fcc O cell to -5e17 eV), and such an
# energy must neither enter a hull nor count as stable.
MAX_ABS_EV_PER_ATOM = 50.0


class SystemicFailure(GencspError):
    """Too many structures failed in the same way: the setup, not the structures, is at fault."""


@dataclass(frozen=True)
class Item:
    """One structure to relax: its key in the run and the structure (pymatgen) or CIF text."""

    target_id: str
    sample_index: int
    structure: object
    relax_cell: bool = True  # False: positions only (a molecule in its box)


@dataclass(frozen=True)
class MLIPRelaxer:
    potential: str = "chgnet"
    model: str | None = None  # variant of the potential family (default: the family's default)
    weights: str | None = None  # local weights file (MACE, ORB, MatterSim)
    device: str = "cpu"
    fmax: float = 0.05  # eV/A on atoms and on the (Frechet) cell degrees of freedom
    max_steps: int = 500
    batch_size: int = 16
    max_failure_fraction: float = 0.9  # stop when more than this share of >= min_failures failed
    min_failures: int = 16

    @property
    def engine(self) -> str:
        return self.potential

    def settings(self) -> dict:
        return asdict(self)

    def options(self, threads: int | None = None):
        from .potentials import LoadOptions

        return LoadOptions(device=self.device, model=self.model, weights=self.weights, threads=threads)

    def load(self, threads: int | None = None):
        from .potentials import load

        return load(self.potential, self.options(threads))

    def identity(self) -> dict:
        from .potentials import identity

        return identity(self.potential, self.options())

    def relax(self, items: Iterable[Item], potential=None,
              progress: Callable[[int], None] | None = None) -> list[RelaxRecord]:
        """Relax every item, `batch_size` at a time; `progress(n)` after each batch."""
        from threadpoolctl import threadpool_limits

        potential = potential or self.load()
        items = list(items)
        records: list[RelaxRecord] = []
        # The cell filter's 3x3 linear algebra is far faster on one BLAS thread: idle OpenBLAS
        # threads spinning against other work made each solve ~70x slower on a shared 2-core node.
        with threadpool_limits(1, user_api="blas"):
            for start in range(0, len(items), self.batch_size):
                batch = items[start:start + self.batch_size]
                records += self.relax_batch(batch, potential)
                self._check_systemic(records)
                if progress:
                    progress(len(batch))
        return records

    def relax_batch(self, batch: list[Item], potential) -> list[RelaxRecord]:
        from pymatgen.io.ase import AseAtomsAdaptor

        from .fire import relax_batch

        started = time.perf_counter()
        records = [RelaxRecord(item.target_id, item.sample_index, self.engine) for item in batch]
        initial, atoms, slots = {}, [], []
        for i, item in enumerate(batch):
            try:
                structure = _as_structure(item.structure)
                records[i].formula = structure.composition.reduced_formula
                records[i].num_atoms = len(structure)
                initial[i] = structure
                atoms.append(AseAtomsAdaptor.get_atoms(structure))
                slots.append(i)
            except Exception as exc:  # noqa: BLE001 - recorded per structure
                records[i].error = short_error(exc)
        cells = [batch[i].relax_cell for i in slots]
        outcomes = relax_batch(atoms, potential.evaluate, self.fmax, self.max_steps, relax_cell=cells) if atoms else []
        for i, relaxed_atoms, outcome in zip(slots, atoms, outcomes, strict=True):
            _fill(records[i], initial[i], relaxed_atoms, outcome)
        share = (time.perf_counter() - started) / max(1, len(batch))
        for record in records:
            record.seconds = share  # wall time of the batch, shared evenly: structures relax together
        return records

    def _check_systemic(self, records: list[RelaxRecord]) -> None:
        errors = [r.error for r in records if r.status == FAILED]
        if len(errors) >= self.min_failures and len(errors) > self.max_failure_fraction * len(records):
            common, count = Counter(e.split(":")[0] for e in errors).most_common(1)[0]
            raise SystemicFailure(f"{len(errors)} of {len(records)} structures failed to relax with "
                                  f"{self.potential} ({count} x {common}); first error: {errors[0]}")


def _as_structure(value):
    from pymatgen.core import Structure

    from orchestrator.structures import read_structure

    return value if isinstance(value, Structure) else read_structure(value)


def _fill(record: RelaxRecord, initial, atoms, outcome) -> None:
    from pymatgen.io.ase import AseAtomsAdaptor

    from orchestrator.structures import cif_text

    n = len(atoms)
    if outcome.energies:
        record.e_initial = outcome.energies[0] / n
    if outcome.error:
        record.error, record.steps = outcome.error, outcome.steps
        return
    if not abs(outcome.energies[-1] / n) <= MAX_ABS_EV_PER_ATOM:
        record.error = (f"non-physical energy {outcome.energies[-1] / n:.4g} eV/atom after {outcome.steps} steps "
                        "(the potential extrapolated)")
        record.steps = outcome.steps
        return
    relaxed = AseAtomsAdaptor.get_structure(atoms.copy())  # the copy drops the single-point results
    record.status, record.steps, record.converged = OK, outcome.steps, outcome.converged
    record.energy = outcome.energies[-1]
    record.e_final = record.energy / n
    record.cif_relaxed = cif_text(relaxed)
    try:
        record.rmsd = relax_rmsd(initial, relaxed)
    except Exception as exc:  # noqa: BLE001 - the energy stands even if the matcher fails
        record.error = f"rmsd: {short_error(exc)}"
