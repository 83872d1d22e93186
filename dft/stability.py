"""Stability metrics: pure functions over one table with a row per requested sample.

The table is the run's `structures.parquet` (every requested sample: accepted,
rejected, failed, unsupported) joined on (target_id, sample_index) with the
relaxation/hull table of `gencsp relax` (`relax/<engine>/stability.parquet`) and, for
S.U.N. and the energy ranking, with the metrics engine's `unique`, `novel` and
`matched` columns. A sample without an energy above hull (rejected, failed, not
relaxed, no reference) counts as not stable: rates are over ALL requested samples.

Each function returns a flat dict whose keys name the quantity and whose
`*_threshold_ev_per_atom` entries name the thresholds used, so that a reported number
never travels without its definition.
"""

from __future__ import annotations

import math

STABLE_EV = 0.0  # e_above_hull <= 0.0 eV/atom
METASTABLE_EV = 0.1  # e_above_hull <= 0.1 eV/atom
KEY = ["target_id", "sample_index"]


def _require(frame, columns) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"stability metrics need column(s) {', '.join(missing)}; have {', '.join(frame.columns)}")


def _below(frame, threshold: float, column: str):
    values = frame[column].astype(float)
    return values.le(threshold) & values.notna()


def _flag(frame, column: str):
    """True only where the column says True (missing means no)."""
    return frame[column].astype("boolean").fillna(False).astype(bool)


def _rate(mask, total: int) -> float:
    return float(mask.sum()) / total if total else math.nan


def stability_rates(frame, column: str = "e_above_hull", stable: float = STABLE_EV,
                    metastable: float = METASTABLE_EV) -> dict:
    """Shares of all requested samples that are stable / metastable."""
    _require(frame, [column])
    n = len(frame)
    return {"stable_rate": _rate(_below(frame, stable, column), n),
            "metastable_rate": _rate(_below(frame, metastable, column), n),
            "stable_count": int(_below(frame, stable, column).sum()),
            "metastable_count": int(_below(frame, metastable, column).sum()),
            "with_energy_count": int(frame[column].notna().sum()), "samples": n,
            "stable_threshold_ev_per_atom": stable, "metastable_threshold_ev_per_atom": metastable}


def sun_rates(frame, column: str = "e_above_hull", unique: str = "unique", novel: str = "novel",
              stable: float = STABLE_EV, metastable: float = METASTABLE_EV) -> dict:
    """S.U.N. (stable, unique, novel) and MetaSUN (metastable, unique, novel) over all requested samples."""
    _require(frame, [column, unique, novel])
    n = len(frame)
    un = _flag(frame, unique) & _flag(frame, novel)
    sun = un & _below(frame, stable, column)
    msun = un & _below(frame, metastable, column)
    return {"sun_rate": _rate(sun, n), "msun_rate": _rate(msun, n), "sun_count": int(sun.sum()),
            "msun_count": int(msun.sum()), "samples": n, "stable_threshold_ev_per_atom": stable,
            "metastable_threshold_ev_per_atom": metastable}


def relaxation_rmsd(frame, column: str = "rmsd") -> dict:
    """How far relaxation moved the structures it could match (StructureMatcher RMS, see dft/records.py)."""
    _require(frame, [column])
    values = frame[column].astype(float).dropna()
    return {"rmsd_mean": float(values.mean()) if len(values) else math.nan,
            "rmsd_median": float(values.median()) if len(values) else math.nan,
            "rmsd_count": int(len(values)), "samples": len(frame)}


def energy_ranks(frame, energy: str = "e_final", matched: str = "matched"):
    """Per CSP target: samples with an energy, the rank (1 = lowest) of its best matched sample, and
    whether the lowest-energy sample is a match. Targets where no sample matched get rank NaN."""
    import pandas as pd

    _require(frame, ["target_id", energy, matched])
    rows = []
    for target, group in frame.groupby("target_id", sort=True):
        ranked = group[group[energy].notna()].sort_values(energy, kind="stable")
        flags = _flag(ranked, matched).tolist()
        best = flags.index(True) + 1 if True in flags else math.nan
        rows.append({"target_id": target, "samples": len(group), "with_energy": len(ranked),
                     "any_match": bool(_flag(group, matched).any()), "best_match_rank": best,
                     "lowest_is_match": bool(flags[0]) if flags else False})
    return pd.DataFrame(rows, columns=["target_id", "samples", "with_energy", "any_match", "best_match_rank",
                                       "lowest_is_match"])


def energy_ranking(frame, energy: str = "e_final", matched: str = "matched") -> dict:
    """Is the matched structure the lowest in energy among a target's samples?

    `lowest_is_match_rate` is over targets with at least one matched sample (an energy
    model can only pick the right structure when one was generated); `_all` is over
    every target."""
    ranks = energy_ranks(frame, energy, matched)
    with_match = ranks[ranks["any_match"]]
    return {"lowest_is_match_rate": _rate(with_match["lowest_is_match"], len(with_match)),
            "lowest_is_match_rate_all": _rate(ranks["lowest_is_match"], len(ranks)),
            "best_match_rank_mean": float(with_match["best_match_rank"].mean()) if len(with_match) else math.nan,
            "targets_with_match": len(with_match), "targets": len(ranks), "energy_column": energy}


def join_samples(samples, stability):
    """Every requested sample (left) with its relaxation/hull columns, by (target_id, sample_index)."""
    keep = [c for c in stability.columns if c not in samples.columns or c in KEY]
    return samples.merge(stability[keep], on=KEY, how="left")


def unique_from_groups(frame, group: str = "unique_group"):
    """Boolean `unique` from the metrics engine's uniqueness-group labels: the first sample of each
    group (in table order) is unique; a sample without a group (invalid, failed) is not."""
    labels = frame[group]
    return labels.notna() & ~labels.duplicated(keep="first")
