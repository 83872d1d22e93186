"""Stability from an ensemble of ML potentials, each relaxing and scoring against its own hull.

As LeMat-GenBench (github.com/LeMaterial/lemat-genbench,
`src/lemat_genbench/metrics/multi_mlip_stability_metrics.py` @ 53a8fe2): every engine's
energy above hull comes from its own relaxation and its own reference (`gencsp relax
--engine E`, `relax/<E>/stability.parquet`); per sample, the ensemble value is the mean over
the engines that gave one, its spread their standard deviation (population, numpy's
default), and a sample with fewer than MIN_ENGINES values has no ensemble value. Rates are
over ALL requested samples (a sample without a value is not stable), at both thresholds,
named in the keys: `@0.0eV` (stable: LeMat-GenBench, Matbench Discovery) and `@0.1eV`
(metastable: MatterGen's S.U.N.). Per engine, the rates come with the checkpoint identity
(package version, checkpoint file sha256) read from `relax/<E>/settings.json`; across
engines, their mean and standard deviation.

The ensemble is every engine that finished under `relax/`: `relax/ensemble.json` (summary)
and `relax/ensemble.parquet` (one row per requested sample).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .stability import METASTABLE_EV, STABLE_EV

MIN_ENGINES = 2  # LeMat-GenBench's min_mlips_required
THRESHOLDS = {f"stable_rate@{STABLE_EV}eV": STABLE_EV, f"metastable_rate@{METASTABLE_EV}eV": METASTABLE_EV}
KEY = ["target_id", "sample_index"]


def finished_engines(run_path) -> list[str]:
    """Engines whose `gencsp relax` finished (stability table and summary written), by name."""
    return sorted(p.parent.name for p in (Path(run_path) / "relax").glob("*/stability.parquet")
                  if (p.parent / "summary.json").is_file())


def engine_record(run_path, engine: str) -> dict:
    """What a number of an engine depends on: its checkpoint identity, hull reference and scheme."""
    folder = Path(run_path) / "relax" / engine
    settings = json.loads((folder / "settings.json").read_text()) if (folder / "settings.json").is_file() else {}
    summary = json.loads((folder / "summary.json").read_text())
    reference = summary.get("reference") or {}
    return {"engine": engine, "identity": settings.get("potential") or {},
            "reference": reference.get("description", reference.get("kind")), "scheme": summary.get("scheme")}


def table(samples, stabilities: dict) -> object:
    """Every requested sample with `e_above_hull.<engine>` per engine, the ensemble mean, std and count."""
    import numpy as np

    out = samples[KEY].copy()
    for engine, frame in stabilities.items():
        values = frame[KEY + ["e_above_hull"]].rename(columns={"e_above_hull": f"e_above_hull.{engine}"})
        out = out.merge(values, on=KEY, how="left")
    columns = [f"e_above_hull.{e}" for e in stabilities]
    values = out[columns].to_numpy(dtype=float) if columns else np.zeros((len(out), 0))
    count = np.isfinite(values).sum(axis=1)
    enough = count >= MIN_ENGINES
    with np.errstate(all="ignore"):
        mean, std = np.nanmean(values, axis=1), np.nanstd(values, axis=1)
    out["engines_with_value"] = count
    out["e_above_hull_mean"] = np.where(enough, mean, np.nan)
    out["e_above_hull_std"] = np.where(enough, std, np.nan)
    return out


def _rates(values, n: int) -> dict:
    import numpy as np

    values = np.asarray(values, dtype=float)
    return {name: float((np.isfinite(values) & (values <= t)).sum() / n) if n else math.nan
            for name, t in THRESHOLDS.items()}


def summary(frame, records: list[dict]) -> dict:
    """Per-engine rates with identities, the ensemble's rates, and the spread between engines."""
    import numpy as np

    n = len(frame)
    engines = []
    for record in records:
        values = frame[f"e_above_hull.{record['engine']}"]
        engines.append({**record, **_rates(values, n), "samples_with_value": int(values.notna().sum()),
                        "e_above_hull_mean": float(values.mean()) if values.notna().any() else None})
    ensemble: dict = {**_rates(frame["e_above_hull_mean"], n),
                      "samples_with_value": int(frame["e_above_hull_mean"].notna().sum())}
    for name in THRESHOLDS:
        per_engine = [e[name] for e in engines]
        ensemble[f"engine_mean.{name}"] = float(np.mean(per_engine)) if per_engine else None
        ensemble[f"engine_std.{name}"] = float(np.std(per_engine)) if per_engine else None
    spread = frame["e_above_hull_std"].dropna()
    ensemble.update({"e_above_hull_std_mean": float(spread.mean()) if len(spread) else None,
                     "e_above_hull_std_median": float(spread.median()) if len(spread) else None,
                     "e_above_hull_std_max": float(spread.max()) if len(spread) else None})
    return {"engines": engines, "ensemble": ensemble, "samples_requested": n, "min_engines": MIN_ENGINES,
            "thresholds_ev_per_atom": {"stable": STABLE_EV, "metastable": METASTABLE_EV},
            "denominator": "all requested samples (rejected, failed, unrelaxed included)",
            "definition": "per sample: mean and population std of the engines' energies above their own hulls, "
                          f"with at least {MIN_ENGINES} engines (LeMat-GenBench)"}


def assess_ensemble(run_path, write: bool = True) -> dict | None:
    """The ensemble of every finished engine of a run (None with fewer than MIN_ENGINES);
    written to relax/ensemble.json and relax/ensemble.parquet."""
    import pandas as pd

    from orchestrator.atomic import write_json, write_parquet

    from .relax_run import relax_dir, samples

    engines = finished_engines(run_path)
    if len(engines) < MIN_ENGINES:
        return None
    stabilities = {e: pd.read_parquet(relax_dir(run_path, e) / "stability.parquet") for e in engines}
    frame = table(samples(run_path), stabilities)
    result = summary(frame, [engine_record(run_path, e) for e in engines])
    if write:
        write_parquet(Path(run_path) / "relax" / "ensemble.parquet", frame)
        write_json(Path(run_path) / "relax" / "ensemble.json", result)
    return result
