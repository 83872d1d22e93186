"""score_langevin: the contract around findooshka/diffusion-atoms (Sultanov et al., JCIM 2023), unchanged.

sample: the upstream samples a space group and an asymmetric-unit composition (non-equivalent atoms
        per element) given in a "sampling order": `main.py --sample --ni` in a run folder whose
        exp/logs/pretrained is the checkpoint folder (the published one when the image has it, or
        --checkpoint), writing `exp/cif_samples/pretrained/<order>/<Composition>_<sg>/<i>.cif`.
train:  upstream_data.py makes the CIF folders and sg_index.json main.py reads from the mounted splits;
        `main.py --config <cfg> --doc model --ni` runs with exp/logs -> /io/out, so the upstream trainer
        writes its checkpoint folder (ckpt.pth, loss arrays, its config dump) straight into out/model.
main.py catches every exception and exits 0: what it wrote and what it logged are the only evidence.
Runs under the upstream environment's Python (no annotations, nothing past 3.9).
"""

import collections
import json
import os
import shutil
import subprocess
import sys
import time

import gencsp_helper as g

UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/diffusion-atoms")
SPACE_GROUPS = os.environ.get("GENCSP_SPACE_GROUPS", "/opt/gencsp/data/space_groups")
COMMIT = "0a9a24eb7690389844abf4f531cc532b19661782"
MODEL = {"name": "score_langevin",
         "upstream": {"repo": "https://github.com/findooshka/diffusion-atoms", "commit": COMMIT}}
DOC = "pretrained"  # the published checkpoint's folder name; a mounted checkpoint takes its place
TRAIN_DOC = "model"  # out/model: the checkpoint folder gencsp expects from a training
TRAIN_CONFIG = "train_config.yml"  # the config main.py trained with (upstream's own dump is a pickled Namespace)
DATA_SUMMARY = "gencsp_data.json"
CHECKPOINT = "ckpt.pth"
WEIGHTS_SHA256 = "/opt/gencsp/weights.sha256"
NOISE_LEVELS = 10  # diffusion.num_diffusion_timesteps of both upstream configs
MAX_RUNS = 20


class UpstreamError(RuntimeError):
    """diffusion-atoms failed or wrote nothing usable."""


# --- request -> sampling orders (plain functions, tested on the host) ---------------------------


def asymmetric_composition(target):
    """Non-equivalent atoms per element: one per occupied Wyckoff orbit of the target's conditioning."""
    conditioning = target.get("conditioning") or {}
    sites = conditioning.get("wyckoff") or []
    if not conditioning.get("space_group") or not sites:
        raise g.ContractError("target {}: score_langevin needs the space group and Wyckoff sites "
                              "(oracle conditioning)".format(target["id"]))
    counts = collections.Counter(site["element"] for site in sites)
    return collections.OrderedDict((el, counts[el]) for el in sorted(counts))


def folder_name(composition, space_group):
    """The image folder main.py derives from an order: element+count concatenated, then _<space group>."""
    return "".join(f"{el}{n}" for el, n in composition.items()) + f"_{space_group}"


Job = collections.namedtuple("Job", "folder space_group composition samples")


def jobs_of(session):
    """One job per image folder: the (target id, index) samples it answers, and targets it cannot serve.

    Targets with the same composition and group share a folder: two orders with the same folder
    would overwrite each other's files under --ni.
    """
    groups, refused = collections.OrderedDict(), []
    for target, index in session.requested():
        try:
            composition = asymmetric_composition(target)
        except g.ContractError as exc:
            refused.append((target["id"], index, str(exc)))
            continue
        group = int(target["conditioning"]["space_group"])
        key = folder_name(composition, group)
        groups.setdefault(key, Job(key, group, composition, []))
        groups[key].samples.append((target["id"], index))
    return list(groups.values()), refused


def sampling_order(name, jobs, options):
    """The order YAML (as JSON, a YAML subset) main.py reads for these jobs, in their order."""
    return {"name": name, "orders": [
        {"space_group": [job.space_group], "composition": dict(job.composition), "count": len(job.samples),
         "T": int(options["T"]), "random_positions": True, "random_lattice": True, "only_final": True}
        for job in jobs]}


def sample_files(root, folder, count):
    """Where main.py put sample i of an image folder: `<i>.cif`, or `finals/<i>.cif` (only_final: false)."""
    found = {}
    for i in range(1, count + 1):
        for candidate in (os.path.join(root, folder, f"{i}.cif"),
                          os.path.join(root, folder, "finals", f"{i}.cif")):
            if os.path.isfile(candidate) and os.path.getsize(candidate) > 0:
                found[i] = candidate
                break
    return found


def split_outcome(jobs, root, batch_size, crashed):
    """What a run produced: {(target, index): file}, the samples of the batch it died in, and the rest.

    main.py samples the orders in sequence, `batch_size` samples at a time, and an exception ends the
    whole run: after a crash, the first missing sample opens the batch that failed; what follows it
    was never attempted and is tried again in a fresh run.
    """
    produced, missing = {}, []
    for job in jobs:
        files = sample_files(root, job.folder, len(job.samples))
        for i, sample in enumerate(job.samples, start=1):
            if i in files:
                produced[sample] = files[i]
            else:
                missing.append((job, sample))
    if not crashed:
        return produced, [sample for _, sample in missing], []
    failed = [sample for _, sample in missing[:batch_size]]
    rest = collections.OrderedDict()
    for job, sample in missing[batch_size:]:
        rest.setdefault(job.folder, Job(job.folder, job.space_group, job.composition, []))
        rest[job.folder].samples.append(sample)
    return produced, failed, list(rest.values())


def cif_from_jarvis(path):
    """Re-emit a jarvis-written P1 CIF through pymatgen (the validator reads pymatgen's dialect)."""
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    name = os.path.basename(path)
    try:
        structure = Structure.from_file(path)
    except Exception as exc:  # pymatgen's message ("no structures") does not say why
        shared = atoms_on_taken_sites(path)
        if shared:
            raise ValueError(f"{name}: {shared} atoms on a site another atom holds (upstream rounds positions onto "
                             "special positions after merging atoms closer than 0.4 A)") from exc
        raise ValueError(f"{name}: {exc}") from exc
    if len(structure) == 0:
        raise ValueError(f"{name}: no atoms")
    return str(CifWriter(structure))


def atoms_on_taken_sites(path, tolerance=1e-3):
    """How many atoms of a P1 CIF sit (within `tolerance`, fractional) on the site of an earlier atom."""
    import numpy as np
    from pymatgen.io.cif import CifFile

    try:
        block = next(iter(CifFile.from_file(path).data.values()))
        coords = np.array([[float(v) for v in block.data["_atom_site_fract_" + k]] for k in "xyz"]).T % 1.0
    except Exception:  # noqa: BLE001 - not a readable atom loop: nothing to count
        return 0
    diff = np.abs(coords[:, None] - coords[None])
    same = np.minimum(diff, 1.0 - diff).max(axis=-1) < tolerance
    return int(np.triu(same, 1).any(axis=0).sum())


def last_error(log_text):
    """The last line of the last traceback main.py logged at ERROR level (its exit status is always 0)."""
    lines = [line for line in log_text.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("ERROR")]
    if not errors:
        return None
    tail = [line for line in lines[errors[-1]:] if line.strip() and not line.startswith(("INFO", "WARNING"))]
    return tail[-1].strip()[:500]


# --- configs and run folders --------------------------------------------------------------------


def read_yaml(path):
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def yaml_text(value):
    """YAML main.py reads back as written (JSON would turn 1e-08 into a string for PyYAML: no dot, no float)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False)


def checkpoint_folder(session):
    """The folder main.py loads ckpt.pth from: --checkpoint (a folder, or a file), else the published one."""
    checkpoint = session.request.get("checkpoint")
    if not checkpoint:
        folder = os.path.join(UPSTREAM, "exp", "logs", DOC)
        if not os.path.isfile(os.path.join(folder, CHECKPOINT)):
            raise UpstreamError("the published checkpoint (exp/logs/pretrained/ckpt.pth) is not in this image: it "
                                "was built from a mirror without files over 4 MiB. Pass --checkpoint: a folder "
                                "holding ckpt.pth, e.g. trains/<id>/out/model of `gencsp train --model score_langevin`")
        return folder
    path = session.path(checkpoint)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, CHECKPOINT)):
            raise g.ContractError(f"{checkpoint}: no {CHECKPOINT} in this folder (upstream's exp/logs/<doc> layout)")
        return path
    if not os.path.isfile(path):
        raise g.ContractError(f"{checkpoint}: no such checkpoint")
    folder = os.path.join(session.path("/work"), "checkpoint")
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, CHECKPOINT)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(path, link)
    return folder


def sampling_config(options, batch_size, checkpoint):
    """The config the checkpoint was trained with (train_config.yml beside it), else the upstream one named
    by option `config`; with the sampling batch size main.py needs and the image's operation files."""
    trained = os.path.join(checkpoint, TRAIN_CONFIG)
    config = read_yaml(trained if os.path.isfile(trained) else os.path.join(UPSTREAM, "configs", options["config"]))
    config.setdefault("sampling", {})["batch_size"] = int(batch_size)
    config.setdefault("data", {})["space_groups"] = SPACE_GROUPS
    return config


def run_folder(work, checkpoint, logs_target=None):
    """A writable run folder for main.py: exp/logs/pretrained -> the checkpoint (sampling), or exp/logs ->
    the output folder (training); it writes exp/cif_samples here."""
    tree = os.path.join(work, "diffusion-atoms")
    os.makedirs(os.path.join(tree, "exp"), exist_ok=True)
    if logs_target:
        links = {os.path.join(tree, "exp", "logs"): logs_target}
    else:
        os.makedirs(os.path.join(tree, "exp", "logs"), exist_ok=True)
        links = {os.path.join(tree, "exp", "logs", DOC): checkpoint}
    for link, source in links.items():
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(source, link)
    return tree


def upstream_env(device):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "1")
    if device != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_main(argv, cwd, env, log_path, timeout=None):
    """Run main.py, its output both in our log and in `log_path`; return (exit code or None on timeout, log text)."""
    print("gencsp: running {}".format(" ".join(argv)), flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    with open(log_path) as log:
        text = log.read()
    sys.stdout.write(text[-20000:])
    sys.stdout.flush()
    return code, text


def checkpoint_sha256(folder):
    path = os.path.join(folder, CHECKPOINT)
    if os.path.isfile(path):
        return g.sha256_file(path)
    if os.path.isfile(WEIGHTS_SHA256):
        with open(WEIGHTS_SHA256) as handle:
            return handle.read().split()[0]
    return None


# --- sample ---------------------------------------------------------------------------------------


def run_timeout(options, samples):
    """Seconds one main.py run may take: `startup_seconds` (model construction) plus `step_seconds` per Langevin
    step and sample; None without `step_seconds`. (A NaN score makes upstream's lattice_step retry the same
    call forever: without a bound a diverged structure holds the shard until its own time limit.)"""
    step = options.get("step_seconds")
    if not step:
        return None
    return float(options.get("startup_seconds", 300)) + float(step) * NOISE_LEVELS * int(options["T"]) * samples


def sample(session):
    work = session.path("/work")
    checkpoint = checkpoint_folder(session)
    digest = checkpoint_sha256(checkpoint)
    if digest:
        session.model["checkpoint_sha256"] = digest
    jobs, refused = jobs_of(session)
    for target_id, index, why in refused:
        session.fail(target_id, index, why)
    config_path = os.path.join(work, "config.yml")
    g.atomic_write(config_path, yaml_text(sampling_config(session.options, session.batch_size, checkpoint)))
    tree = run_folder(work, checkpoint)
    env = upstream_env(session.device)
    produced, run = 0, 0
    while jobs and run < MAX_RUNS:
        run += 1
        count, jobs = sample_once(session, jobs, run, tree, config_path, env)
        produced += count
    for job in jobs:  # MAX_RUNS reached: a crash in every run
        for target_id, index in job.samples:
            session.fail(target_id, index, f"not attempted: diffusion-atoms crashed in {MAX_RUNS} runs")
    if not produced and not refused:
        raise UpstreamError("diffusion-atoms wrote no structure (see the log above)")


def sample_once(session, jobs, run, tree, config_path, env):
    """One main.py run over `jobs`: answers what it produced or failed; returns (produced, jobs left to retry)."""
    name = f"gencsp-{run}"  # a fresh order name per run: --ni deletes an existing image folder
    order_path = os.path.join(session.path("/work"), f"order-{run}.yml")
    g.atomic_write(order_path, yaml_text(sampling_order(name, jobs, session.options)))
    samples = sum(len(job.samples) for job in jobs)
    # Absolute paths: main.py joins them under configs/ and sampling_orders/, and os.path.join keeps them.
    argv = [sys.executable, os.path.join(UPSTREAM, "main.py"), "--config", config_path, "--doc", DOC,
            "--sample", "--sampling_order_path", order_path, "--ni", "--seed", str(session.seed + run - 1)]
    start = time.monotonic()
    code, log_text = run_main(argv, tree, env, os.path.join(session.path("/work"), f"upstream-{run}.log"),
                              run_timeout(session.options, samples))
    seconds = time.monotonic() - start
    error = "timed out" if code is None else last_error(log_text)
    root = os.path.join(tree, "exp", "cif_samples", DOC, name)
    files, failed, rest = split_outcome(jobs, root, session.batch_size, crashed=error is not None)
    per_sample = seconds / max(1, len(files) + len(failed))
    for (target_id, index), path in files.items():
        try:
            text = cif_from_jarvis(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable file fails its sample, not the run
            session.fail(target_id, index, f"{type(exc).__name__}: {exc}", seconds=per_sample)
        else:
            session.save_cif(target_id, index, text, seconds=per_sample)
    why = "diffusion-atoms wrote no structure for this sample (run {}, exit status {}{})".format(
        run, code, "; " + error if error else "")
    for target_id, index in failed:
        session.fail(target_id, index, why, seconds=per_sample)
    return len(files), rest


# --- train ------------------------------------------------------------------------------------------


def training_config(options, data_section, max_epochs, train_count):
    """The upstream config named by option `config`, on our data, bounded to `max_epochs`.

    A checkpoint is saved at step s when s % snapshot_freq == 0 (or s == 1), after s + 1 optimiser
    steps: with E epochs of k batches, snapshot_freq = E*k - 1 saves the state after the last step.
    """
    config = read_yaml(os.path.join(UPSTREAM, "configs", options.get("config") or "config.yml"))
    config["data"].update(data_section)
    config["data"]["num_workers"] = int(options.get("num_workers", 0))  # the items are in memory already
    training = config["training"]
    if options.get("batch_size"):
        training["batch_size"] = int(options["batch_size"])
    if max_epochs:
        steps = int(max_epochs) * -(-train_count // int(training["batch_size"]))
        training["n_epochs"] = int(max_epochs)
        training["snapshot_freq"] = max(1, steps - 1)
    config.setdefault("sampling", {}).setdefault("batch_size", int(options.get("sampling_batch_size", 32)))
    return config


def check_checkpoint(folder):
    """ckpt.pth as upstream writes it: [model, optimizer, epoch, step, ema] state; returns (epoch, step)."""
    import torch

    path = os.path.join(folder, CHECKPOINT)
    if not os.path.isfile(path):
        raise UpstreamError(f"no {CHECKPOINT} in {folder}")
    states = torch.load(path, map_location="cpu")
    if not isinstance(states, (list, tuple)) or len(states) != 5:
        raise UpstreamError(f"{path}: not an upstream checkpoint (a list of 5 states)")
    return int(states[2]), int(states[3])


def train(request, out_dir):
    import upstream_data

    path = g.Session.path  # translates container paths when run on the host (GENCSP_PATH_MAP)
    splits = {name: path(None, p) for name, p in request["splits"].items()}
    held_out = splits.get("val") or splits.get("test")
    if "train" not in splits or held_out is None:
        sys.stderr.write(f"score_langevin trains on a train split and a held-out one; got {sorted(splits)}\n")
        return 2
    options = request.get("options") or {}
    work = path(None, "/work")
    data_section, summary = upstream_data.write_training_data(
        splits["train"], held_out, os.path.join(work, "upstream-data"), SPACE_GROUPS,
        float(options.get("symprec", upstream_data.SYMPREC)))
    print("gencsp: upstream data " + json.dumps(summary), flush=True)
    if not summary["train"]["written"] or not summary["test"]["written"]:
        sys.stderr.write("score_langevin: no structure of the splits is in a space group diffusion-atoms trains on\n")
        return 1
    config = training_config(options, data_section, request.get("max_epochs"), summary["train"]["written"])
    config_path = os.path.join(work, TRAIN_CONFIG)
    g.atomic_write(config_path, yaml_text(config))
    tree = run_folder(work, None, logs_target=os.path.abspath(out_dir))
    argv = [sys.executable, os.path.join(UPSTREAM, "main.py"), "--config", config_path, "--doc", TRAIN_DOC, "--ni",
            "--seed", str(int(request.get("seed", 0)))]
    code, log_text = run_main(argv, tree, upstream_env(request.get("device", "cuda")),
                              os.path.join(work, "upstream-train.log"))
    model_dir = os.path.join(out_dir, TRAIN_DOC)
    error = last_error(log_text)
    if error:
        sys.stderr.write(f"score_langevin: main.py logged an error (its exit status is {code} regardless): {error}\n")
        return 1
    try:
        epoch, step = check_checkpoint(model_dir)
    except UpstreamError as exc:
        sys.stderr.write(f"score_langevin: training left no usable checkpoint: {exc}\n")
        return 1
    shutil.copyfile(config_path, os.path.join(model_dir, TRAIN_CONFIG))
    summary.update(epoch=epoch, step=step, config=options.get("config") or "config.yml")
    g.atomic_write(os.path.join(model_dir, DATA_SUMMARY), json.dumps(summary, indent=1))
    print(f"gencsp: checkpoint {model_dir}/{CHECKPOINT} (epoch {epoch}, step {step})", flush=True)
    return code or 0


if __name__ == "__main__":
    g.main(sample, model=MODEL, train_fn=train)
