"""What a report reads from run folders: samples, per-structure metrics, truths, relaxations, references.

Nothing here computes a metric: the numbers come from `metrics/` (gencsp
evaluate) and `relax/<engine>/` (gencsp relax). The only facts computed here
are those of reference crystals that a distribution plot needs (density, number
of elements, space group), read from the metrics cache when the evaluation put
them there, else computed with the same spglib tolerance.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from ..leaderboard import Entry, load_entry

CRYSTAL_SYSTEMS = (("triclinic", 2), ("monoclinic", 15), ("orthorhombic", 74), ("tetragonal", 142),
                   ("trigonal", 167), ("hexagonal", 194), ("cubic", 230))
KEY = ["target_id", "sample_index"]


def crystal_system(number) -> str | None:
    """Crystal system of an international space-group number (1-230)."""
    if number is None or number != number or not 1 <= int(number) <= 230:
        return None
    return next(name for name, last in CRYSTAL_SYSTEMS if int(number) <= last)


@functools.lru_cache(maxsize=1)
def _short_symbols() -> dict[int, str]:
    """International short symbol of each space-group number (spglib's first setting: P2_1/c, not P12_1/c1)."""
    import spglib

    symbols: dict[int, str] = {}
    for hall in range(1, 531):
        kind = spglib.get_spacegroup_type(hall)
        symbols.setdefault(kind.number, kind.international_short)
    return symbols


def spacegroup_label(number: int) -> str:
    return f"{_short_symbols()[int(number)]} ({int(number)})"


@dataclass
class Relaxation:
    engine: str
    table: object  # stability.parquet: one row per relaxed sample, e_above_hull in eV/atom
    summary: dict


@dataclass
class RunData:
    entry: Entry
    samples: object  # the run's structures.parquet: every requested sample
    metrics: object | None  # metrics/structures.parquet joined with the samples' CIFs, or None
    truths: object | None  # targets.parquet (CSP)
    relaxations: list[Relaxation] = field(default_factory=list)
    label: str = ""

    @property
    def task(self) -> str:
        return self.entry.task

    def valid(self):
        """Rows of valid samples (gencsp rules), or an empty frame without metrics."""
        if self.metrics is None:
            return self.samples.iloc[0:0]
        return self.metrics[self.metrics["valid"].astype(bool)]


def _read_parquet(path: Path):
    import pandas as pd

    from ..errors import GencspError

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise GencspError(f"{path}: cannot read as parquet ({exc})") from exc


def relaxations(run_path: Path) -> list[Relaxation]:
    """Every `relax/<engine>/` folder that finished (stability.parquet and summary.json written)."""
    import json

    found = []
    for folder in sorted((Path(run_path) / "relax").glob("*/")):
        table, summary = folder / "stability.parquet", folder / "summary.json"
        if table.is_file() and summary.is_file():
            found.append(Relaxation(folder.name, _read_parquet(table), json.loads(summary.read_text())))
    return found


def load_run(path) -> RunData:
    from ..errors import GencspError

    entry = load_entry(path)
    table_path = entry.path / "structures.parquet"
    if not table_path.is_file():
        raise GencspError(f"{entry.path}: no structures.parquet (the run has not finished: gencsp bench resumes it)")
    samples = _read_parquet(table_path)
    metrics = None
    if entry.evaluated and (entry.path / "metrics" / "structures.parquet").is_file():
        metrics = _read_parquet(entry.path / "metrics" / "structures.parquet")
        cifs = samples[[*KEY, "cif", "status", "seconds"]].copy()
        metrics = metrics.merge(cifs, on=KEY, how="left")
    truths = _read_parquet(entry.path / "targets.parquet") if (entry.path / "targets.parquet").is_file() else None
    return RunData(entry, samples, metrics, truths, relaxations(entry.path))


def label_runs(runs: list[RunData]) -> None:
    """A short, unique label per run: the model name, plus what tells two runs of it apart."""
    for run in runs:
        run.label = run.entry.model
    for run in runs:
        twins = [r for r in runs if r.label == run.entry.model]
        if len(twins) > 1:
            for extra in (lambda e: e.dataset, lambda e: e.task, lambda e: e.samples_text(),
                          lambda e: f"seed {e.config.get('seed')}", lambda e: e.path.name):
                if len({extra(t.entry) for t in twins}) > 1:
                    for twin in twins:
                        twin.label += f", {extra(twin.entry)}"
                    break
    for run in runs:  # every figure legend says when the weights are not the authors'
        kind = run.entry.weights.get("kind")
        if kind == "untrained":
            run.label += " (untrained: pipeline check)"
        elif kind == "trained here" and run.entry.weights.get("scale") == "smoke":
            run.label += " (smoke-trained here)"


def groups(runs: list[RunData]) -> dict[tuple[str, str], list[RunData]]:
    """Runs compared on one figure: same task, same reference (dataset/split)."""
    out: dict[tuple[str, str], list[RunData]] = {}
    for run in runs:
        out.setdefault((run.task, run.entry.dataset), []).append(run)
    return out


# --- reference crystals ---------------------------------------------------------------------------


def reference_cifs(group: list[RunData]) -> tuple[list[str], str]:
    """(CIF texts, description) of the reference a group is compared with."""
    first = group[0]
    if first.task == "csp":
        import pandas as pd

        truths = pd.concat([r.truths for r in group if r.truths is not None]).drop_duplicates("target_id")
        return list(truths["cif"]), f"the {len(truths)} CSP targets (truth structures of {first.entry.dataset})"
    from .. import datasets
    from ..errors import GencspError

    data = first.entry.info["dataset"]
    try:
        frame = datasets.load(data["name"], data["split"])
    except GencspError as exc:  # e.g. a cluster's split that is not cached here: plot the runs alone
        return [], f"none: {first.entry.dataset} is not available here ({exc})"
    return list(frame["cif"]), f"all {len(frame)} crystals of {first.entry.dataset}"


def _cheap_facts(text: str, symprec: float) -> dict:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from ..structures import StructureError, parse_cif

    try:
        structure = parse_cif(text)
    except StructureError:
        return {"density": None, "num_elems": None, "spacegroup": None}
    try:
        group = SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number()
    except Exception:  # noqa: BLE001 - spglib gives up on some cells; the plot leaves them out
        group = None
    return {"density": float(structure.density), "num_elems": len(structure.composition.elements),
            "spacegroup": group}


def reference_facts(texts: list[str], record_settings: dict | None = None):
    """density, num_elems, spacegroup of each text: from the metrics cache, else computed."""
    import pandas as pd

    from ..metrics.cache import Cache, default_path
    from ..metrics.fingerprints import RecordSettings
    from ..metrics.records import text_sha, version

    settings = RecordSettings(**(record_settings or {}))
    cache = Cache(default_path(), version(settings), readonly=True)
    try:
        shas = [text_sha(t) for t in texts]
        keys = cache.structure_keys(list(set(shas)))
        records = cache.records(sorted(set(keys.values())))
    finally:
        cache.close()
    rows = []
    for sha, text in zip(shas, texts, strict=True):
        record = records.get(keys.get(sha, ""))
        if record is None:
            rows.append(_cheap_facts(text, settings.symprec))
        else:
            rows.append({k: record.get(k) for k in ("density", "num_elems", "spacegroup")})
    return pd.DataFrame(rows, columns=["density", "num_elems", "spacegroup"])


# --- failed samples -----------------------------------------------------------------------------


def invalid_reason(row) -> str | None:
    """Why a sample that passed validation is not valid under the metrics' rules (None: valid)."""
    if bool(row.get("valid")):
        return None
    if isinstance(row.get("reason"), str):
        return f"unreadable structure: {row['reason']}"
    if not bool(row.get("constructed")):
        return "not constructed (non-finite or degenerate lattice)"
    if not bool(row.get("comp_valid")):
        return "composition not charge balanced (SMACT)"
    if not bool(row.get("struct_valid")):
        return "atoms closer than 0.5 Å (or volume < 0.1 Å³)"
    if isinstance(row.get("fp_reason"), str):
        return f"no fingerprint: {row['fp_reason']}"
    return "invalid"


def failed_samples(run: RunData):
    """One row per requested sample that did not give a valid structure: stage, reason, message."""
    import pandas as pd

    rows = []
    for row in run.samples.to_dict("records"):
        if row["status"] != "accepted":
            rows.append({"target_id": row["target_id"], "sample_index": int(row["sample_index"]),
                         "stage": "rejected by validation", "reason": row.get("reason") or "unknown",
                         "message": row.get("message") or ""})
    if run.metrics is not None:
        accepted = run.metrics[run.metrics["input_reason"].isna()] if "input_reason" in run.metrics else run.metrics
        for row in accepted.to_dict("records"):
            reason = invalid_reason(row)
            if reason:
                parts = [row.get("formula"), row.get("smact_reason") or row.get("message") or row.get("fp_message")]
                if "0.5 Å" in reason and row.get("min_dist") == row.get("min_dist"):  # not NaN
                    parts.append(f"shortest distance {row['min_dist']:.2f} Å")
                message = "; ".join(p for p in parts if isinstance(p, str) and p)
                rows.append({"target_id": row["target_id"], "sample_index": int(row["sample_index"]),
                             "stage": "invalid (metrics)", "reason": reason, "message": message})
    return pd.DataFrame(rows, columns=[*KEY, "stage", "reason", "message"])
