"""gan: the sampling contract around MilesZhao/PGCGM (Zhao et al., 2023), unchanged.

The pretrained generator takes one of 20 space groups and exactly 3 elements. For each requested
sample, `candidates` rows go through the generator with the target's space group (oracle) and
elements (pgcgm_generate.py, in create_cif.py's file layout), then through the upstream filters
unchanged: `pymatgen_valid.py` (space group kept at symprec 0.1) and `merge_valid.py` (close
same-element sites merged, distance check; gen.sh's ratios). A sample gets the first surviving
candidate whose reduced formula is the target's, else the first surviving one.
Runs under the upstream environment's Python (no 3.9+ syntax here).
"""

import json
import os
import re
import shutil
import subprocess
import sys

import gencsp_helper as g

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/PGCGM")
DRIVER = os.path.join(HERE, "pgcgm_generate.py")
COMMIT = "ab38ec6e4e6205253fb583ae0667b7a90e91cee5"
MODEL = {"name": "gan", "upstream": {"repo": "https://github.com/MilesZhao/PGCGM", "commit": COMMIT}}
WEIGHTS_SHA256 = "/opt/gencsp/weights.sha256"
# merge_valid.py output: <sites>-<reduced formula>-<space group>-<row>_<rot>.cif
FINAL_NAME = re.compile(r"^(\d+)-([A-Za-z0-9().]+)-(\d+)-(\d+)_([012])\.cif$")


class UpstreamError(RuntimeError):
    """A PGCGM step failed."""


# --- plain functions, tested on the host ------------------------------------------------------


def group_symbols(symbols):
    """{space group number: PGCGM's symbol} for the symbols of data/paras.pickle."""
    from pymatgen.symmetry.groups import SpaceGroup

    return {SpaceGroup(symbol).int_number: symbol for symbol in symbols}


def generator_rows(session, symbols, candidates):
    """Generator inputs: `candidates` rows per requested sample; returns (rows, owner sample of each row)."""
    rows, owners = [], []
    for target, index in session.requested():
        if session.task == "csp":
            group = (target.get("conditioning") or {}).get("space_group")
            if group not in symbols:
                raise g.ContractError("target {}: PGCGM needs one of its {} space groups, got {}".format(
                    target["id"], len(symbols), group))
            elements = sorted(target.get("composition") or {})
            if len(elements) != 3:
                raise g.ContractError("target {}: PGCGM generates ternaries, got {}".format(target["id"], elements))
            row = {"space_group": symbols[group], "elements": elements}
        else:
            row = {"space_group": None, "elements": None}
        for _ in range(int(candidates)):
            rows.append(row)
            owners.append((target["id"], index))
    return rows, owners


def final_cifs(folder):
    """{row: [(rot, path), ...]} of merge_valid.py's output folder."""
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        match = FINAL_NAME.match(name)
        if match:
            found.setdefault(int(match.group(4)), []).append((int(match.group(5)), os.path.join(folder, name)))
    return {row: sorted(paths) for row, paths in found.items()}


def choose(owners, finals, formulas):
    """{sample: path}: per sample the first surviving candidate with the wanted formula, else the first one."""
    from pymatgen.core import Composition

    chosen = {}
    for row, owner in enumerate(owners):
        for _, path in finals.get(row, ()):
            formula = FINAL_NAME.match(os.path.basename(path)).group(2)
            wanted = formulas.get(owner)
            matches = wanted is not None and Composition(formula).reduced_formula == wanted
            if owner not in chosen or (matches and not chosen[owner][1]):
                chosen[owner] = (path, matches)
    return {owner: path for owner, (path, _) in chosen.items()}


def target_formulas(session):
    from pymatgen.core import Composition

    return {(t["id"], i): Composition(t["composition"]).reduced_formula
            for t, i in session.requested() if t.get("composition")}


# --- upstream invocation ----------------------------------------------------------------------


def tree(work):
    """The working folder the upstream scripts expect (they use paths relative to the cwd)."""
    root = os.path.join(work, "pgcgm")
    if os.path.isdir(root):
        shutil.rmtree(root)
    for name in ("ternary_gen_cifs", "ternary_symm_cifs", "ternary_final_cifs"):
        os.makedirs(os.path.join(root, name))
    return root


def run(argv, cwd):
    print("gencsp: running {}".format(" ".join(argv)), flush=True)
    code = subprocess.call(argv, cwd=cwd)
    if code:
        script = [os.path.basename(a) for a in argv if a.endswith(".py")][0]
        raise UpstreamError(f"{script} exited with status {code}")


def sample(session):
    import pickle

    if os.path.isfile(WEIGHTS_SHA256):
        with open(WEIGHTS_SHA256) as handle:
            session.model["checkpoint_sha256"] = handle.read().split()[0]
    options = session.options
    with open(os.path.join(UPSTREAM, "data", "paras.pickle"), "rb") as handle:
        symbols = group_symbols(pickle.load(handle)[-2])
    rows, owners = generator_rows(session, symbols, options["candidates"])
    root = tree(session.path("/work"))
    spec_path = os.path.join(root, "spec.json")
    g.atomic_write(spec_path, json.dumps({"seed": session.seed, "rows": rows}))
    run([sys.executable, DRIVER, spec_path, os.path.join(root, "ternary_gen_cifs")], root)
    run([sys.executable, os.path.join(UPSTREAM, "pymatgen_valid.py")], root)
    merged = "merged_cifs_{:.2f}_{:.2f}".format(float(options["merge_ratio"]), float(options["dist_ratio"]))
    run([sys.executable, "-W", "ignore", os.path.join(UPSTREAM, "merge_valid.py"),
         "--merge_ratio", str(options["merge_ratio"]), "--dist_ratio", str(options["dist_ratio"]),
         "--further_merge_ratio", str(options["further_merge_ratio"])], root)
    chosen = choose(owners, final_cifs(os.path.join(root, "ternary_final_cifs", merged)), target_formulas(session))
    for target, index in session.requested():
        key = (target["id"], index)
        if key not in chosen:
            session.fail(target["id"], index, "none of the {} candidates passed PGCGM's symmetry and distance "
                         "filters".format(options["candidates"]))
            continue
        with session.slot(target, index) as slot, open(chosen[key]) as handle:
            slot.cif(handle.read())


if __name__ == "__main__":
    g.main(sample, model=MODEL)
