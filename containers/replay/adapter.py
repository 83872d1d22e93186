"""replay: structures drawn from a dataset split, the calibration ceiling of the metrics."""

import csv
import random
import sys

import gencsp_helper as g

MODEL = {"name": "replay"}
csv.field_size_limit(sys.maxsize)


def read_split(path):
    """(material_id, cif, formula or None) rows of a CDVAE-style CSV."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["material_id"], row["cif"], row.get("formula") or row.get("pretty_formula") or None)
                for row in csv.DictReader(handle)]


def reduced_formula(cif):
    from pymatgen.core import Structure

    structure = Structure.from_str(cif, fmt="cif")
    return structure.composition.reduced_formula, len(structure), structure


def generate(session, rows):
    """Uniform draws with replacement, seeded per sample so that sharding cannot change them."""
    for target, index in session.requested():
        with session.slot(target, index) as slot:
            rng = random.Random(session.seed_for(target, index))
            slot.cif(rows[rng.randrange(len(rows))][1])


class FormulaIndex:
    """The split's rows by reduced formula, built once: each CIF is parsed at most once.

    With a formula column (perov_5, mp_20) only the rows of a requested formula are parsed;
    without one (carbon_24) every row is parsed once, on the first lookup.
    """

    def __init__(self, rows):
        self.rows = rows
        self.by_formula = None
        self.structures = {}

    def _build(self):
        from pymatgen.core import Composition

        self.by_formula = {}
        for k, (_, _, formula) in enumerate(self.rows):
            try:
                key = Composition(formula).reduced_formula if formula else self._parse(k)[0]
            except Exception:  # an unreadable row of the split is simply not a candidate
                continue
            self.by_formula.setdefault(key, []).append(k)

    def _parse(self, k):
        if k not in self.structures:
            self.structures[k] = reduced_formula(self.rows[k][1])
        return self.structures[k]

    def candidates(self, formula):
        """(material_id, atoms in the cell, structure) of the rows with this reduced formula."""
        if self.by_formula is None:
            self._build()
        pool = []
        for k in self.by_formula.get(formula, ()):
            try:
                found, count, structure = self._parse(k)
            except Exception:
                continue
            if found == formula:
                pool.append((self.rows[k][0], count, structure))
        return pool


def csp(session, rows):
    from pymatgen.io.cif import CifWriter

    index = FormulaIndex(rows)
    by_formula = {}
    for target, sample_index in session.requested():
        with session.slot(target, sample_index) as slot:
            formula = target["formula"]
            if formula not in by_formula:
                by_formula[formula] = index.candidates(formula)
            fitting = [c for c in by_formula[formula] if target["num_atoms"] % c[1] == 0]
            if not fitting:
                raise LookupError("no structure of {} with a cell dividing {} atoms in the split".format(
                    formula, target["num_atoms"]))
            rng = random.Random(session.seed_for(target, sample_index))
            _, count, structure = fitting[rng.randrange(len(fitting))]
            factor = target["num_atoms"] // count
            if factor > 1:
                structure = structure.copy()
                structure.make_supercell([factor, 1, 1])
            slot.cif(str(CifWriter(structure)))


def sample(session):
    rows = read_split(session.data_path(session.options["source_split"]))
    if not rows:
        raise ValueError("the source split is empty")
    if session.task == "generate":
        generate(session, rows)
    else:
        csp(session, rows)


if __name__ == "__main__":
    g.main(sample, model=MODEL)
