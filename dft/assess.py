"""Place relaxed samples on a hull and summarise stability over all requested samples.

Shared by `gencsp relax` (MLIP) and `gencsp dft collect` (VASP, GPAW): both hand over a
table of relaxation records (dft/records.py) and get `stability.parquet`,
`reference.json` and `summary.json` in their folder.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.atomic import write_json, write_parquet

from .elements import PROTOTYPES
from .hull import MP2020, above_hull, candidates_from_relaxations, scheme_for
from .records import KEY
from .references import Reference, ReferenceError, chemical_systems, from_file, from_mp

RENAMED = {"status": "relax_status", "error": "relax_error", "seconds": "relax_seconds"}


@dataclass(frozen=True)
class ReferenceChoice:
    source: str = "auto"  # auto | file | mp | engine | none
    entries: str | None = None  # file of computed entries (source file)
    dataset: str | None = None  # engine: dataset whose structures join the hull (default: the run's)
    split: str = "train"
    prototypes: tuple[str, ...] = field(default=PROTOTYPES)

    def resolved(self) -> str:
        import os

        if self.source != "auto":
            return self.source
        if self.entries:
            return "file"
        return "mp" if os.environ.get("MP_API_KEY") else "engine"


_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")


def _cif_elements(cif: str) -> frozenset[str] | None:
    """Elements named in a CIF's formula line (cheap); None when the line is absent."""
    found = _FORMULA_SUM.search(cif)
    return frozenset(re.findall(r"[A-Z][a-z]?", found.group(1))) if found else None


def dataset_structures(dataset: str, split: str, systems: set[frozenset[str]]) -> dict:
    """Structures of a dataset split lying inside one of the candidates' chemical systems."""
    from orchestrator import datasets
    from orchestrator.structures import StructureError, parse_cif

    table = datasets.load(dataset, split)
    found = {}
    for row in table.itertuples():
        elements = _cif_elements(row.cif)
        if elements is not None and not any(elements <= s for s in systems):
            continue
        try:
            structure = parse_cif(row.cif)
        except StructureError:
            continue
        if any(frozenset(e.symbol for e in structure.composition.elements) <= s for s in systems):
            found[f"{dataset}/{split}:{row.material_id}"] = structure
    return found


EngineReference = Callable[[dict, set, str, tuple], Reference]


def build_reference(choice: ReferenceChoice, relaxed, run_dataset: str | None,
                    engine_reference: EngineReference | None) -> Reference | None:
    """The hull reference for the candidate structures in `relaxed` (records with cif_relaxed)."""
    from orchestrator.structures import parse_cif

    source = choice.resolved()
    if source == "none":
        return None
    structures = [parse_cif(c) for c in relaxed.loc[relaxed["status"] == "ok", "cif_relaxed"]]
    systems = chemical_systems(structures)
    if source == "file":
        if not choice.entries:
            raise ReferenceError("--reference file needs --reference-entries FILE")
        return from_file(choice.entries)
    if source == "mp":
        return from_mp(systems)
    if source != "engine":
        raise ReferenceError(f"unknown reference source {source!r}; choose auto, file, mp, engine or none")
    if engine_reference is None:
        raise ReferenceError("this engine cannot compute its own reference here")
    dataset = choice.dataset or run_dataset
    pool = dataset_structures(dataset, choice.split, systems) if dataset and systems else {}
    elements = set().union(*systems) if systems else set()
    return engine_reference(pool, elements, f"{dataset}/{choice.split}", choice.prototypes)


def with_metrics_columns(joined, metrics_table: Path):
    """Add the metrics engine's `unique`, `novel` and `matched` (CSP) columns when `gencsp evaluate`
    has written its per-structure table; None when it has not."""
    import pandas as pd

    from .stability import unique_from_groups

    if not Path(metrics_table).is_file():
        return None
    metrics = pd.read_parquet(metrics_table)
    # the evaluation's own `unique` and `matched` when it wrote them; else derived from groups and RMS
    keep = [c for c in ("unique", "novel", "matched", "unique_group", "rms_loose") if c in metrics.columns]
    table = joined.merge(metrics[list(KEY) + keep], on=list(KEY), how="left")
    if "unique" not in table and "unique_group" in table:
        table["unique"] = unique_from_groups(table)
    if "matched" not in table and "rms_loose" in table:
        table["matched"] = table["rms_loose"].notna()
    return table


def metrics_from_evaluation(table) -> dict:
    """S.U.N./MetaSUN and the energy ranking of CSP samples, where the evaluation gives what they need."""
    from .stability import energy_ranking, sun_rates

    out: dict = {}
    if table is None:
        return {"sun_note": "run `gencsp evaluate` for uniqueness, novelty and matching (S.U.N., ranking)"}
    if {"unique", "novel"} <= set(table.columns):
        if table["novel"].notna().any():
            out.update(sun_rates(table))
        else:
            out["sun_note"] = "novelty unknown (the evaluation had no training split): no S.U.N."
    if "matched" in table.columns and table["matched"].any() and "e_final" in table.columns:
        out.update(energy_ranking(table))
    return out


def assess(folder: Path, run_samples, relaxed, reference: Reference | None, engine: str, correction: str,
           extra: dict | None = None, metrics_table: Path | None = None) -> dict:
    """Write stability.parquet, reference.json, summary.json in `folder`; return the summary.
    `metrics_table`: the evaluation's per-structure table (runs/<id>/metrics/structures.parquet)."""
    from .stability import join_samples, relaxation_rmsd, stability_rates

    folder = Path(folder)
    table = relaxed.rename(columns=RENAMED)
    if reference is not None:
        scheme = scheme_for(engine, correction, reference)
        candidates = candidates_from_relaxations(relaxed, with_mp_parameters=scheme == MP2020)
        hull = above_hull(candidates, reference, engine, correction).drop(columns=["engine"])
        table = table.merge(hull, on=list(KEY), how="left")
        write_json(folder / "reference.json", {**reference.record(), "candidate_scheme": hull["scheme"].iloc[0]
                                               if len(hull) else None})
    else:
        table["e_above_hull"] = math.nan
    write_parquet(folder / "stability.parquet", table)
    joined = join_samples(run_samples, table)
    ok = table["relax_status"] == "ok"
    summary = {
        "engine": engine,
        "samples_requested": len(run_samples),
        "relaxed_ok": int(ok.sum()),
        "relax_failed": int((~ok).sum()),
        "converged": int(table["converged"].fillna(False).astype(bool).sum()),
        "relax_seconds_summed": float(table["relax_seconds"].fillna(0).sum()),
        "reference": reference.record() if reference is not None else None,
        "scheme": table["scheme"].dropna().iloc[0] if "scheme" in table and table["scheme"].notna().any() else None,
        "hull_errors": int(table["hull_error"].notna().sum()) if "hull_error" in table else 0,
        **stability_rates(joined),
        **relaxation_rmsd(joined),
        **metrics_from_evaluation(with_metrics_columns(joined, metrics_table) if metrics_table else None),
        "denominator": "all requested samples (rejected, failed and unsupported included)",
        **(extra or {}),
    }
    write_json(folder / "summary.json", summary)
    return summary
