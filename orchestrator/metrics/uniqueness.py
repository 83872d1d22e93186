"""Uniqueness (within the generated set) and novelty (against training structures).

metrics.md §3: pymatgen `StructureMatcher()` with its default tolerances, comparing
only structures of the same reduced composition. The matcher reduces both
structures to primitive Niggli cells and (without supercells) can only match
cells with the same number of sites, so structures are grouped by (reduced
composition, primitive-cell size) first; both are exact preconditions of a
match, not approximations. Grouping follows `StructureMatcher.group_structures`:
in input order, each structure joins the first earlier group it fits.
"""

from __future__ import annotations

import time

FACT_VERSION = "primitive-1"


def _reduce(text: str):
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    from ..structures import parse_cif

    return StructureMatcher._get_reduced_structure(Structure.from_sites(parse_cif(text)), True, True)


def _composition_key(structure) -> str:
    import math
    from collections import Counter

    counts = Counter(str(site.specie) for site in structure)
    gcd = math.gcd(*counts.values())
    return " ".join(f"{sp}{n // gcd}" for sp, n in sorted(counts.items()))


def _facts_chunk(items: list[tuple[str, str]]) -> tuple[list[tuple[str, dict]], float]:
    """(key, CIF) -> reduced composition and primitive-cell size (None when unreadable)."""
    import warnings

    start = time.process_time()
    out = []
    for key, text in items:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reduced = _reduce(text)
            out.append((key, {"composition": _composition_key(reduced), "sites": len(reduced)}))
        except Exception:  # noqa: BLE001 - an unreadable training structure cannot be matched
            out.append((key, {"composition": None, "sites": None}))
    return out, time.process_time() - start


def primitive_facts(texts: dict[str, str], workers: int, cache, progress: bool, timing) -> dict[str, dict]:
    """{key: CIF} -> {key: {"composition", "sites"}}, cached."""
    from .pool import chunked, progress_bar, run_chunks

    keys = {f"{FACT_VERSION}:{k}": k for k in texts}
    facts = {keys[k]: v for k, v in cache.facts(list(keys)).items()}
    todo = [(k, t) for k, t in texts.items() if k not in facts]
    if todo:
        with progress_bar(progress) as bar:
            task = bar.add_task("primitive cells", total=len(todo))

            def on_result(result) -> None:
                pairs, seconds = result
                cache.put_facts({f"{FACT_VERSION}:{k}": v for k, v in pairs})
                facts.update(pairs)
                timing.compute_seconds += seconds
                bar.update(task, advance=len(pairs), refresh=True)

            run_chunks(_facts_chunk, chunked(todo, workers), workers, on_result,
                       lambda item: on_result(([(item[0], {"composition": None, "sites": None})], 0.0)),
                       before_fork=cache.close)
    return facts


def _group_chunk(items: list[tuple]) -> tuple[list[tuple], float]:
    """Each item: (generated [(row, CIF)], training [CIF]) of one (composition, size) group.
    Returns (row, group label, novel or None) triples."""
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher

    start = time.process_time()
    matcher = StructureMatcher()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for generated, training in items:
            reduced = [(row, _reduce(text)) for row, text in generated]
            train = [_reduce(text) for text in training or ()]
            groups: list[tuple[int, object]] = []  # (label, representative)
            for row, structure in reduced:
                label = next((lab for lab, rep in groups
                              if matcher.fit(rep, structure, skip_structure_reduction=True)), None)
                if label is None:
                    label = row
                    groups.append((row, structure))
                novel = (not any(matcher.fit(structure, t, skip_structure_reduction=True) for t in train)
                         if training is not None else None)
                out.append((row, label, novel))
    return out, time.process_time() - start


def unique_and_novel(generated: list[tuple[int, str, dict]], training: list[tuple[str, dict]] | None,
                     workers: int, progress: bool, timing) -> dict[int, tuple[int, bool | None]]:
    """generated: (row, CIF, facts) of valid crystals; training: (CIF, facts) or None.
    Returns {row: (label of its uniqueness group, novel or None)}."""
    from .pool import progress_bar, run_chunks

    groups: dict[tuple, tuple[list, list]] = {}
    for row, text, fact in generated:
        groups.setdefault((fact["composition"], fact["sites"]), ([], []))[0].append((row, text))
    for text, fact in training or ():
        key = (fact["composition"], fact["sites"])
        if key in groups:
            groups[key][1].append(text)
    items = [[(gen, train if training is not None else None)] for gen, train in groups.values()]
    items.sort(key=lambda chunk: -len(chunk[0][0]) * (1 + len(chunk[0][1] or ())))  # biggest first
    result: dict[int, tuple[int, bool | None]] = {}
    with progress_bar(progress) as bar:
        task = bar.add_task("uniqueness and novelty", total=len(generated))

        def on_result(chunk_result) -> None:
            triples, seconds = chunk_result
            result.update({row: (label, novel) for row, label, novel in triples})
            timing.compute_seconds += seconds
            bar.update(task, advance=len(triples), refresh=True)

        run_chunks(_group_chunk, items, workers, on_result,
                   lambda item: on_result(([(row, row, None) for row, _ in item[0]], 0.0)))
    return result
