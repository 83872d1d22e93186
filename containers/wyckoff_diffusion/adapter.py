"""wyckoff_diffusion: the sampling contract around httk/wyckoffdiff (Ekström Kelvinius et al., ICML 2025).

WyckoffDiff generates a space group and a Wyckoff occupation (no coordinates): `main.py --mode generate`
saves `torch.save(batch.to_data_list())` next to the checkpoint, then `--mode post_process --enrich_data
--save_protostructures` labels each sample with its protostructure. Each sample becomes a Wyckoff record
(slot.wyckoff); the orchestrator's realisation stage gives it coordinates. No checkpoint is published:
`train` fits one on the mounted splits. Runs under the upstream environment's Python 3.12.
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import gencsp_helper as g

UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/wyckoffdiff")
COMMIT = "dc5e84983117ebcb5e6e27b429662bd06cf3234f"
MODEL = {"name": "wyckoff_diffusion", "upstream": {"repo": "https://github.com/httk/wyckoffdiff", "commit": COMMIT}}
# Wyckoff position index (0 = 'a') -> letter; groups with 27 positions end with 'A' (Pmmm).
LETTERS = "abcdefghijklmnopqrstuvwxyzA"
# gencsp dataset -> the upstream's registered dataset whose spg marginal and file names are used.
UPSTREAM_DATASETS = {"mp_20": "mp20", "carbon_24": "carbon24"}
TRAIN_INFO = "gencsp_train.json"


class UpstreamError(RuntimeError):
    """A WyckoffDiff step failed."""


# --- upstream output -> Wyckoff records (plain functions, tested on the host) --------------------


def _ints(value):
    return [int(v) for v in (value.reshape(-1).tolist() if hasattr(value, "reshape") else value)]


def wyckoff_sites(data, symbol_of):
    """(space group, sites) of one generated PyG `Data`.

    0-DoF positions hold an element number (0: empty) in `x_0_dof`; positions with free parameters hold
    counts per element in `x_inf_dof` (column j = element number j + 1): n orbits of that position.
    """
    zero = [bool(v) for v in _ints(data.zero_dof)]
    positions = _ints(data.wyckoff_pos_idx) if getattr(data, "wyckoff_pos_idx", None) is not None \
        else list(range(len(zero)))
    multiplicities = _ints(data.multiplicities) if getattr(data, "multiplicities", None) is not None else None
    if getattr(data, "x_0_dof", None) is not None:
        fixed, free = _ints(data.x_0_dof), data.x_inf_dof.tolist()
    else:  # the full matrix: column 0 for 0-DoF rows, columns 1.. for the others
        rows = data.x.tolist()
        fixed = [int(rows[k][0]) for k in range(len(zero)) if zero[k]]
        free = [rows[k][1:] for k in range(len(zero)) if not zero[k]]
    sites = []
    fixed_iter, free_iter = iter(fixed), iter(free)
    for p, is_zero in enumerate(zero):
        position = positions[p]
        letter = LETTERS[position]
        site = {"letter": letter}
        if multiplicities is not None:
            site["multiplicity"] = multiplicities[position] if len(multiplicities) > position else None
        if is_zero:
            number = next(fixed_iter)
            if number > 0:
                sites.append(dict(site, element=symbol_of(number)))
        else:
            for j, count in enumerate(next(free_iter)):
                sites += [dict(site, element=symbol_of(j + 1))] * int(count)
    if not sites:
        raise ValueError("the generated occupation has no atoms")
    return int(_ints(data.space_group)[0]), [{k: v for k, v in s.items() if v is not None} for s in sites]


def element_symbol(number):
    from pymatgen.core.periodic_table import Element

    return Element.from_Z(int(number)).symbol


def load_samples(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def protostructures(folder, generated):
    """Rows of the post-processing CSV `<name>_protostructures.csv` for this generated file, or None."""
    stem = os.path.splitext(os.path.basename(generated))[0]
    paths = glob.glob(os.path.join(folder, "post_processed", stem + "*protostructures.csv"))
    if not paths:
        return None
    with open(paths[0]) as handle:
        return list(csv.DictReader(handle))


def latest_generated(folder):
    files = [p for p in glob.glob(os.path.join(folder, "generated_samples_N=*.pt"))]
    return max(files, key=os.path.getmtime) if files else None


# --- upstream invocation ----------------------------------------------------------------------


def run(argv, cwd):
    print("gencsp: running {}".format(" ".join(argv)), flush=True)
    return subprocess.call(argv, cwd=cwd)


def main_py(mode, *args):
    return [sys.executable, os.path.join(UPSTREAM, "main.py"), "--mode", mode] + [str(a) for a in args]


def device_flags(device):
    return [] if device == "cuda" else ["--disable_cuda"]


def stage_checkpoint(session, work):
    """Copy the checkpoint into /work/wyckoffdiff/checkpoints/<run>/: samples are saved next to it, and
    --load must contain a `checkpoints` path component."""
    checkpoint = session.request.get("checkpoint")
    if not checkpoint:
        raise g.ContractError("wyckoff_diffusion has no public checkpoint: train one with `gencsp train "
                              "--model wyckoff_diffusion --dataset D` and pass --checkpoint <train>/out/model")
    source = session.path(checkpoint)
    info = {}
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, TRAIN_INFO)):
            with open(os.path.join(source, TRAIN_INFO)) as handle:
                info = json.load(handle)
        candidates = [p for p in glob.glob(os.path.join(source, "**", "*.pt"), recursive=True)
                      if not os.path.basename(p).startswith("generated_samples")]
        if not candidates:
            raise g.ContractError(f"{source}: no *.pt checkpoint inside")
        best = [p for p in candidates if "best" in os.path.basename(p)]
        source = max(best or candidates, key=os.path.getmtime)
    run_dir = os.path.join(work, "wyckoffdiff", "checkpoints", "gencsp")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    target = os.path.join(run_dir, os.path.basename(source))
    shutil.copyfile(source, target)
    return target, info


def sample(session):
    if session.task != "generate":
        raise g.ContractError("wyckoff_diffusion is unconditional: it only does generate")
    work = session.path("/work")
    checkpoint, info = stage_checkpoint(session, work)
    session.model["checkpoint_sha256"] = g.sha256_file(checkpoint)
    folder, root = os.path.dirname(checkpoint), os.path.join(work, "wyckoffdiff")
    requested = session.requested()
    dataset = ["--dataset", info["dataset"]] if info.get("dataset") else []
    code = run(main_py("generate", "--num_samples", len(requested), "--load", checkpoint, "--seed", session.seed,
                       *dataset, *device_flags(session.device)), root)
    generated = latest_generated(folder)
    if not generated:
        raise UpstreamError(f"WyckoffDiff wrote no generated_samples file (exit status {code})")
    post = run(main_py("post_process", "--enrich_data", "--save_protostructures", "--load", folder, *dataset), root)
    labels = protostructures(folder, generated)
    if post or labels is None:
        print(f"gencsp: protostructure post-processing failed (status {post}); records come from the raw samples"
              , flush=True)
    answer(session, requested, load_samples(generated), labels)
    if code:
        raise UpstreamError(f"WyckoffDiff generate exited with status {code}")


def answer(session, requested, samples, labels):
    """Sample k answers request k; one without a protostructure (when the CSV lines up) fails."""
    aligned = labels is not None and len(labels) == len(samples)
    for k, (target, index) in enumerate(requested):
        if k >= len(samples):
            session.fail(target["id"], index, "WyckoffDiff generated fewer samples than requested")
            continue
        with session.slot(target, index) as slot:
            if aligned and not (labels[k].get("protostructure") or "").strip():
                raise ValueError("post-processing found no protostructure for this occupation")
            group, sites = wyckoff_sites(samples[k], element_symbol)
            slot.wyckoff(group, sites)


# --- train --------------------------------------------------------------------------------------


def protostructure_label(structure):
    """aviary's spglib protostructure label (the `wyckoff_spglib` column of WyckoffDiff's raw CSVs)."""
    from aviary.wren import utils

    for name in ("get_protostructure_label_from_spglib", "get_aflow_label_from_spglib"):
        if hasattr(utils, name):
            return getattr(utils, name)(structure)
    raise ImportError("aviary.wren.utils has no spglib protostructure labeller")


def convert_split(source, target, label_fn, prop=None):
    """A gencsp split (material_id, cif, properties) -> WyckoffDiff's raw CSV (wyckoff_spglib + an energy column)."""
    import pandas as pd
    from pymatgen.core import Structure

    frame = pd.read_csv(source)
    energy = prop if prop in frame.columns else None
    rows, skipped = [], 0
    for _, row in frame.iterrows():
        try:
            label = label_fn(Structure.from_str(row["cif"], fmt="cif"))
        except Exception:  # noqa: BLE001 - spglib gives up on a few cells; counted, not fatal
            skipped += 1
            continue
        rows.append({"material_id": row["material_id"], "wyckoff_spglib": label,
                     "formation_energy_per_atom": float(row[energy]) if energy else 0.0})
    os.makedirs(os.path.dirname(target), exist_ok=True)
    pd.DataFrame(rows).to_csv(target, index=False)
    return len(rows), skipped


def train(request, out_dir):
    path = g.Session.path  # container -> host paths when run on the host (GENCSP_PATH_MAP)
    options = request.get("options") or {}
    suffix = UPSTREAM_DATASETS.get(request["dataset"], "mp20")
    root = os.path.join(path(None, "/work"), "wyckoffdiff")
    for split in ("train", "val", "test"):
        if split not in request["splits"]:
            sys.stderr.write("wyckoff_diffusion trains on train/val/test splits; got {}\n".format(
                sorted(request["splits"])))
            return 2
        kept, skipped = convert_split(path(None, request["splits"][split]),
                                      os.path.join(root, "data", suffix, "raw", f"{suffix}_{split}.csv"),
                                      protostructure_label, options.get("property"))
        print(f"gencsp: {split} split: {kept} structures labelled, {skipped} skipped", flush=True)
    epochs = ["--epochs", request["max_epochs"]] if request.get("max_epochs") else []
    code = run(main_py("train_d3pm", "--d3pm_transition", options.get("d3pm_transition", "uniform"),
                       "--logger", "model_only", "--dataset", suffix, "--seed", request.get("seed", 0),
                       "--num_workers", 0, *epochs, *device_flags(request.get("device", "cuda"))), root)
    model = os.path.join(out_dir, "model")
    if os.path.isdir(os.path.join(root, "checkpoints")):
        shutil.copytree(os.path.join(root, "checkpoints"), os.path.join(model, "checkpoints"), dirs_exist_ok=True)
    if not glob.glob(os.path.join(model, "checkpoints", "**", "*.pt"), recursive=True):
        sys.stderr.write(f"WyckoffDiff training left no checkpoint (exit status {code})\n")
        return code or 1
    g.atomic_write(os.path.join(model, TRAIN_INFO), json.dumps({"dataset": suffix, "source": request["dataset"]}))
    return code


if __name__ == "__main__":
    g.main(sample, model=MODEL, train_fn=train)
