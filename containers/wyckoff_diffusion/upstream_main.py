"""Run WyckoffDiff's own `main.py`, unchanged, knowing one more dataset: the one gencsp trains on.

usage: upstream_main.py PRIOR.json|- MAIN_PY_ARGUMENTS...   (-: a checkpoint of an upstream dataset)
       upstream_main.py --count PRIOR.json NAME NUM_ELEMENTS  (after the raw CSVs are written)

WyckoffDiff registers three datasets (wbm, mp20, carbon24). Each is a class with fixed download hashes and a
`DatasetInfo` with fixed marginals, among them the space-group prior that sampling draws every sample's group
from. Training perov_5 as `mp20` (what this adapter did before) made sampling draw MP-20's groups. Here the
dataset is registered under its own name through the upstream registry (its plug-in point): a WyckoffDataset
reading `data/<name>/raw/<name>_<split>.csv`, and a DatasetInfo whose marginals are counted on the training
split the way the upstream ones are (space group; element on 0-DoF positions; orbit count on the others).
PRIOR.json holds them; it is written at training and kept beside the checkpoint, whose config names the
dataset, so that sampling registers the same prior again.
"""

import json
import os
import runpy
import sys

UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/wyckoffdiff")
NUM_GROUPS = 231  # index = space-group number (0 unused), as the upstream spg_distr
NUM_SPECIES = 119  # 0 (empty) and elements 1..118, as the upstream zero_dof_distr


def dataset_class(name):
    from wyckoff_generation.datasets.dataset import WyckoffDataset

    class GencspDataset(WyckoffDataset):
        suffix = name
        hash_dict = {}

        def __init__(self, split, num_elements, debug=False):
            super().__init__(os.path.join("data", name), split, num_elements, debug=debug)

        @property
        def raw_file_names(self):
            return [f"{name}_{self.split}.csv"]

        def download(self):
            raise FileNotFoundError(f"{os.path.join(self.raw_dir, self.raw_file_names[0])}: gencsp writes this split before training; it is missing")

    GencspDataset.__name__ = GencspDataset.__qualname__ = f"Gencsp_{name}_Dataset"
    return GencspDataset


def info_class(prior):
    import torch

    fields = {key: torch.tensor(prior[key], dtype=torch.float32)
              for key in ("spg_distr", "zero_dof_distr", "inf_dof_distr")}
    return type("Gencsp_{}_DatasetInfo".format(prior["name"]), (object,), fields)


def register(prior):
    from wyckoff_generation.common.registry import registry

    registry.register_dataset(prior["name"])(dataset_class(prior["name"]))
    registry.register_datainfo(prior["name"])(info_class(prior))


def normalised(counts):
    total = float(sum(counts))
    return [c / total for c in counts] if total else counts


def count_prior(name, num_elements):
    """The marginals of the training split, as WyckoffDiff's DatasetInfo classes hold them."""
    import torch

    torch.manual_seed(0)  # WyckoffDataset.get draws one of a structure's equivalent Wyckoff sets
    dataset = dataset_class(name)("train", num_elements)
    groups, species, orbits = [0] * NUM_GROUPS, [0] * NUM_SPECIES, []
    for k in range(len(dataset)):
        data = dataset[k]  # one of the equivalent Wyckoff sets, as training sees it
        groups[int(data.space_group)] += 1
        for value in data.x_0_dof.long().tolist():
            species[value] += 1
        values = torch.bincount(data.x_inf_dof.long().reshape(-1)).tolist()
        orbits += [0] * (len(values) - len(orbits))
        for value, count in enumerate(values):
            orbits[value] += count
    return {"name": name, "structures": len(dataset), "spg_distr": normalised(groups),
            "zero_dof_distr": normalised(species), "inf_dof_distr": normalised(orbits or [1])}


def main(argv):
    sys.path.insert(0, UPSTREAM)
    if argv[:1] == ["--count"]:
        path, name, num_elements = argv[1], argv[2], int(argv[3])
        prior = count_prior(name, num_elements)
        with open(path, "w") as handle:
            json.dump(prior, handle)
        print("gencsp: {} prior from {} training structures -> {}".format(name, prior["structures"], path))
        return 0
    if argv[0] != "-":
        with open(argv[0]) as handle:
            register(json.load(handle))
    sys.argv = [os.path.join(UPSTREAM, "main.py")] + argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
