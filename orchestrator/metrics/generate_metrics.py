"""Metrics of unconditional generation (task `generate`). Definitions: docs/metrics.md."""

from __future__ import annotations

from .registry import SKIP, metric, reference_keys

G = "generate"
# inputs (registry `needs`): validity reads both fingerprints (a failure makes a crystal invalid)
FACTS = {"pred": ()}
VALID = {"pred": ("struct_fp", "comp_fp")}
VALID_AND_REF_FACTS = {"pred": ("struct_fp", "comp_fp"), "ref": ()}
BOTH_FINGERPRINTED = {"pred": ("struct_fp", "comp_fp"), "ref": ("struct_fp", "comp_fp")}
COVERAGE = ("cov_recall", "cov_precision", "amsd_recall", "amsd_precision", "amcd_recall", "amcd_precision")
COVERAGE_TEXT = {
    "cov_recall": "fraction of reference crystals with a generated crystal within both cut-offs",
    "cov_precision": "fraction of generated crystals with a reference crystal within both cut-offs",
    "amsd_recall": "mean distance of a reference crystal to the nearest generated structure fingerprint",
    "amsd_precision": "mean distance of a generated crystal to the nearest reference structure fingerprint",
    "amcd_recall": "mean distance of a reference crystal to the nearest generated composition fingerprint",
    "amcd_precision": "mean distance of a generated crystal to the nearest reference composition fingerprint",
}


def _fraction(ctx, mode: str, column: str) -> float:
    return float(ctx.validity(mode)[column].mean()) if ctx.n_requested else float("nan")


def _subset_values(ctx, mode: str, allow_fewer: bool, column: str):
    return ctx.gen[column].to_numpy(dtype=float)[list(ctx.subset(mode, allow_fewer))]


def _reference_values(ctx, column: str):
    import numpy as np

    values = ctx.ref[column].to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _wdist(ctx, mode, allow_fewer, column) -> float:
    from .distribution import wdist

    return wdist(_subset_values(ctx, mode, allow_fewer, column), _reference_values(ctx, column))


def _diversity(ctx, mode, allow_fewer, which: int) -> float:
    from .distribution import mean_pairwise_distance

    return mean_pairwise_distance(ctx.arrays("gen", list(ctx.subset(mode, allow_fewer)))[which])


def _cdvae_coverage(ctx) -> dict:
    from .coverage import CUTOFFS, cdvae_coverage

    return cdvae_coverage(ctx.nearest(ctx.fingerprinted_rows()), *CUTOFFS[ctx.inputs.kind], ctx.n_requested)


def _valid_coverage(ctx) -> dict:
    from .coverage import CUTOFFS, cdvae_coverage, paired_coverage

    nearest = ctx.nearest(ctx.valid_rows("gencsp"))
    values = cdvae_coverage(nearest, *CUTOFFS[ctx.inputs.kind], ctx.n_requested)
    return {**{f"{k}_valid": v for k, v in values.items()}, **paired_coverage(nearest, ctx.n_requested)}


# --- the reference scripts' numbers -----------------------------------------------------


def _reference(key: str, mode: str) -> dict:
    """CDVAE's numbers also appear in the gencsp profile; DiffCSP's differ from them only by
    the NaN and SMACT-cap rules, so for generation they are reported in their own profile only."""
    return reference_keys(key, mode) if mode == "cdvae" else {mode: key}


for _mode in ("cdvae", "diffcsp"):
    for _column, _text in (("comp_valid", "SMACT charge neutrality + electronegativity"),
                           ("struct_valid", "constructed, no two atoms closer than 0.5 A, volume >= 0.1 A^3"),
                           ("valid", "composition AND structure valid AND fingerprints computed")):
        metric(f"{_mode}.{_column}", f"{_mode.upper()} rules: fraction of requested samples: {_text}",
               "higher", G, _reference(_column, _mode), VALID if _column == "valid" else FACTS)(
            lambda ctx, m=_mode, c=_column: _fraction(ctx, m, c))
    for _column, _key in (("density", "wdist_density"), ("num_elems", "wdist_num_elems")):
        metric(f"{_mode}.{_key}", f"{_mode.upper()}: Wasserstein distance of {_column} (seeded subset of "
               "1000 valid crystals vs every reference crystal)", "lower", G, _reference(_key, _mode),
               VALID_AND_REF_FACTS)(
            lambda ctx, m=_mode, c=_column: _wdist(ctx, m, False, c))

for _key, _which in (("comp_div", 1), ("struct_div", 0)):
    metric(f"cdvae.{_key}", f"CDVAE: mean pairwise distance of the {('structure', 'scaled composition')[_which]} "
           "fingerprints of the seeded 1000-crystal subset", "higher", G, reference_keys(_key, "cdvae"), VALID)(
        lambda ctx, w=_which: _diversity(ctx, "cdvae", False, w))

for _key in COVERAGE:
    metric(f"cdvae.{_key}", f"CDVAE: {COVERAGE_TEXT[_key]} (generated set: every crystal with fingerprints, "
           "valid or not; minima taken independently; COV-P over all requested samples)",
           "higher" if _key.startswith("cov") else "lower", G,
           {"cdvae": _key, "diffcsp": _key, "gencsp": f"cdvae.{_key}"}, BOTH_FINGERPRINTED)(
        lambda ctx, k=_key: ctx.once("cdvae-coverage", lambda: _cdvae_coverage(ctx))[k])

# --- gencsp: corrected and additional metrics ----------------------------------------------

def _gencsp(name: str, description: str, direction: str, needs=VALID):
    return metric(name, description, direction, G, {"gencsp": name}, needs)


for _column in ("comp_valid", "struct_valid", "valid"):
    _gencsp(_column, f"fraction of requested samples {_column.replace('_', ' ')}; a NaN lattice is not "
            "constructed; SMACT exact", "higher", VALID if _column == "valid" else FACTS)(
        lambda ctx, c=_column: _fraction(ctx, "gencsp", c))


@_gencsp("subset_size", "crystals in the seeded distribution subset (1000, or every valid crystal when fewer)",
         "none")
def _subset_size(ctx):
    return len(ctx.subset("gencsp", True))


for _column, _key in (("density", "wdist_density"), ("num_elems", "wdist_num_elems")):
    _gencsp(_key, f"Wasserstein distance of {_column}: the seeded subset (size: subset_size) vs the reference",
            "lower", VALID_AND_REF_FACTS)(lambda ctx, c=_column: _wdist(ctx, "gencsp", True, c))
for _key, _which in (("comp_div", 1), ("struct_div", 0)):
    _gencsp(_key, "mean pairwise fingerprint distance in the seeded subset (size: subset_size)", "higher")(
        lambda ctx, w=_which: _diversity(ctx, "gencsp", True, w))
for _key in (*(f"{k}_valid" for k in COVERAGE), "cov_recall_paired", "cov_precision_paired"):
    _base = _key.removesuffix("_valid").removesuffix("_paired")
    _how = "ONE generated crystal within both cut-offs" if _key.endswith("paired") else "minima independent"
    _gencsp(_key, f"{COVERAGE_TEXT[_base]}; generated set: VALID crystals only, {_how}; precision over all "
            "requested samples", "higher" if _key.startswith("cov") else "lower", BOTH_FINGERPRINTED)(
        lambda ctx, k=_key: ctx.once("valid-coverage", lambda: _valid_coverage(ctx))[k])


@_gencsp("fd_crystalnn", "Fréchet distance between Gaussians fitted to the CrystalNN fingerprints of the subset "
         "and of the reference set (Sultanov et al. 2023)", "lower", BOTH_FINGERPRINTED)
def _fd_crystalnn(ctx):
    from .distribution import frechet_distance

    return frechet_distance(ctx.arrays("gen", list(ctx.subset("gencsp", True)))[0], ctx.ref_arrays[0])


@_gencsp("fd_chgnet", "Fréchet distance on CHGNet crystal features (the learned-feature FD; the paper's CGCNN "
         "weights are not available offline)", "lower", BOTH_FINGERPRINTED)
def _fd_chgnet(ctx):
    from .distribution import frechet_distance

    if not ctx.settings.chgnet:
        return SKIP
    if len(ctx.subset("gencsp", True)) < 2:  # NaN whatever the reference: spare featurizing it
        return float("nan")
    gen, ref = ctx.once("chgnet", lambda: ctx.chgnet_features("gencsp"))
    return frechet_distance(gen, ref)


@_gencsp("above_p1_fraction", "fraction of valid crystals with more symmetry than P1 (spglib, symprec in "
         "provenance)", "higher", {"pred": ("struct_fp", "comp_fp", "spacegroup")})
def _above_p1(ctx):
    groups = ctx.gen["spacegroup"].to_numpy(dtype=float)[list(ctx.valid_rows("gencsp"))]
    return float((groups > 1).mean()) if len(groups) else float("nan")


@_gencsp("unique_rate", "distinct structures / valid crystals (StructureMatcher defaults, same composition)",
         "higher")
def _unique(ctx):
    groups = ctx.once("unique-novel", ctx.unique_and_novel)
    return len({label for label, _ in groups.values()}) / len(groups) if groups else float("nan")


@_gencsp("novel_rate", "valid crystals matching no training structure / valid crystals (needs --train)", "higher")
def _novel(ctx):
    if ctx.inputs.train is None:
        return SKIP
    groups = ctx.once("unique-novel", ctx.unique_and_novel)
    return sum(bool(n) for _, n in groups.values()) / len(groups) if groups else float("nan")
