"""DFT task folders of a run and which structures go into them.

```
runs/<id>/dft/<engine>/
  settings.json           the engine's settings (every task of the folder shares them)
  tasks/<k>/task.json     what the task relaxes: a sample or a hull reference, and its start structure
  tasks/<k>/...           the engine's inputs, outputs, run.log, submissions.json
  tasks/<k>/record.json   the parsed result (written once by collect; the task is then done)
```

Samples are chosen from the run table (`all`) or from an MLIP relaxation
(`stable-by-mlip`, `metastable-by-mlip`: lowest energy above hull first, starting from
the MLIP-relaxed structure). Reference tasks (elemental prototypes, the reference
dataset's structures in the samples' chemical systems) make a hull of the same engine.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.atomic import write_json
from orchestrator.errors import GencspError

SELECTIONS = ("all", "stable-by-mlip", "metastable-by-mlip")
REFERENCES = ("none", "elements", "elements+dataset")
SAMPLE, REFERENCE = "sample", "reference"


class TaskError(GencspError):
    """A selection or task folder that cannot be used."""


@dataclass(frozen=True)
class TaskSpec:
    key: str  # unique in the folder: sample:<target>:<index> or reference:<id>
    role: str  # sample | reference
    target_id: str
    sample_index: int
    start: str  # where the start structure comes from: generated | <mlip>-relaxed | prototype | <dataset>
    cif: str
    relax_cell: bool = True

    @classmethod
    def sample(cls, target_id: str, index: int, start: str, cif: str) -> TaskSpec:
        return cls(f"{SAMPLE}:{target_id}:{index}", SAMPLE, target_id, int(index), start, cif)


def dft_dir(run_path: Path, engine: str) -> Path:
    return Path(run_path) / "dft" / engine


def select(run_path: Path, how: str = "all", top: int | None = None, max_atoms: int | None = None,
           mlip: str = "chgnet") -> list[TaskSpec]:
    """The samples to relax with DFT, in priority order."""
    import pandas as pd

    if how not in SELECTIONS:
        raise TaskError(f"unknown selection {how!r}; choose from {', '.join(SELECTIONS)}")
    if how == "all":
        table = pd.read_parquet(Path(run_path) / "structures.parquet")
        table = table[table["status"] == "accepted"]
        specs = [TaskSpec.sample(r.target_id, r.sample_index, "generated", r.cif) for r in table.itertuples()]
        sizes = table["num_atoms"].tolist()
    else:
        path = Path(run_path) / "relax" / mlip / "stability.parquet"
        if not path.is_file():
            raise TaskError(f"{path}: no MLIP relaxation to select from; run `gencsp relax {run_path} "
                            f"--engine {mlip}` first")
        table = pd.read_parquet(path)
        limit = 0.0 if how == "stable-by-mlip" else 0.1
        table = table[(table["relax_status"] == "ok") & (table["e_above_hull"] <= limit)]
        table = table.sort_values(["e_above_hull", "target_id", "sample_index"], kind="stable")
        specs = [TaskSpec.sample(r.target_id, r.sample_index, f"{mlip}-relaxed", r.cif_relaxed)
                 for r in table.itertuples()]
        sizes = table["num_atoms"].tolist()
    if max_atoms is not None:
        specs = [s for s, n in zip(specs, sizes, strict=True) if n <= max_atoms]
    return specs[:top] if top is not None else specs


def reference_specs(samples: list[TaskSpec], how: str, prototypes: tuple[str, ...],
                    dataset: str | None = None, split: str = "train") -> list[TaskSpec]:
    """Hull reference tasks for the chemical systems of `samples`."""
    if how not in REFERENCES:
        raise TaskError(f"unknown references {how!r}; choose from {', '.join(REFERENCES)}")
    if how == "none" or not samples:
        return []
    from orchestrator.structures import cif_text, parse_cif

    from .elements import prototypes_for, relaxes_cell
    from .references import chemical_systems

    systems = chemical_systems(parse_cif(s.cif) for s in samples)
    specs = []
    for element in sorted(set().union(*systems)):
        for kind, structure in prototypes_for(element, prototypes).items():
            key = f"element:{element}:{kind}"
            specs.append(TaskSpec(f"{REFERENCE}:{key}", REFERENCE, key, 0, "prototype", cif_text(structure),
                                  relaxes_cell(key)))
    if how == "elements+dataset" and dataset:
        from .assess import dataset_structures

        for key, structure in dataset_structures(dataset, split, systems).items():
            specs.append(TaskSpec(f"{REFERENCE}:{key}", REFERENCE, key, 0, dataset, cif_text(structure)))
    return specs


class DftFolder:
    """The task folders of one engine in one run."""

    def __init__(self, run_path: Path, engine: str):
        self.path = dft_dir(run_path, engine)
        self.tasks_dir = self.path / "tasks"

    def tasks(self) -> list[tuple[Path, TaskSpec]]:
        if not self.tasks_dir.is_dir():
            return []
        found = []
        for folder in sorted(p for p in self.tasks_dir.iterdir() if p.name.isdigit()):
            found.append((folder, TaskSpec(**json.loads((folder / "task.json").read_text()))))
        return found

    def check_settings(self, engine: str, settings: dict) -> None:
        path = self.path / "settings.json"
        if path.is_file():
            previous = json.loads(path.read_text())["settings"]
            settings = json.loads(json.dumps(settings))  # as stored: tuples are lists in JSON
            if previous != settings:
                changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
                raise TaskError(f"{self.path} holds {engine} tasks made with other settings "
                                f"({', '.join(changed)}); use the same settings or another run")

    def add(self, specs: list[TaskSpec], maker) -> list[Path]:
        """Write a folder (inputs included) for every spec not there yet; each appears whole or not at all."""
        from orchestrator.structures import parse_cif

        self.check_settings(maker.name, maker.settings())
        settings = self.path / "settings.json"
        if not settings.is_file():
            write_json(settings, {"engine": maker.name, "settings": maker.settings(), "versions": maker.versions()})
        existing = self.tasks()
        known = {spec.key for _, spec in existing}
        number = max((int(p.name) for p, _ in existing), default=-1) + 1
        added = []
        for spec in specs:
            if spec.key in known:
                continue
            final = self.tasks_dir / f"{number:05d}"
            staging = self.tasks_dir / f".{final.name}.writing"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            maker.write_inputs(parse_cif(spec.cif), staging, relax_cell=spec.relax_cell)
            write_json(staging / "task.json", asdict(spec))
            staging.rename(final)
            known.add(spec.key)
            added.append(final)
            number += 1
        return added
