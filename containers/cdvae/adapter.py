"""cdvae: the sampling contract around txie-93/cdvae (Xie et al., ICLR 2022), unchanged.

Runs under the upstream environment's Python 3.8: no 3.9+ syntax, heavy imports inside functions.

generate: `scripts/evaluate.py --tasks gen` (seeded by cdvae_driver.py, which runs the
          script unchanged) writes `eval_gen_gencsp.pt` into MODEL_PATH;
csp:      cdvae_driver.py decodes z ~ N(0, I) with the upstream `langevin_dynamics`, forcing
          the target's number of atoms and atom types (the `gt_num_atoms` / `gt_atom_types`
          arguments the upstream uses for reconstruction), and saves the same tensors.
Both write into MODEL_PATH, so the read-only checkpoint mount is copied to /work first.
train:    `cdvae/run.py` (Hydra) on the mounted splits; the run folder is the checkpoint.
"""

import glob
import json
import math
import os
import shutil
import subprocess
import sys

import gencsp_helper as g

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/cdvae")
DRIVER = os.path.join(HERE, "cdvae_driver.py")
COMMIT = "f857f598d6f6cca5dc1ea0582d228f12dcc2c2ea"
MODEL = {"name": "cdvae", "upstream": {"repo": "https://github.com/txie-93/cdvae", "commit": COMMIT}}
MODEL_FILES = ("hparams.yaml", "lattice_scaler.pt", "prop_scaler.pt")
LABEL = "gencsp"
# CDVAE's Hydra data configs, chosen by the dataset kind of the gencsp registry.
DATA_CONFIGS = {"perovskite": "perov", "carbon": "carbon", "mp20": "mp_20"}
MAX_ATOMIC_NUMBER = 100  # CDVAE's MAX_ATOMIC_NUM


class UpstreamError(RuntimeError):
    """The upstream process failed or wrote nothing usable."""


# --- upstream output -> crystals (plain functions, tested on the host) ----------------


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def crystals_from_eval(data):
    """Split CDVAE's eval tensors into crystals: a list of (lengths, angles, atomic numbers, frac coords).

    `data` holds `frac_coords (E, N, 3)`, `atom_types (E, N)`, `lengths (E, M, 3)`, `angles (E, M, 3)`,
    `num_atoms (E, M)` with E = num_evals and N = total atoms of the M crystals of one eval; crystals are
    returned eval by eval, in order. Per-atom type scores (E, N, K) are reduced with argmax + 1.
    """
    import numpy as np

    missing = [k for k in ("frac_coords", "atom_types", "lengths", "angles", "num_atoms") if k not in data]
    if missing:
        raise UpstreamError("eval file lacks {}".format(", ".join(missing)))
    frac, types = _numpy(data["frac_coords"]), _numpy(data["atom_types"])
    lengths, angles, counts = _numpy(data["lengths"]), _numpy(data["angles"]), _numpy(data["num_atoms"])
    if counts.ndim == 1:  # a flat file (one eval without the leading dimension)
        frac, types, lengths, angles, counts = frac[None], types[None], lengths[None], angles[None], counts[None]
    if types.ndim == 3:
        types = types.argmax(-1) + 1
    crystals = []
    for e in range(counts.shape[0]):
        ends = np.cumsum(counts[e])
        if counts[e].size and ends[-1] != frac[e].shape[0]:
            raise UpstreamError(f"eval {e}: num_atoms sums to {int(ends[-1])} but there are {frac[e].shape[0]} atoms")
        for m, end in enumerate(ends):
            start = end - counts[e][m]
            crystals.append((lengths[e][m], angles[e][m], types[e][start:end], frac[e][start:end]))
    return crystals


def crystal_cif(lengths, angles, numbers, frac_coords):
    """CIF text of one decoded crystal; ValueError when it is not a physical structure."""
    import numpy as np
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    values = np.concatenate([np.ravel(lengths), np.ravel(angles), np.ravel(frac_coords)]).astype(float)
    if not np.all(np.isfinite(values)):
        raise ValueError("non-finite lattice or coordinates")
    numbers = [int(z) for z in np.ravel(numbers)]
    if not numbers:
        raise ValueError("a crystal with no atoms")
    if any(z < 1 or z > MAX_ATOMIC_NUMBER for z in numbers):
        raise ValueError(f"atomic numbers outside 1..{MAX_ATOMIC_NUMBER}: {sorted(set(numbers))}")
    lattice = Lattice.from_parameters(*[float(x) for x in np.ravel(lengths)], *[float(x) for x in np.ravel(angles)])
    structure = Structure(lattice, numbers, np.asarray(frac_coords, dtype=float) % 1.0)
    return str(CifWriter(structure))


def load_eval(path):
    """The pickled dict torch.save wrote (it holds an argparse Namespace: not weights-only)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # torch 1.9 (the image) has no weights_only argument
        return torch.load(path, map_location="cpu")


# --- request -> upstream invocation -----------------------------------------------------


def csp_spec(session):
    """What cdvae_driver.py decodes for CSP: one entry per requested sample, in request order."""
    from_symbol = atomic_numbers()
    entries = []
    for target, index in session.requested():
        composition = target.get("composition") or {}
        types = []
        for element in sorted(composition):
            if element not in from_symbol or from_symbol[element] > MAX_ATOMIC_NUMBER:
                raise g.ContractError("{}: element {} is outside CDVAE's vocabulary".format(target["id"], element))
            types += [from_symbol[element]] * int(composition[element])
        entries.append({"target_id": target["id"], "sample_index": index, "atom_types": types})
    return entries


def atomic_numbers():
    from pymatgen.core.periodic_table import Element

    return {el.symbol: el.Z for el in Element}


def gen_shape(total, batch_size):
    """(num_batches_to_samples, batch_size) for evaluate.py so that at least `total` crystals come out."""
    batch = max(1, min(int(batch_size), total))
    return int(math.ceil(total / float(batch))), batch


def work_dir(session):
    return session.path("/work")


def prepare_model_dir(session):
    """Copy the read-only checkpoint folder into /work: evaluate.py writes its output into MODEL_PATH."""
    checkpoint = session.request.get("checkpoint")
    if not checkpoint:
        raise g.ContractError("cdvae has no public generative checkpoint: train one with "
                              "`gencsp train --model cdvae --dataset D` and pass --checkpoint <train>/out/model")
    source = session.path(checkpoint)
    check_model_dir(source)
    target = os.path.join(work_dir(session), "cdvae-model")
    if os.path.isdir(target):
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


def check_model_dir(folder):
    if not os.path.isdir(folder):
        raise g.ContractError(f"{folder}: the checkpoint must be a CDVAE run folder")
    missing = [name for name in MODEL_FILES if not os.path.isfile(os.path.join(folder, name))]
    if not glob.glob(os.path.join(folder, "epoch=*.ckpt")):
        missing.append("epoch=*-step=*.ckpt")
    if missing:
        raise g.ContractError("{}: not a CDVAE run folder, missing {}".format(folder, ", ".join(missing)))


def upstream_env(extra=None):
    env = dict(os.environ)
    env.update({"PROJECT_ROOT": UPSTREAM, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                "HYDRA_FULL_ERROR": "1"})
    env.update(extra or {})
    return env


def run(argv, env, cwd):
    """Run an upstream step with its output in our log; return the exit code."""
    sys.stdout.flush()
    print("gencsp: running {}".format(" ".join(argv)), flush=True)
    return subprocess.call(argv, env=env, cwd=cwd)


def ld_args(options):
    return ["--n_step_each", str(int(options["n_step_each"])), "--step_lr", str(float(options["step_lr"])),
            "--min_sigma", str(float(options["min_sigma"]))]


def sample(session):
    model_dir = prepare_model_dir(session)
    work = work_dir(session)
    env = upstream_env({"HYDRA_JOBS": os.path.join(work, "hydra"), "WABDB_DIR": os.path.join(work, "wandb")})
    requested = session.requested()
    meter = session.meter()  # one upstream call answers every sample: its cost is shared
    if session.task == "csp":
        spec_path = os.path.join(work, "csp_spec.json")
        g.atomic_write(spec_path, json.dumps(csp_spec(session)))
        argv = [sys.executable, DRIVER, "csp", "--model_path", model_dir, "--spec", spec_path,
                "--seed", str(session.seed), "--batch_size", str(session.batch_size)] + ld_args(session.options)
        code = run(argv, env, UPSTREAM)
        crystals = []
        for path in sorted(glob.glob(os.path.join(model_dir, "eval_csp_*.pt"))):  # one file per batch
            crystals += crystals_from_eval(load_eval(path))
    else:
        batches, batch = gen_shape(len(requested), session.batch_size)
        argv = [sys.executable, DRIVER, "gen", "--seed", str(session.seed), "--", "--model_path", model_dir,
                "--tasks", "gen", "--num_batches_to_samples", str(batches), "--batch_size", str(batch),
                "--num_evals", "1", "--label", LABEL] + ld_args(session.options)
        code = run(argv, env, UPSTREAM)
        path = os.path.join(model_dir, f"eval_gen_{LABEL}.pt")
        crystals = crystals_from_eval(load_eval(path)) if os.path.isfile(path) else []
    answer(session, requested, crystals, code, meter)


def answer(session, requested, crystals, code, meter):
    """Crystal k answers requested sample k; the rest fail with the upstream's exit status. Each sample
    carries an equal share of the upstream call's wall and CPU time (`meter`)."""
    share = max(1, len(requested))
    seconds, cost = meter.seconds() / share, meter.cost(share=share)
    for k, (target, index) in enumerate(requested):
        if k >= len(crystals):
            why = f"CDVAE exited with status {code} before producing this sample" if code \
                else "CDVAE produced fewer crystals than requested"
            session.fail(target["id"], index, why, seconds=seconds, cost=cost)
            continue
        try:
            text = crystal_cif(*crystals[k])
        except Exception as exc:  # noqa: BLE001 - a crystal that cannot be written is a failed sample
            session.fail(target["id"], index, f"{type(exc).__name__}: {exc}", seconds=seconds, cost=cost)
            continue
        session.save_cif(target["id"], index, text, seconds=seconds, cost=cost)
    if code:
        raise UpstreamError(f"CDVAE exited with status {code}")


# --- train ---------------------------------------------------------------------------------


def train_overrides(request, data_root, out_dir, gpus, cpus):
    """Hydra overrides for cdvae/run.py: data from the mounts, run folder = the checkpoint folder."""
    options = request.get("options") or {}
    kind = options.get("dataset_kind", "mp20")
    config = options.get("data_config") or DATA_CONFIGS.get(kind, "mp_20")
    overrides = [f"data={config}", "expname=gencsp-{}".format(request["dataset"]),
                 f"data.root_path={data_root}", f"data.preprocess_workers={cpus}",
                 f"train.pl_trainer.gpus={gpus}", "train.deterministic=True",
                 "train.random_seed={}".format(int(request.get("seed", 0))), "logging.wandb.mode=offline",
                 f"hydra.run.dir={out_dir}"]
    if options.get("property"):
        overrides.append("data.prop={}".format(options["property"]))
    if request.get("max_epochs"):
        overrides.append("data.train_max_epochs={}".format(int(request["max_epochs"])))
    overrides += list(options.get("overrides") or [])
    return overrides


def train(request, out_dir):
    path = g.Session.path  # translates container paths when run on the host (GENCSP_PATH_MAP)
    splits = {name: path(None, p) for name, p in request["splits"].items()}
    roots = {os.path.dirname(p) for p in splits.values()}
    missing = [s for s in ("train", "val", "test") if s not in splits]
    if missing or len(roots) != 1:
        sys.stderr.write(f"cdvae trains on train/val/test CSVs in one folder; got {sorted(splits)}\n")
        return 2
    work = path(None, "/work")
    model_dir = os.path.join(out_dir, "model")
    gpus = 1 if request.get("device", "cuda") == "cuda" else 0
    argv = [sys.executable, os.path.join(UPSTREAM, "cdvae", "run.py")] + train_overrides(
        request, roots.pop(), model_dir, gpus, max(1, os.cpu_count() or 1))
    env = upstream_env({"HYDRA_JOBS": os.path.join(work, "hydra"), "WABDB_DIR": os.path.join(work, "wandb")})
    code = run(argv, env, UPSTREAM)
    try:
        check_model_dir(model_dir)
    except g.ContractError as exc:
        sys.stderr.write(f"cdvae training left no usable checkpoint: {exc}\n")
        return code or 1
    return code


if __name__ == "__main__":
    g.main(sample, model=MODEL, train_fn=train)
