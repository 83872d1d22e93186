"""replay: structures drawn from a dataset split, the calibration ceiling of the metrics."""

import csv
import random
import sys

import gencsp_helper as g

MODEL = {"name": "replay"}
csv.field_size_limit(sys.maxsize)


def read_split(path):
    """(material_id, cif) rows of a CDVAE-style CSV."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["material_id"], row["cif"]) for row in csv.DictReader(handle)]


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


def same_formula(rows, formula):
    pool = []
    for material_id, cif in rows:
        try:
            found, count, structure = reduced_formula(cif)
        except Exception:  # an unreadable row of the split is simply not a candidate
            continue
        if found == formula:
            pool.append((material_id, count, structure))
    return pool


def csp(session, rows):
    from pymatgen.io.cif import CifWriter

    by_formula = {}
    for target, index in session.requested():
        with session.slot(target, index) as slot:
            formula = target["formula"]
            if formula not in by_formula:
                by_formula[formula] = same_formula(rows, formula)
            fitting = [c for c in by_formula[formula] if target["num_atoms"] % c[1] == 0]
            if not fitting:
                raise LookupError("no structure of {} with a cell dividing {} atoms in the split".format(
                    formula, target["num_atoms"]))
            rng = random.Random(session.seed_for(target, index))
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
