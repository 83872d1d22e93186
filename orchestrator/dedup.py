"""Duplicate structures within a dataset split and across its other splits (`gencsp data dedup`).

Two structures are duplicates when pymatgen's StructureMatcher fits them (tolerances named,
default `strict`: pymatgen's defaults ltol 0.2, stol 0.3, angle 5; `loose`: CDVAE's). Only
structures of the same reduced composition and primitive-cell size are compared (exact
preconditions of a match, see metrics/uniqueness.py), each reduced once (metrics/reduced_matching.py),
buckets in parallel. Groups follow `StructureMatcher.group_structures`: in split order, each
structure joins the first earlier group whose representative (its first member) fits it.
Across splits, a group of split S is also in split T when its representative fits the
representative of a group of T. A polymorph is another unique structure of the same reduced
composition.

`group_texts` caches a grouping under `$GENCSP_HOME/dedup/groups/` by the hash of the texts
in order, the tolerances and the pymatgen version (the metrics reuse it for their references);
`dedup_split` writes the recorded mapping `$GENCSP_HOME/dedup/<name>/<split>.<tolerance>.json`
and reuses it while every split file, the tolerances and pymatgen are unchanged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import GencspError

DEDUP_VERSION = "1"
TOLERANCE_NAMES = ("strict", "loose")
DISTINCT_CHUNK = 16  # members per task when they are matched independently (across splits)


class DedupError(GencspError):
    """A split that cannot be de-duplicated as asked."""


@dataclass
class Grouping:
    """labels[i]: index of the representative of structure i's group (None: unreadable);
    also_in[r]: for a representative r, the index of the matching representative of the other set."""

    labels: list[int | None]
    also_in: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    crashed: int = 0  # structures of buckets whose worker died: left as their own groups


def _fits(matcher, a, b) -> bool:
    return matcher.fit(a, b, skip_structure_reduction=True)


def _group_bucket(item: tuple) -> tuple[list[tuple[int, int | None]], list[tuple[int, int]]]:
    """(tolerance, [(index, CIF)] of the set, [(index, CIF)] representatives of the other set, distinct:
    the set is already one structure per group) -> ([(index, label)], [(representative, other one)])."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from .metrics.matching import TOLERANCES
    from .metrics.reduced_matching import _reduced

    tolerance, members, others, distinct = item
    matcher = StructureMatcher(**TOLERANCES[tolerance])
    reduced = _reduced({i: text for i, text in members})
    other = {j: s for j, s in _reduced({j: text for j, text in others}).items() if not isinstance(s, str)}
    labels, reps, also = [], [], []
    for i, _ in members:
        structure = reduced[i]
        if isinstance(structure, str):
            labels.append((i, None))
            continue
        label = None if distinct else next((r for r in reps if _fits(matcher, reduced[r], structure)), None)
        if label is None:
            reps.append(i)
            label = i
            match = next((j for j, s in other.items() if _fits(matcher, s, structure)), None)
            if match is not None:
                also.append((i, match))
        labels.append((i, label))
    return labels, also


def _group_chunk(items: list[tuple]) -> tuple[list, list, float]:
    import warnings

    start = time.process_time()
    labels, also = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in items:
            found, matched = _group_bucket(item)
            labels += found
            also += matched
    return labels, also, time.process_time() - start


def _metrics_cache():
    from .metrics.cache import Cache, default_path
    from .metrics.fingerprints import RecordSettings
    from .metrics.records import version

    return Cache(default_path(), version(RecordSettings()))


def group(texts: list[str], tolerance: str = "strict", others: list[str] | None = None,
          workers: int | None = None, progress: bool = True, distinct: bool = False, cache=None) -> Grouping:
    """Group `texts` (in order; `distinct`: they are known to be one per group already); with
    `others` (representatives of another set), also find which group matches one of them.
    `cache`: the metrics cache for the primitive-cell facts (default: the one under $GENCSP_HOME)."""
    from .metrics.pool import default_workers, progress_bar, run_chunks
    from .metrics.records import Timing, text_sha
    from .metrics.reduced_matching import buckets

    if tolerance not in TOLERANCE_NAMES:
        raise DedupError(f"tolerance must be one of {', '.join(TOLERANCE_NAMES)}, not {tolerance!r}")
    started, workers, others = time.perf_counter(), workers or default_workers(), others or []
    shas = [text_sha(t) for t in texts]
    other_shas = [text_sha(t) for t in others]
    own, timing = cache is None, Timing()
    cache = _metrics_cache() if own else cache
    try:
        keys = buckets({**dict(zip(shas, texts, strict=True)), **dict(zip(other_shas, others, strict=True))},
                       workers, cache, progress, timing)
    finally:
        if own:
            cache.close()
    members: dict[tuple, list] = {}
    labels: list[int | None] = [None] * len(texts)
    for i, sha in enumerate(shas):
        if keys[sha] is not None:
            members.setdefault(keys[sha], []).append((i, texts[i]))
    reps: dict[tuple, list] = {}
    for j, sha in enumerate(other_shas):
        if keys[sha] is not None and keys[sha] in members:
            reps.setdefault(keys[sha], []).append((j, others[j]))
    items = []
    for key, found in members.items():
        if len(found) == 1 and key not in reps:
            labels[found[0][0]] = found[0][0]  # alone in its bucket: its own group, nothing to match
        else:  # distinct members are matched independently: split them for load balance
            size = DISTINCT_CHUNK if distinct else len(found)
            items += [[(tolerance, found[i:i + size], reps.get(key, []), distinct)] for i in range(0, len(found), size)]
    items.sort(key=lambda chunk: -len(chunk[0][1]) * (1 + len(chunk[0][2])))  # biggest first
    grouping = Grouping(labels)
    with progress_bar(progress) as bar:
        task = bar.add_task("duplicates", total=sum(len(c[0][1]) for c in items))

        def on_result(result) -> None:
            found, matched, _ = result
            for i, label in found:
                grouping.labels[i] = label
            grouping.also_in.update(matched)
            bar.update(task, advance=len(found), refresh=True)

        def on_crash(item) -> None:
            grouping.crashed += len(item[1])
            on_result(([(i, i) for i, _ in item[1]], [], 0.0))

        run_chunks(_group_chunk, items, workers, on_result, on_crash)
    grouping.seconds = time.perf_counter() - started
    return grouping


# --- cached groupings of texts (used by the metrics too) --------------------------------------------


def _pymatgen() -> str:
    from importlib import metadata

    return metadata.version("pymatgen")


def group_texts(texts: list[str], tolerance: str = "strict", workers: int | None = None,
                progress: bool = True, refresh: bool = False) -> Grouping:
    """`group(texts)`, cached on disk by the texts' hashes, tolerance, pymatgen and DEDUP_VERSION
    (`refresh`: recompute and replace)."""
    from .atomic import write_json
    from .hashing import sha256_json
    from .metrics.records import text_sha

    key = sha256_json([DEDUP_VERSION, tolerance, _pymatgen(), [text_sha(t) for t in texts]])
    path = paths.home() / "dedup" / "groups" / f"{key}.json"
    if path.is_file() and not refresh:
        data = json.loads(path.read_text())
        return Grouping(data["labels"], seconds=data["seconds"])
    found = group(texts, tolerance, workers=workers, progress=progress)
    if not found.crashed:  # a grouping with a crashed bucket is not kept
        write_json(path, {"labels": found.labels, "seconds": found.seconds, "tolerance": tolerance})
    return found


# --- the recorded mapping of a dataset split -------------------------------------------------------


def available_splits(name: str) -> list[str]:
    """Splits of a dataset that are here without the network: cached, in the mirror, or built in."""
    import os

    from . import datasets

    spec = datasets.get(name)
    mirror = os.environ.get("GENCSP_DATA_MIRROR")
    return [s for s in spec.splits if spec.origin == "builtin" or datasets.split_path(name, s).exists()
            or (mirror and (Path(mirror) / name / f"{s}.csv").exists())]


def mapping_path(name: str, split: str, tolerance: str) -> Path:
    return paths.home() / "dedup" / name / f"{split}.{tolerance}.json"


def _counts(ids: list[str], keys: list, grouping: Grouping) -> dict:
    readable = [i for i, label in enumerate(grouping.labels) if label is not None]
    reps = [i for i in readable if grouping.labels[i] == i]
    sizes: dict[int, int] = {}
    for i in readable:
        sizes[grouping.labels[i]] = sizes.get(grouping.labels[i], 0) + 1
    per_formula: dict = {}
    for r in reps:
        per_formula[keys[r]] = per_formula.get(keys[r], 0) + 1
    n = len(ids)
    return {"structures": n, "unreadable": n - len(readable), "unique": len(reps),
            "duplicates": len(readable) - len(reps),
            "duplicate_fraction": (len(readable) - len(reps)) / n if n else None,
            "unique_fraction": len(reps) / n if n else None,
            "groups_with_duplicates": sum(1 for s in sizes.values() if s > 1),
            "largest_group": max(sizes.values(), default=0),
            "formulas": len(per_formula),
            "unique_with_polymorph": sum(1 for r in reps if per_formula[keys[r]] > 1)}


def _formula_keys(texts: list[str]) -> list:
    """Reduced composition of each text (from the cached primitive facts), None when unreadable."""
    from .metrics.records import Timing, text_sha
    from .metrics.reduced_matching import buckets

    cache = _metrics_cache()
    try:
        facts = buckets({text_sha(t): t for t in texts}, 1, cache, False, Timing())
    finally:
        cache.close()
    return [(facts[text_sha(t)] or (None,))[0] for t in texts]


def _inputs(name: str, splits: list[str], tolerance: str) -> dict:
    from . import datasets
    from .hashing import sha256_file
    from .metrics.matching import TOLERANCES

    files = {s: datasets.fetch(name, s, progress=False) for s in splits}
    return {"version": DEDUP_VERSION, "tolerance": {"name": tolerance, **TOLERANCES[tolerance]},
            "pymatgen": _pymatgen(), "sha256": {s: sha256_file(p) for s, p in files.items()}}


def dedup_split(name: str, split: str, against: list[str] | None = None, tolerance: str = "strict",
                workers: int | None = None, progress: bool = True, refresh: bool = False) -> tuple[dict, Path, bool]:
    """The mapping of a split's duplicates (within, and against every other available split or
    `against`), its path, and whether it came from the cache."""
    from . import datasets
    from .atomic import write_json
    from .runs import now

    started_all = time.perf_counter()
    spec = datasets.get(name)
    if split not in spec.splits:
        raise DedupError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(spec.splits)}")
    others = [s for s in (against if against is not None else available_splits(name)) if s != split]
    inputs = _inputs(name, [split, *others], tolerance)
    path = mapping_path(name, split, tolerance)
    if path.is_file() and not refresh:
        cached = json.loads(path.read_text())
        if cached.get("inputs") == inputs:
            return cached, path, True
    frame = datasets.load(name, split)
    ids, texts = list(frame["material_id"]), list(frame["cif"])
    started = time.perf_counter()
    within = group_texts(texts, tolerance, workers, progress, refresh)
    within_seconds = time.perf_counter() - started
    keys = _formula_keys(texts)
    groups: dict[int, list[str]] = {}
    for i, label in enumerate(within.labels):
        if label is not None:
            groups.setdefault(label, []).append(ids[i])
    mapping = {
        "dataset": name, "split": split, "inputs": inputs, "created": now(),
        "definition": "duplicates: StructureMatcher fits (tolerances in inputs), compared within the same reduced "
                      "composition and primitive-cell size; groups in split order, each structure joining the first "
                      "group whose representative fits it; polymorph: another unique structure of the same reduced "
                      "composition",
        "counts": _counts(ids, keys, within),
        "seconds": {"within": round(within_seconds, 2)},
        "groups": [members for members in groups.values() if len(members) > 1],
        "unreadable": [ids[i] for i, label in enumerate(within.labels) if label is None],
        "across": {},
    }
    reps = [i for i, label in enumerate(within.labels) if label == i]
    for other in others:
        started = time.perf_counter()
        mapping["across"][other] = _across(name, other, texts, ids, reps, keys, within, tolerance, workers, progress,
                                           refresh)
        mapping["seconds"][other] = round(time.perf_counter() - started, 2)
    mapping["seconds"]["total"] = round(time.perf_counter() - started_all, 2)
    write_json(path, mapping)
    return mapping, path, False


def _across(name, other, texts, ids, reps, keys, within: Grouping, tolerance, workers, progress, refresh) -> dict:
    """The groups of this split that are also in split `other`, and its polymorphs there."""
    from . import datasets

    frame = datasets.load(name, other)
    other_ids, other_texts = list(frame["material_id"]), list(frame["cif"])
    theirs = group_texts(other_texts, tolerance, workers, progress, refresh)
    their_reps = [j for j, label in enumerate(theirs.labels) if label == j]
    found = group([texts[r] for r in reps], tolerance, others=[other_texts[j] for j in their_reps],
                  workers=workers, progress=progress, distinct=True)
    matched = {reps[a]: their_reps[b] for a, b in found.also_in.items()}
    members = [i for i, label in enumerate(within.labels) if label in matched]
    their_formulas = set(_formula_keys([other_texts[j] for j in their_reps]))
    polymorphs = [r for r in reps if r not in matched and keys[r] in their_formulas]
    n = len(texts)
    return {"structures_also_there": len(members), "fraction_also_there": len(members) / n if n else None,
            "unique_also_there": len(matched), "unique_with_polymorph_there": len(polymorphs),
            "matches": {ids[r]: other_ids[j] for r, j in matched.items()}}
