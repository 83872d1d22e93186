"""Coverage (COV-R/P), AMSD, AMCD, and paired coverage, over fingerprint arrays.

Definitions in metrics.md §1 and §3. Distances are Euclidean (scipy `cdist`),
computed in blocks of generated rows so that 10,000 x 10,000 pairs never sit in
memory at once; every distance is the same number `cdist` gives on the whole
matrix, so the minima are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

# (structure, composition) cut-offs by dataset kind, from the reference scripts
CUTOFFS = {"mp20": (0.4, 10.0), "carbon": (0.2, 4.0), "perovskite": (0.2, 4.0)}
BLOCK = 2048


@dataclass(frozen=True)
class NearestDistances:
    """Per generated crystal: distance to the nearest reference (precision side);
    per reference crystal: distance to the nearest generated (recall side); and
    whether ONE partner lies within both cut-offs (paired coverage)."""

    struct_precision: object  # (n_gen,)
    comp_precision: object
    struct_recall: object  # (n_ref,)
    comp_recall: object
    paired_precision: object  # (n_gen,) bool
    paired_recall: object  # (n_ref,) bool


def nearest(gen_struct, gen_comp, ref_struct, ref_comp, cut_struct: float, cut_comp: float) -> NearestDistances:
    import numpy as np
    from scipy.spatial.distance import cdist

    n_gen, n_ref = len(gen_struct), len(ref_struct)
    if n_gen == 0 or n_ref == 0:
        empty = np.zeros(0)
        full = np.full(n_ref, np.inf)
        return NearestDistances(empty, empty, full, full.copy(), np.zeros(0, bool), np.zeros(n_ref, bool))
    sp, cp, pp = np.empty(n_gen), np.empty(n_gen), np.zeros(n_gen, bool)
    sr, cr, pr = np.full(n_ref, np.inf), np.full(n_ref, np.inf), np.zeros(n_ref, bool)
    for start in range(0, n_gen, BLOCK):
        block = slice(start, start + BLOCK)
        d_s = cdist(gen_struct[block], ref_struct)
        d_c = cdist(gen_comp[block], ref_comp)
        sp[block], cp[block] = d_s.min(axis=1), d_c.min(axis=1)
        np.minimum(sr, d_s.min(axis=0), out=sr)
        np.minimum(cr, d_c.min(axis=0), out=cr)
        both = (d_s <= cut_struct) & (d_c <= cut_comp)
        pp[block] = both.any(axis=1)
        pr |= both.any(axis=0)
    return NearestDistances(sp, cp, sr, cr, pp, pr)


def cdvae_coverage(d: NearestDistances, cut_struct: float, cut_comp: float, n_generated: int) -> dict:
    """CDVAE's numbers: the two minima taken independently; COV-P over ALL generated crystals
    (`n_generated`, counted before dropping the ones without fingerprints)."""
    import numpy as np

    recall = (d.struct_recall <= cut_struct) & (d.comp_recall <= cut_comp)
    precision = (d.struct_precision <= cut_struct) & (d.comp_precision <= cut_comp)
    return {
        "cov_recall": float(np.mean(recall)) if len(recall) else float("nan"),
        "cov_precision": float(np.sum(precision) / n_generated) if n_generated else float("nan"),
        "amsd_recall": _mean(d.struct_recall),
        "amsd_precision": _mean(d.struct_precision),
        "amcd_recall": _mean(d.comp_recall),
        "amcd_precision": _mean(d.comp_precision),
    }


def paired_coverage(d: NearestDistances, n_generated: int) -> dict:
    """matbench-genmetrics semantics: one partner within both cut-offs."""
    import numpy as np

    return {
        "cov_recall_paired": float(np.mean(d.paired_recall)) if len(d.paired_recall) else float("nan"),
        "cov_precision_paired": float(np.sum(d.paired_precision) / n_generated) if n_generated else float("nan"),
    }


def _mean(values) -> float:
    import numpy as np

    return float(np.mean(values)) if len(values) else float("nan")
