"""Reference entries for convex hulls, from three sources.

- `from_file`: a user file of computed entries (pymatgen JSON, optionally gzipped),
  e.g. the Materials Project entries Matbench Discovery distributes.
- `from_mp`: the Materials Project API when MP_API_KEY is set (mp-api package),
  GGA/GGA+U entries with MP2020 corrections as MP serves them, cached on disk per
  chemical system. The key is read from the environment at call time and never
  stored, logged or recorded; error text is scrubbed of it.
- `from_engine`: structures relaxed with the same engine as the candidates (the
  reference dataset's structures in the candidates' chemical systems, plus elemental
  prototypes), each cached on disk by engine settings and structure.

A Reference has a `kind`: `mp` (MP-compatible energies, MP2020 scheme) or
`engine:<name>` (only comparable with the same engine), and a description that is
recorded with every energy above hull computed from it.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from orchestrator.errors import GencspError

MP_KIND = "mp"
MP_THERMO_TYPE = "GGA_GGA+U"


class ReferenceError(GencspError):
    """A reference that cannot be read or built."""


@dataclass
class Reference:
    kind: str
    description: str
    entries: list
    details: dict = field(default_factory=dict)
    _by_elements: dict | None = field(default=None, repr=False)
    _diagrams: dict = field(default_factory=dict, repr=False)

    def entries_within(self, elements: frozenset[str]) -> list:
        """Entries whose elements are all in `elements` (indexed once by element set)."""
        if self._by_elements is None:
            self._by_elements = {}
            for entry in self.entries:
                key = frozenset(el.symbol for el in entry.composition.elements)
                self._by_elements.setdefault(key, []).append(entry)
        found = []
        for size in range(1, len(elements) + 1):
            for subset in combinations(sorted(elements), size):
                found += self._by_elements.get(frozenset(subset), [])
        return found

    def phase_diagram(self, elements: frozenset[str]):
        """The PhaseDiagram of one chemical system, built once; raises ReferenceError when incomplete."""
        if elements not in self._diagrams:
            from pymatgen.analysis.phase_diagram import PhaseDiagram

            entries = self.entries_within(elements)
            have = {el.symbol for e in entries if e.composition.is_element for el in e.composition.elements}
            missing = sorted(elements - have)
            if missing:
                self._diagrams[elements] = ReferenceError(
                    f"the reference ({self.description}) has no entry for element(s) {', '.join(missing)}")
            else:
                self._diagrams[elements] = PhaseDiagram(entries)
        found = self._diagrams[elements]
        if isinstance(found, Exception):
            raise found
        return found

    def record(self) -> dict:
        return {"kind": self.kind, "description": self.description, "entries": len(self.entries), **self.details}


def _correction_names(entries) -> set[str]:
    return {adj.name for e in entries for adj in getattr(e, "energy_adjustments", [])}


def from_file(path: str | Path, kind: str = MP_KIND) -> Reference:
    """Computed entries from a pymatgen JSON file (a list, or {"entries": [...]}), .gz allowed."""
    from monty.json import MontyDecoder

    from orchestrator.hashing import sha256_file

    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"{path}: reference entries file not found")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle, cls=MontyDecoder)
    except (OSError, ValueError) as exc:
        raise ReferenceError(f"{path}: not a JSON file of computed entries ({exc})") from exc
    entries = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries or not all(hasattr(e, "energy") for e in entries):
        raise ReferenceError(f"{path}: expected a non-empty list of pymatgen ComputedEntry objects")
    names = _correction_names(entries)
    scheme = "MP2020 (as stored in the file)" if any("MP2020" in n for n in names) else "as stored in the file"
    return Reference(kind, f"entries file {path.name}", entries,
                     {"source": "file", "path": str(path.resolve()), "sha256": sha256_file(path), "scheme": scheme})


# --- Materials Project ----------------------------------------------------------------------------

def scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def mp_fetch(elements: list[str], api_key: str) -> tuple[list, dict]:
    """Entries of a chemical system and its subsystems from the MP API (the network call)."""
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise ReferenceError("the Materials Project reference needs the mp-api package: "
                             "pip install 'gencsp[mp]'") from exc
    with MPRester(api_key, mute_progress_bars=True) as rester:
        entries = rester.get_entries_in_chemsys(elements, additional_criteria={"thermo_types": [MP_THERMO_TYPE]})
        version = rester.get_database_version()
    from importlib import metadata

    return entries, {"database_version": version, "mp_api": metadata.version("mp-api")}


def mp_cache_dir() -> Path:
    from orchestrator.paths import home

    return home() / "hull" / "mp" / MP_THERMO_TYPE


def from_mp(chemical_systems, cache_dir: Path | None = None) -> Reference:
    """MP entries for every chemical system asked for (each a set of elements), cached per system."""
    from monty.json import MontyDecoder, MontyEncoder

    from orchestrator.atomic import write_bytes
    from orchestrator.runs import now

    api_key = os.environ.get("MP_API_KEY")
    cache_dir = Path(cache_dir or mp_cache_dir())
    entries, seen, versions = {}, set(), set()
    for system in sorted({"-".join(sorted(s)) for s in chemical_systems}):
        path = cache_dir / f"{system}.json.gz"
        if path.is_file():
            data = json.loads(gzip.decompress(path.read_bytes()), cls=MontyDecoder)
        else:
            if not api_key:
                raise ReferenceError(f"no cached Materials Project entries for {system} and MP_API_KEY is not set")
            try:
                found, info = mp_fetch(system.split("-"), api_key)
            except ReferenceError:
                raise
            except Exception as exc:  # noqa: BLE001 - network and API errors, reported without the key
                raise ReferenceError(f"Materials Project API for {system}: "
                                     f"{scrub(str(exc), api_key)[:300]}") from None
            data = {"chemsys": system, "fetched": now(), **info, "entries": found}
            write_bytes(path, gzip.compress(json.dumps(data, cls=MontyEncoder).encode()))
        versions.add(str(data.get("database_version")))
        for entry in data["entries"]:
            key = str(entry.entry_id) if entry.entry_id else repr(entry)
            entries.setdefault(key, entry)
        seen.add(system)
    version = ", ".join(sorted(versions))
    return Reference(MP_KIND, f"Materials Project {MP_THERMO_TYPE} (database {version})", list(entries.values()),
                     {"source": "mp-api", "database_version": version, "chemical_systems": len(seen),
                      "scheme": "MP2020 (applied by the Materials Project)", "cache": str(cache_dir)})


# --- the same engine ------------------------------------------------------------------------------

def engine_cache_dir(engine_key: str) -> Path:
    from orchestrator.paths import home

    return home() / "hull" / "engine" / engine_key


def from_engine(relaxer, structures: dict[str, object], elements: set[str], label: str,
                prototypes: tuple[str, ...] | None = None, potential=None) -> Reference:
    """Relax `structures` ({id: Structure}) and elemental prototypes with `relaxer`; cached per structure."""
    from orchestrator.hashing import sha256_json

    from .elements import PROTOTYPES, prototypes_for, relaxes_cell
    from .mlip import Item

    todo = dict(structures)
    for element in sorted(elements):
        for kind, structure in prototypes_for(element, prototypes or PROTOTYPES).items():
            todo[f"element:{element}:{kind}"] = structure
    # the checkpoint's hash is in the key: energies of another checkpoint are never reused
    identity = {k: v for k, v in relaxer.identity().items() if k != "checkpoint"}
    engine_key = f"{relaxer.engine}-{sha256_json([relaxer.settings(), identity])[:10]}"
    cache = engine_cache_dir(engine_key)
    found: dict[str, dict] = {}
    missing = []
    for key, structure in todo.items():
        path = cache / f"{sha256_json([key, structure.as_dict()])[:24]}.json"
        if path.is_file():
            found[key] = json.loads(path.read_text())
        else:
            missing.append((key, structure, path))
    if missing:
        from orchestrator.atomic import write_json

        records = relaxer.relax([Item(key, 0, s, relaxes_cell(key)) for key, s, _ in missing], potential)
        for (key, _, path), record in zip(missing, records, strict=True):
            found[key] = record.row()
            write_json(path, found[key])
    entries, failed = [], 0
    for key, row in found.items():
        if row["status"] != "ok":
            failed += 1
            continue
        entries.append(entry_from_record(row, key))
    return Reference(f"engine:{relaxer.engine}", f"{relaxer.engine} on {label} + elemental prototypes", entries,
                     {"source": "engine", "engine": relaxer.engine, "settings": relaxer.settings(), "potential": identity,
                      "structures": len(structures), "elements": sorted(elements), "failed": failed,
                      "scheme": "none (same engine as the candidates)", "cache": str(cache)})


def entry_from_record(row: dict, entry_id: str):
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    from orchestrator.structures import parse_cif

    return ComputedStructureEntry(parse_cif(row["cif_relaxed"]), row["energy"], entry_id=entry_id)


def chemical_systems(structures) -> set[frozenset[str]]:
    return {frozenset(el.symbol for el in s.composition.elements) for s in structures}
