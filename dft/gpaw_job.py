"""Relax one structure with GPAW; copied into a task folder and run there as `run_gpaw.py`.

Runs under the interpreter that has GPAW (Debian's /usr/bin/python3 with ASE 3.22), not
gencsp's environment, so it imports nothing from gencsp and stays Python 3.8 syntax.
Reads input.json ({"structure": {symbols, positions, cell}, "settings": {...}}), writes
gpaw.txt (GPAW's log), opt.log, and last gpaw_result.json (atomically) with status ok
or failed and the error. Exit code 0 when the result says ok.
"""

import json
import os
import sys
import time
import traceback

RESULT = "gpaw_result.json"


def write_result(result):
    tmp = RESULT + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, RESULT)


def cell_filter(atoms):
    try:  # ASE >= 3.23
        from ase.filters import FrechetCellFilter
        return FrechetCellFilter(atoms)
    except ImportError:  # Debian bookworm's ASE 3.22
        from ase.constraints import ExpCellFilter
        return ExpCellFilter(atoms)


def relax(spec):
    import ase
    import ase.optimize
    import gpaw
    from ase import Atoms
    from gpaw import GPAW, PW, FermiDirac

    s = spec["settings"]
    structure = spec["structure"]
    atoms = Atoms(symbols=structure["symbols"], positions=structure["positions"], cell=structure["cell"], pbc=True)
    atoms.calc = GPAW(mode=PW(s["ecut"]), xc=s["xc"], kpts={"density": s["kpt_density"], "gamma": True},
                      occupations=FermiDirac(s["smearing"]), spinpol=s["spinpol"], txt="gpaw.txt")
    initial = atoms.get_potential_energy()
    moved = cell_filter(atoms) if spec.get("relax_cell", True) else atoms  # a molecule keeps its box
    optimizer = getattr(ase.optimize, s["optimizer"])(moved, logfile="opt.log")
    converged = optimizer.run(fmax=s["fmax"], steps=s["steps"])
    return {"status": "ok", "energy_initial": initial, "energy": atoms.get_potential_energy(),
            "steps": optimizer.nsteps, "converged": bool(converged),
            "structure": {"symbols": atoms.get_chemical_symbols(), "positions": atoms.get_positions().tolist(),
                          "cell": atoms.get_cell().tolist()},
            "versions": {"gpaw": gpaw.__version__, "ase": ase.__version__, "python": sys.version.split()[0]}}


def main():
    started = time.time()
    try:
        with open("input.json") as handle:
            spec = json.load(handle)
        result = relax(spec)
    except Exception as exc:  # the failure is the result: recorded, not lost
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    result["seconds"] = time.time() - started
    write_result(result)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
