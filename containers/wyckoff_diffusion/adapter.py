"""wyckoff_diffusion: the sampling contract around httk/wyckoffdiff (Ekström Kelvinius et al., ICML 2025).

WyckoffDiff generates a space group and a Wyckoff occupation (no coordinates). Sampling runs the upstream
`main.py --mode generate` in chunks of `sample_batch_size` samples (one checkpoint folder per chunk: the samples
are saved next to the checkpoint), then `--mode post_process --enrich_data`, which labels each sample with its
protostructure (or leaves it unlabelled when the occupation is not a crystal). Each labelled sample becomes a
Wyckoff record (slot.wyckoff); the orchestrator's realisation stage gives it coordinates. No checkpoint is
published: `train` fits one on the mounted splits, as a dataset of its own name registered in the upstream
registry with the space-group prior of its training split (upstream_main.py). Runs under Python >= 3.8.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import gencsp_helper as g

UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/wyckoffdiff")
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "upstream_main.py")
COMMIT = "dc5e84983117ebcb5e6e27b429662bd06cf3234f"
MODEL = {"name": "wyckoff_diffusion", "upstream": {"repo": "https://github.com/httk/wyckoffdiff", "commit": COMMIT}}
# Wyckoff position index (0 = 'a') -> letter; groups with 27 positions end with 'A' (Pmmm).
LETTERS = "abcdefghijklmnopqrstuvwxyzA"
TRAIN_INFO = "gencsp_train.json"
PRIOR = "prior.json"
NO_PRIOR = "-"  # upstream_main.py: a checkpoint of one of the upstream's own datasets
NUM_ELEMENTS = 100  # upstream default (args_and_config.py), the element columns the model sees


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


def label_of(data):
    """The protostructure upstream's post-processing gave this sample; None where it could not label it."""
    label = getattr(data, "aflow_label", None)
    return label if isinstance(label, str) and label.strip() else None


# --- upstream invocation ----------------------------------------------------------------------


def run(argv, cwd):
    """Run an upstream step; log its wall and CPU time (the CPU time does not depend on a loaded machine)."""
    import resource

    print("gencsp: running {}".format(" ".join(str(a) for a in argv)), flush=True)
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    code = subprocess.call([str(a) for a in argv], cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print("gencsp: {} took {:.1f} s ({:.1f} s CPU, peak {:.0f} MB), status {}".format(
        argv[4] if len(argv) > 4 and argv[3] == "--mode" else os.path.basename(str(argv[1])),
        time.monotonic() - start, cpu, after.ru_maxrss / 1024.0, code), flush=True)
    return code


def main_py(prior, mode, *args):
    """WyckoffDiff's main.py, unchanged, run by upstream_main.py (which registers a gencsp dataset's prior)."""
    return [sys.executable, LAUNCHER, prior or NO_PRIOR, "--mode", mode] + [str(a) for a in args]


def device_flags(device):
    return [] if device == "cuda" else ["--disable_cuda"]


def find_checkpoint(source):
    """The parameters file in a checkpoint folder (a gencsp training's out/model, or an upstream run folder)."""
    if os.path.isfile(source):
        return source
    candidates = [p for p in glob.glob(os.path.join(source, "**", "*.pt"), recursive=True)
                  if not os.path.basename(p).startswith("generated_samples") and "post_processed" not in p]
    if not candidates:
        raise g.ContractError(f"{source}: no *.pt checkpoint inside")
    # the upstream's names: best_parameters.pt, then parameters.pt (end of the last epoch), parameters_<epoch>.pt
    for name in ("best_parameters.pt", "parameters.pt"):
        named = [p for p in candidates if os.path.basename(p) == name]
        if named:
            return max(named, key=os.path.getmtime)
    return max(candidates, key=os.path.getmtime)


def read_json(path):
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def stage_checkpoint(session, work):
    """(parameters file, prior file or None, train info) of the request's checkpoint, copied under /work."""
    checkpoint = session.request.get("checkpoint")
    if not checkpoint:
        raise g.ContractError("wyckoff_diffusion has no public checkpoint: train one with `gencsp train "
                              "--model wyckoff_diffusion --dataset D` and pass --checkpoint <train>/out/model")
    source = session.path(checkpoint)
    folder = source if os.path.isdir(source) else os.path.dirname(source)
    info = read_json(os.path.join(folder, TRAIN_INFO))
    staged = os.path.join(work, "wyckoffdiff", "staged")
    os.makedirs(staged, exist_ok=True)
    parameters = os.path.join(staged, "parameters.pt")
    shutil.copyfile(find_checkpoint(source), parameters)
    prior = None
    if os.path.isfile(os.path.join(folder, PRIOR)):
        prior = os.path.join(staged, PRIOR)
        shutil.copyfile(os.path.join(folder, PRIOR), prior)
    return parameters, prior, info


def chunk_folder(root, parameters, k):
    """checkpoints/gencsp-<k>/parameters.pt (a link): --load must contain a `checkpoints` component, the samples
    are saved next to it and post_process reads a whole folder, so each chunk gets its own."""
    folder = os.path.join(root, "checkpoints", f"gencsp-{k:04d}")
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    link = os.path.join(folder, "parameters.pt")
    os.symlink(parameters, link)
    return folder, link


def chunks(requested, size):
    return [requested[k:k + size] for k in range(0, len(requested), size)]


def sample(session):
    if session.task != "generate":
        raise g.ContractError("wyckoff_diffusion is unconditional: it only does generate")
    work = session.path("/work")
    parameters, prior, info = stage_checkpoint(session, work)
    session.model["checkpoint_sha256"] = g.sha256_file(parameters)
    root = os.path.join(work, "wyckoffdiff")
    size = max(1, int(session.options.get("sample_batch_size") or session.batch_size))
    post = bool(session.options.get("post_process", True))
    for k, part in enumerate(chunks(session.requested(), size)):
        seed = g.derived_seed(session.seed, "wyckoffdiff-chunk", k)
        folder, link = chunk_folder(root, parameters, k)
        start = time.monotonic()
        code = run(main_py(prior, "generate", "--num_samples", len(part), "--load", link, "--seed", seed,
                           *device_flags(session.device)), root)
        generated = sorted(glob.glob(os.path.join(folder, "generated_samples_N=*.pt")))
        if code or not generated:
            raise UpstreamError(f"WyckoffDiff generate exited with status {code} ({len(generated)} file(s) written)")
        samples = load_samples(generated[0])
        labelled = post_process(prior, folder, generated[0], root) if post else None
        per_sample = (time.monotonic() - start) / max(1, len(part))
        answer(session, part, samples, labelled, per_sample)


def post_process(prior, folder, generated, root):
    """The samples enriched by upstream's post-processing (each with its `aflow_label`), or None if it failed."""
    code = run(main_py(prior, "post_process", "--enrich_data", "--save_protostructures", "--load", folder), root)
    enriched = os.path.join(folder, "post_processed", os.path.basename(generated))
    if code or not os.path.isfile(enriched):
        print(f"gencsp: post-processing failed (status {code}); these records come from the raw samples",
              flush=True)
        return None
    return load_samples(enriched)


def answer(session, requested, samples, labelled, seconds):
    """Sample k of the chunk answers request k; one the post-processing could not label fails."""
    for k, (target, index) in enumerate(requested):
        if k >= len(samples):
            session.fail(target["id"], index, "WyckoffDiff generated fewer samples than requested", seconds)
            continue
        try:
            if labelled is not None and (len(labelled) != len(samples) or label_of(labelled[k]) is None):
                raise ValueError("WyckoffDiff's post-processing found no protostructure for this occupation")
            group, sites = wyckoff_sites(samples[k], element_symbol)
        except Exception as exc:  # noqa: BLE001 - one bad sample fails alone
            session.fail(target["id"], index, f"{type(exc).__name__}: {exc}", seconds)
            continue
        session.save_wyckoff(target["id"], index, group, sites, seconds=seconds)


# --- train --------------------------------------------------------------------------------------


def checked_label(label, parse, free_parameters):
    """`label` if it is a protostructure a crystal can have, else ValueError.

    aviary's labeller returns its error message as the label unless raise_errors is set ('Invalid WP
    multiplicities - ...', or '' when spglib gives up), and spglib can put two atoms on one 0-DoF position
    (overlapping sites): neither may reach the training set.
    """
    if not isinstance(label, str) or ":" not in label or label.startswith("Invalid"):
        raise ValueError(f"not a protostructure label: {label!r}")
    group, _, elements, sets = parse(label)
    from pymatgen.core.periodic_table import Element

    for element in set(elements):
        if not Element.is_valid_symbol(element):
            raise ValueError(f"{label!r}: {element!r} is not an element")
    fixed = [letter for letter in sets[0] if free_parameters[str(group)][letter] == 0]
    doubled = sorted({letter for letter in fixed if fixed.count(letter) > 1})
    if doubled:
        raise ValueError("{!r}: more than one atom on 0-DoF position(s) {}".format(label, ", ".join(doubled)))
    return label


def protostructure_label(structure):
    """aviary's spglib protostructure label (the `wyckoff_spglib` column of WyckoffDiff's raw CSVs), or
    ValueError: a labelling error is never passed on as a label."""
    from aviary.wren import data, utils

    return checked_label(utils.get_protostructure_label_from_spglib(structure, raise_errors=True),
                         data.parse_protostructure_label, utils.param_dict)


def convert_split(source, target, label_fn, prop=None):
    """A gencsp split (material_id, cif, properties) -> WyckoffDiff's raw CSV (wyckoff_spglib + an energy column).

    Returns (rows kept, {reason: rows skipped}).
    """
    import pandas as pd
    from pymatgen.core import Structure

    frame = pd.read_csv(source)
    energy = prop if prop in frame.columns else None
    rows, skipped = [], {}
    for _, row in frame.iterrows():
        try:
            label = label_fn(Structure.from_str(row["cif"], fmt="cif"))
        except Exception as exc:  # noqa: BLE001 - spglib gives up on a few cells; counted, not fatal
            reason = type(exc).__name__
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        rows.append({"material_id": row["material_id"], "wyckoff_spglib": label,
                     "formation_energy_per_atom": float(row[energy]) if energy else 0.0})
    os.makedirs(os.path.dirname(target), exist_ok=True)
    pd.DataFrame(rows, columns=["material_id", "wyckoff_spglib", "formation_energy_per_atom"]).to_csv(
        target, index=False)
    return len(rows), skipped


def dataset_name(dataset):
    """The name the training set is registered under upstream: never one of its own (wbm, mp20, carbon24),
    whose hard-coded priors are another data set's."""
    return "gencsp_" + "".join(c if c.isalnum() else "_" for c in dataset.lower())


def train_argv(request, name, prior):
    options = request.get("options") or {}
    argv = main_py(prior, "train_d3pm", "--d3pm_transition", options.get("d3pm_transition", "uniform"),
                   "--logger", "model_only", "--dataset", name, "--seed", request.get("seed", 0),
                   *device_flags(request.get("device", "cuda")))
    for option, flag in (("t_max", "--t_max"), ("train_batch_size", "--batch_size"), ("lr", "--lr"),
                         ("hidden_dim", "--hidden_dim"), ("num_gnn_layers", "--num_gnn_layers")):
        if options.get(option) is not None:
            argv += [flag, str(options[option])]
    if request.get("max_epochs"):
        argv += ["--epochs", str(request["max_epochs"])]
    return argv


def train(request, out_dir):
    path = g.Session.path  # container -> host paths when run on the host (GENCSP_PATH_MAP)
    options = request.get("options") or {}
    name = dataset_name(request["dataset"])
    root = os.path.join(path(None, "/work"), "wyckoffdiff")
    for split in ("train", "val", "test"):
        if split not in request["splits"]:
            sys.stderr.write("wyckoff_diffusion trains on train/val/test splits; got {}\n".format(
                sorted(request["splits"])))
            return 2
        kept, skipped = convert_split(path(None, request["splits"][split]),
                                      os.path.join(root, "data", name, "raw", f"{name}_{split}.csv"),
                                      protostructure_label, options.get("property"))
        print("gencsp: {} split: {} structures labelled, skipped: {}".format(split, kept, skipped or "none"),
              flush=True)
        if not kept:
            sys.stderr.write(f"wyckoff_diffusion: no structure of the {split} split could be labelled\n")
            return 1
    model = os.path.join(out_dir, "model")
    os.makedirs(model, exist_ok=True)
    prior = os.path.join(model, PRIOR)
    code = run([sys.executable, LAUNCHER, "--count", prior, name, NUM_ELEMENTS], root)
    if code:
        sys.stderr.write(f"wyckoff_diffusion: counting the training set's prior failed (status {code})\n")
        return code
    code = run(train_argv(request, name, prior), root)
    if os.path.isdir(os.path.join(root, "checkpoints")):
        shutil.copytree(os.path.join(root, "checkpoints"), os.path.join(model, "checkpoints"), dirs_exist_ok=True)
    if not glob.glob(os.path.join(model, "checkpoints", "**", "*.pt"), recursive=True):
        sys.stderr.write(f"WyckoffDiff training left no checkpoint (exit status {code})\n")
        return code or 1
    g.atomic_write(os.path.join(model, TRAIN_INFO), json.dumps({
        "dataset": name, "source": request["dataset"], "prior": PRIOR,
        "options": {k: v for k, v in options.items() if k in ("d3pm_transition", "t_max", "train_batch_size")}}))
    return code


if __name__ == "__main__":
    g.main(sample, model=MODEL, train_fn=train)
