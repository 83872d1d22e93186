"""Structure matching over many pairs: bucket first, reduce each structure once.

Two structures can only match (StructureMatcher without supercells, the setting of every
profile) when they have the same reduced composition and the same primitive-cell size
(uniqueness.py says why both are exact preconditions). `buckets` finds both facts for each
structure (cached). Within a bucket every structure is reduced to its primitive Niggli cell
once, and each pair is matched on the reduced cells: `rms_reduced` takes the steps of
`StructureMatcher.get_rms_dist` after its reduction, so the numbers are those of
`matching.rms_of_pair` (tests/test_metrics_metre.py checks it), several times faster when a
structure takes part in many pairs.
"""

from __future__ import annotations

import time

from .matching import TOLERANCES, pair_key

CHUNK_PAIRS = 256  # pairs per task: tasks of one bucket share no work, so keep them large


def buckets(texts: dict[str, str], workers: int, cache, progress: bool, timing) -> dict[str, tuple | None]:
    """{key: CIF} -> {key: (reduced composition, primitive sites) or None when unreadable}."""
    from .uniqueness import primitive_facts

    facts = primitive_facts(texts, workers, cache, progress, timing)
    return {k: (f["composition"], f["sites"]) if f["composition"] is not None else None for k, f in facts.items()}


def rms_reduced(matcher, pred, truth) -> float | None:
    """`matcher.get_rms_dist(pred, truth)[0]` for structures already reduced (uniqueness._reduce)."""
    pred, truth = matcher._process_species([pred, truth])
    pred, truth, fu, s1_supercell = matcher._preprocess(pred, truth, skip_structure_reduction=True)
    match = matcher._match(pred, truth, fu, s1_supercell, use_rms=True, break_on_match=False)
    return None if match is None else float(match[0])


def _reduced(texts: dict[str, str]) -> dict[str, object]:
    """{key: reduced structure, or the error message when it cannot be read or reduced}."""
    from .uniqueness import _reduce

    out = {}
    for key, text in texts.items():
        try:
            out[key] = _reduce(text)
        except Exception as exc:  # noqa: BLE001 - that structure's pairs are no match, with the message
            out[key] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def _rms_chunk(items: list[tuple]) -> tuple[list[tuple], float]:
    """Each item: (tolerance, {pred key: CIF}, {truth key: CIF}, [(pred key, truth key)]).
    Returns (pair key, rms, message) triples."""
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher

    start = time.process_time()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tolerance, preds, truths, pairs in items:
            matcher = StructureMatcher(**TOLERANCES[tolerance])
            preds, truths = _reduced(preds), _reduced(truths)
            for p, t in pairs:
                a, b = preds[p], truths[t]
                rms, message = None, a if isinstance(a, str) else (b if isinstance(b, str) else None)
                if message is None:
                    try:
                        rms = rms_reduced(matcher, a, b)
                    except Exception as exc:  # noqa: BLE001 - as matching.rms_of_pair: no match, message kept
                        message = f"{type(exc).__name__}: {exc}"[:300]
                out.append((pair_key(p, t, tolerance), rms, message))
    return out, time.process_time() - start


def _tasks(pairs: list[tuple], tolerance: str) -> list[list[tuple]]:
    """Missing pairs -> one-item chunks of at most CHUNK_PAIRS pairs, each pair's structures with it."""
    by_bucket: dict = {}
    for pred_key, pred_text, truth_key, truth_text, bucket in pairs:
        by_bucket.setdefault(bucket, []).append((pred_key, pred_text, truth_key, truth_text))
    tasks = []
    for members in by_bucket.values():
        for start in range(0, len(members), CHUNK_PAIRS):
            part = members[start:start + CHUNK_PAIRS]
            tasks.append([(tolerance, {p: pt for p, pt, _, _ in part}, {t: tt for _, _, t, tt in part},
                           [(p, t) for p, _, t, _ in part])])
    return sorted(tasks, key=lambda chunk: -len(chunk[0][3]))


def rms_of_pairs(pairs: list[tuple], tolerance: str, workers: int, cache, progress: bool, timing,
                 label: str = "matching structures") -> dict[str, tuple]:
    """pairs: (pred key, pred CIF, truth key, truth CIF, bucket) -> {pair_key: (rms | None, message)}.
    Results are cached under the same keys as `matching.compute_pairs`."""
    from .matching import run_pair_chunks

    wanted = {pair_key(p[0], p[2], tolerance): p for p in pairs}
    results = cache.pairs(sorted(wanted))
    todo = [p for key, p in wanted.items() if key not in results]
    if todo:
        run_pair_chunks(_rms_chunk, _tasks(todo, tolerance), lambda item: [pair_key(p, t, item[0]) for p, t in item[3]],
                        len(todo), results, workers, cache, progress, timing, label)
    return results
