"""METRe, polymorph-aware and de-duplicated match rates: pure functions of a cross-pair table.

The cross-pair table has one row per (generated row `gen`, reference row `ref`) that the
structure matcher compared, with `rms` (NaN: no match); generated rows are valid samples only.

METRe, "match everyone to reference" (Martirossyan et al., "All that structure matches does
not glitter", arXiv:2509.12178; their code: OMatG `omg/analysis/analysis.py::metre_rmsds`,
github.com/FERMat-ML/OMatG @ ed80cb8): a reference structure is found when ANY generated
structure matches it, whichever target (CSP) it was generated for; its RMS is the smallest
over those matches. METRe = found / all reference structures; the RMS mean is over found
ones; cRMSE averages over all of them with `stol` for each one not found.

Polymorph-aware CSP (gencsp): a target not matched by its own samples, whose samples match
another reference structure of the same reduced composition (a polymorph present in the
reference, not a duplicate of the target), counts as a polymorph match, apart from matches.
"""

from __future__ import annotations

import math


def best_per_reference(pairs, refs=None):
    """Smallest RMS per reference row over its matches (rows with none are absent)."""
    matched = pairs[pairs["rms"].notna()]
    if refs is not None:
        matched = matched[matched["ref"].isin(refs)]
    return matched.groupby("ref")["rms"].min()


def metre(pairs, n_refs: int, stol: float, refs=None) -> dict:
    """METRe, mean RMS over found references, cRMSE (unfound = stol) over `n_refs` references
    (restricted to the rows `refs` when given; then n_refs is their number)."""
    best = best_per_reference(pairs, refs)
    if not n_refs:
        return {"metre": math.nan, "rms_dist": math.nan, "crmse": math.nan}
    return {"metre": len(best) / n_refs, "rms_dist": float(best.mean()) if len(best) else math.nan,
            "crmse": float((best.sum() + stol * (n_refs - len(best))) / n_refs)}


def target_outcomes(pairs, owner, label=None):
    """Per reference row that has samples: `own_rms` (best match of its own samples, NaN if none) and
    `polymorph` (no own match, but a sample of it matches another reference row outside its duplicate
    group). `owner`: generated row -> reference row it was generated for; `label`: reference row ->
    duplicate group label (default: every row its own group). Pairs are within one composition."""
    import pandas as pd

    table = pairs.assign(target=pairs["gen"].map(owner))
    table = table[table["target"].notna() & table["rms"].notna()]
    table["target"] = table["target"].astype(int)
    same_group = (table["ref"] == table["target"]) if label is None else (
        table["ref"].map(label) == table["target"].map(label))
    own = table[table["ref"] == table["target"]].groupby("target")["rms"].min()
    other = set(table.loc[~same_group, "target"])
    targets = sorted(set(owner.values()))
    out = pd.DataFrame({"own_rms": [own.get(t, math.nan) for t in targets]}, index=targets)
    out["polymorph"] = [t in other and t not in own.index for t in targets]
    return out


def rates(outcomes, n_targets: int, stol: float) -> dict:
    """match_rate, rms_dist, crmse and polymorph_match_rate over `n_targets` (targets without any
    sample or match count as unmatched)."""
    if not n_targets:
        return dict.fromkeys(("match_rate", "rms_dist", "crmse", "polymorph_match_rate", "match_or_polymorph_rate"),
                             math.nan)
    own = outcomes["own_rms"].dropna()
    polymorph = int(outcomes["polymorph"].sum())
    return {"match_rate": len(own) / n_targets, "rms_dist": float(own.mean()) if len(own) else math.nan,
            "crmse": float((own.sum() + stol * (n_targets - len(own))) / n_targets),
            "polymorph_match_rate": polymorph / n_targets,
            "match_or_polymorph_rate": (len(own) + polymorph) / n_targets}
