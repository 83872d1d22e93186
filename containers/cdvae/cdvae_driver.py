"""Seeded entry points into the unchanged CDVAE code (runs in the upstream env, Python 3.8).

    cdvae_driver.py gen --seed S -- <scripts/evaluate.py arguments>
        seeds torch/numpy/random, then runs scripts/evaluate.py as __main__ (it seeds nothing itself).
    cdvae_driver.py csp --model_path P --spec SPEC.json --seed S --batch_size B [Langevin options]
        decodes z ~ N(0, I) with the upstream `langevin_dynamics`, forcing each sample's atom count and
        atom types, and saves P/eval_csp_<k>.pt per batch in evaluate.py's format (leading num_evals dim 1),
        so a crash keeps the batches already done.
"""

import argparse
import json
import os
import runpy
import sys
import time
from pathlib import Path

UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/cdvae")
KEYS = ("frac_coords", "atom_types", "lengths", "angles", "num_atoms")


def seed_all(seed):
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def gen(seed, argv):
    seed_all(seed)
    script = os.path.join(UPSTREAM, "scripts", "evaluate.py")
    sys.path.insert(0, os.path.dirname(script))  # evaluate.py imports eval_utils from its folder
    sys.argv = [script] + list(argv)
    runpy.run_path(script, run_name="__main__")


def csp(args):
    from types import SimpleNamespace

    import torch

    sys.path.insert(0, os.path.join(UPSTREAM, "scripts"))
    from eval_utils import load_model

    model, _, _ = load_model(Path(args.model_path))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    ld_kwargs = SimpleNamespace(n_step_each=args.n_step_each, step_lr=args.step_lr, min_sigma=args.min_sigma,
                                save_traj=False, disable_bar=True)
    with open(args.spec) as handle:
        spec = json.load(handle)
    for k, start in enumerate(range(0, len(spec), args.batch_size)):
        chunk = spec[start:start + args.batch_size]
        begin = time.time()
        seed_all(args.seed + k)
        num_atoms = torch.tensor([len(e["atom_types"]) for e in chunk], device=device)
        atom_types = torch.tensor([z for e in chunk for z in e["atom_types"]], device=device)
        z = torch.randn(len(chunk), model.hparams.hidden_dim, device=device)
        outputs = model.langevin_dynamics(z, ld_kwargs, num_atoms, atom_types)
        result = {key: outputs[key].detach().cpu().unsqueeze(0) for key in KEYS}
        result.update(eval_setting=args, time=time.time() - begin)
        torch.save(result, os.path.join(args.model_path, f"eval_csp_{k:05d}.pt"))
        print(f"batch {k}: {len(chunk)} crystals", flush=True)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gen"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--seed", type=int, default=0)
        rest = argv[1:]
        split = rest.index("--") if "--" in rest else len(rest)
        args = parser.parse_args(rest[:split])
        return gen(args.seed, rest[split + 1:])
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["csp"])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--n_step_each", type=int, default=100)
    parser.add_argument("--step_lr", type=float, default=1e-4)
    parser.add_argument("--min_sigma", type=float, default=0.0)
    return csp(parser.parse_args(argv))


if __name__ == "__main__":
    main()
