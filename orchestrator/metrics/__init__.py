"""Metrics: validity, fingerprints (+ cache), coverage, distributions, Fréchet distances,
CSP matching, uniqueness/novelty, symmetry, cost. Profiles `cdvae`, `diffcsp` reproduce
the reference scripts; `gencsp` (default) reports them beside the corrected metrics.

Heavy libraries are imported inside the functions that need them.
"""

from __future__ import annotations


def evaluate_run(run_path, profile: str = "gencsp", workers: int | None = None, seed: int = 0,
                 progress: bool = True, **options) -> dict:
    """Evaluate a run directory; writes runs/<id>/metrics/{summary.json, provenance.json, structures.parquet}."""
    from .evaluate import evaluate_run as run

    return run(run_path, profile=profile, workers=workers, seed=seed, progress=progress, **options)


def evaluate(inputs, profile: str = "gencsp", settings=None):
    """Evaluate loaded inputs (`orchestrator.metrics.inputs`); returns a Result (metrics, table, provenance)."""
    from .context import Settings
    from .evaluate import evaluate as run

    return run(inputs, profile, settings or Settings())
