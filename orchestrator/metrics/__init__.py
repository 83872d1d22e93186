"""Metrics of generated and predicted crystal structures (definitions: docs/metrics.md).

    gencsp evaluate RUN                                   # a run directory: writes RUN/metrics/
    gencsp evaluate --predictions P.csv --reference perov_5/test --task generate --profile cdvae --out m.json

Profiles
- `cdvae`: CDVAE's `compute_metrics.py` to the definition, quirks included (coverage over
  every crystal with fingerprints, valid or not, with the structure and composition minima
  taken independently; RMS over matched targets only; a NaN lattice "constructed").
  Keys exactly: comp_valid, struct_valid, valid, comp_div, struct_div, wdist_density,
  wdist_num_elems, cov_recall, cov_precision, amsd_recall, amsd_precision, amcd_recall,
  amcd_precision (generate); match_rate, rms_dist (csp; the first sample of each target).
  CSP rates are over the PREDICTED targets (those a prediction row names), as the scripts
  score the pairs they are given; the provenance counts targets_predicted of
  targets_in_reference.
- `diffcsp`: DiffCSP's script: NaN structures not constructed, SMACT gives up above 1e7
  oxidation-state combinations, no diversity metrics; CSP needs prediction AND truth valid
  with one sample, the best valid sample with k.
- `gencsp` (default): the CDVAE numbers (`cdvae.*`, and `diffcsp.*` for CSP) side by side
  with corrected and additional metrics under their own names: validity with NaN not
  constructed, coverage over VALID crystals (`*_valid`) and paired coverage, Fréchet
  distances (`fd_crystalnn`, `fd_chgnet` on CHGNet crystal features), uniqueness, novelty
  (with --train), symmetry, match rates @1 and @k, strict matching, cRMSE, cost and failures;
  for CSP also `targets_predicted` and `split_match_rate@1/@k` (every target of the reference
  split, a target without a prediction counting as a miss);
  METRe (`metre@k`, `metre`), polymorph matches counted apart (`polymorph_match_rate@k`) and
  rates over de-duplicated targets (`dedup.*`, orchestrator/dedup.py) in metre_metrics.py; the
  stability ensemble of ML potentials (`ensemble.*`, dft/ensemble.py) in ensemble_metrics.py.

Fewer than 1000 valid crystals: the reference scripts stop with an error, and so do the
`cdvae` and `diffcsp` profiles. The `gencsp` profile takes every valid crystal instead and
reports `subset_size` beside the subset metrics; its `cdvae.*` subset metrics are then
null, with a note in the provenance.

Every requested sample counts: a sample the model failed, a rejected or unsupported
sample of a run, an unreadable CIF are "not constructed" in every denominator over
generated samples. Where a reference script would crash instead (an unreadable input, an
element without SMACT oxidation states, a reference crystal without fingerprints) gencsp
records a reason and goes on: the input is invalid (a reference crystal is left out of
coverage and named in the notes). Cells so dense that a CrystalNN sphere would hold more
than 20,000 atom images, and fingerprints taking more than 300 s, are not fingerprinted
(so invalid). CIF input cannot carry a negative lattice length; a left-handed or flat cell
counts as not constructed.

Only what the requested metrics read is computed: each metric declares the record parts it
reads (registry.py `needs`: the facts, the CrystalNN and Magpie fingerprints, the space group;
of the predictions, of every reference crystal, or of the predicted CSP targets' truths). CSP
never fingerprints the reference set, and fingerprints a prediction only where its validity
decides a rate (csp_metrics.py).

Speed: per-structure facts and fingerprints are cached in `paths.home()/cache/metrics.sqlite`
(keyed by the CIF text's hash and a canonical structure hash, plus the library versions);
misses are computed on every core (`--workers`); CrystalNN shares one Voronoi tessellation
per structure (crystalnn.py says why the numbers are the same); pairs of different reduced
composition are never sent to the structure matcher, which runs on every core like the
fingerprints. `benchmarks/metrics_speed.py` compares with CDVAE's and DiffCSP's own code.

Heavy libraries are imported inside the functions that need them.
"""

from __future__ import annotations


def evaluate_run(run_path, profile: str = "gencsp", workers: int | None = None, seed: int = 0,
                 progress: bool = True, **options) -> dict:
    """Evaluate a run directory; writes runs/<id>/metrics/{summary.json, provenance.json, structures.parquet}.

    options: train (CSV or NAME/SPLIT, for novelty), chgnet (bool, default True).
    """
    from .evaluate import evaluate_run as run

    return run(run_path, profile=profile, workers=workers, seed=seed, progress=progress, **options)


def evaluate(inputs, profile: str = "gencsp", settings=None):
    """Evaluate loaded inputs (`orchestrator.metrics.inputs`); returns a Result (metrics, table, provenance)."""
    from .context import Settings
    from .evaluate import evaluate as run

    return run(inputs, profile, settings or Settings())
