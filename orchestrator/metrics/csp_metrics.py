"""Metrics of crystal structure prediction (task `csp`): matching predictions to their targets.

Targets. The reference scripts score the (prediction, truth) pairs they are given, so the
reference numbers (cdvae.*, diffcsp.*, and the gencsp profile's @1/@k rates) are over the
PREDICTED targets: the reference targets named by at least one prediction row (a failed or
rejected sample names its target too, and counts as a miss). A bench run requested every
target of its targets.parquet, so there the two sets are the same. The gencsp profile also
reports `split_match_rate@1/@k`: matched / every target of the reference (a target without a
prediction is a miss), and `targets_predicted`; every profile's provenance counts both.

Inputs (registry `needs`): the facts (parsing, composition, SMACT, geometry) of the predictions
and of the truths. A structure fingerprint decides validity only where the rest passes, and
a match rate reads validity only where the matcher found a match: so the matcher runs on the
pairs whose facts pass, and then only the predictions whose fingerprint decides a rate: per
target, the matched sample of least RMS (and, for DiffCSP's one-sample rule, its truth). No fingerprint of any other reference crystal. The
gencsp profile's `valid` fraction reads every prediction's fingerprints, and declares so.
"""

from __future__ import annotations

from . import matching
from .context import MODES
from .registry import SKIP, metric, reference_keys

C = "csp"
PRED_VALID = {"pred": (), "truth": ()}  # facts; deciding fingerprints: pair_table


def pair_table(ctx):
    """One row per prediction of a known target: validity under each mode, RMS per tolerance."""
    import numpy as np

    gen, ref = ctx.gen, ctx.ref
    truth_row = ctx.truth_of
    unknown = truth_row.isna()
    if unknown.all() and len(gen):
        from .inputs import InputError

        raise InputError("no prediction's target_id is a material_id (or target id) of the reference")
    if unknown.any():
        ctx.notes.append(f"{int(unknown.sum())} prediction(s) name a target that is not in the reference: ignored")
    table = gen.loc[~unknown, ["target_id", "sample_index", "skey", "composition", "cif", "spacegroup"]].copy()
    table["truth"] = truth_row[~unknown].astype(int).to_numpy()
    table["target_id"] = ref["target_id"].to_numpy()[table["truth"]]
    _validity_columns(ctx, table)
    first = matching.first_samples(table).index
    rows = first if ctx.profile == "cdvae" else table.index
    candidates = table.loc[rows]
    truth_comp = ref["composition"].to_numpy()[candidates["truth"]]
    # valid, or valid but for a fingerprint not computed yet (NA)
    pred_valid = candidates[[f"pred_valid_{m}" for m in MODES]].fillna(True).astype(bool).any(axis=1).to_numpy()
    usable = candidates[(candidates["composition"].to_numpy() == truth_comp) & pred_valid
                        & ref["skey"].notna().to_numpy()[candidates["truth"]]]
    tolerances = ("loose", "strict") if ctx.profile == "gencsp" else ("loose",)
    tasks = []
    for _, row in usable.iterrows():
        truth = ref.loc[row["truth"]]
        for tol in tolerances:
            tasks.append((matching.pair_key(row["skey"], truth["skey"], tol), row["cif"], truth["cif"], tol))
    results = matching.compute_pairs(tasks, ctx.workers, ctx.cache, ctx.settings.progress, ctx.timing)
    truth_skeys = ref["skey"].to_numpy()[table["truth"]]
    for tol in ("loose", "strict"):
        values = [results.get(matching.pair_key(skey, truth, tol), (None, None))[0] if idx in usable.index else None
                  for idx, skey, truth in zip(table.index, table["skey"], truth_skeys, strict=True)]
        table[f"rms_{tol}"] = np.array(values, dtype=float)
    table["match_message"] = [results.get(matching.pair_key(skey, truth, "loose"), (None, None))[1]
                              for skey, truth in zip(table["skey"], truth_skeys, strict=True)]
    table["first"] = table.index.isin(first)
    while rows := _deciding(ctx, table, tolerances):  # one round, a second where a best sample was invalid
        ctx.complete("gen", rows, ("struct_fp",))
        _validity_columns(ctx, table)
    if ctx.profile != "cdvae" and k_samples(ctx) == 1:  # DiffCSP's one-sample rule: the truth valid too
        matched = table[table["rms_loose"].notna() & table["pred_valid_diffcsp"].fillna(False)]
        ctx.complete("ref", matched["truth"].unique(), ("struct_fp",))
        _validity_columns(ctx, table)
    table["truth_spacegroup"] = ref["spacegroup"].to_numpy()[table["truth"]]
    return table.drop(columns=["cif"])


def _deciding(ctx, table, tolerances) -> list[int]:
    """Predictions whose fingerprint decides a rate: for each target, mode, tolerance, and for the
    first sample or the best of k, the matched sample of least RMS whose other validity checks
    pass and whose fingerprint is not computed yet. (A fingerprint fails very rarely; where it
    does, the next round asks for the next sample.)"""
    need: set[int] = set()
    for mode in MODES:
        facts = ctx.validity(mode)[["comp_valid", "struct_valid"]].all(axis=1).to_numpy()[table.index.to_numpy()]
        valid = table[f"pred_valid_{mode}"]
        for tol in tolerances:
            rms = table[f"rms_{tol}"]
            candidates = table[rms.notna().to_numpy() & facts & valid.fillna(True).to_numpy(dtype=bool)]
            for group in (candidates, candidates[candidates["first"]]):
                best = group.sort_values(f"rms_{tol}", kind="stable").groupby("target_id").head(1)
                need.update(best.index[best[f"pred_valid_{mode}"].isna()].tolist())
    return sorted(need)


def _validity_columns(ctx, table) -> None:
    """pred_valid_<mode>, truth_valid_<mode>: NA where the fingerprint was not needed (not computed)."""
    for mode in MODES:
        table[f"pred_valid_{mode}"] = ctx.validity(mode)["valid"].array[table.index.to_numpy()]
        table[f"truth_valid_{mode}"] = ctx.validity(mode, "ref")["valid"].array[table["truth"].to_numpy()]


def _known(valid, rms):
    """A validity column as bool. Unknown (NA) is left where no rate reads it: no match, or a match
    whose RMS is not below its target's best valid one (`_deciding` fingerprinted those)."""
    return valid.fillna(False).astype(bool)


def _pairs(ctx):
    return ctx.once("pairs", lambda: pair_table(ctx))


def k_samples(ctx) -> int:
    counts = ctx.gen.groupby("target_id").size()
    return int(counts.max()) if len(counts) else 1


def _rate(ctx, valid: str, tol: str = "loose", first_only: bool = False, both_valid: str | None = None,
          split: bool = False) -> dict:
    """Match rate, mean RMS, cRMSE over the predicted targets (`split`: over every reference target)."""
    table = _pairs(ctx)
    if first_only:
        table = table[table["first"]]
    table = table.assign(**{valid: table[valid] & table[both_valid]} if both_valid else {})
    best = matching.best_per_target(table.assign(**{valid: _known(table[valid], table[f"rms_{tol}"])}),
                                    f"rms_{tol}", valid)
    n_targets = len(ctx.ref) if split else len(ctx.predicted_targets)
    return {**matching.match_summary(best, n_targets),
            "crmse": matching.crmse(best, n_targets, matching.TOLERANCES[tol]["stol"])}


def _diffcsp(ctx) -> dict:
    """One sample per target: prediction AND truth valid. k samples: any valid sample, truth unchecked."""
    if k_samples(ctx) == 1:
        return _rate(ctx, "pred_valid_diffcsp", both_valid="truth_valid_diffcsp")
    return _rate(ctx, "pred_valid_diffcsp")


for _key, _text in (("match_rate", "matched targets / predicted targets"),
                    ("rms_dist", "mean RMS distance over matched targets only ((V/N)^1/3-normalised)")):
    metric(f"cdvae.{_key}", f"CDVAE: {_text}; first sample of each target; prediction valid; StructureMatcher("
           "stol=0.5, angle_tol=10, ltol=0.3)", "higher" if _key == "match_rate" else "lower", C,
           reference_keys(_key, "cdvae"), PRED_VALID)(
        lambda ctx, k=_key: _rate(ctx, "pred_valid_cdvae", first_only=True)[k])
    metric(f"diffcsp.{_key}", f"DiffCSP: {_text}; one sample: prediction and truth valid; k samples: best valid "
           "sample (min RMS)", "higher" if _key == "match_rate" else "lower", C, reference_keys(_key, "diffcsp"),
           PRED_VALID)(
        lambda ctx, k=_key: _diffcsp(ctx)[k])


@metric("targets_predicted", "reference targets with at least one prediction (the denominator of every rate "
        "but split_match_rate)", "none", C, {"gencsp": "targets_predicted"}, {})
def _targets_predicted(ctx):
    return len(ctx.predicted_targets)


@metric("csp.valid", "fraction of predicted samples valid (gencsp rules)", "higher", C, {"gencsp": "valid"},
        {"pred": ("struct_fp", "comp_fp")})
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
                   f"valid predictions (gencsp rules), {_how}, over the predicted targets" + (
                       "; unmatched targets count as stol" if _key == "crmse" else ""),
                   "higher" if _key == "match_rate" else "lower", C, {"gencsp": f"{_prefix}{_key}@{_at_k}"},
                   PRED_VALID)(
                lambda ctx, t=_tol, f=_first, k=_key: _at(ctx, t, f, k))


def _split(ctx, first_only: bool):
    if not first_only and k_samples(ctx) == 1:
        return SKIP
    return _rate(ctx, "pred_valid_gencsp", "loose", first_only, split=True)["match_rate"]


for _first in (True, False):
    metric(f"split_match_rate@{'1' if _first else 'k'}", "matched targets / EVERY target of the reference split "
           "(a target without a prediction is a miss); " + ("first sample" if _first else "best of k samples")
           + ", valid predictions (gencsp rules), CDVAE tolerances", "higher", C,
           {"gencsp": f"split_match_rate@{'1' if _first else '{k}'}"}, PRED_VALID)(
        lambda ctx, f=_first: _split(ctx, f))


@metric("spacegroup_match_rate@k", "targets whose best matched sample has the truth's space group (spglib, "
        "symprec in provenance) / predicted targets", "higher", C, {"gencsp": "spacegroup_match_rate@{k}"},
        {"pred": ("struct_fp", "spacegroup"), "truth": ("spacegroup",)})
def _spacegroup(ctx):
    table = _pairs(ctx)
    matched = table[_known(table["pred_valid_gencsp"], table["rms_loose"]) & table["rms_loose"].notna()]
    best = matched.sort_values("rms_loose").groupby("target_id").head(1)
    same = (best["spacegroup"] == best["truth_spacegroup"]) & best["spacegroup"].notna()
    n_targets = len(ctx.predicted_targets)
    return float(same.sum() / n_targets) if n_targets else float("nan")


@metric("polymorphic_targets", "fraction of the predicted targets whose reduced formula occurs more than once in "
        "the reference (a match rate flatters a model there)", "none", C, {"gencsp": "polymorphic_targets"},
        {"ref": ()})
def _polymorphic(ctx):
    counts = ctx.ref["formula"].map(ctx.ref["formula"].value_counts())
    targets = ctx.predicted_targets
    return float((counts.iloc[targets] > 1).mean()) if targets else float("nan")


@metric("match_rate@k_unique_formula", "match rate (best of k, CDVAE tolerances) over the predicted targets whose "
        "formula is unique in the reference", "higher", C, {"gencsp": "match_rate@{k}_unique_formula"},
        {"pred": ("struct_fp",), "ref": ()})
def _unique_formula(ctx):
    counts = ctx.ref["formula"].map(ctx.ref["formula"].value_counts())
    predicted = ctx.ref.index.isin(ctx.predicted_targets)
    unique_targets = set(ctx.ref["target_id"][(counts == 1).to_numpy() & predicted])
    table = _pairs(ctx)
    table = table[table["target_id"].isin(unique_targets)]
    best = matching.best_per_target(table.assign(pred_valid_gencsp=_known(table["pred_valid_gencsp"],
                                                                          table["rms_loose"])),
                                    "rms_loose", "pred_valid_gencsp")
    return float(len(best) / len(unique_targets)) if unique_targets else float("nan")
