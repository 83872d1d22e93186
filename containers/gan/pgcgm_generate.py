"""Run PGCGM's pretrained generator on chosen space groups and elements (upstream env, Python 3.8).

    pgcgm_generate.py SPEC.json MATDIR

SPEC: {"seed": S, "rows": [{"space_group": "<H-M symbol as in data/paras.pickle>" | null,
                            "elements": [3 symbols] | null}, ...]}
A null space group or element list is drawn as the upstream create_cif.py does (training frequency,
3 distinct elements). Row r becomes MATDIR/<sg, '/' as '#'>---<r>_<rot>.cif for rot 0, 1, 2, written
from the upstream's data/cif-template.txt and data/symmetry-equiv/<sg>.txt and packed into
MATDIR/<k>.tar.gz archives of at most 1000 rows, the layout pymatgen_valid.py reads.
Unlike create_cif.py: weights are loaded with map_location (CPU hosts), CUDA_VISIBLE_DEVICES is left
to the runtime, and the last partial archive is written too.
"""

import glob
import json
import os
import pickle
import sys
import tarfile

UPSTREAM = os.environ.get("GENCSP_UPSTREAM", "/opt/PGCGM")
WEIGHTS = os.path.join(UPSTREAM, "models", "frac12", "generator_weights.pth")
ROWS_PER_ARCHIVE = 1000
LATENT_DIM = 128
NUM_ELEMENTS = 3


def data_path(*parts):
    return os.path.join(UPSTREAM, "data", *parts)


def load_inputs(device):
    import numpy as np
    import torch

    sys.path.insert(0, UPSTREAM)
    from model import Generator
    from simple_dist import sp_lookup

    with open(data_path("paras.pickle"), "rb") as handle:
        aux = pickle.load(handle)
    embedding = torch.Tensor(np.load(data_path("elements_features.npy"))).to(device)
    with open(data_path("elements_id_NoPo.json")) as handle:
        element_ids = json.load(handle)
    generator = Generator(embedding.shape[1], LATENT_DIM).to(device)
    generator.load_state_dict(torch.load(WEIGHTS, map_location=device)["state_dict"])
    generator.eval()
    return aux, embedding, element_ids, generator, sp_lookup(device, aux[-2])


def resolve_rows(rows, aux, element_ids, rng):
    """(space-group id, element ids) per row; nulls drawn like the upstream's fake_generator."""
    sp2id = aux[-2]
    resolved = []
    for row in rows:
        symbol = row.get("space_group")
        sp = sp2id[symbol] if symbol else int(rng.choice(len(sp2id), p=aux[-1]))
        elements = row.get("elements")
        ids = [element_ids[e] for e in elements] if elements else \
            [int(x) for x in rng.choice(sorted(element_ids.values()), NUM_ELEMENTS, replace=False)]
        resolved.append((sp, ids))
    return resolved


def cif_text(template, symbol, ops, lengths, angles, elements, coords):
    """One CIF in create_cif.py's layout: the template, the group's operations, one site per element."""
    text = template.replace("SYMMETRY-SG", symbol)
    values = list(lengths) + list(angles)
    for k, key in enumerate(("LAL", "LBL", "LCL", "DEGREE1", "DEGREE2", "DEGREE3")):
        text = text.replace(key, str(values[k]))
    text = text.replace("TRANSFORMATION\n", ops)
    for m, element in enumerate(elements):
        text += "  ".join(["", element, element + str(m)] + [str(c) for c in coords[m]] + ["1"]) + "\n"
    return text + "\n"


def pack(matdir, archive_index):
    cifs = sorted(glob.glob(os.path.join(matdir, "*.cif")))
    if not cifs:
        return
    with tarfile.open(os.path.join(matdir, f"{archive_index}.tar.gz"), "w:gz") as tar:
        for path in cifs:
            tar.add(path)
    for path in cifs:
        os.remove(path)


def generate(spec, matdir, batch_size=1024):
    import numpy as np
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(int(spec["seed"]))
    rng = np.random.RandomState(int(spec["seed"]) % (2 ** 32))
    aux, embedding, element_ids, generator, lookup = load_inputs(device)
    id2sp = {v: k for k, v in aux[-2].items()}
    symbol_of = {v: k for k, v in element_ids.items()}
    with open(data_path("cif-template.txt")) as handle:
        template = handle.read()
    rows = resolve_rows(spec["rows"], aux, element_ids, rng)
    abc_pattern, angle_pattern = torch.Tensor(aux[0]).to(device), torch.Tensor(aux[1]).to(device)
    length_scale, coord_scale = torch.Tensor([aux[2]]).to(device), torch.Tensor(aux[3]).to(device)
    os.makedirs(matdir, exist_ok=True)
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            sp = torch.tensor([r[0] for r in chunk], dtype=torch.int64)
            ele = torch.tensor([r[1] for r in chunk], dtype=torch.int64).to(device)
            z = torch.normal(0.0, 1.0, size=(len(chunk), LATENT_DIM)).to(device)
            coords, box = generator(lookup.symm_op_collection[sp], torch.transpose(embedding[ele], 1, 2), z)
            coords = np.round((coords * coord_scale + coord_scale).cpu().numpy(), 2)
            lengths = torch.einsum("bl,bls->bs", torch.exp(box * length_scale + length_scale),
                                   abc_pattern[sp]).cpu().numpy()
            angles = angle_pattern[sp].cpu().numpy()
            for j, (sp_id, ids) in enumerate(chunk):
                row = start + j
                symbol = id2sp[sp_id]
                with open(data_path("symmetry-equiv", symbol.replace("/", "#") + ".txt")) as handle:
                    ops = handle.read()
                for rot in range(3):
                    name = os.path.join(matdir, "{}---{}_{}.cif".format(symbol.replace("/", "#"), row, rot))
                    with open(name, "w") as handle:
                        handle.write(cif_text(template, symbol, ops, lengths[j], angles[j],
                                              [symbol_of[i] for i in ids], coords[j][rot]))
                if (row + 1) % ROWS_PER_ARCHIVE == 0:
                    pack(matdir, (row + 1) // ROWS_PER_ARCHIVE)
    pack(matdir, len(rows) // ROWS_PER_ARCHIVE + 1)
    return len(rows)


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        count = generate(json.load(handle), sys.argv[2])
    print(f"gencsp: generated {count} rows", flush=True)
