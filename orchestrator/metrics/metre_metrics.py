"""METRe, polymorph-aware and de-duplicated scoring (gencsp profile). Definitions: metre.py, dedup.py.

Every valid sample (gencsp rules) is matched against every reference structure of its
reduced composition (and primitive-cell size, where a composition is crowded) with CDVAE's tolerances (reduced_matching.py;
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
REFINE_ABOVE = 8  # reference structures of one composition beyond which buckets split by primitive size
CSP, GEN = "csp", "generate"
# validity of every sample (its structure fingerprint decides it) and the reference's facts, no fingerprint
NEEDS = {"pred": ("struct_fp",), "ref": ()}


def _buckets(ctx, gen_rows: list[int], ref_rows: list[int]) -> tuple[dict, dict]:
    """Bucket of each generated and reference row: its reduced composition (from the records), refined by
    the primitive-cell size (cached facts, one reduction per structure) where a composition has more than
    REFINE_ABOVE reference structures (carbon: thousands; a perovskite formula: one to three)."""
    from .reduced_matching import buckets

    gen, ref = ctx.gen, ctx.ref
    gen_key = {g: gen.at[g, "composition"] for g in gen_rows}
    ref_key = {r: ref.at[r, "composition"] for r in ref_rows}
    sizes: dict = {}
    for key in ref_key.values():
        sizes[key] = sizes.get(key, 0) + 1
    crowded = {key for key, n in sizes.items() if n > REFINE_ABOVE}
    if crowded:
        texts = {gen.at[g, "skey"]: gen.at[g, "cif"] for g in gen_rows if gen_key[g] in crowded}
        texts.update({ref.at[r, "skey"]: ref.at[r, "cif"] for r in ref_rows if ref_key[r] in crowded})
        facts = buckets(texts, ctx.workers, ctx.cache, ctx.settings.progress, ctx.timing)
        gen_key.update({g: facts[gen.at[g, "skey"]] for g in gen_rows if gen_key[g] in crowded})
        ref_key.update({r: facts[ref.at[r, "skey"]] for r in ref_rows if ref_key[r] in crowded})
    return gen_key, ref_key


def _cross_pairs(ctx):
    """(gen row, ref row, rms) for every valid sample x reference crystal that could match."""
    import pandas as pd

    from .reduced_matching import rms_of_pairs

    gen, ref = ctx.gen, ctx.ref
    gen_rows = list(ctx.valid_rows("gencsp"))
    ref_rows = [i for i in range(len(ref)) if isinstance(ref.at[i, "skey"], str)]
    gen_key, ref_key = _buckets(ctx, gen_rows, ref_rows)
    refs_in: dict = {}
    for r in ref_rows:
        if ref_key[r] is not None:
            refs_in.setdefault(ref_key[r], []).append(r)
    rows = [(g, r) for g in gen_rows if gen_key[g] is not None for r in refs_in.get(gen_key[g], ())]
    tasks = [(gen.at[g, "skey"], gen.at[g, "cif"], ref.at[r, "skey"], ref.at[r, "cif"], ref_key[r]) for g, r in rows]
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
        labels = {i: i if label is None else label for i, label in enumerate(found.labels)}
        kept = sum(1 for i, label in labels.items() if i == label)
        ctx.notes.append(f"de-duplicated reference: {kept} of {len(labels)} structures kept, the first of each group "
                         "of StructureMatcher duplicates (ltol 0.2, stol 0.3, angle 5); a whole split: "
                         "`gencsp data dedup NAME --split S`")
        return labels
    return ctx.once("dedup-labels", make)


def _representatives(ctx) -> list[int]:
    return [i for i, label in _labels(ctx).items() if label == i]


def _owner(ctx) -> dict[int, int]:
    """Generated row -> reference row of its target (CSP), by material_id or target id."""
    ref = ctx.ref
    position = {**dict(zip(ref["material_id"], ref.index, strict=True)),
                **dict(zip(ref["target_id"], ref.index, strict=True))}
    return {g: position[t] for g, t in zip(ctx.gen.index, ctx.gen["target_id"], strict=True) if t in position}


def _scope(ctx, csp: bool) -> list[int]:
    """Reference rows a rate is over: for CSP the predicted targets (a run on a subset of a split is
    scored on that subset, as the match rates are); for generation every reference crystal."""
    return list(ctx.predicted_targets) if csp else list(range(len(ctx.ref)))


def _counted(ctx, csp: bool, dedup: bool) -> list[int]:
    """Reference rows a rate counts: its scope, or (dedup) the first of each duplicate group in it."""
    scope = _scope(ctx, csp)
    if not dedup:
        return scope
    inside = set(scope)
    return [r for r in _representatives(ctx) if r in inside]


def _metre(ctx, dedup: bool, csp: bool) -> dict:
    from .metre import metre

    refs = _counted(ctx, csp, dedup)
    return metre(cross_pairs(ctx), len(refs), STOL, refs)


def _csp(ctx, dedup: bool) -> dict:
    from .metre import rates, target_outcomes

    def make():
        labels = _labels(ctx)
        outcomes = target_outcomes(cross_pairs(ctx), _owner(ctx), labels)
        targets = _counted(ctx, True, dedup)
        return rates(outcomes[outcomes.index.isin(targets)], len(targets), STOL)
    return ctx.once(f"polymorph-rates-{dedup}", make)


def _duplicate_fraction(ctx, csp: bool) -> float:
    n = len(_scope(ctx, csp))
    return 1 - len(_counted(ctx, csp, True)) / n if n else float("nan")


_HOW = "valid samples (gencsp rules), StructureMatcher with CDVAE tolerances (stol 0.5, ltol 0.3, angle 10)"
_DEDUP = ("; over de-duplicated {refs}: the first of each group of duplicates (StructureMatcher defaults: ltol 0.2, "
          "stol 0.3, angle 5)")
_METRE = (("metre", "METRe (Martirossyan et al., arXiv:2509.12178): {refs} matched by ANY valid {gen} (whichever "
                    "target it was made for) / all {refs} (for CSP: the predicted targets)", "higher"),
          ("metre_rms_dist", "mean over the {refs} METRe found of their smallest RMS ((V/N)^1/3-normalised)", "lower"),
          ("metre_crmse", "cRMSE of METRe: RMS mean over ALL {refs}, one not found counting as stol = 0.5", "lower"))
_POLYMORPH = (
    ("polymorph_match_rate", "targets NOT matched by their own samples whose samples match another reference "
     "structure of the same reduced composition (a polymorph present in the reference, not a duplicate of the "
     "target) / predicted targets; counted apart from match_rate", "none", "polymorph_match_rate"),
    ("match_or_polymorph_rate", "targets matched by their own samples or by a polymorph of their composition in the "
     "reference / predicted targets: what a polymorph-blind count credits", "none", "match_or_polymorph_rate"))
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
                   {"gencsp": template}, NEEDS)(lambda ctx, d=dedup, k=key, c=task == CSP: _metre(ctx, d, c)[_FIELDS[k]])


def _register_csp() -> None:
    for dedup, rows in ((False, _POLYMORPH), (True, _DEDUP_RATES + _POLYMORPH)):
        prefix, extra = ("dedup.", _DEDUP.format(refs="targets")) if dedup else ("", "")
        for key, text, direction, field in rows:
            metric(f"{prefix}{key}@k", f"{text}; {_HOW}{extra}", direction, CSP, {"gencsp": f"{prefix}{key}@{{k}}"},
                   NEEDS)(
                lambda ctx, d=dedup, f=field: _csp(ctx, d)[f])


def _register_duplicates(task: str, name: str, refs: str) -> None:
    metric(name, f"{refs} that duplicate an earlier one in the reference / all {refs} (StructureMatcher defaults: "
           "ltol 0.2, stol 0.3, angle 5)", "none", task, {"gencsp": name}, {"ref": ()})(lambda ctx, c=task == CSP: _duplicate_fraction(ctx, c))


_register_metre(CSP, "targets", "sample of the run", "@{k}")
_register_csp()
_register_duplicates(CSP, "dedup.duplicate_targets", "targets")
_register_metre(GEN, "reference crystals", "generated crystal", "")
_register_duplicates(GEN, "dedup.duplicate_references", "reference crystals")
