"""VASP relaxations the Materials Project way: MPRelaxSet inputs, custodian, vasprun parsing.

- `write_inputs`: INCAR, KPOINTS, POSCAR from pymatgen's `MPRelaxSet` (or
  `MPScanRelaxSet`); the real POTCAR when pymatgen knows the pseudopotentials
  (PMG_VASP_PSP_DIR), else `POTCAR.spec` (the symbols: the licensed POTCAR is made on
  the cluster). With custodian, `custodian.yaml` for `cstdn run`: MP's double
  relaxation, atomate2's default error handlers, a wall-time handler that stops VASP
  cleanly before the SLURM limit, and the vasprun/files validators.
- `command`: what an array task runs in its folder (`cstdn run custodian.yaml`, or plain
  `srun vasp_std`); `run` executes it here (the step a test replaces).
- `parse`: vasprun.xml -> a record with the ComputedStructureEntry (its parameters -
  POTCARs, U values, run type - are what MP2020 checks before correcting it).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.atomic import write_text
from orchestrator.errors import GencspError

from .records import FAILED, RelaxRecord, dft_record, short_error
from .shell import run_in_folder

INPUT_SETS = ("MPRelaxSet", "MPScanRelaxSet")
HANDLERS = ("VaspErrorHandler", "MeshSymmetryErrorHandler", "UnconvergedErrorHandler",
            "NonConvergingErrorHandler", "PotimErrorHandler", "PositiveEnergyErrorHandler",
            "FrozenJobErrorHandler", "StdErrHandler", "LargeSigmaHandler", "IncorrectSmearingHandler",
            "KspacingMetalHandler")
VALIDATORS = ("VasprunXMLValidator", "VaspFilesValidator")
VASPRUNS = ("vasprun.xml", "vasprun.xml.relax2", "vasprun.xml.gz", "vasprun.xml.relax2.gz")
FIRST_VASPRUNS = ("vasprun.xml.relax1", "vasprun.xml.relax1.gz")


class VaspInputError(GencspError):
    """VASP inputs that cannot be written (e.g. a POTCAR missing from PMG_VASP_PSP_DIR)."""


def psp_dir() -> str | None:
    """Where pymatgen finds POTCARs (environment or ~/.config/.pmgrc.yaml), if anywhere."""
    from pymatgen.core import SETTINGS

    return os.environ.get("PMG_VASP_PSP_DIR") or SETTINGS.get("PMG_VASP_PSP_DIR")


@dataclass(frozen=True)
class VaspMaker:
    input_set: str = "MPRelaxSet"
    user_incar_settings: dict = field(default_factory=dict)
    runner: str = "custodian"  # custodian | plain
    vasp_cmd: str = "srun vasp_std"
    double_relaxation: bool = True  # custodian: relax twice, the second from the first's CONTCAR (MP)
    max_errors: int = 5
    cpus: int = 40  # cores of one task (one node of Jean Zay cpu_p1)
    seconds: float = 4 * 3600.0  # wall time of a task; custodian stops VASP 5 minutes before it
    setup: tuple[str, ...] = ()  # shell lines before the task, e.g. "module load vasp/6.4.3"

    name = "vasp"

    @property
    def corrections(self) -> str:
        # MP2020 corrects GGA/GGA+U; r2SCAN energies need their own references
        return "mp2020" if self.input_set == "MPRelaxSet" else "none"

    def settings(self) -> dict:
        return asdict(self)

    def vasp_input_set(self, structure, relax_cell: bool = True):
        import pymatgen.io.vasp.sets as sets

        if self.input_set not in INPUT_SETS:
            raise ValueError(f"unknown input set {self.input_set!r}; choose from {', '.join(INPUT_SETS)}")
        incar = dict(self.user_incar_settings)
        if not relax_cell:
            incar["ISIF"] = 2  # a molecule in a box: positions only
        return getattr(sets, self.input_set)(structure, user_incar_settings=incar)

    def write_inputs(self, structure, directory: Path, relax_cell: bool = True) -> None:
        directory = Path(directory)
        psps = psp_dir()
        vasp_set = self.vasp_input_set(structure, relax_cell)
        try:
            vasp_set.write_input(directory, potcar_spec=psps is None)
        except (OSError, RuntimeError, ValueError) as exc:
            if psps is None:
                raise
            raise VaspInputError(f"PMG_VASP_PSP_DIR={psps}: cannot write the POTCAR of "
                                 f"{', '.join(vasp_set.potcar_symbols)} ({vasp_set.potcar_functional}): "
                                 f"{short_error(exc)}") from exc
        if self.runner == "custodian":
            write_text(directory / "custodian.yaml", self.custodian_spec())
        elif self.runner != "plain":
            raise ValueError(f"unknown runner {self.runner!r}; choose custodian or plain")

    def custodian_spec(self) -> str:
        """The `cstdn run` spec of one relaxation (YAML written by hand: stable for golden files)."""
        first = ["- jb: custodian.vasp.jobs.VaspJob", "  params:",
                 f"    final: {'false' if self.double_relaxation else 'true'}"]
        if self.double_relaxation:
            first.append("    suffix: .relax1")
        jobs = [*first]
        if self.double_relaxation:
            jobs += ["- jb: custodian.vasp.jobs.VaspJob", "  params:", "    final: true", "    backup: false",
                     "    suffix: .relax2", "    settings_override:",
                     "    - {dict: INCAR, action: {_set: {ISTART: 1}}}",
                     "    - {file: CONTCAR, action: {_file_copy: {dest: POSCAR}}}"]
        cmd = ", ".join(shlex.quote(w) for w in shlex.split(self.vasp_cmd))
        lines = ["# custodian spec written by gencsp: run with `cstdn run custodian.yaml` in this folder",
                 "jobs:", *jobs, "jobs_common_params:", f"  vasp_cmd: [{cmd}]", "handlers:"]
        lines += [f"- hdlr: custodian.vasp.handlers.{h}" for h in HANDLERS]
        lines += ["- hdlr: custodian.vasp.handlers.WalltimeHandler",
                  f"  params: {{wall_time: {int(self.seconds)}, buffer_time: 300}}", "validators:"]
        lines += [f"- vldr: custodian.vasp.validators.{v}" for v in VALIDATORS]
        lines += ["custodian_params:", f"  max_errors: {self.max_errors}"]
        return "\n".join(lines) + "\n"

    def command(self, directory: Path) -> str:
        where = f"cd {shlex.quote(str(directory))} && "
        if self.runner == "custodian":
            return where + "cstdn run custodian.yaml"
        return where + f"{self.vasp_cmd} > vasp.out 2> std_err.txt"

    def run(self, directory: Path, timeout: float | None = None) -> int:
        """Run VASP here (inside an allocation on a cluster node)."""
        return run_in_folder(self.command(directory), directory, timeout)

    def finished(self, directory: Path) -> bool:
        return _first_file(directory, VASPRUNS) is not None

    def versions(self) -> dict:
        """What wrote the inputs (VASP's own version is in each vasprun.xml)."""
        from importlib import metadata

        return {name: metadata.version(name) for name in ("pymatgen", "custodian")}

    def parse(self, directory: Path, target_id: str, sample_index: int) -> RelaxRecord:
        final_path = _first_file(directory, VASPRUNS)
        if final_path is None:
            return RelaxRecord(target_id, sample_index, self.name, status=FAILED, error="no vasprun.xml")
        try:
            runs = [_vasprun(p) for p in (_first_file(directory, FIRST_VASPRUNS), final_path) if p is not None]
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt vasprun.xml is this task's failure
            return RelaxRecord(target_id, sample_index, self.name, status=FAILED,
                               error=f"{final_path.name}: {short_error(exc)}")
        first, last = runs[0], runs[-1]
        entry = last.get_computed_entry(inc_structure=True, entry_id=f"{target_id}.{sample_index}")
        record = dft_record(target_id, sample_index, self.name, first.initial_structure, last.final_structure,
                            _step_energy(first.ionic_steps[0]), entry.uncorrected_energy,
                            sum(len(r.ionic_steps) for r in runs), bool(last.converged), 0.0, entry)
        if not last.converged:
            record.error = "VASP did not converge (electronic or ionic)"
        return record


def _first_file(directory: Path, names) -> Path | None:
    return next((Path(directory) / n for n in names if (Path(directory) / n).is_file()), None)


def _vasprun(path: Path):
    import warnings

    from pymatgen.io.vasp import Vasprun

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POTCAR and convergence warnings: the record says what matters
        return Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_potcar_file=False)


def _step_energy(step: dict) -> float:
    return float(step.get("e_0_energy", step.get("e_fr_energy")))
