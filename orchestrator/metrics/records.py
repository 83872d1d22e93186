"""CIF texts -> per-structure records, through the persistent cache and a process pool.

A text is looked up by its sha256 (no parsing when warm); a miss is parsed in a
worker, which looks its canonical structure key up again (the same structure
written differently), and computes the record only if that misses too. The
parent writes every new record to the cache as its chunk comes back, so an
interrupted evaluation keeps what it finished.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from importlib import metadata

from .cache import Cache
from .fingerprints import (
    PARTS,
    RecordSettings,
    add_parts,
    has_parts,
    parse_usable,
    record_from_structure,
    unusable,
)
from .pool import default_workers

RECORD_VERSION = "2"  # bump when gencsp's own code changes a recorded number (2: records in parts)
TRANSIENT = ("timeout", "fingerprint_timeout", "worker_crashed")
NUMERIC_LIBRARIES = ("pymatgen", "matminer", "smact", "scipy", "numpy", "spglib")


def library_versions(names=NUMERIC_LIBRARIES) -> dict[str, str]:
    """Installed versions of `names` (the run provenance's list, plus any other package asked for)."""
    from ..runs import library_versions as run_libraries

    known = run_libraries()
    return {name: known[name] if name in known else _installed(name) for name in names}


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def version(settings: RecordSettings) -> str:
    libraries = ";".join(f"{k}={v}" for k, v in library_versions().items())
    return f"records-{RECORD_VERSION};symprec={settings.symprec};shared={settings.shared_voronoi};{libraries}"


def text_sha(text) -> str:
    return hashlib.sha256(str(text).encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass
class Timing:
    """Wall time of the evaluation and compute time summed over the processes that did it."""

    wall_seconds: float = 0.0
    compute_seconds: float = 0.0
    computed: int = 0  # records computed now
    cached: int = 0  # records read from the cache


# --- worker side -----------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(cache_path, cache_version, settings) -> None:
    if "cache" in _WORKER:  # in-process runs initialise again for every evaluation
        _WORKER["cache"].close()
    _WORKER.update(cache=Cache(cache_path, cache_version, readonly=True), settings=settings)


def _chunk_records(items: list[tuple[str, str, tuple]]) -> tuple[list[tuple[str, str, dict]], float, int]:
    """(text sha, text, parts) -> (text sha, structure key, record) triples, CPU seconds, cache hits."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen/matminer warn per structure; records keep the reasons
        return _records_of(items)


def _records_of(items: list[tuple[str, str, tuple]]) -> tuple[list[tuple[str, str, dict]], float, int]:
    from ..structures import StructureError

    start = time.process_time()
    settings, cache = _WORKER["settings"], _WORKER["cache"]
    out, parsed = [], []
    wanted = {sha: parts for sha, _, parts in items}
    for sha, text, _ in items:
        try:
            parsed.append((sha, parse_usable(text, settings)))
        except StructureError as exc:
            out.append((sha, f"text:{sha}", unusable(exc.reason, str(exc))))
        except Exception as exc:  # noqa: BLE001 - never let one text stop the chunk
            out.append((sha, f"text:{sha}", unusable("parse_error", f"{type(exc).__name__}: {exc}"[:300])))
    from .fingerprints import structure_key

    keys = {sha: structure_key(s) for sha, s in parsed}
    known = cache.records(sorted(set(keys.values())))
    hits = sum(keys[sha] in known and has_parts(known[keys[sha]], wanted[sha]) for sha, _ in parsed)
    for sha, structure in parsed:
        key, parts = keys[sha], wanted[sha]
        if key not in known or not has_parts(known[key], parts):
            try:
                known[key] = add_parts(known[key], structure, settings, parts) if key in known \
                    else record_from_structure(structure, settings, parts)
            except Exception as exc:  # noqa: BLE001
                known[key] = unusable("record_error", f"{type(exc).__name__}: {exc}"[:300]) | {"skey": key}
        out.append((sha, key, known[key]))
    return out, time.process_time() - start, hits


# --- parent side -----------------------------------------------------------------


def compute_records(texts: list, settings: RecordSettings = RecordSettings(), workers: int | None = None,
                    cache: Cache | None = None, progress: bool = True, label: str = "structures",
                    timing: Timing | None = None, parts: tuple | list[tuple] = PARTS) -> list[dict]:
    """One record per text (in order), holding at least `parts` (one tuple for every text, or a list
    of one tuple per text); identical texts share one record."""
    cache = cache or Cache(None, version(settings))
    timing = timing if timing is not None else Timing()
    start = time.perf_counter()
    shas = [text_sha(t) for t in texts]
    unique = dict(zip(shas, texts, strict=True))
    wanted: dict[str, set] = {}
    for sha, text_parts in zip(shas, parts if isinstance(parts, list) else [parts] * len(shas), strict=True):
        wanted.setdefault(sha, set()).update(text_parts)
    skeys = cache.structure_keys(list(unique))
    found = cache.records(sorted(set(skeys.values())))
    by_sha = {sha: found[skeys[sha]] for sha in unique if skeys.get(sha) in found
              and has_parts(found[skeys[sha]], wanted[sha])}
    todo = [(sha, str(text), tuple(sorted(wanted[sha]))) for sha, text in unique.items() if sha not in by_sha]
    timing.cached += len(by_sha)
    if todo:
        _compute(todo, settings, workers or default_workers(), cache, progress, label, timing, by_sha)
    timing.wall_seconds += time.perf_counter() - start
    return [by_sha[sha] for sha in shas]


def _compute(todo, settings, workers, cache, progress, label, timing, by_sha) -> None:
    from .pool import chunked, progress_bar, run_chunks

    parts = {p for _, _, item_parts in todo for p in item_parts}
    if workers > 1:
        preload(parts)
    with progress_bar(progress) as bar:
        task = bar.add_task(f"{'fingerprinting' if {'struct_fp', 'comp_fp'} & parts else 'reading'} {label}",
                            total=len(todo))

        def on_result(result) -> None:
            triples, seconds, hits = result
            cache.put_records([t for t in triples if cacheable(t[2])])
            for sha, _, record in triples:
                by_sha[sha] = record
            timing.compute_seconds += seconds
            timing.computed += len(triples) - hits
            timing.cached += hits
            bar.update(task, advance=len(triples), refresh=True)

        def on_crash(item) -> None:
            sha = item[0]
            on_result(([(sha, f"text:{sha}", unusable("worker_crashed", "the process computing it died"))], 0.0, 0))

        run_chunks(_chunk_records, chunked(todo, workers), workers, on_result, on_crash,
                   initializer=_init_worker, initargs=(cache.path, cache.version, settings),
                   before_fork=cache.close)


def preload(parts) -> None:
    """Import (and build) what the workers will use before they fork, so that every pool of an
    evaluation does not import matminer and pymatgen's local_env again in each worker."""
    from ..structures import parse_cif  # noqa: F401 - pymatgen.core and its CIF parser
    from .fingerprints import magpie
    from .validity import _metals

    _metals()
    if "struct_fp" in parts:
        from . import crystalnn

        crystalnn.featurizer()
    if "comp_fp" in parts:
        magpie()
    if "spacegroup" in parts:
        import pymatgen.symmetry.analyzer  # noqa: F401


def cacheable(record: dict) -> bool:
    """Outcomes that depend on the machine's load or luck are computed again next time."""
    return record["reason"] not in TRANSIENT and record["fp_reason"] not in TRANSIENT


def settings_dict(settings: RecordSettings) -> dict:
    return asdict(settings)
