"""Stability of a run's samples from `gencsp relax` (dft/): energy above hull, S.U.N., relaxation
RMSD and the energy ranking of CSP samples. Rates are over ALL requested samples; the thresholds
are in the keys, the hull reference and correction scheme in the provenance notes.

Reported only when `gencsp relax` has written `relax/<engine>/stability.parquet`; registered
last so that uniqueness, novelty and matching have been computed before.
"""

from __future__ import annotations

import json

from .registry import SKIP, metric

KEYS = ["target_id", "sample_index"]
ENGINE_ORDER = ("chgnet",)  # preferred when several relaxations exist; else the first by name


def _engine(run) -> str | None:
    found = sorted(p.parent.name for p in (run.path / "relax").glob("*/stability.parquet"))
    preferred = [e for e in ENGINE_ORDER if e in found]
    return (preferred or found or [None])[0]


def _needs(ctx) -> dict:
    """The per-structure table (validity, uniqueness) of the predictions, when a relaxation exists."""
    run = ctx.inputs.run
    return {"pred": ("struct_fp", "comp_fp", "spacegroup")} if run is not None and _engine(run) else {}


def _table(ctx):
    """The run's samples with hull columns, plus unique/novel/matched from this evaluation."""
    def make():
        run = ctx.inputs.run
        engine = _engine(run) if run is not None else None
        if engine is None:
            return None
        from dft.relax_run import load_stability, relax_dir

        from .evaluate import mode_of, structure_table

        table = load_stability(run.path, engine)
        ours = structure_table(ctx, mode_of(ctx.profile))
        extra = [c for c in ("unique", "novel", "matched") if c in ours.columns]
        table = table.merge(ours[KEYS + extra], on=KEYS, how="left")
        summary = json.loads((relax_dir(run.path, engine) / "summary.json").read_text())
        reference = summary.get("reference") or {}
        ctx.notes.append(f"stability from `gencsp relax --engine {engine}`: hull reference "
                         f"{reference.get('description', reference.get('kind', 'unknown'))}, correction scheme "
                         f"{summary.get('scheme', reference.get('scheme', 'unknown'))}")
        return table
    return ctx.once("stability", make)


def _stability(name: str):
    from dft.stability import stability_rates

    def compute(ctx):
        table = _table(ctx)
        return SKIP if table is None else stability_rates(table)[name]
    return compute


def _sun(name: str):
    from dft.stability import sun_rates

    def compute(ctx):
        table = _table(ctx)
        if table is None or "novel" not in table or not table["novel"].notna().any():
            return SKIP  # novelty needs a training split (`--train`)
        return sun_rates(table)[name]
    return compute


metric("stable_rate", "requested samples with energy above hull <= 0.0 eV/atom after relaxation / requested samples",
       "higher", "any", {"gencsp": "stable_rate@0.0eV"}, _needs)(_stability("stable_rate"))
metric("metastable_rate", "requested samples with energy above hull <= 0.1 eV/atom after relaxation / requested "
       "samples", "higher", "any", {"gencsp": "metastable_rate@0.1eV"}, _needs)(_stability("metastable_rate"))
metric("sun_rate", "stable (<= 0.0 eV/atom), unique and novel samples / requested samples", "higher", "any",
       {"gencsp": "sun_rate@0.0eV"}, _needs)(_sun("sun_rate"))
metric("msun_rate", "metastable (<= 0.1 eV/atom), unique and novel samples / requested samples", "higher", "any",
       {"gencsp": "msun_rate@0.1eV"}, _needs)(_sun("msun_rate"))


@metric("relax_rmsd_mean", "mean RMS displacement between each sample and its relaxed structure "
        "(StructureMatcher, where they match)", "lower", "any", {"gencsp": "relax_rmsd_mean"}, _needs)
def _rmsd(ctx):
    from dft.stability import relaxation_rmsd

    table = _table(ctx)
    return SKIP if table is None else relaxation_rmsd(table)["rmsd_mean"]


@metric("lowest_is_match_rate", "CSP targets whose lowest-energy relaxed sample is a match / targets with at "
        "least one matched sample", "higher", "csp", {"gencsp": "lowest_energy_is_match_rate"}, _needs)
def _ranking(ctx):
    from dft.stability import energy_ranking

    table = _table(ctx)
    if table is None or "matched" not in table or not table["matched"].fillna(False).any():
        return SKIP
    return energy_ranking(table.assign(matched=table["matched"].fillna(False).astype(bool)))["lowest_is_match_rate"]
