"""CSP matching: RMS of each (prediction, truth) pair, then match rates over targets.

pymatgen `StructureMatcher.get_rms_dist(prediction, truth)[0]`, always in that
order (the matcher is not symmetric). A pair whose reduced compositions differ
is never sent to the matcher: with `attempt_supercell=False` (the default used
by every profile) a match needs a complete species-preserving assignment of
equally many sites, which different reduced compositions cannot have, so the
matcher would answer None. An exception in the matcher counts as no match, as
in the reference scripts (the message is kept in the per-structure table).
"""

from __future__ import annotations

import time

TOLERANCES = {
    "loose": {"stol": 0.5, "angle_tol": 10, "ltol": 0.3},  # CDVAE / DiffCSP
    "strict": {"stol": 0.3, "angle_tol": 5, "ltol": 0.2},  # pymatgen defaults
}
MATCH_VERSION = "1"


def _matcher(name: str):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**TOLERANCES[name])


def rms_of_pair(pred_text: str, truth_text: str, tolerance: str, parse=None) -> tuple[float | None, str | None]:
    """RMS distance (normalised by (V/N)^(1/3)) or None, and an error message if the matcher failed.
    `parse`: CIF text -> Structure (default parse_cif); the matcher copies what it is given."""
    import warnings

    from ..structures import parse_cif

    parse = parse or parse_cif
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _matcher(tolerance).get_rms_dist(parse(pred_text), parse(truth_text))
    except Exception as exc:  # noqa: BLE001 - the reference scripts count an exception as no match
        return None, f"{type(exc).__name__}: {exc}"[:300]
    return (None if result is None else float(result[0])), None


def _chunk_pairs(items: list[tuple]) -> tuple[list[tuple], float]:
    """A chunk's pairs, each CIF parsed once (a truth is in k pairs; a pair in two tolerances)."""
    import functools

    from ..structures import parse_cif

    start = time.process_time()
    parse = functools.lru_cache(maxsize=64)(parse_cif)
    out = [(key, *rms_of_pair(pred, truth, tolerance, parse)) for key, pred, truth, tolerance in items]
    return out, time.process_time() - start


def pair_key(pred_skey: str, truth_skey: str, tolerance: str) -> str:
    return f"{pred_skey}|{truth_skey}|{tolerance}"


def compute_pairs(tasks: list[tuple], workers: int, cache, progress: bool, timing) -> dict:
    """tasks: (key, prediction CIF, truth CIF, tolerance name) -> {key: (rms | None, message)}."""
    from .pool import chunked

    results = cache.pairs(sorted({t[0] for t in tasks}))
    todo = list({t[0]: t for t in tasks if t[0] not in results}.values())
    if todo:
        run_pair_chunks(_chunk_pairs, chunked(todo, workers, largest=8), lambda item: [item[0]], len(todo),
                        results, workers, cache, progress, timing, "matching structures")
    return results


def run_pair_chunks(function, chunks: list, crash_keys, total: int, results: dict, workers: int, cache,
                    progress: bool, timing, label: str) -> None:
    """Run `function` (a chunk -> ((key, rms, message) triples, seconds)) over chunks on every core, each
    result cached and added to `results`; `crash_keys(item)`: the keys of an item whose process died."""
    from .pool import progress_bar, run_chunks

    if workers > 1:  # imported once here, not in every worker after the fork
        import pymatgen.analysis.structure_matcher  # noqa: F401

        from ..structures import parse_cif  # noqa: F401
    with progress_bar(progress) as bar:
        task = bar.add_task(label, total=total)

        def on_result(result) -> None:
            triples, seconds = result
            new = {key: (rms, message) for key, rms, message in triples}
            cache.put_pairs(new)
            results.update(new)
            timing.compute_seconds += seconds
            bar.update(task, advance=len(triples), refresh=True)

        def on_crash(item) -> None:
            on_result(([(key, None, "the process matching it died") for key in crash_keys(item)], 0.0))

        run_chunks(function, chunks, workers, on_result, on_crash, before_fork=cache.close)


# --- rates over targets (pure functions of the pair table) -------------------------
# The pair table has one row per (target, sample) with columns target_id, sample_index,
# pred_valid (bool, in the profile's sense), truth_valid, rms (NaN: no match), and the
# number of targets is passed explicitly: targets without any prediction count as unmatched.


def best_per_target(pairs, rms_column: str, valid_column: str = "pred_valid"):
    """Per matched target, in the order the predictions first name them: the smallest RMS over its
    matched valid samples."""
    matched = pairs[pairs[valid_column] & pairs[rms_column].notna()]
    return matched.groupby("target_id", sort=False)[rms_column].min()


def match_summary(best, n_targets: int) -> dict:
    """match_rate = matched targets / targets; rms_dist = mean RMS over matched targets only, summed
    one after the other in the order of the predictions, as the reference scripts' `.mean()` of an
    object array does (numpy's pairwise sum of floats can differ in the last bit)."""
    return {"match_rate": float(len(best) / n_targets) if n_targets else float("nan"),
            "rms_dist": sum(best.tolist()) / len(best) if len(best) else float("nan")}


def crmse(best, n_targets: int, stol: float) -> float:
    """Mean over ALL targets, an unmatched target counting as `stol` (Martirossyan et al.)."""
    if not n_targets:
        return float("nan")
    return float((best.sum() + stol * (n_targets - len(best))) / n_targets)


def first_samples(pairs):
    """One sample per target (the lowest sample_index), as a one-sample reference evaluation reads."""
    return pairs.sort_values(["target_id", "sample_index"]).groupby("target_id", as_index=False).head(1)


def within_k(pairs, k: int):
    return pairs[pairs["sample_index"] < k]
