"""gan: the sampling contract around MilesZhao/PGCGM (Zhao et al., 2023), its generation path unchanged.

sample: the requested samples are grouped by what the generator is given: for `csp` the target's
space group (oracle) and its three elements, for `generate` nothing (create_cif.py draws both). Each
group gets a working folder laid out like the repository, where sh/gen.sh's steps run unchanged:
  data/      the upstream data; for csp, paras.pickle's space-group frequencies and
             elements_id_NoPo.json are narrowed to the target's group and elements, so that
             create_cif.py's own draws (fake_generator) land on them
  models/frac12/generator_weights.pth   the weights (published, or the request's checkpoint),
             re-saved with CPU tensors: create_cif.py loads them without map_location
then create_cif.py (`candidates` generator rows per sample), pymatgen_valid.py (space group kept at
symprec 0.1) and merge_valid.py (gen.sh's ratios), each through pgcgm_run.py (seeds, CUDA device,
pool size). A sample gets the first of its rows' surviving CIFs whose reduced formula is the
target's, else the first surviving one; none: the sample is rejected (it counts against the model).
train: PGCGM has no training code; with option init_only, the upstream model.Generator with a
seeded random initialisation is saved in the published file's format (a pipeline check).
Runs under the upstream environment's Python (3.8 or 3.9 syntax only).
"""

import glob
import json
import os
import re
import subprocess
import sys
import tarfile
import time

import gencsp_helper as g

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/PGCGM")
RUNNER = os.path.join(HERE, "pgcgm_run.py")
COMMIT = "ab38ec6e4e6205253fb583ae0667b7a90e91cee5"
MODEL = {"name": "gan", "upstream": {"repo": "https://github.com/MilesZhao/PGCGM", "commit": COMMIT}}
SAVEDIR, WEIGHTS_NAME = "frac12", "generator_weights.pth"  # sh/gen.sh: --savedir frac12 --model generator_weights.pth
PUBLISHED = os.path.join(UPSTREAM, "models", SAVEDIR, WEIGHTS_NAME)
WEIGHTS_SHA256 = "/opt/gencsp/weights.sha256"
LATENT_DIM = 128  # sh/gen.sh --latent_dim
CIFS_PER_ARCHIVE = 1000  # create_cif.py archives every 1000 samples
# merge_valid.py output: <sites>-<reduced formula>-<space group>-<row>_<rot>.cif
FINAL_NAME = re.compile(r"^(\d+)-([A-Za-z0-9().]+)-(\d+)-(\d+)_([012])\.cif$")


class UpstreamError(RuntimeError):
    """A PGCGM step failed."""


# --- plain functions, tested on the host ------------------------------------------------------


def group_symbols(symbols):
    """{space group number: PGCGM's symbol} for the symbols of data/paras.pickle."""
    from pymatgen.symmetry.groups import SpaceGroup

    return {SpaceGroup(symbol).int_number: symbol for symbol in symbols}


def group_key(session, target, symbols):
    """(space-group symbol, elements) the generator is given for a target; (None, None) for generate."""
    if session.task != "csp":
        return (None, None)
    group = (target.get("conditioning") or {}).get("space_group")
    if group not in symbols:
        raise g.ContractError("target {}: PGCGM needs one of its {} space groups, got {}".format(
            target["id"], len(symbols), group))
    elements = tuple(sorted(target.get("composition") or {}))
    if len(elements) != 3:
        raise g.ContractError("target {}: PGCGM generates ternaries, got {}".format(target["id"], list(elements)))
    return (symbols[group], elements)


def plan_groups(session, symbols, candidates):
    """[(key, owners)]: per group, the owner (target id, sample index) of each generator row, in row order."""
    groups = {}
    for target, index in session.requested():
        owners = groups.setdefault(group_key(session, target, symbols), [])
        owners.extend([(target["id"], index)] * int(candidates))
    return list(groups.items())


def narrowed_aux(aux, symbol):
    """paras.pickle with the space-group frequencies (its last item) all on `symbol`."""
    import numpy as np

    frequencies = np.zeros(len(aux[-1]))
    frequencies[aux[-2][symbol]] = 1.0
    return tuple(aux[:-1]) + (frequencies,)


def pack_leftovers(matdir):
    """Archive the CIFs create_cif.py left loose (it archives only every 1000 samples).

    pymatgen_valid.py opens everything in the folder as a tar.gz: a loose CIF would crash its pool.
    """
    cifs = sorted(glob.glob(os.path.join(matdir, "*.cif")))
    if not cifs:
        return None
    archives = glob.glob(os.path.join(matdir, "*.tar.gz"))
    archive = os.path.join(matdir, f"{len(archives) + 1}.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        for path in cifs:
            tar.add(path, arcname=os.path.join(os.path.basename(matdir.rstrip("/")), os.path.basename(path)))
    for path in cifs:
        os.remove(path)
    return archive


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


def available_cpus():
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (docker --cpus)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def checkpoint_file(session):
    """The weights to run: the request's checkpoint (a file, or a folder holding one), else the published file."""
    checkpoint = session.request.get("checkpoint")
    if not checkpoint:
        if not os.path.isfile(PUBLISHED):
            raise g.ContractError(
                f"this image has no published weights ({PUBLISHED} was not in the upstream archive it was built from; a "
                "mirror drops files over 4 MiB): pass --checkpoint FILE (a generator state_dict), or build the "
                "image where GitHub answers")
        return PUBLISHED
    path = session.path(checkpoint)
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "**", WEIGHTS_NAME), recursive=True)) or \
            sorted(glob.glob(os.path.join(path, "**", "*.pt*"), recursive=True))
        if len(found) != 1:
            raise g.ContractError(f"{checkpoint}: expected one {WEIGHTS_NAME} (or one .pt/.pth file) in the checkpoint folder, found {len(found)}")
        return found[0]
    return path


# --- upstream model code (torch) ----------------------------------------------------------------


def upstream_generator():
    """upstream model.Generator as create_cif.py builds it: element features of data/, latent 128."""
    import numpy as np

    sys.path.insert(0, UPSTREAM)
    from model import Generator

    features = np.load(os.path.join(UPSTREAM, "data", "elements_features.npy"))
    return Generator(features.shape[1], LATENT_DIM)


def load_state_dict(path):
    """A generator state_dict from the published file's format ({'state_dict': ...}) or a bare one,
    with CPU tensors, checked against upstream's Generator (strict: every key and shape)."""
    import torch

    try:
        loaded = torch.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types for unreadable files
        raise g.ContractError(f"{path}: not a torch checkpoint ({type(exc).__name__}: {exc})") from exc
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise g.ContractError(f"{path}: expected a PGCGM generator state_dict (or {{'state_dict': ...}}), got {type(loaded).__name__}")
    try:
        upstream_generator().load_state_dict(state)
    except RuntimeError as exc:
        raise g.ContractError(f"{path}: not a state_dict of PGCGM's model.Generator: {exc}") from exc
    return state


def save_weights(state, path, extra=None):
    """The published file's layout ({'state_dict': ...}; what create_cif.py reads), written atomically."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(dict(extra or {}, state_dict=state), buffer)
    g.atomic_write(path, buffer.getvalue())


# --- the working folders and the upstream steps -------------------------------------------------


def stage_data(folder, key, aux, element_ids):
    """folder/data: the upstream data, narrowed to the group's space group and elements for csp."""
    import pickle

    data = os.path.join(folder, "data")
    os.makedirs(data)
    symbol, elements = key
    narrowed = {}
    if symbol is not None:
        narrowed["paras.pickle"] = pickle.dumps(narrowed_aux(aux, symbol))
        narrowed["elements_id_NoPo.json"] = json.dumps({e: element_ids[e] for e in elements})
    for name in os.listdir(os.path.join(UPSTREAM, "data")):
        if name in narrowed:
            g.atomic_write(os.path.join(data, name), narrowed[name])
        else:
            os.symlink(os.path.join(UPSTREAM, "data", name), os.path.join(data, name))


def make_folders(root, groups, aux, element_ids, models):
    folders = []
    for k, (key, _) in enumerate(groups):
        folder = os.path.join(root, f"g{k}")
        os.makedirs(folder)
        stage_data(folder, key, aux, element_ids)
        os.symlink(models, os.path.join(folder, "models"))
        folders.append(folder)
    return folders


# Parallelism comes from processes (one per folder chunk); the work inside each is small batches, and on a
# busy machine idle OpenMP/BLAS threads spinning made create_cif.py 6x slower with 2 threads than with 1.
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run_steps(root, name, script, runs, torch=False, parallel=1):
    """One upstream script over all group folders, in `parallel` runner processes; [(run, its status)]."""
    chunks = [runs[i::parallel] for i in range(min(parallel, len(runs)))]
    processes = []
    for i, chunk in enumerate(chunks):
        spec = os.path.join(root, f"{name}-{i}.json")
        g.atomic_write(spec, json.dumps({"script": os.path.join(UPSTREAM, script), "torch": torch,
                                         "processes": max(1, available_cpus() // len(chunks)), "runs": chunk}))
        argv = [sys.executable, RUNNER, spec]
        print(f"gencsp: running {script} ({len(chunk)} folder(s))", flush=True)
        processes.append(subprocess.Popen(argv, cwd=root, env=ONE_THREAD))
    codes = [p.wait() for p in processes]
    if any(codes):
        raise UpstreamError(f"pgcgm_run.py {script} exited with status {max(codes)}")
    return [(run, read_status(run["cwd"], script)) for run in runs]


def read_status(folder, script):
    path = os.path.join(folder, f"gencsp-{os.path.splitext(script)[0]}.json")
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {"ok": False, "error": "no status written"}


def generation_path(session, root, groups, folders):
    """sh/gen.sh in every folder: create_cif.py, pymatgen_valid.py, merge_valid.py; {folder: error} where a step failed."""
    options = session.options
    create = []
    for k, (_, owners) in enumerate(groups):
        folder = folders[k]
        seed = g.derived_seed(session.seed, "group", k)
        create.append({"cwd": folder, "seed": seed, "args": [
            "--gpu_id", "0", "--savedir", SAVEDIR, "--matdir", "ternary_gen_cifs/", "--model", WEIGHTS_NAME,
            "--n_samples", str(len(owners)), "--latent_dim", str(LATENT_DIM), "--no-verbose"]})
    errors = {}
    # each create_cif.py process holds torch and the weights (about 0.5 GB): at most 4 of them
    for run, status in run_steps(root, "create", "create_cif.py", create, torch=True,
                                 parallel=min(4, available_cpus())):
        if status.get("ok"):
            pack_leftovers(os.path.join(run["cwd"], "ternary_gen_cifs"))
        else:
            errors[run["cwd"]] = "create_cif.py: " + status.get("error", "failed")
    parallel = available_cpus()
    merge_args = ["--merge_ratio", str(options["merge_ratio"]), "--dist_ratio", str(options["dist_ratio"]),
                  "--further_merge_ratio", str(options["further_merge_ratio"])]
    for script, args in (("pymatgen_valid.py", []), ("merge_valid.py", merge_args)):
        runs = [{"cwd": f, "seed": 0, "args": args} for f in folders if f not in errors]
        for run, status in run_steps(root, script.split("_")[0], script, runs, parallel=parallel):
            if not status.get("ok"):
                errors[run["cwd"]] = "{}: {}".format(script, status.get("error", "failed"))
    return errors


def sample(session):
    import pickle
    import shutil

    start = time.monotonic()
    weights = checkpoint_file(session)
    if weights == PUBLISHED and os.path.isfile(WEIGHTS_SHA256):
        with open(WEIGHTS_SHA256) as handle:
            session.model["checkpoint_sha256"] = handle.read().split()[0]
    root = session.path("/work/pgcgm")
    if os.path.isdir(root):
        shutil.rmtree(root)
    models = os.path.join(root, "models")
    save_weights(load_state_dict(weights), os.path.join(models, SAVEDIR, WEIGHTS_NAME))
    with open(os.path.join(UPSTREAM, "data", "paras.pickle"), "rb") as handle:
        aux = pickle.load(handle)
    with open(os.path.join(UPSTREAM, "data", "elements_id_NoPo.json")) as handle:
        element_ids = json.load(handle)
    groups = plan_groups(session, group_symbols(aux[-2]), session.options["candidates"])
    folders = make_folders(root, groups, aux, element_ids, models)
    errors = generation_path(session, root, groups, folders)
    formulas = target_formulas(session)
    seconds = (time.monotonic() - start) / max(1, len(session.requested()))
    merged = "merged_cifs_{:.2f}_{:.2f}".format(float(session.options["merge_ratio"]),
                                                 float(session.options["dist_ratio"]))
    for k, (_, owners) in enumerate(groups):
        folder = folders[k]
        chosen = choose(owners, final_cifs(os.path.join(folder, "ternary_final_cifs", merged)), formulas)
        for owner in sorted(set(owners), key=owners.index):
            if folder in errors:
                session.fail(owner[0], owner[1], errors[folder], seconds=seconds)
            elif owner in chosen:
                with open(chosen[owner]) as handle:
                    session.save_cif(owner[0], owner[1], handle.read(), seconds=seconds)
            else:
                session.fail(owner[0], owner[1], f"none of its {owners.count(owner)} generator rows passed PGCGM's own filters "
                             "(pymatgen_valid.py: space group at symprec 0.1; merge_valid.py: merge and distance "
                             "check)", seconds=seconds, rejected=True)


def train(request, out_dir):
    """No upstream training: with option init_only, upstream's Generator with a seeded random initialisation."""
    import torch

    options = request.get("options") or {}
    if not options.get("init_only"):
        sys.stderr.write("PGCGM publishes no training code: only untrained weights can be written here, a "
                         "pipeline check (gencsp train --model gan --init-only)\n")
        return 2
    seed = int(request.get("seed", 0))
    torch.manual_seed(seed)
    generator = upstream_generator()
    folder = os.path.join(out_dir, "model")
    save_weights(generator.state_dict(), os.path.join(folder, WEIGHTS_NAME))
    parameters = sum(p.numel() for p in generator.parameters())
    g.atomic_write(os.path.join(folder, "init.json"), json.dumps({
        "weights": "untrained: seeded random initialisation of upstream model.Generator (a pipeline check)",
        "seed": seed, "upstream": MODEL["upstream"], "torch": torch.__version__, "parameters": parameters,
        "ele_vec_dim": generator.ele_block[0].in_channels, "latent_dim": LATENT_DIM}, indent=2) + "\n")
    print(f"gencsp: wrote untrained PGCGM generator weights ({parameters} parameters, seed {seed}) to {folder}", flush=True)
    return 0


if __name__ == "__main__":
    g.main(sample, model=MODEL, train_fn=train)
