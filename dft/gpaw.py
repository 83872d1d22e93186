"""GPAW, the open DFT engine: PBE plane waves, an ASE optimizer on a cell filter.

Three steps, as for VASP: `write_inputs` (input.json + the job script run_gpaw.py),
`command`/`run` (the script under the interpreter that has GPAW - Debian's
/usr/bin/python3 - never inside gencsp's venv), `parse` (gpaw_result.json -> record).
Only `run` differs between a laptop (subprocess here) and a cluster (an array task
running `command`). GPAW energies are only comparable with references computed with
the same settings, so their hull comes from GPAW reference tasks (corrections: none).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.atomic import write_json

from .records import FAILED, RelaxRecord, dft_record
from .shell import run_in_folder

JOB = Path(__file__).with_name("gpaw_job.py")
RESULT = "gpaw_result.json"


@dataclass(frozen=True)
class GpawMaker:
    python: str = "/usr/bin/python3"  # an interpreter with gpaw + ase (Debian: apt install gpaw gpaw-data)
    ecut: float = 500.0  # eV, plane-wave cutoff (high enough for stresses: cells relax too)
    kpt_density: float = 3.0  # k-points per reciprocal Angstrom (Gamma-centred)
    xc: str = "PBE"
    smearing: float = 0.1  # eV, Fermi-Dirac width
    spinpol: bool = False
    optimizer: str = "BFGS"  # any ase.optimize class
    fmax: float = 0.05  # eV/A
    steps: int = 100
    cpus: int = 1  # threads per task (OMP_NUM_THREADS); GPAW runs serially here
    seconds: float = 3600.0  # expected wall time of one task (SLURM time = this + profile startup)
    setup: tuple[str, ...] = ()  # shell lines before the task, e.g. "module load vasp/6.4.3"

    name = "gpaw"
    corrections = "none"

    def settings(self) -> dict:
        return asdict(self)

    def job_settings(self) -> dict:
        keys = ("ecut", "kpt_density", "xc", "smearing", "spinpol", "optimizer", "fmax", "steps")
        return {k: getattr(self, k) for k in keys}

    def write_inputs(self, structure, directory: Path, relax_cell: bool = True) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {"structure": {"symbols": [site.specie.symbol for site in structure],
                              "positions": structure.cart_coords.tolist(), "cell": structure.lattice.matrix.tolist()},
                "settings": self.job_settings(), "relax_cell": relax_cell}
        write_json(directory / "input.json", spec)
        shutil.copyfile(JOB, directory / "run_gpaw.py")

    def command(self, directory: Path) -> str:
        return (f"cd {shlex.quote(str(directory))} && OMP_NUM_THREADS={self.cpus} "
                f"{shlex.quote(self.python)} run_gpaw.py")

    def run(self, directory: Path, timeout: float | None = None) -> int:
        """Run the job here (no scheduler); its output goes to run.log in the task folder."""
        return run_in_folder(self.command(directory), directory, timeout)

    def finished(self, directory: Path) -> bool:
        return (Path(directory) / RESULT).is_file()

    def parse(self, directory: Path, target_id: str, sample_index: int) -> RelaxRecord:
        from pymatgen.core import Lattice, Structure

        directory = Path(directory)
        result = json.loads((directory / RESULT).read_text())
        if result.get("status") != "ok":
            return RelaxRecord(target_id, sample_index, self.name, status=FAILED,
                               error=result.get("error") or "GPAW failed", seconds=result.get("seconds", 0.0))
        start = json.loads((directory / "input.json").read_text())["structure"]

        def structure(data):
            return Structure(Lattice(data["cell"]), data["symbols"], data["positions"], coords_are_cartesian=True)

        return dft_record(target_id, sample_index, self.name, structure(start), structure(result["structure"]),
                          result["energy_initial"], result["energy"], int(result["steps"]),
                          bool(result["converged"]), float(result["seconds"]))

    def versions(self) -> dict:
        """GPAW and ASE of the job interpreter (asked once, when the queue is written)."""
        probe = "import gpaw, ase, sys; print(gpaw.__version__, ase.__version__, sys.version.split()[0])"
        try:
            found = subprocess.run([self.python, "-c", probe], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"error": str(exc)}
        if found.returncode != 0:
            return {"error": (found.stderr.strip().splitlines() or ["no gpaw"])[-1]}
        gpaw, ase, python = found.stdout.split()
        return {"gpaw": gpaw, "ase": ase, "python": python, "interpreter": self.python}
