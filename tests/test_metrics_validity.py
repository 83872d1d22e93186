"""SMACT composition validity and the structure rules, against the reference algorithm and by hand."""

import itertools
import math
import random

import numpy as np
import pandas as pd
import pytest
import smact

from orchestrator.metrics.context import record_frame, validity_frame
from orchestrator.metrics.fingerprints import PARTS
from orchestrator.metrics.validity import (
    composition_valid,
    neutral_possible,
    pauling_pass,
    smact_valid,
    structure_valid,
)


def brute_force(symbols, counts):
    """The reference scripts' enumeration, written independently: every combination of states,
    charge balance with the gcd-reduced counts, then smact 2.x's Pauling test (TypeError = pass)."""
    counts = [c // math.gcd(*counts) for c in counts]
    if len(set(symbols)) == 1 or all(s in smact.metals for s in symbols):
        return True
    elements = [smact.Element(s) for s in symbols]
    states = [e.oxidation_states for e in elements]
    if any(s is None for s in states):
        return False
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*states):
        if sum(o * c for o, c in zip(ox, counts, strict=True)) != 0:
            continue
        try:
            ok = True
            for (o1, e1), (o2, e2) in itertools.combinations(zip(ox, enegs, strict=True), 2):
                if (o1 > 0 and o2 < 0 and e1 >= e2) or (o1 < 0 and o2 > 0 and e1 <= e2):
                    ok = False
                    break
        except TypeError:
            ok = True
        if ok:
            return True
    return False


@pytest.mark.parametrize(("symbols", "counts", "valid"), [
    (("Na", "Cl"), (1, 1), True),
    (("Na", "Cl"), (1, 2), False),  # +1 and two Cl: only Cl(+1)/Cl(-1) mixes would balance, not allowed
    (("O", "Fe"), (3, 2), True),
    (("Cu", "Zn"), (1, 1), True),  # all metals: an alloy
    (("Si",), (8,), True),  # one element
    (("He", "F"), (1, 2), False),  # He has no oxidation states in SMACT
    (("Na", "Cl"), (4, 4), True),  # counts reduced by their gcd
])
def test_smact_hand_cases(symbols, counts, valid):
    order = sorted(range(len(symbols)), key=lambda i: smact.Element(symbols[i]).number)
    result = smact_valid(tuple(symbols[i] for i in order), tuple(counts[i] for i in order))
    assert result.valid is valid
    assert result.valid == brute_force([symbols[i] for i in order], [counts[i] for i in order])


def test_smact_equals_enumeration_on_random_compositions():
    """The sign-pattern + subset-sum decision gives the enumeration's answer (with missing
    electronegativities, amphoteric elements and up to four elements)."""
    rng = random.Random(0)
    pool = ["H", "Li", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ti", "Fe", "Cu",
            "Se", "Br", "Sn", "Sb", "Te", "I", "Xe", "Ba", "La", "Pb", "Bi", "Ar", "Kr", "Au"]
    disagreements = []
    for _ in range(400):
        symbols = sorted(rng.sample(pool, rng.randint(2, 4)), key=lambda s: smact.Element(s).number)
        counts = tuple(rng.randint(1, 6) for _ in symbols)
        if smact_valid(tuple(symbols), counts).valid != brute_force(symbols, counts):
            disagreements.append((symbols, counts))
    assert disagreements == []


def test_pauling_rule_of_the_reference_scripts():
    assert pauling_pass((1, -1), (0.9, 3.2)) is True  # cation less electronegative: fine
    assert pauling_pass((1, -1), (3.2, 0.9)) is False
    assert pauling_pass((-1, 1), (3.2, 0.9)) is True
    assert pauling_pass((1, -1), (None, 3.0)) is True  # a missing value on a cation/anion pair passes
    assert pauling_pass((1, 1, -1), (2.0, None, 1.0)) is False  # ...unless an earlier pair fails first
    assert pauling_pass((1, -1, 1), (2.0, 1.0, None)) is False


def test_neutral_possible_is_subset_sum():
    assert neutral_possible((1, 1), [(1,), (-1,)])
    assert not neutral_possible((1, 2), [(1,), (-1,)])
    assert neutral_possible((2, 3), [(3, 2), (-2,)])  # 2*3 - 3*2


def test_diffcsp_gives_up_above_1e7_combinations():
    assert composition_valid(True, 2e7, "cdvae") is True
    assert composition_valid(True, 2e7, "diffcsp") is False
    assert composition_valid(True, 1e7, "diffcsp") is True
    assert composition_valid(False, 10, "gencsp") is False


def test_structure_rules():
    assert structure_valid(True, 0.6, 10.0)
    assert not structure_valid(True, 0.49, 10.0)
    assert not structure_valid(True, 1.0, 0.09)
    assert not structure_valid(False, 1.0, 10.0)
    assert structure_valid(True, math.inf, 10.0)  # one site: no pair
    assert structure_valid(True, math.nan, math.nan)  # the reference's comparisons with NaN are False


def record(**values):
    base = {"skey": "k", "reason": None, "non_finite": False, "det_ok": True, "volume": 40.0, "min_dist": 2.0,
            "smact_valid": True, "smact_combinations": 10.0, "fp_reason": None, "parts": PARTS}
    return {**base, **values}


def test_profiles_differ_only_where_the_reference_scripts_differ():
    frame = record_frame([
        record(),
        record(non_finite=True, volume=np.nan, min_dist=np.nan, fp_reason="non_finite"),
        record(smact_combinations=5e7),
        record(volume=0.05),
        record(min_dist=0.3),
        record(fp_reason="fingerprint_error"),
        {"reason": "parse_error", "fp_reason": "parse_error"},
        record(parts=()),  # facts valid, fingerprint never asked for: unknown
        record(parts=(), min_dist=0.3),  # facts invalid: invalid whatever the fingerprint
    ])
    cdvae, diffcsp, gencsp = (validity_frame(frame, m) for m in ("cdvae", "diffcsp", "gencsp"))
    # a NaN lattice: "constructed" and structurally valid in CDVAE (quirk), not elsewhere; never valid
    assert cdvae.loc[1, "constructed"] and cdvae.loc[1, "struct_valid"] and not cdvae.loc[1, "valid"]
    assert not diffcsp.loc[1, "constructed"] and not gencsp.loc[1, "struct_valid"]
    assert cdvae.loc[2, "comp_valid"] and not diffcsp.loc[2, "comp_valid"] and gencsp.loc[2, "comp_valid"]
    for table in (cdvae, diffcsp, gencsp):
        assert table["valid"].tolist() == [True, False, table is not diffcsp, False, False, False, False, pd.NA,
                                           False]
        assert not table.loc[3, "constructed"] and not table.loc[4, "struct_valid"]
        assert not table.loc[6, "comp_valid"] and not table.loc[6, "constructed"]
