"""Registry of machine-learned interatomic potentials, by name.

A potential answers `evaluate(atoms_list)` with one `(energy eV, forces (n, 3) eV/A,
stress (6,) eV/A^3 Voigt, ASE sign)` tuple or one exception per structure, so that one
bad structure never takes its batch down. CHGNet evaluates a batch in one model call;
the others wrap their ASE calculator. CHGNet and SevenNet ship their weights in the
wheel; MACE, ORB and MatterSim need `weights=` a local file (compute nodes are offline).

`corrections` says how the energies relate to the Materials Project hull:
`included` - the training targets were MP2020-corrected energies (CHGNet), so no
correction is applied again; `mp2020` - raw PBE(+U) energies, corrected with
MaterialsProject2020Compatibility before any comparison with MP references.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from orchestrator.errors import GencspError


class PotentialError(GencspError):
    """A potential that cannot be loaded here: unknown name, package or weights missing."""


@dataclass(frozen=True)
class LoadOptions:
    device: str = "cpu"
    model: str | None = None  # a variant of the family (e.g. "0.3.0", "7net-l3i5")
    weights: str | None = None  # local weights file
    threads: int | None = None  # torch CPU threads (default: all cores)


@dataclass(frozen=True)
class PotentialSpec:
    name: str
    distribution: str  # pip name, for the version and the install hint
    module: str
    default_model: str | None
    weights: str  # "wheel" or "path"
    corrections: str  # "included" | "mp2020"
    loader: Callable[[LoadOptions], Callable]


class Potential:
    """A loaded potential: `evaluate` plus what identifies it in the records."""

    def __init__(self, spec: PotentialSpec, evaluate: Callable, options: LoadOptions):
        self.spec, self.evaluate, self.options = spec, evaluate, options

    def identity(self) -> dict:
        return identity(self.spec.name, self.options)


def identity(name: str, options: LoadOptions) -> dict:
    """What identifies a potential in the records: package version, model variant, and the exact
    checkpoint file the loader reads (path and sha256), whether it ships in the wheel or is given."""
    found = spec(name)
    try:
        version = metadata.version(found.distribution)
    except metadata.PackageNotFoundError:
        version = "not installed"
    ident = {"name": found.name, "package": found.distribution, "version": version,
             "model": options.model or found.default_model, "corrections": found.corrections,
             "checkpoint": None, "checkpoint_sha256": None}
    try:
        path = checkpoint_file(name, options)
    except PotentialError as exc:
        ident["checkpoint_error"] = str(exc)
        return ident
    if path is not None:
        ident.update(checkpoint=str(path), checkpoint_sha256=_sha256(str(path), *_stamp(path)))
    return ident


def _stamp(path: Path) -> tuple[int, int]:
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """A checkpoint's sha256, hashed once per (path, size, mtime) in this process."""
    from orchestrator.hashing import sha256_file

    return sha256_file(path)


def checkpoint_file(name: str, options: LoadOptions) -> Path | None:
    """The checkpoint file the loader of `name` reads with these options (None: package not installed)."""
    import importlib.util

    found = spec(name)
    if options.weights:
        if not Path(options.weights).is_file():
            raise PotentialError(f"{options.weights}: weights file not found for potential {name!r}")
        return Path(options.weights)
    if found.weights == "path" or importlib.util.find_spec(found.module) is None:
        return None
    return WHEEL_CHECKPOINTS[name](options.model or found.default_model)


def _chgnet_checkpoint(model: str) -> Path:
    """CHGNet.load's file: the one checkpoint in chgnet/pretrained/<model>/ of the installed package."""
    import chgnet

    files = sorted((Path(chgnet.__file__).parent / "pretrained" / model).glob("*.pth.tar"))
    if len(files) != 1:
        raise PotentialError(f"chgnet model {model!r}: expected one checkpoint in the package, found {len(files)}")
    return files[0]


def _sevennet_checkpoint(model: str) -> Path:
    """SevenNet's file for a pretrained name, never downloaded: compute nodes are offline, and a file
    fetched at run time would be a checkpoint nobody chose."""
    from unittest import mock

    from sevenn import util

    def refuse(path, url):
        raise PotentialError(f"sevennet model {model!r} is not in the installed wheel ({path}); download "
                             f"{url} on a machine with network and pass --weights FILE")

    try:
        with mock.patch.object(util, "download_checkpoint", refuse):
            return Path(util.pretrained_name_to_path(model))
    except (ValueError, FileNotFoundError) as exc:
        raise PotentialError(f"sevennet model {model!r}: {exc}") from exc


def _stress_voigt(stress_3x3):
    from ase.stress import full_3x3_to_voigt_6_stress

    return full_3x3_to_voigt_6_stress(stress_3x3)


def _chgnet(options: LoadOptions) -> Callable:
    from ase.units import GPa
    from chgnet.model import CHGNet
    from pymatgen.io.ase import AseAtomsAdaptor

    if options.weights:
        model = CHGNet.from_file(options.weights).to(options.device)
    else:
        model = CHGNet.load(model_name=options.model or "0.3.0", use_device=options.device, verbose=False)
    # Generated cells may hold an atom out of every neighbour's reach; CHGNet still gives
    # its energy (no force on it), and the relaxation records what happens.
    model.graph_converter.set_isolated_atom_response("ignore")

    def predict(graphs: list) -> list:
        out = model.predict_graph(graphs, task="efs", batch_size=len(graphs))
        out = [out] if isinstance(out, dict) else out
        # CHGNet predicts eV/atom and GPa; ASE wants eV and eV/A^3
        return [(float(p["e"]) * (len(g.atomic_number) if model.is_intensive else 1), p["f"],
                 _stress_voigt(p["s"] * GPa)) for p, g in zip(out, graphs, strict=True)]

    def evaluate(atoms_list: list) -> list:
        results: list = [None] * len(atoms_list)
        graphs, slots = [], []
        for i, atoms in enumerate(atoms_list):
            try:
                graphs.append(model.graph_converter(AseAtomsAdaptor.get_structure(atoms)))
                slots.append(i)
            except Exception as exc:  # noqa: BLE001 - recorded per structure
                results[i] = exc
        if graphs:
            try:
                for i, value in zip(slots, predict(graphs), strict=True):
                    results[i] = value
            except Exception:  # noqa: BLE001 - find the structure that broke the batch
                for i, graph in zip(slots, graphs, strict=True):
                    try:
                        results[i] = predict([graph])[0]
                    except Exception as exc:  # noqa: BLE001
                        results[i] = exc
        return results

    return evaluate


def _ase(make_calculator: Callable[[LoadOptions], object]) -> Callable[[LoadOptions], Callable]:
    """Wrap an ASE calculator: structures are evaluated one after the other."""

    def loader(options: LoadOptions) -> Callable:
        calc = make_calculator(options)

        def evaluate(atoms_list: list) -> list:
            results = []
            for atoms in atoms_list:
                probe = atoms.copy()
                probe.calc = calc
                try:
                    results.append((probe.get_potential_energy(), probe.get_forces(), probe.get_stress()))
                except Exception as exc:  # noqa: BLE001 - recorded per structure
                    results.append(exc)
            return results

        return evaluate

    return loader


def _sevennet(options: LoadOptions):
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(model=str(checkpoint_file("sevennet", options)), device=options.device)


def _mace(options: LoadOptions):
    from mace.calculators import mace_mp

    return mace_mp(model=options.weights, device=options.device, default_dtype="float64")


def _orb(options: LoadOptions):
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.calculator import ORBCalculator

    make = getattr(pretrained, options.model or "orb_v3_conservative_inf_mpa")
    return ORBCalculator(make(device=options.device, weights_path=options.weights, compile=False), device=options.device)


def _mattersim(options: LoadOptions):
    from mattersim.forcefield import MatterSimCalculator

    return MatterSimCalculator(load_path=options.weights, device=options.device)


WHEEL_CHECKPOINTS = {"chgnet": _chgnet_checkpoint, "sevennet": _sevennet_checkpoint}
POTENTIALS = {spec.name: spec for spec in (
    PotentialSpec("chgnet", "chgnet", "chgnet", "0.3.0", "wheel", "included", _chgnet),
    PotentialSpec("sevennet", "sevenn", "sevenn", "7net-0", "wheel", "mp2020", _ase(_sevennet)),
    PotentialSpec("mace", "mace-torch", "mace", None, "path", "mp2020", _ase(_mace)),
    PotentialSpec("orb", "orb-models", "orb_models", "orb_v3_conservative_inf_mpa", "path", "mp2020", _ase(_orb)),
    PotentialSpec("mattersim", "mattersim", "mattersim", None, "path", "mp2020", _ase(_mattersim)),
)}


def spec(name: str) -> PotentialSpec:
    if name not in POTENTIALS:
        import difflib

        close = difflib.get_close_matches(name, POTENTIALS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PotentialError(f"unknown potential {name!r}{hint}; choose from {', '.join(POTENTIALS)}")
    return POTENTIALS[name]


def load(name: str, options: LoadOptions = LoadOptions()) -> Potential:
    """Load a potential by name, with a one-line error when its package or weights are missing."""
    import importlib.util

    found = spec(name)
    if importlib.util.find_spec(found.module) is None:
        raise PotentialError(f"potential {name!r} needs the package {found.distribution!r}: "
                             f"pip install {found.distribution}")
    if found.weights == "path":
        if not options.weights:
            raise PotentialError(f"potential {name!r} has no weights in its package: pass a local weights "
                                 f"file (--weights PATH), downloaded beforehand on a machine with network")
        if not Path(options.weights).is_file():
            raise PotentialError(f"{options.weights}: weights file not found for potential {name!r}")
    # Idle OpenMP threads yield instead of spinning: on a shared node, spinning threads
    # made CHGNet 5-8x slower here (measured with 2 threads while other jobs ran).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    return Potential(found, found.loader(options), options)
