"""METRe, polymorph-aware and de-duplicated scoring (gencsp profile). Definitions: metre.py, dedup.py.

Every valid sample (gencsp rules) is matched against every reference structure of its
reduced composition and primitive-cell size with CDVAE's tolerances (reduced_matching.py;
results shared with the CSP pair cache). The reference is de-duplicated with
StructureMatcher's default tolerances (orchestrator/dedup.py, cached under $GENCSP_HOME):
`dedup.*` metrics count one target (or reference crystal) per group of duplicates, its first
one, with that target's own samples. These numbers sit beside the reference scripts' ones
and never replace them.
"""

from __future__ import annotations

from .matching import TOLERANCES, pair_key
from .registry import metric

STOL = TOLERANCES["loose"]["stol"]
DEDUP_TOLERANCE = "strict"
CSP, GEN = "csp", "generate"


def _cross_pairs(ctx):
    """(gen row, ref row, rms) for every valid sample x reference crystal that could match."""
    import pandas as pd

    from .reduced_matching import buckets, rms_of_pairs

    gen, ref = ctx.gen, ctx.ref
    gen_rows = list(ctx.valid_rows("gencsp"))
    ref_rows = [i for i in range(len(ref)) if isinstance(ref.at[i, "skey"], str)]
    texts = {gen.at[i, "skey"]: gen.at[i, "cif"] for i in gen_rows}
    texts.update({ref.at[i, "skey"]: ref.at[i, "cif"] for i in ref_rows})
    keys = buckets(texts, ctx.workers, ctx.cache, ctx.settings.progress, ctx.timing)
    refs_in: dict = {}
    for r in ref_rows:
        if keys[ref.at[r, "skey"]] is not None:
            refs_in.setdefault(keys[ref.at[r, "skey"]], []).append(r)
    rows = [(g, r) for g in gen_rows for r in refs_in.get(keys[gen.at[g, "skey"]], ())]
    tasks = [(gen.at[g, "skey"], gen.at[g, "cif"], ref.at[r, "skey"], ref.at[r, "cif"], keys[ref.at[r, "skey"]])
             for g, r in rows]
    results = rms_of_pairs(tasks, "loose", ctx.workers, ctx.cache, ctx.settings.progress, ctx.timing,
                           "matching samples to every reference structure")
    rms = [results[pair_key(gen.at[g, "skey"], ref.at[r, "skey"], "loose")][0] for g, r in rows]
    return pd.DataFrame({"gen": [g for g, _ in rows], "ref": [r for _, r in rows],
                         "rms": pd.Series(rms, dtype=float)})


def cross_pairs(ctx):
    return ctx.once("cross-pairs", lambda: _cross_pairs(ctx))


def _labels(ctx) -> dict[int, int]:
    """Reference row -> the row of the first structure of its duplicate group."""
    def make():
        from ..dedup import group, group_texts

        texts = list(ctx.ref["cif"])
        ctx.cache.close()  # the grouping forks workers: no open database handle across a fork
        if ctx.settings.cache:
            found = group_texts(texts, DEDUP_TOLERANCE, ctx.workers, ctx.settings.progress)
        else:
            found = group(texts, DEDUP_TOLERANCE, workers=ctx.workers, progress=ctx.settings.progress,
                          cache=ctx.cache)
        return {i: i if label is None else label for i, label in enumerate(found.labels)}
    return ctx.once("dedup-labels", make)


def _representatives(ctx) -> list[int]:
    return [i for i, label in _labels(ctx).items() if label == i]


def _owner(ctx) -> dict[int, int]:
    """Generated row -> reference row of its target (CSP), by material_id or target id."""
    ref = ctx.ref
    position = {**dict(zip(ref["material_id"], ref.index, strict=True)),
                **dict(zip(ref["target_id"], ref.index, strict=True))}
    return {g: position[t] for g, t in zip(ctx.gen.index, ctx.gen["target_id"], strict=True) if t in position}


def _metre(ctx, dedup: bool) -> dict:
    from .metre import metre

    refs = _representatives(ctx) if dedup else None
    return metre(cross_pairs(ctx), len(refs) if dedup else len(ctx.ref), STOL, refs)


def _csp(ctx, dedup: bool) -> dict:
    from .metre import rates, target_outcomes

    def make():
        labels = _labels(ctx)
        outcomes = target_outcomes(cross_pairs(ctx), _owner(ctx), labels)
        if dedup:
            reps = _representatives(ctx)
            return rates(outcomes[outcomes.index.isin(reps)], len(reps), STOL)
        return rates(outcomes, len(ctx.ref), STOL)
    return ctx.once(f"polymorph-rates-{dedup}", make)


def _duplicate_fraction(ctx) -> float:
    n = len(ctx.ref)
    return 1 - len(_representatives(ctx)) / n if n else float("nan")


_HOW = "valid samples (gencsp rules), StructureMatcher with CDVAE tolerances (stol 0.5, ltol 0.3, angle 10)"
_DEDUP = ("; over de-duplicated {refs}: the first of each group of duplicates (StructureMatcher defaults: ltol 0.2, "
          "stol 0.3, angle 5)")
_METRE = (("metre", "METRe (Martirossyan et al., arXiv:2509.12178): {refs} matched by ANY valid {gen} (whichever "
                    "target it was made for) / all {refs}", "higher"),
          ("metre_rms_dist", "mean over the {refs} METRe found of their smallest RMS ((V/N)^1/3-normalised)", "lower"),
          ("metre_crmse", "cRMSE of METRe: RMS mean over ALL {refs}, one not found counting as stol = 0.5", "lower"))
_POLYMORPH = (
    ("polymorph_match_rate", "targets NOT matched by their own samples whose samples match another reference "
     "structure of the same reduced composition (a polymorph present in the reference, not a duplicate of the "
     "target) / all targets; counted apart from match_rate", "none", "polymorph_match_rate"),
    ("match_or_polymorph_rate", "targets matched by their own samples or by a polymorph of their composition in the "
     "reference / all targets: what a polymorph-blind count credits", "none", "match_or_polymorph_rate"))
_DEDUP_RATES = (
    ("match_rate", "targets with a valid sample matching the truth / targets", "higher", "match_rate"),
    ("rms_dist", "mean RMS of the best match over matched targets", "lower", "rms_dist"),
    ("crmse", "RMS mean over ALL targets, unmatched ones counting as stol = 0.5", "lower", "crmse"))
_FIELDS = {"metre": "metre", "metre_rms_dist": "rms_dist", "metre_crmse": "crmse"}


def _register_metre(task: str, refs: str, gen: str, at: str) -> None:
    for dedup in (False, True):
        prefix, extra = ("dedup.", _DEDUP.format(refs=refs)) if dedup else ("", "")
        for key, text, direction in _METRE:
            template = f"{prefix}{key}{at}"
            metric(template.replace("{k}", "k"), f"{text.format(refs=refs, gen=gen)}; {_HOW}{extra}", direction, task,
                   {"gencsp": template})(lambda ctx, d=dedup, k=key: _metre(ctx, d)[_FIELDS[k]])


def _register_csp() -> None:
    for dedup, rows in ((False, _POLYMORPH), (True, _DEDUP_RATES + _POLYMORPH)):
        prefix, extra = ("dedup.", _DEDUP.format(refs="targets")) if dedup else ("", "")
        for key, text, direction, field in rows:
            metric(f"{prefix}{key}@k", f"{text}; {_HOW}{extra}", direction, CSP, {"gencsp": f"{prefix}{key}@{{k}}"})(
                lambda ctx, d=dedup, f=field: _csp(ctx, d)[f])


def _register_duplicates(task: str, name: str, refs: str) -> None:
    metric(name, f"{refs} that duplicate an earlier one in the reference / all {refs} (StructureMatcher defaults: "
           "ltol 0.2, stol 0.3, angle 5)", "none", task, {"gencsp": name})(_duplicate_fraction)


_register_metre(CSP, "targets", "sample of the run", "@{k}")
_register_csp()
_register_duplicates(CSP, "dedup.duplicate_targets", "targets")
_register_metre(GEN, "reference crystals", "generated crystal", "")
_register_duplicates(GEN, "dedup.duplicate_references", "reference crystals")
