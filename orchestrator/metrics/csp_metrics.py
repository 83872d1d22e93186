"""Metrics of crystal structure prediction (task `csp`): matching predictions to their targets.

The number of targets is the number of reference rows: a target without any
valid, matching prediction (failed, rejected, unsupported, or never predicted)
counts as unmatched.
"""

from __future__ import annotations

from . import matching
from .context import MODES
from .registry import SKIP, metric, reference_keys

C = "csp"


def pair_table(ctx):
    """One row per prediction of a known target: validity under each mode, RMS per tolerance."""
    import numpy as np

    gen, ref = ctx.gen, ctx.ref
    position = {**dict(zip(ref["material_id"], ref.index, strict=True)),
                **dict(zip(ref["target_id"], ref.index, strict=True))}
    truth_row = gen["target_id"].map(position)
    unknown = truth_row.isna()
    if unknown.all() and len(gen):
        from .inputs import InputError

        raise InputError("no prediction's target_id is a material_id (or target id) of the reference")
    if unknown.any():
        ctx.notes.append(f"{int(unknown.sum())} prediction(s) name a target that is not in the reference: ignored")
    table = gen.loc[~unknown, ["target_id", "sample_index", "skey", "composition", "cif", "spacegroup"]].copy()
    table["truth"] = truth_row[~unknown].astype(int).to_numpy()
    table["target_id"] = ref["target_id"].to_numpy()[table["truth"]]
    for mode in MODES:
        table[f"pred_valid_{mode}"] = ctx.validity(mode)["valid"].to_numpy()[table.index]
        table[f"truth_valid_{mode}"] = ctx.validity(mode, "ref")["valid"].to_numpy()[table["truth"]]
    first = matching.first_samples(table).index
    rows = first if ctx.profile == "cdvae" else table.index
    candidates = table.loc[rows]
    truth_comp = ref["composition"].to_numpy()[candidates["truth"]] if "composition" in ref else None
    same = (candidates["composition"].to_numpy() == truth_comp) if truth_comp is not None else np.zeros(0, bool)
    usable = candidates[same & candidates[[f"pred_valid_{m}" for m in MODES]].any(axis=1).to_numpy()
                        & ref["skey"].notna().to_numpy()[candidates["truth"]]]
    tolerances = ("loose", "strict") if ctx.profile == "gencsp" else ("loose",)
    tasks = []
    for _, row in usable.iterrows():
        truth = ref.loc[row["truth"]]
        for tol in tolerances:
            tasks.append((matching.pair_key(row["skey"], truth["skey"], tol), row["cif"], truth["cif"], tol))
    results = matching.compute_pairs(tasks, ctx.workers, ctx.cache, ctx.settings.progress, ctx.timing)
    for tol in ("loose", "strict"):
        values = []
        for idx, row in table.iterrows():
            key = matching.pair_key(row["skey"], ref.at[row["truth"], "skey"], tol)
            values.append(results.get(key, (None, None))[0] if idx in usable.index else None)
        table[f"rms_{tol}"] = np.array(values, dtype=float)
    table["match_message"] = [results.get(matching.pair_key(r["skey"], ref.at[r["truth"], "skey"], "loose"),
                                          (None, None))[1] for _, r in table.iterrows()]
    table["truth_spacegroup"] = ref["spacegroup"].to_numpy()[table["truth"]]
    formulas = ref["formula"].value_counts()
    table["polymorphic"] = ref["formula"].map(formulas).to_numpy()[table["truth"]] > 1
    table["first"] = table.index.isin(first)
    return table.drop(columns=["cif"])


def _pairs(ctx):
    return ctx.once("pairs", lambda: pair_table(ctx))


def k_samples(ctx) -> int:
    counts = ctx.gen.groupby("target_id").size()
    return int(counts.max()) if len(counts) else 1


def _rate(ctx, valid: str, tol: str = "loose", first_only: bool = False, both_valid: str | None = None) -> dict:
    table = _pairs(ctx)
    if first_only:
        table = table[table["first"]]
    if both_valid:
        table = table.assign(**{valid: table[valid] & table[both_valid]})
    best = matching.best_per_target(table, f"rms_{tol}", valid)
    return {**matching.match_summary(best, len(ctx.ref)),
            "crmse": matching.crmse(best, len(ctx.ref), matching.TOLERANCES[tol]["stol"])}


def _diffcsp(ctx) -> dict:
    """One sample per target: prediction AND truth valid. k samples: any valid sample, truth unchecked."""
    if k_samples(ctx) == 1:
        return _rate(ctx, "pred_valid_diffcsp", both_valid="truth_valid_diffcsp")
    return _rate(ctx, "pred_valid_diffcsp")


for _key, _text in (("match_rate", "matched targets / all targets"),
                    ("rms_dist", "mean RMS distance over matched targets only ((V/N)^1/3-normalised)")):
    metric(f"cdvae.{_key}", f"CDVAE: {_text}; first sample of each target; prediction valid; StructureMatcher("
           "stol=0.5, angle_tol=10, ltol=0.3)", "higher" if _key == "match_rate" else "lower", C,
           reference_keys(_key, "cdvae"))(
        lambda ctx, k=_key: _rate(ctx, "pred_valid_cdvae", first_only=True)[k])
    metric(f"diffcsp.{_key}", f"DiffCSP: {_text}; one sample: prediction and truth valid; k samples: best valid "
           "sample (min RMS)", "higher" if _key == "match_rate" else "lower", C, reference_keys(_key, "diffcsp"))(
        lambda ctx, k=_key: _diffcsp(ctx)[k])


@metric("csp.valid", "fraction of predicted samples valid (gencsp rules)", "higher", C, {"gencsp": "valid"})
def _valid(ctx):
    return float(ctx.validity("gencsp")["valid"].mean()) if ctx.n_requested else float("nan")


def _at(ctx, tol: str, first_only: bool, key: str):
    if not first_only and k_samples(ctx) == 1 and key != "crmse":
        return SKIP  # @k is @1
    return _rate(ctx, "pred_valid_gencsp", tol, first_only)[key]


for _tol, _prefix in (("loose", ""), ("strict", "strict.")):
    _how = ("CDVAE tolerances (stol 0.5, ltol 0.3, angle 10)" if _tol == "loose"
            else "pymatgen default tolerances (stol 0.3, ltol 0.2, angle 5)")
    # crmse only over k samples (with k = 1 that is the first sample)
    for _first, _keys in ((True, ("match_rate", "rms_dist")), (False, ("match_rate", "rms_dist", "crmse"))):
        for _key in _keys:
            _at_k = "1" if _first else "{k}"
            metric(f"{_prefix}{_key}@{'1' if _first else 'k'}",
                   f"{_key} over {'the first sample' if _first else 'the best of k samples'} of each target, "
                   f"valid predictions (gencsp rules), {_how}" + (
                       "; unmatched targets count as stol" if _key == "crmse" else ""),
                   "higher" if _key == "match_rate" else "lower", C, {"gencsp": f"{_prefix}{_key}@{_at_k}"})(
                lambda ctx, t=_tol, f=_first, k=_key: _at(ctx, t, f, k))


@metric("spacegroup_match_rate@k", "targets whose best matched sample has the truth's space group (spglib, "
        "symprec in provenance) / all targets", "higher", C, {"gencsp": "spacegroup_match_rate@{k}"})
def _spacegroup(ctx):
    table = _pairs(ctx)
    matched = table[table["pred_valid_gencsp"] & table["rms_loose"].notna()]
    best = matched.sort_values("rms_loose").groupby("target_id").head(1)
    same = (best["spacegroup"] == best["truth_spacegroup"]) & best["spacegroup"].notna()
    return float(same.sum() / len(ctx.ref)) if len(ctx.ref) else float("nan")


@metric("polymorphic_targets", "targets whose reduced formula occurs more than once in the reference (a match "
        "rate flatters a model there)", "none", C, {"gencsp": "polymorphic_targets"})
def _polymorphic(ctx):
    counts = ctx.ref["formula"].map(ctx.ref["formula"].value_counts())
    return float((counts > 1).mean()) if len(ctx.ref) else float("nan")


@metric("match_rate@k_unique_formula", "match rate (best of k, CDVAE tolerances) over the targets whose formula "
        "is unique in the reference", "higher", C, {"gencsp": "match_rate@{k}_unique_formula"})
def _unique_formula(ctx):
    counts = ctx.ref["formula"].map(ctx.ref["formula"].value_counts())
    unique_targets = set(ctx.ref["target_id"][counts == 1])
    table = _pairs(ctx)
    best = matching.best_per_target(table[table["target_id"].isin(unique_targets)], "rms_loose", "pred_valid_gencsp")
    return float(len(best) / len(unique_targets)) if unique_targets else float("nan")
