"""score_langevin: the sampling contract around findooshka/diffusion-atoms (Sultanov et al., JCIM 2023).

The upstream samples a space group and an asymmetric-unit composition (number of non-equivalent
atoms per element) given in a "sampling order" YAML: `main.py --sample --ni`. It catches every
exception and exits 0, so what it wrote is the only evidence of success: every requested sample is
looked up in its CIF tree `exp/cif_samples/<doc>/<order>/<Composition>_<sg>/[finals/]<i>.cif`.
Runs under the upstream environment's Python (no 3.9+ syntax here).
"""

import collections
import json
import os
import subprocess
import sys

import gencsp_helper as g

UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/diffusion-atoms")
COMMIT = "0a9a24eb7690389844abf4f531cc532b19661782"
MODEL = {"name": "score_langevin",
         "upstream": {"repo": "https://github.com/findooshka/diffusion-atoms", "commit": COMMIT}}
DOC = "pretrained"
ORDER_NAME = "gencsp"
WEIGHTS_SHA256 = "/opt/gencsp/weights.sha256"


class UpstreamError(RuntimeError):
    """diffusion-atoms failed or wrote nothing usable."""


# --- request -> sampling order (plain functions, tested on the host) ---------------------------


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


def sampling_order(session):
    """The order YAML (as JSON, a YAML subset) and, per image folder, the samples it answers (in 1..count order).

    Targets with the same composition and group share one order: two orders with the same folder
    would overwrite each other's files under --ni.
    """
    options = session.options
    groups = collections.OrderedDict()
    for target, index in session.requested():
        composition = asymmetric_composition(target)
        group = int(target["conditioning"]["space_group"])
        key = folder_name(composition, group)
        if key not in groups:
            groups[key] = {"space_group": group, "composition": composition, "samples": []}
        groups[key]["samples"].append((target["id"], index))
    orders = [{"space_group": [v["space_group"]], "composition": dict(v["composition"]),
               "count": len(v["samples"]), "T": int(options["T"]), "random_positions": True,
               "random_lattice": True, "only_final": True} for v in groups.values()]
    layout = collections.OrderedDict((key, v["samples"]) for key, v in groups.items())
    return {"name": ORDER_NAME, "orders": orders}, layout


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


def cif_from_jarvis(path):
    """Re-emit a jarvis-written P1 CIF through pymatgen (the validator reads pymatgen's dialect)."""
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    structure = Structure.from_file(path)
    if len(structure) == 0:
        raise ValueError(f"{os.path.basename(path)}: no atoms")
    return str(CifWriter(structure))


def last_error(log_text):
    """The last line main.py logged at ERROR level (its exceptions never reach the exit status)."""
    lines = [line for line in log_text.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("ERROR")]
    if not errors:
        return None
    tail = [line for line in lines[errors[-1]:] if line.strip()]
    return tail[-1].strip()[:500]


# --- upstream invocation ----------------------------------------------------------------------


def sampling_config(options, batch_size):
    """The upstream config named by option `config`, with the sampling batch size main.py expects."""
    import yaml

    with open(os.path.join(UPSTREAM, "configs", options["config"])) as handle:
        config = yaml.safe_load(handle)
    config.setdefault("sampling", {})["batch_size"] = int(batch_size)
    return config


def prepare_tree(work, checkpoint):
    """A writable run folder: main.py reads ./data and ./exp/logs and writes ./exp/cif_samples."""
    tree = os.path.join(work, "diffusion-atoms")
    os.makedirs(os.path.join(tree, "exp", "logs"), exist_ok=True)
    links = {os.path.join(tree, "data"): os.path.join(UPSTREAM, "data"),
             os.path.join(tree, "exp", "logs", DOC): checkpoint or os.path.join(UPSTREAM, "exp", "logs", DOC)}
    for link, source in links.items():
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(source, link)
    return tree


def checkpoint_sha256(checkpoint):
    path = os.path.join(checkpoint, "ckpt.pth") if checkpoint else None
    if path and os.path.isfile(path):
        return g.sha256_file(path)
    if os.path.isfile(WEIGHTS_SHA256):
        with open(WEIGHTS_SHA256) as handle:
            return handle.read().split()[0]
    return None


def sample(session):
    work = session.path("/work")
    checkpoint = session.request.get("checkpoint")
    checkpoint = session.path(checkpoint) if checkpoint else None
    digest = checkpoint_sha256(checkpoint)
    if digest:
        session.model["checkpoint_sha256"] = digest
    order, layout = sampling_order(session)
    order_path = os.path.join(work, "order.yml")
    config_path = os.path.join(work, "config.yml")
    g.atomic_write(order_path, json.dumps(order, indent=1))
    g.atomic_write(config_path, json.dumps(sampling_config(session.options, session.batch_size), indent=1))
    tree = prepare_tree(work, checkpoint)
    # Absolute paths: main.py joins them under configs/ and sampling_orders/, and os.path.join keeps them.
    argv = [sys.executable, os.path.join(UPSTREAM, "main.py"), "--config", config_path, "--doc", DOC,
            "--sample", "--sampling_order_path", order_path, "--ni", "--seed", str(session.seed)]
    log_path = os.path.join(work, "upstream.log")
    print("gencsp: running {}".format(" ".join(argv)), flush=True)
    with open(log_path, "w") as log:
        code = subprocess.call(argv, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path) as log:
        log_text = log.read()
    sys.stdout.write(log_text[-20000:])
    collect(session, os.path.join(tree, "exp", "cif_samples", DOC, ORDER_NAME), layout, code, last_error(log_text))


def collect(session, root, layout, code, error):
    """Every requested sample from the CIF tree; a missing file fails its sample with the upstream's error."""
    why = "diffusion-atoms wrote no structure for this sample (exit status {}{})".format(
        code, "; last error: " + error if error else "")
    produced = 0
    for folder, samples in layout.items():
        files = sample_files(root, folder, len(samples))
        for i, (target_id, index) in enumerate(samples, start=1):
            if i not in files:
                session.fail(target_id, index, why)
                continue
            with session.slot(target_id, index) as slot:
                slot.cif(cif_from_jarvis(files[i]))
                produced += 1
    if not produced:
        raise UpstreamError(why)


if __name__ == "__main__":
    g.main(sample, model=MODEL)
